// A small SVG line chart of a sensor's recent readings: no library, nothing from outside.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function hhmm(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function drawChart(svg, readings, unit, emptyText) {
  svg.replaceChildren();
  const W = 400, H = 180, L = 48, R = 8, T = 10, B = 24;
  if (!readings.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, emptyText));
    svg.dataset.points = "0";
    return;
  }
  const xs = readings.map((r) => Date.parse(r.ts));
  const ys = readings.map((r) => r.value);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 30000; x1 += 30000; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.08;
  y0 -= pad; y1 += pad;
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), class: "grid" }));
    svg.append(svgEl("text", { x: L - 4, y: py(y) + 4, "text-anchor": "end", class: "axis" },
      Number(y.toPrecision(3)).toString()));
  }
  for (let i = 0; i <= 3; i++) {
    const x = x0 + ((x1 - x0) * i) / 3;
    svg.append(svgEl("text", { x: px(x), y: H - 6, "text-anchor": "middle", class: "axis" }, hhmm(x)));
  }
  const path = readings.map((r, i) => `${i ? "L" : "M"}${px(xs[i]).toFixed(1)},${py(r.value).toFixed(1)}`);
  svg.append(svgEl("path", { d: path.join(""), class: "line" }));
  svg.append(svgEl("text", { x: L + 4, y: T + 10, class: "axis unit" }, unit || ""));
  svg.dataset.points = String(readings.length);
}
