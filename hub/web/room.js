// The situation room: map, live incidents, sensor charts and barrier commands.
"use strict";

const COLORS = { ok: "#2fbf71", alarm: "#ff3b3b", silent: "#f0a020", unknown: "#7b8794" };
const $ = (id) => document.getElementById(id);

const room = {
  token: sessionStorage.getItem("hub.token") || "",
  sensors: new Map(), markers: new Map(), incidents: new Map(), actuators: new Map(),
  sites: new Map(), positions: new Map(), map: null, detail: null, layers: {}, stream: null, selected: null,
  alerted: new Set(),
  objectUrls: { detail: [], cameras: [] }, me: null, timelineAsked: 0,
  cameraEvents: [], cameraMarkers: new Map(), cameraState: new Map(),
};

// What the token may do: a viewer is shown no control that would only answer 403.
function canAct() {
  return Boolean(room.me) && (room.me.role === "operator" || room.me.role === "admin");
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function toast(text, isError) {
  const box = $("toast");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const opts = options || {};
  const headers = { Authorization: `Bearer ${room.token}`, ...(opts.headers || {}) };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method: opts.method || "GET", headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) { signIn(t("badToken")); throw new ApiError(401, data.error); }
  if (!resp.ok) throw new ApiError(resp.status, data.error || resp.statusText);
  return data;
}

