// The video wall: live camera tiles, played from the relay with mpegts.js (Media Source).
// room.js calls hubWall.open (a camera clicked), hubWall.onIncident (each incident event),
// hubWall.showIncident (an incident's detail), hubWall.setCameraEvents and
// hubWall.onCameraEvent (camera events, shown over their camera's tile) and hubWall.relabel
// (the language changed); the rest of the page does not know it.
"use strict";

const hubWall = (() => {
  const WORDS = {
    ko: { wall: "영상 월", live: "실시간 영상", pin: "고정", unpin: "고정 해제", close: "닫기",
      loading: "연결 중…", retry: "다시 연결 중…", none: "카메라를 지도에서 누르면 여기에 실시간으로 표시됩니다",
      unsupported: "이 브라우저는 실시간 영상을 재생할 수 없습니다 (MSE)", noCameras: "이 장소를 보는 카메라가 없습니다" },
    en: { wall: "Video wall", live: "Live cameras", pin: "Pin", unpin: "Unpin", close: "Close",
      loading: "connecting…", retry: "reconnecting…", none: "Click a camera on the map to watch it live here",
      unsupported: "this browser cannot play live video (no Media Source Extensions)", noCameras: "no camera sees this place" },
  };
  const MAX_TILES = 9;
  const EVENT_LINES = 3; // camera events over a tile
  const ALERTS = new Set(["fall", "fire", "smoke", "crowd"]);
  const events = new Map(); // camera id -> its latest events, newest first
  const RETRY_MS = 5000;
  const tiles = new Map(); // camera id -> tile (on the wall)
  const details = []; // players in the incident's detail
  const seen = new Set(); // incidents whose cameras came onto the wall already
  let section = null;

  const word = (key) => (WORDS[typeof lang === "string" && lang === "en" ? "en" : "ko"])[key];
  const token = () => sessionStorage.getItem("hub.token") || "";

  function node(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) n.addEventListener(k.slice(2), v); else n.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) n.append(c);
    return n;
  }

  async function getJson(path) {
    const resp = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || `${resp.status} ${resp.statusText}`);
    return data;
  }

  // The relay says why a camera gives no picture in a JSON body; mpegts.js only sees a status.
  async function why(url) {
    try {
      const resp = await fetch(url);
      if (resp.ok) { resp.body.cancel(); return null; }
      const data = await resp.json().catch(() => ({}));
      return data.error || `${resp.status} ${resp.statusText}`;
    } catch (err) { return String(err.message || err); }
  }

  // A player of one camera in `box`: asks the hub for a ticket, plays, says why it cannot.
  function player(cameraId, box) {
    const video = node("video", { muted: "", playsinline: "", autoplay: "", "data-camera": cameraId });
    video.muted = true;
    const status = node("p", { class: "wall-status" }, word("loading"));
    box.append(video, status);
    const state = { video, status, mpegts: null, timer: null, stopped: false };

    function fail(text) {
      status.textContent = text;
      status.classList.add("error");
      box.classList.add("failed");
      if (!state.stopped) state.timer = setTimeout(start, RETRY_MS);
    }

    async function start() {
      release();
      if (state.stopped) return;
      if (!window.mpegts || !mpegts.isSupported()) { fail(word("unsupported")); return; }
      let grant;
      try { grant = await getJson(`/api/cameras/${encodeURIComponent(cameraId)}/live`); }
      catch (err) { fail(err.message); return; }
      if (state.stopped) return;
      // Over a WebSocket: a browser opens at most six HTTP connections to one relay.
      const url = grant.url.replace(/^http/, "ws");
      const p = mpegts.createPlayer({ type: "mpegts", isLive: true, url },
        { enableWorker: false, enableStashBuffer: false, lazyLoad: false, autoCleanupSourceBuffer: true,
          liveBufferLatencyChasing: true, liveBufferLatencyMaxLatency: 1.2, liveBufferLatencyMinRemain: 0.3 });
      state.mpegts = p;
      p.on(mpegts.Events.ERROR, async () => {
        if (state.mpegts !== p) return;
        release();
        fail((await why(grant.url)) || word("retry"));
      });
      p.on(mpegts.Events.LOADING_COMPLETE, () => { // the relay ended the stream: the camera went away
        if (state.mpegts === p) { release(); why(grant.url).then((text) => fail(text || word("retry"))); }
      });
      p.attachMediaElement(video);
      p.load();
      video.play().catch(() => {});
      video.addEventListener("playing", () => {
        status.textContent = "";
        status.classList.remove("error");
        box.classList.remove("failed");
      }, { once: true });
    }

    function release() {
      clearTimeout(state.timer);
      const p = state.mpegts;
      state.mpegts = null;
      if (p) { try { p.pause(); p.unload(); p.detachMediaElement(); p.destroy(); } catch (e) { /* gone */ } }
    }

    state.stop = () => { state.stopped = true; release(); };
    start();
    return state;
  }

  function ensureSection() {
    if (section) return section;
    section = node("section", { id: "wall", "aria-label": "video wall" },
      node("p", { class: "wall-empty muted" }, word("none")));
    const map = document.getElementById("map");
    map.after(section);
    document.querySelector("main").classList.add("with-wall");
    return section;
  }

  function render() {
    const wall = ensureSection();
    wall.querySelector(".wall-empty").hidden = tiles.size > 0;
    wall.dataset.count = String(tiles.size);
  }

  // Whether this hub serves live view (GET /api/map says): if not, nothing is played.
  let enabled = true;
  function setEnabled(on) { enabled = on; }

  function open(cameraId, options) {
    if (!enabled) return;
    const opts = options || {};
    const wall = ensureSection();
    let tile = tiles.get(cameraId);
    if (!tile) {
      // The oldest unpinned tile makes room; pinned tiles stay.
      if (tiles.size >= MAX_TILES) {
        const spare = [...tiles.values()].find((t) => !t.pinned);
        if (!spare) return null;
        close(spare.camera);
      }
      const box = node("figure", { class: "tile", "data-camera": cameraId });
      const pin = node("button", { type: "button", class: "pin" }, word("pin"));
      const shut = node("button", { type: "button", class: "close", title: word("close") }, "×");
      box.append(node("figcaption", {}, node("span", {}, cameraId), pin, shut));
      const overlay = node("div", { class: "wall-events", "data-camera": cameraId });
      tile = { camera: cameraId, box, pinned: false, incident: null, overlay, thumb: null };
      pin.addEventListener("click", () => setPinned(cameraId, !tiles.get(cameraId).pinned));
      shut.addEventListener("click", () => close(cameraId));
      wall.append(box);
      tile.player = player(cameraId, box);
      box.append(overlay);
      tiles.set(cameraId, tile);
      renderEvents(tile);
    }
    if (opts.pin) setPinned(cameraId, true);
    if (opts.incident) tile.incident = opts.incident;
    render();
    return tile;
  }

  function setPinned(cameraId, pinned) {
    const tile = tiles.get(cameraId);
    if (!tile) return;
    tile.pinned = pinned;
    tile.box.classList.toggle("pinned", pinned);
    tile.box.querySelector(".pin").textContent = word(pinned ? "unpin" : "pin");
  }

  function close(cameraId) {
    const tile = tiles.get(cameraId);
    if (!tile) return;
    tile.player.stop();
    if (tile.thumb && tile.thumb.src) URL.revokeObjectURL(tile.thumb.src);
    tile.box.remove();
    tiles.delete(cameraId);
    render();
  }

  // An incident that opens brings the cameras that see its place; unpinned tiles of other
  // incidents make way, pinned ones and cameras opened by hand stay.
  async function onIncident(incident) {
    if (!incident || seen.has(incident.id) || incident.state !== "active") return;
    seen.add(incident.id);
    let data;
    try { data = await getJson(`/api/incidents/${encodeURIComponent(incident.id)}/cameras`); }
    catch (err) { return; }
    if (data.live === false) return; // live view is off on this hub
    const wanted = new Set(data.cameras.map((c) => c.id));
    for (const tile of [...tiles.values()]) {
      if (!tile.pinned && tile.incident && !wanted.has(tile.camera)) close(tile.camera);
    }
    for (const c of data.cameras) open(c.id, { incident: incident.id });
  }

  // The incident's detail: its live cameras beside its evidence.
  // The detail is drawn again on each change of the incident: its players are kept (moved
  // back in the same task, a video element does not pause).
  let shown = null;
  async function showIncident(incident, container) {
    if (shown && shown.id === incident.id) { container.append(shown.heading, shown.box); return; }
    while (details.length) details.pop().stop();
    const box = node("div", { class: "wall-detail", "data-incident": incident.id });
    const heading = node("h3", {}, word("live"));
    shown = { id: incident.id, heading, box };
    container.append(heading, box);
    let data;
    try { data = await getJson(`/api/incidents/${encodeURIComponent(incident.id)}/cameras`); }
    catch (err) { box.append(node("p", { class: "error" }, err.message)); return; }
    if (data.live === false) { heading.remove(); box.remove(); return; } // live view is off
    if (!data.cameras.length) { box.append(node("p", { class: "muted" }, word("noCameras"))); return; }
    for (const c of data.cameras) {
      const cell = node("figure", { class: "tile small", "data-camera": c.id },
        node("figcaption", {}, node("button", { type: "button", class: "to-wall", onclick: () => open(c.id, { pin: true }) }, c.name || c.id)));
      box.append(cell);
      details.push(player(c.id, cell));
    }
  }

  // -- camera events over the tiles ------------------------------------------------------------

  function remember(e) {
    const list = events.get(e.camera) || [];
    if (e.event_id && list.some((x) => x.event_id === e.event_id)) return false;
    list.unshift(e);
    list.sort((a, b) => (b.ts || "").localeCompare(a.ts || ""));
    list.length = Math.min(list.length, EVENT_LINES);
    events.set(e.camera, list);
    return true;
  }

  // The tile's latest events, newest first, and the snapshot of the newest that has one
  // (fetched with the token, as the hub serves snapshots only with it).
  function renderEvents(tile) {
    const list = events.get(tile.camera) || [];
    if (!list.length) { tile.overlay.replaceChildren(); return; }
    const lines = list.map((e) => node("li", { class: `kind-${e.kind}${ALERTS.has(e.kind) ? " alert" : ""}`,
      "data-kind": e.kind }, node("span", { class: "ts" }, timeOfDay(e.ts)), describeCameraEvent(e)));
    const img = node("img", { class: "wall-event-snapshot", alt: "" });
    tile.overlay.replaceChildren(node("ol", {}, ...lines), img);
    const withSnapshot = list.find((e) => e.snapshot_url);
    if (!withSnapshot) return;
    if (tile.thumb && tile.thumb.url === withSnapshot.snapshot_url) {
      if (tile.thumb.src) img.src = tile.thumb.src;
      img.dataset.snapshot = withSnapshot.snapshot_url;
      return;
    }
    if (tile.thumb && tile.thumb.src) URL.revokeObjectURL(tile.thumb.src);
    const thumb = { url: withSnapshot.snapshot_url, src: null };
    tile.thumb = thumb;
    fetch(thumb.url, { headers: { Authorization: `Bearer ${token()}` } })
      .then((resp) => (resp.ok ? resp.blob() : null))
      .then((blob) => {
        if (!blob) return;
        thumb.src = URL.createObjectURL(blob);
        if (tile.thumb !== thumb || !tiles.has(tile.camera)) { URL.revokeObjectURL(thumb.src); return; }
        const shown = tile.overlay.querySelector("img");
        if (shown) { shown.src = thumb.src; shown.dataset.snapshot = thumb.url; }
      })
      .catch(() => {});
  }

  function setCameraEvents(list) {
    events.clear();
    for (const e of list) remember(e);
    for (const tile of tiles.values()) renderEvents(tile);
  }

  function onCameraEvent(e) {
    if (!remember(e)) return;
    const tile = tiles.get(e.camera);
    if (tile) renderEvents(tile);
  }

  function relabel() {
    for (const tile of tiles.values()) renderEvents(tile);
  }

  return { open, close, onIncident, showIncident, setEnabled, setCameraEvents, onCameraEvent, relabel, tiles };
})();
window.hubWall = hubWall;
