// Korean and English labels; Korean is the default of the situation room.
"use strict";

const LABELS = {
  ko: {
    title: "재난안전 상황실",
    offline: "연결 끊김",
    online: "실시간",
    signout: "로그아웃",
    incidents: "사건",
    showCleared: "해제된 사건 보기",
    noIncidents: "진행 중인 사건이 없습니다",
    readings: "최근 측정값",
    barriers: "차단기",
    signin: "접속 토큰 입력",
    tokenHelp: "상황실에서 발급받은 토큰을 입력하세요. 이 탭을 닫으면 지워집니다.",
    signinButton: "접속",
    cancel: "취소",
    confirm: "실행",
    ack: "확인",
    acked: "확인됨",
    badToken: "토큰이 올바르지 않습니다",
    forbidden: "권한이 없습니다 (403)",
    failed: "요청 실패",
    ackDone: "사건을 확인했습니다",
    commandSent: "명령을 보냈습니다",
    close: "닫기",
    open: "열기",
    confirmCommand: "{site}의 차단기 {name}을(를) {action}하시겠습니까?",
    confirmHeld: "대기 중인 명령 승인",
    noReadings: "측정값 없음",
    evidence: "증거",
    actions: "조치",
    opened: "발생",
    state: "상태",
    region: "지역",
    site: "장소",
    rulesInvalid: "규칙 파일 오류: 이전 규칙으로 운영 중",
    camera: "CCTV",
    province: "도 전체",
    timeline: "경과",
    noTimeline: "기록 없음",
    addNote: "메모 추가",
    ackWithNote: "메모와 함께 확인",
    archive: "보관",
    archived: "사건을 보관했습니다",
    noteAdded: "메모를 남겼습니다",
    notePlaceholder: "메모",
    actuators: "제어 장치",
    siteActuators: "현장 제어 장치",
    commands: {
      close: "닫기", open: "열기", start: "가동", stop: "정지", on: "켜기", off: "끄기",
      show: "표시", clear: "지우기",
    },
    confirmAny: "{site}의 {name}에 '{action}' 명령을 보내시겠습니까?",
    refusedCommand: "명령이 거부되었습니다: {why}",
    overrideTitle: "안전 잠금 무시 (사유 필수, 감사 기록됨)",
    overrideReason: "무시하는 사유",
    override: "무시하고 실행",
    needReason: "사유를 입력하세요",
    exportCsv: "CSV 내보내기",
    exported: "내보냈습니다",
    range24h: "24시간",
    range7d: "7일",
    range30d: "30일",
    sound: "경보음",
    closeDetail: "닫기",
    at: "위치",
    roles: { viewer: "열람", operator: "운영", admin: "관리" },
    barrier: "차단기 등 제어 장치",
    states: {
      active: "발생", acknowledged: "확인됨", cleared: "해제", archived: "보관",
      ok: "정상", alarm: "경보", silent: "무응답", unknown: "알 수 없음",
    },
    severities: { minor: "관심", moderate: "주의", severe: "경계", extreme: "심각" },
    cameraEvents: "카메라 이벤트",
    noCameraEvents: "최근 카메라 이벤트가 없습니다",
    cameraEvent: "최근 이벤트가 있는 CCTV",
    cameraDown: "영상이 끊긴 CCTV",
    zone: "구역",
    line: "선",
    cameraKinds: {
      entered: "진입", left: "이탈", loitering: "배회", crossed: "선 통과", crowd: "밀집",
      fall: "쓰러짐", fire: "화재", smoke: "연기", stream_down: "영상 끊김", stream_up: "영상 복구",
    },
    directions: { in: "안쪽으로", out: "바깥쪽으로" },
    objectClasses: {
      person: "사람", car: "차량", truck: "트럭", bus: "버스", motorcycle: "오토바이",
      bicycle: "자전거", fire: "불꽃", flame: "불꽃", smoke: "연기",
    },
  },
  en: {
    title: "Disaster-safety situation room",
    offline: "offline",
    online: "live",
    signout: "Sign out",
    incidents: "Incidents",
    showCleared: "Show cleared",
    noIncidents: "No open incidents",
    readings: "Recent readings",
    barriers: "Barriers",
    signin: "Enter your access token",
    tokenHelp: "Enter the token you were given. It is forgotten when this tab closes.",
    signinButton: "Sign in",
    cancel: "Cancel",
    confirm: "Confirm",
    ack: "Acknowledge",
    acked: "Acknowledged",
    badToken: "The token is not valid",
    forbidden: "Not allowed (403)",
    failed: "Request failed",
    ackDone: "Incident acknowledged",
    commandSent: "Command sent",
    close: "Close",
    open: "Open",
    confirmCommand: "{action} barrier {name} at {site}?",
    confirmHeld: "Approve held command",
    noReadings: "No readings",
    evidence: "Evidence",
    actions: "Actions",
    opened: "Opened",
    state: "State",
    region: "Region",
    site: "Site",
    rulesInvalid: "Rule files have errors: the last good rules are running",
    camera: "camera",
    province: "province",
    timeline: "Timeline",
    noTimeline: "Nothing recorded",
    addNote: "Add note",
    ackWithNote: "Acknowledge with note",
    archive: "Archive",
    archived: "Incident archived",
    noteAdded: "Note added",
    notePlaceholder: "Note",
    actuators: "Actuators",
    siteActuators: "Actuators at the site",
    commands: {
      close: "Close", open: "Open", start: "Start", stop: "Stop", on: "On", off: "Off",
      show: "Show", clear: "Clear",
    },
    confirmAny: "Send '{action}' to {name} at {site}?",
    refusedCommand: "The command was refused: {why}",
    overrideTitle: "Override the safety lock (a reason is required and audited)",
    overrideReason: "Why the lock must be passed",
    override: "Override and send",
    needReason: "Give a reason",
    exportCsv: "Export CSV",
    exported: "Exported",
    range24h: "24 hours",
    range7d: "7 days",
    range30d: "30 days",
    sound: "Alarm sound",
    closeDetail: "Close",
    at: "at",
    roles: { viewer: "viewer", operator: "operator", admin: "admin" },
    barrier: "barrier, pump, sign, siren",
    states: {
      active: "active", acknowledged: "acknowledged", cleared: "cleared", archived: "archived",
      ok: "ok", alarm: "alarm", silent: "silent", unknown: "unknown",
    },
    severities: { minor: "minor", moderate: "moderate", severe: "severe", extreme: "extreme" },
    cameraEvents: "Camera events",
    noCameraEvents: "No recent camera events",
    cameraEvent: "camera with a recent event",
    cameraDown: "camera whose stream is down",
    zone: "zone",
    line: "line",
    cameraKinds: {
      entered: "entered", left: "left", loitering: "loitering", crossed: "crossed", crowd: "crowd",
      fall: "fall", fire: "fire", smoke: "smoke", stream_down: "stream down", stream_up: "stream up",
    },
    directions: { in: "inwards", out: "outwards" },
    objectClasses: {
      person: "person", car: "car", truck: "truck", bus: "bus", motorcycle: "motorcycle",
      bicycle: "bicycle", fire: "fire", flame: "flame", smoke: "smoke",
    },
  },
};