// The hub serves snapshots (/api/evidence/...) only with the token, which <img src> cannot
// send: fetch them, show them from object URLs, and let those go when their view is redrawn.
async function showSnapshot(img, url, view) {
  try {
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${room.token}` } });
    if (!resp.ok) throw new ApiError(resp.status, resp.statusText);
    const src = URL.createObjectURL(await resp.blob());
    room.objectUrls[view].push(src);
    img.src = src;
  } catch (err) {
    img.dataset.error = String(err.status || err.message);
  }
}

function releaseSnapshots(view) {
  for (const src of room.objectUrls[view]) URL.revokeObjectURL(src);
  room.objectUrls[view] = [];
}

function snapshotImage(item, attrs, view) {
  if (item.snapshot_url) {
    const img = el("img", attrs);
    showSnapshot(img, item.snapshot_url, view);
    return img;
  }
  if (item.snapshot && /^(https?:|\/)/.test(item.snapshot)) return el("img", { src: item.snapshot, ...attrs });
  return null;
}

function fail(err) {
  if (err.status === 401) return;
  const prefix = err.status === 403 ? t("forbidden") : `${t("failed")} (${err.status || "-"})`;
  toast(`${prefix}: ${err.message}`, true);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(lang === "ko" ? "ko-KR" : "en-GB") : "";
}

// -- sign-in ----------------------------------------------------------------------------------

function signIn(message) {
  const dialog = $("login");
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  stopStream();
  if (!dialog.open) dialog.showModal();
}

$("login-form").addEventListener("submit", () => {
  room.token = $("token").value.trim();
  sessionStorage.setItem("hub.token", room.token);
  start();
});
$("signout").addEventListener("click", () => {
  sessionStorage.removeItem("hub.token");
  room.token = "";
  signIn();
});
$("lang").addEventListener("click", () => { toggleLanguage(); renderAll(); });
$("show-cleared").addEventListener("change", renderIncidents);

// -- map ----------------------------------------------------------------------------------------

async function setUpMap() {
  if (room.map) return;
  const info = await api("/api/map");
  room.map = L.map("map", { zoomControl: true, attributionControl: Boolean(info.tiles) });
  if (info.tiles) L.tileLayer(info.tiles, { maxZoom: 19 }).addTo(room.map);
  // The regions are drawn in any case: they are the map when there are no tiles.
  const regions = L.geoJSON(info.regions, {
    style: { color: "#4aa3ff", weight: 1.5, fillOpacity: info.tiles ? 0.03 : 0.1 },
    onEachFeature: (f, layer) => layer.bindTooltip(f.properties.name,
      { permanent: !info.tiles, direction: "center", className: "region-label" }),
  }).addTo(room.map);
  if (window.hubWall) hubWall.setEnabled(info.live !== false); // live view on this hub (wall.js)
  for (const site of info.sites) room.sites.set(site.id, site);
  for (const a of info.actuators) room.positions.set(a.id, a);
  const bounds = regions.getBounds();
  if (bounds.isValid()) room.map.fitBounds(bounds, { padding: [10, 10] });
  else room.map.setView([37.4, 127.0], 9);
  room.legend = L.control({ position: "bottomleft" });
  room.legend.onAdd = () => el("div", { class: "legend", id: "legend" });
  room.legend.addTo(room.map);
  renderLegend();
  room.layers.cameras = L.layerGroup().addTo(room.map);
  room.layers.actuators = L.layerGroup().addTo(room.map);
  room.layers.sensors = L.layerGroup().addTo(room.map);
  room.map.on("zoomend", spreadSensors);
}

function renderLegend() {
  const box = $("legend");
  if (!box) return;
  const rows = Object.entries(COLORS).map(([state, color]) =>
    el("div", {}, el("i", { class: "dot", style: `background:${color}` }), t(`states.${state}`)));
  rows.push(el("div", {}, el("i", { class: "camera-icon" }), t("camera")),
    el("div", {}, el("i", { class: "camera-icon cam-event" }), t("cameraEvent")),
    el("div", {}, el("i", { class: "camera-icon cam-down" }), t("cameraDown")),
    el("div", {}, el("i", { class: "actuator-icon" }), t("barrier")));
  box.replaceChildren(...rows);
}

function siteName(id) {
  const site = room.sites.get(id);
  return site ? site.name || site.id : id || "";
}

function sensorClass(s) {
  return `sensor sensor-${s.id} state-${s.state}`;
}

function updateSensor(s) {
  room.sensors.set(s.id, s);
  let marker = room.markers.get(s.id);
  const style = { radius: s.state === "alarm" ? 9 : 6, color: "#0b1016", weight: 1,
    fillColor: COLORS[s.state] || COLORS.unknown, fillOpacity: 0.95, className: sensorClass(s) };
  if (!marker) {
    marker = L.circleMarker([s.lat, s.lon], style).addTo(room.layers.sensors);
    marker.on("click", () => showSensor(s.id));
    room.markers.set(s.id, marker);
  } else {
    marker.setStyle(style);
    marker.setRadius(style.radius);
  }
  const path = marker.getElement();
  if (path) path.setAttribute("class", `leaflet-interactive ${sensorClass(s)}`);
  const value = s.value === null ? "—" : `${Number(s.value.toPrecision(4))} ${s.unit || ""}`;
  marker.bindTooltip(`${s.name || s.id}<br>${value} · ${t(`states.${s.state}`)}`);
  if (s.state === "alarm") marker.bringToFront();
  if (room.selected === s.id) $("chart-title").textContent = `${s.name || s.id} (${value})`;
}

async function loadSensors() {
  const data = await api("/api/sensors");
  for (const s of data.sensors) updateSensor(s);
  spreadSensors();
}

// Sensors that share a place at the map's zoom would hide one another, and only the top one
// could be clicked. Each marker gets a cell of its own on a CELL-pixel grid: its own cell when
// free, else the nearest free one, searched ring by ring; markers sit at their cells' centres,
// so none is nearer another than CELL pixels. An alarm gets its place first. Zooming in, the
// sensors part and each comes back to its own place.
const CELL = 14, RINGS = 6;

function spreadSensors() {
  if (!room.map) return;
  const taken = new Set();
  const order = [...room.sensors.values()].sort((a, b) =>
    (b.state === "alarm") - (a.state === "alarm") || a.id.localeCompare(b.id));
  for (const s of order) {
    const marker = room.markers.get(s.id);
    if (!marker) continue;
    const p = room.map.project([s.lat, s.lon]);
    const home = [Math.floor(p.x / CELL), Math.floor(p.y / CELL)];
    let best = null;
    for (let ring = 0; ring <= RINGS && !best; ring++) {
      let nearest = Infinity;
      for (let dx = -ring; dx <= ring; dx++) {
        for (let dy = -ring; dy <= ring; dy++) {
          if (Math.max(Math.abs(dx), Math.abs(dy)) !== ring) continue;
          const cell = [home[0] + dx, home[1] + dy];
          if (taken.has(`${cell}`)) continue;
          const d = ((cell[0] + 0.5) * CELL - p.x) ** 2 + ((cell[1] + 0.5) * CELL - p.y) ** 2;
          if (d < nearest) { nearest = d; best = cell; }
        }
      }
    }
    best = best || home; // a crowd beyond RINGS rings: it shares its own cell
    taken.add(`${best}`);
    marker.setLatLng(room.map.unproject(L.point((best[0] + 0.5) * CELL, (best[1] + 0.5) * CELL)));
  }
}

async function loadCameras() {
  const data = await api("/api/cameras");
  room.layers.cameras.clearLayers();
  room.cameraMarkers.clear();
  releaseSnapshots("cameras");
  for (const c of data.cameras) {
    const icon = L.divIcon({ className: "camera-icon", iconSize: [12, 12] });
    const body = el("div", {}, el("b", {}, c.name || c.id), el("br"), siteName(c.site));
    const img = snapshotImage(c, { alt: c.id, width: "240" }, "cameras");
    if (img) body.append(el("br"), img);
    const marker = L.marker([c.lat, c.lon], { icon, title: c.id }).bindPopup(body).addTo(room.layers.cameras);
    marker.on("click", () => { if (window.hubWall) hubWall.open(c.id); }); // live view (wall.js)
    room.cameraMarkers.set(c.id, marker);
    markCamera(c.id);
  }
}

// -- camera events --------------------------------------------------------------------------------

// The stream workers' events (docs/streams.md): the latest SHOWN in the list, newest first;
// on the map a camera shows its last event for FADE_MS, and stays marked down from
// stream_down to stream_up. Each also goes to the camera's tile on the wall (wall.js).
const CAMERA_EVENTS_SHOWN = 30, FADE_MS = 60_000;
const ALERT_KINDS = new Set(["fall", "fire", "smoke", "crowd"]);

function cameraState(id) {
  let state = room.cameraState.get(id);
  if (!state) {
    state = { last: null, until: 0, down: false, timer: null };
    room.cameraState.set(id, state);
  }
  return state;
}

// The camera's marker as its state says: pulsing with a label while its last event is
// recent, greyed out while its stream is down.
function markCamera(id) {
  const marker = room.cameraMarkers.get(id), state = room.cameraState.get(id);
  if (!marker || !state) return;
  const recent = state.last !== null && Date.now() < state.until;
  const icon = marker.getElement();
  if (icon) {
    icon.classList.toggle("cam-event", recent);
    icon.classList.toggle("cam-alert", recent && ALERT_KINDS.has(state.last.kind));
    icon.classList.toggle("cam-down", state.down);
  }
  if (!recent && !state.down) { marker.unbindTooltip(); return; }
  const shown = state.down && !recent ? { kind: "stream_down" } : state.last;
  const label = el("span", { dataset: { camera: id, kind: shown.kind } }, describeCameraEvent(shown, true));
  // The label is kept and its text changed: a tooltip taken away fades out for a moment.
  if (marker.getTooltip()) marker.setTooltipContent(label);
  else {
    marker.bindTooltip(label, { permanent: true, direction: "top", offset: [0, -8],
      className: "camera-event-label" }).openTooltip();
  }
  const box = marker.getTooltip().getElement();
  if (box) box.classList.toggle("down", state.down);
}

// One event into the camera's state; `fresh` when it came just now (it is shown for FADE_MS
// from now, whatever the clocks say), else for what is left of FADE_MS after its time.
function noteCameraEvent(e, fresh) {
  const state = cameraState(e.camera);
  const at = fresh ? Date.now() : new Date(e.ts).getTime();
  if (state.last && !fresh && new Date(state.last.ts) >= new Date(e.ts)) return;
  state.last = e;
  state.until = at + FADE_MS;
  if (e.kind === "stream_down") state.down = true;
  else if (e.kind === "stream_up") state.down = false;
  clearTimeout(state.timer);
  const left = state.until - Date.now();
  if (left > 0) state.timer = setTimeout(() => markCamera(e.camera), left + 50);
  markCamera(e.camera);
}

async function loadCameraEvents() {
  // The latest for the list, and the latest stream events: a camera down for longer than
  // the list reaches back is still shown down.
  const [data, downs, ups] = await Promise.all([
    api(`/api/camera-events?limit=${CAMERA_EVENTS_SHOWN}`),
    api("/api/camera-events?kind=stream_down&limit=1000"),
    api("/api/camera-events?kind=stream_up&limit=1000"),
  ]);
  const stream = new Map(); // camera -> its newest stream event
  for (const e of [...downs.events, ...ups.events]) {
    const seen = stream.get(e.camera);
    if (!seen || new Date(e.ts) > new Date(seen.ts)) stream.set(e.camera, e);
  }
  for (const [id, e] of stream) {
    cameraState(id).down = e.kind === "stream_down";
    markCamera(id);
  }
  room.cameraEvents = data.events;
  // Oldest first, so that each camera ends in its newest state.
  for (const e of [...data.events].reverse()) noteCameraEvent(e, false);
  if (window.hubWall) hubWall.setCameraEvents(data.events); // the tiles' overlays (wall.js)
  renderCameraEvents();
}

function onCameraEvent(e) {
  if (e.event_id && room.cameraEvents.some((x) => x.event_id === e.event_id)) return;
  room.cameraEvents.unshift(e);
  room.cameraEvents.length = Math.min(room.cameraEvents.length, CAMERA_EVENTS_SHOWN);
  noteCameraEvent(e, true);
  if (window.hubWall) hubWall.onCameraEvent(e);
  renderCameraEvents();
}

function cameraEventItem(e) {
  const marker = room.cameraMarkers.get(e.camera);
  const alert = ALERT_KINDS.has(e.kind) ? " alert" : "";
  return el("li", {
    class: `camera-event kind-${e.kind}${alert}`,
    dataset: { camera: e.camera, kind: e.kind, eventId: e.event_id || "" },
    title: when(e.ts),
    onclick: () => {
      if (marker && room.map) room.map.panTo(marker.getLatLng());
      if (window.hubWall) hubWall.open(e.camera); // live view (wall.js)
    },
  },
  el("span", { class: "ts" }, timeOfDay(e.ts)),
  el("span", { class: "cam" }, e.camera),
  el("span", { class: "what" }, describeCameraEvent(e)));
}

function renderCameraEvents() {
  $("camera-events").replaceChildren(...room.cameraEvents.map(cameraEventItem));
  $("camera-event-count").textContent = String(room.cameraEvents.length);
  $("no-camera-events").hidden = room.cameraEvents.length > 0;
}

// -- actuators ----------------------------------------------------------------------------------

async function loadActuators() {
  let data;
  try {
    data = await api("/api/actuators");
  } catch (err) {
    if (err.status === 404) return; // a hub without actuator control
    throw err;
  }
  room.layers.actuators.clearLayers();
  room.actuators.clear();
  for (const a of data.actuators) room.actuators.set(a.id, a);
  renderActuators();
}

function renderActuators() {
  const list = $("actuators");
  list.replaceChildren();
  room.layers.actuators.clearLayers();
  for (const a of room.actuators.values()) {
    // The marker's own transform places it; the diamond is turned inside it.
    const icon = L.divIcon({ className: `actuator-marker kind-${a.kind}`,
      html: '<i class="actuator-icon"></i>', iconSize: [16, 16] });
    const where = room.positions.get(a.id);
    if (where) L.marker([where.lat, where.lon], { icon, title: a.id }).addTo(room.layers.actuators);
    list.append(actuatorItem(a, null));
  }
  if (room.detail) renderSiteActuators(room.incidents.get(room.detail));
}

// One actuator with its state and, for a token that may act, a button per command its kind
// takes; `incident` (or null) is the incident the commands are given for.
function actuatorItem(a, incident) {
  const pending = (a.pending || [])[0];
  const status = pending ? `${pending.action}: ${pending.state}` : a.state || "?";
  const item = el("li", { class: `actuator kind-${a.kind}`, dataset: { id: a.id, kind: a.kind } },
    el("span", { class: "name" }, a.name || a.id, el("br"),
      el("span", { class: "state" }, `${a.kind} · ${siteName(a.site)} · ${status}`)));
  if (!canAct()) return item;
  if (pending && pending.state === "awaiting_confirmation") {
    item.append(el("button", { class: "danger", onclick: () => confirmHeld(a, pending) },
      t("confirmHeld")));
  }
  for (const command of a.commands || []) {
    item.append(el("button", { class: `command command-${command}`,
      onclick: () => askCommand(a, command, incident) }, commandLabel(command)));
  }
  return item;
}

function ask(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// The reason for an override, or null: the dialog says why the command was refused.
function askReason(why) {
  const dialog = $("override");
  $("override-why").textContent = why;
  $("override-reason").value = "";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const reason = $("override-reason").value.trim();
      resolve(dialog.returnValue === "ok" && reason ? reason : null);
    }, { once: true });
  });
}

$("override-form").addEventListener("submit", (e) => {
  if (e.submitter && e.submitter.value === "ok" && !$("override-reason").value.trim()) {
    e.preventDefault();
    $("override-why").textContent = t("needReason");
  }
});

async function sendCommand(a, command, body) {
  const data = await api(`/api/actuators/${encodeURIComponent(a.id)}/command`,
    { method: "POST", body: { command, ...body } });
  toast(`${t("commandSent")}: ${a.name || a.id} ${commandLabel(command)} (${data.command.state})`);
}

async function askCommand(a, command, incident) {
  const vars = { action: commandLabel(command), name: a.name || a.id, site: siteName(a.site) };
  if (!(await ask(t(a.kind === "barrier" ? "confirmCommand" : "confirmAny", vars)))) return;
  const about = incident ? { incident: incident.id } : {};
  try {
    await sendCommand(a, command, { reason: "situation room", ...about });
  } catch (err) {
    // An interlock or the rate limit refused it: an operator may override, with a reason.
    if (err.status !== 409) { fail(err); return; }
    const reason = await askReason(t("refusedCommand", { why: err.message }));
    if (reason) {
      try { await sendCommand(a, command, { reason, override: true, ...about }); } catch (e) { fail(e); }
    }
  }
  loadActuators().catch(fail);
  if (incident) loadTimeline(incident.id);
}

async function confirmHeld(a, job) {
  if (!(await ask(`${t("confirmHeld")}: ${a.name || a.id} ${job.action}?`))) return;
  try {
    await api(`/api/actuators/${encodeURIComponent(a.id)}/commands/${job.command_id}/confirm`,
      { method: "POST", body: { approve: true } });
  } catch (err) { fail(err); }
  loadActuators().catch(fail);
}

// -- incidents ----------------------------------------------------------------------------------

async function loadIncidents() {
  const data = await api("/api/incidents");
  room.incidents.clear();
  for (const i of data.incidents) {
    room.incidents.set(i.id, i);
    room.alerted.add(i.id); // open before the page knew of it: no alarm now
  }
  renderIncidents();
}

function renderIncidents() {
  const showCleared = $("show-cleared").checked;
  const shown = [...room.incidents.values()]
    .filter((i) => i.state !== "archived" && (showCleared || i.state !== "cleared"))
    .sort((a, b) => (b.opened_at || "").localeCompare(a.opened_at || ""));
  const list = $("incidents");
  list.replaceChildren(...shown.map(incidentItem));
  $("incident-count").textContent = String(shown.filter((i) => i.state !== "cleared").length);
  $("no-incidents").hidden = shown.length > 0;
  if (room.detail && room.incidents.has(room.detail)) showIncident(room.detail, false);
}

function incidentItem(i) {
  const ack = i.state === "active" && canAct()
    ? el("button", { class: "ack", onclick: (e) => { e.stopPropagation(); acknowledge(i.id); } }, t("ack"))
    : null;
  const where = [i.region, siteName(i.site)].filter(Boolean).join(" · ");
  return el("li", {
    class: `incident sev-${i.severity} state-${i.state}`, dataset: { id: i.id, state: i.state },
    onclick: () => showIncident(i.id),
  },
  el("div", { class: "head" }, el("span", { class: "title" }, i.title || i.rule),
    el("span", { class: "badge" }, `${t(`severities.${i.severity}`)} · ${t(`states.${i.state}`)}`)),
  el("div", { class: "meta" }, `${where} · ${when(i.opened_at)}`,
    i.acked_by ? ` · ${t("acked")}: ${i.acked_by}` : ""),
  ack);
}

async function acknowledge(id, note) {
  try {
    const body = note ? { note } : {};
    const data = await api(`/api/incidents/${encodeURIComponent(id)}/ack`, { method: "POST", body });
    room.incidents.set(id, data.incident);
    renderIncidents();
    toast(t("ackDone"));
    return true;
  } catch (err) { fail(err); return false; }
}

// -- the detail's timeline, notes and archiving --------------------------------------------------

async function loadTimeline(id) {
  const asked = ++room.timelineAsked; // only the latest answer is drawn
  let data;
  try {
    data = await api(`/api/incidents/${encodeURIComponent(id)}/timeline`);
  } catch (err) {
    if (err.status !== 404) fail(err);
    return;
  }
  if (asked !== room.timelineAsked || room.detail !== id) return;
  const items = data.timeline.map((e) => el("li", { class: `entry kind-${e.kind}`, dataset: { kind: e.kind } },
    el("span", { class: "ts" }, when(e.ts)), e.by ? el("span", { class: "by" }, e.by) : null,
    el("span", { class: "text" }, e.note ? `${e.text}: ${e.note}` : e.text)));
  if (!items.length) items.push(el("li", { class: "muted" }, t("noTimeline")));
  $("timeline").replaceChildren(...items);
}

async function addNote() {
  const id = room.detail, text = $("note-text").value.trim();
  if (!id || !text) return;
  try {
    await api(`/api/incidents/${encodeURIComponent(id)}/notes`, { method: "POST", body: { text } });
    $("note-text").value = "";
    toast(t("noteAdded"));
  } catch (err) { fail(err); }
  loadTimeline(id);
}

async function acknowledgeWithNote() {
  const id = room.detail;
  if (!id) return;
  if (await acknowledge(id, $("note-text").value.trim())) $("note-text").value = "";
  loadTimeline(id);
}

async function archive() {
  const id = room.detail, i = room.incidents.get(id);
  if (!i || !(await ask(`${t("archive")}: ${i.title || i.rule}?`))) return;
  try {
    const data = await api(`/api/incidents/${encodeURIComponent(id)}/archive`, { method: "POST", body: {} });
    room.incidents.set(id, data.incident);
    toast(t("archived"));
  } catch (err) { fail(err); }
  renderIncidents();
  loadTimeline(id);
}

$("note-add").addEventListener("click", addNote);
$("detail-ack").addEventListener("click", acknowledgeWithNote);
$("detail-archive").addEventListener("click", archive);

// One line of evidence: a reading with its value and unit, a camera's counts, or a text.
function evidenceLine(e) {
  if (e.kind === "reading") {
    const sensor = room.sensors.get(e.sensor);
    const value = typeof e.value === "number" ? `${Number(e.value.toPrecision(4))} ${e.unit || ""}` : "—";
    return `${sensor ? sensor.name || sensor.id : e.sensor}: ${value.trim()} · ${when(e.ts)}`;
  }
  if (e.kind === "camera_event") {
    const what = [e.event, e.class, e.zone || e.line, e.track_id !== undefined ? `#${e.track_id}` : null];
    return `${e.camera}: ${what.filter((x) => x !== null && x !== undefined).join(" ")} · ${when(e.ts)}`;
  }
  const counts = Object.entries(e.counts || {}).map(([k, n]) => `${k} ${n}`).join(", ");
  return `${e.camera || e.kind || ""} ${when(e.ts)} ${counts || e.text || ""}`;
}

function renderSiteActuators(i) {
  const box = $("detail-actuators");
  const here = i && i.site ? [...room.actuators.values()].filter((a) => a.site === i.site) : [];
  box.hidden = here.length === 0;
  box.querySelector("ul").replaceChildren(...here.map((a) => actuatorItem(a, i)));
}

function closeIncident() {
  room.detail = null;
  $("detail").hidden = true;
  $("detail-column").hidden = true;
  document.querySelector("main").classList.remove("with-detail");
  releaseSnapshots("detail");
  if (room.map) room.map.invalidateSize();
}

$("detail-close").addEventListener("click", closeIncident);

function showIncident(id, pan) {
  const i = room.incidents.get(id);
  if (!i) return;
  const opening = room.detail === null;
  room.detail = id;
  $("detail").hidden = false;
  $("detail-column").hidden = false;
  document.querySelector("main").classList.add("with-detail");
  if (opening && room.map) room.map.invalidateSize();
  for (const item of document.querySelectorAll("li.incident")) {
    item.classList.toggle("selected", item.dataset.id === id);
  }
  $("detail-title").textContent = i.title || i.rule;
  const facts = el("dl", { class: "facts" });
  for (const [k, v] of [["state", t(`states.${i.state}`)], ["region", i.region],
    ["site", siteName(i.site)], ["opened", when(i.opened_at)]]) {
    facts.append(el("dt", {}, t(k)), el("dd", {}, v || "—"));
  }
  const actions = el("ul", {}, ...(i.actions || []).map((a) =>
    el("li", {}, `${a.kind} (${a.step}): ${a.status}${a.detail ? ` — ${a.detail}` : ""}`)));
  const evidence = el("div", { class: "evidence" });
  releaseSnapshots("detail");
  for (const e of i.evidence || []) {
    evidence.append(el("div", { class: `item kind-${e.kind}` }, evidenceLine(e)));
    const img = snapshotImage(e, { alt: `${e.camera || ""} snapshot`, class: "snapshot" }, "detail");
    if (img) evidence.append(img);
  }
  $("detail-body").replaceChildren(facts, el("h3", {}, t("actions")), actions,
    el("h3", {}, t("evidence")), evidence);
  if (window.hubWall) hubWall.showIncident(i, $("detail-body")); // its live cameras (wall.js)
  $("detail-controls").hidden = !canAct();
  $("detail-ack").hidden = i.state !== "active";
  $("detail-archive").hidden = i.state !== "cleared";
  $("note-add").hidden = i.state === "archived";
  renderSiteActuators(i.state === "archived" ? null : i);
  loadTimeline(id);
  const sensor = room.sensors.get(i.subject);
  if (sensor && room.map && pan !== false) room.map.panTo([sensor.lat, sensor.lon]);
}