let lang = localStorage.getItem("hub.lang") || "ko";

function t(key, vars) {
  const parts = key.split(".");
  let value = LABELS[lang];
  for (const p of parts) value = value && value[p];
  let text = value === undefined ? key : String(value);
  for (const [k, v] of Object.entries(vars || {})) text = text.replace(`{${k}}`, v);
  return text;
}

// A command's label, or the command itself for one configured beyond the defaults.
function commandLabel(command) {
  const known = LABELS[lang].commands[command];
  return known === undefined ? command : known;
}

// A label from one of the maps above, or the value itself (a kind or class beyond them).
function labelOf(map, value) {
  const known = LABELS[lang][map][value];
  return known === undefined ? String(value) : known;
}

// A camera event (docs/streams.md) in words: what happened, to what, where. `short` leaves
// out the zone, line and track (the map's label).
function describeCameraEvent(e, short) {
  const parts = [labelOf("cameraKinds", e.kind)];
  if (e.class) parts.push(labelOf("objectClasses", e.class));
  if (e.kind === "crowd" && e.count > 1) parts.push(`×${e.count}`);
  if (short) return parts.join(" · ");
  if (e.zone) parts.push(`${t("zone")} ${e.zone}`);
  if (e.line) parts.push(`${t("line")} ${e.line}${e.direction ? ` ${labelOf("directions", e.direction)}` : ""}`);
  if (e.track_id !== undefined && e.track_id !== null) parts.push(`#${e.track_id}`);
  if (e.detail) parts.push(e.detail);
  return parts.join(" · ");
}

// The time of day of an ISO time, on the 24-hour clock (short enough for a tile's lines).
function timeOfDay(iso) {
  const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  return iso ? new Date(iso).toLocaleTimeString(lang === "ko" ? "ko-KR" : "en-GB", options) : "";
}

function applyLabels() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  document.title = `${t("title")} · hub`;
  document.getElementById("lang").textContent = lang === "ko" ? "EN" : "한국어";
}

function toggleLanguage() {
  lang = lang === "ko" ? "en" : "ko";
  localStorage.setItem("hub.lang", lang);
  applyLabels();
}