// -- a sensor's chart --------------------------------------------------------------------------

async function showSensor(id) {
  room.selected = id;
  const s = room.sensors.get(id);
  $("chart-panel").hidden = false;
  $("chart-title").textContent = s ? s.name || s.id : id;
  try {
    const data = await api(`/api/sensors/${encodeURIComponent(id)}/readings?since=1h`);
    if (room.selected === id) drawChart($("chart"), data.readings, data.unit, t("noReadings"));
  } catch (err) { fail(err); }
}

// -- the alarm sound and the CSV export ---------------------------------------------------------

// A severe or extreme incident that opens while the page is open sounds once, when the
// operator has turned the sound on (browsers let a page play sound only after a click, and
// turning it on is that click). The count of alarms is on <body data-alarms> for tests.
function alarm(i) {
  if (i.state !== "active" || !["severe", "extreme"].includes(i.severity)) return;
  if (room.alerted.has(i.id)) return;
  room.alerted.add(i.id);
  if (!$("sound").checked || !room.audio) return;
  document.body.dataset.alarms = String(Number(document.body.dataset.alarms || 0) + 1);
  const now = room.audio.currentTime;
  for (const [k, freq] of [[0, 880], [1, 660], [2, 880], [3, 660]]) {
    const tone = room.audio.createOscillator(), gain = room.audio.createGain();
    tone.frequency.value = freq;
    gain.gain.value = 0.2;
    tone.connect(gain).connect(room.audio.destination);
    tone.start(now + k * 0.25);
    tone.stop(now + k * 0.25 + 0.2);
  }
}

$("sound").checked = localStorage.getItem("hub.sound") === "on";
$("sound").addEventListener("change", () => {
  localStorage.setItem("hub.sound", $("sound").checked ? "on" : "off");
  if ($("sound").checked && !room.audio) room.audio = new AudioContext();
});

// A page reloaded with the sound on may play it after the operator's first click.
document.addEventListener("pointerdown", () => {
  if ($("sound").checked && !room.audio) room.audio = new AudioContext();
});

// The file comes with the token (a plain link could not send it), then is saved from memory.
async function exportCsv() {
  const range = $("export-range").value;
  try {
    const resp = await fetch(`/api/export/incidents.csv?from=${encodeURIComponent(range)}`,
      { headers: { Authorization: `Bearer ${room.token}` } });
    if (!resp.ok) {
      const data = await resp.json().catch(() => ({}));
      throw new ApiError(resp.status, data.error || resp.statusText);
    }
    const name = (/filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "") || [])[1];
    const url = URL.createObjectURL(await resp.blob());
    const link = el("a", { href: url, download: name || "incidents.csv" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    toast(t("exported"));
  } catch (err) { fail(err); }
}

$("export").addEventListener("click", exportCsv);

// -- the live stream ----------------------------------------------------------------------------

function setLive(on) {
  const live = $("live");
  live.className = `live ${on ? "on" : "off"}`;
  live.dataset.i18n = on ? "online" : "offline";
  live.textContent = t(live.dataset.i18n);
}

function stopStream() {
  if (room.stream) room.stream.abort();
  room.stream = null;
  setLive(false);
}

function onEvent(name, data) {
  if (name === "hello") {
    setLive(true);
    refresh().catch(fail); // what happened while we were away
  } else if (name === "incident") {
    room.incidents.set(data.incident.id, data.incident);
    renderIncidents();
    alarm(data.incident);
    if (window.hubWall) hubWall.onIncident(data.incident); // its cameras onto the wall (wall.js)
    if (data.incident.actions.some((a) => a.kind === "actuate")) loadActuators().catch(fail);
  } else if (name === "camera_event") {
    onCameraEvent(data.event);
  } else if (name === "sensors") {
    const known = room.markers.size;
    for (const s of data.sensors) updateSensor(s);
    if (room.markers.size !== known) spreadSensors();
  }
}

// fetch, not EventSource: EventSource cannot send the Authorization header.
async function follow() {
  const controller = new AbortController();
  room.stream = controller;
  while (room.stream === controller) {
    try {
      const resp = await fetch("/api/stream", { headers: { Authorization: `Bearer ${room.token}` },
        signal: controller.signal });
      if (resp.status === 401) { signIn(t("badToken")); return; }
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message", data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) onEvent(name, JSON.parse(data));
        }
      }
    } catch (err) {
      if (controller.signal.aborted) return;
    }
    setLive(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// -- start --------------------------------------------------------------------------------------

async function refresh() {
  await Promise.all([loadSensors(), loadIncidents(), loadCameras(), loadActuators(), loadRules(),
    loadCameraEvents()]);
}

async function loadRules() {
  const data = await api("/api/rules");
  const warning = $("rules-warning");
  warning.hidden = data.valid;
  warning.textContent = data.valid ? "" : t("rulesInvalid");
  warning.title = data.errors.join("\n");
}

function renderAll() {
  renderWho();
  renderLegend();
  for (const s of room.sensors.values()) updateSensor(s);
  renderIncidents();
  renderActuators();
  renderCameraEvents();
  for (const id of room.cameraState.keys()) markCamera(id);
  if (window.hubWall) hubWall.relabel();
}

function renderWho() {
  const me = room.me;
  $("who").hidden = !me;
  if (!me) return;
  document.body.dataset.role = me.role;
  $("who-name").textContent = `${me.name} (${t(`roles.${me.role}`)})`;
  $("who-regions").textContent = me.regions ? me.regions.join(", ") : t("province");
}

async function start() {
  if (!room.token) { signIn(); return; }
  try {
    room.me = await api("/api/me");
    renderWho();
    await setUpMap();
    document.body.dataset.ready = "true";
  } catch (err) { fail(err); return; }
  if ($("login").open) $("login").close();
  follow();
}

setInterval(() => { $("clock").textContent = new Date().toLocaleTimeString(lang === "ko" ? "ko-KR" : "en-GB"); }, 1000);
applyLabels();
start();
