"""The OpenAPI 3 description of the hub's HTTP API, served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

from hub import __version__
from hub.api.body import MAX_NOTE, MAX_TEXT, MAX_WORD

_ERROR = {"$ref": "#/components/responses/Error"}
_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
_WATCHLIST: dict[str, Any] = {
    "type": "object",
    "properties": {"entries": {"type": "array", "items": {"type": "object"}}},
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    role: str | None,
    ok: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (),
    status: str = "200",
) -> dict[str, Any]:
    """One operation; `role` is the least token role it needs (None: public)."""
    responses: dict[str, Any] = {status: ok}
    if role is not None:
        responses["401"] = _ERROR
        if role != "viewer":
            responses["403"] = _ERROR
    for code in errors:
        responses[str(code)] = _ERROR
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    op["security"] = [{"bearer": []}] if role else []
    if role:
        op["x-role"] = role
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return op


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _list(key: str, item: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{item}"}
    return {"type": "object", "properties": {key: {"type": "array", "items": ref}}}


def _one(key: str, item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"$ref": f"#/components/schemas/{item}"}}}


_INCIDENT = {
    "type": "object",
    "required": ["id", "rule", "severity", "region", "subject", "opened_at", "state"],
    "properties": {
        "id": {"type": "string"},
        "rule": {"type": "string"},
        "title": {"type": "string"},
        "severity": {"enum": ["minor", "moderate", "severe", "extreme"]},
        "region": {"type": "string"},
        "site": {"type": "string", "nullable": True},
        "subject": {"type": "string", "description": "a sensor, or a site or region"},
        "opened_at": {"type": "string", "format": "date-time"},
        "state": {"enum": ["active", "acknowledged", "cleared", "archived"]},
        "acked_by": {"type": "string", "nullable": True},
        "acked_at": {"type": "string", "format": "date-time", "nullable": True},
        "cleared_at": {"type": "string", "format": "date-time", "nullable": True},
        "archived_at": {"type": "string", "format": "date-time", "nullable": True},
        "actions": {"type": "array", "items": _OBJECT},
        "evidence": {
            "type": "array",
            "items": _OBJECT,
            "description": "detections, snapshots; an item whose snapshot lies under the "
            "evidence folder has snapshot_url, where GET /api/evidence/{path} serves it",
        },
    },
}
_SENSOR = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "region": {"type": "string"},
        "site": {"type": "string", "nullable": True},
        "lon": {"type": "number"},
        "lat": {"type": "number"},
        "unit": {"type": "string", "description": "the kind's canonical unit"},
        "expected_interval": {"type": "number", "nullable": True, "description": "seconds"},
        "value": {"type": "number", "nullable": True},
        "ts": {"type": "string", "format": "date-time", "nullable": True},
        "state": {
            "enum": ["ok", "alarm", "silent", "unknown"],
            "description": "alarm: subject of an open incident; silent: no reading for three "
            "expected intervals; unknown: no reading since the hub started",
        },
        "incidents": {"type": "array", "items": {"type": "string"}},
    },
}
_CAMERA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "region": {"type": "string"},
        "site": {"type": "string", "nullable": True},
        "lon": {"type": "number"},
        "lat": {"type": "number"},
        "heading": {"type": "number", "nullable": True},
        "fov": {"type": "number", "nullable": True},
        "range": {"type": "number", "nullable": True},
        "url": {"type": "string", "description": "without user and password"},
        "snapshot": {"type": "string", "nullable": True, "description": "path or URL"},
        "snapshot_url": {
            "type": "string",
            "nullable": True,
            "description": "/api/evidence/{path} when the snapshot lies under the evidence "
            "folder (send the token)",
        },
        "snapshot_ts": {"type": "string", "format": "date-time", "nullable": True},
        "snapshot_incident": {"type": "string", "nullable": True},
    },
}
_COMMAND = {
    "type": "object",
    "required": ["command"],
    "additionalProperties": False,
    "properties": {
        "command": {
            "type": "string",
            "example": "close",
            "maxLength": MAX_WORD,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            "description": "one of the commands of the actuator's kind (actuators.commands)",
        },
        "reason": {
            "type": "string",
            "maxLength": MAX_TEXT,
            "description": "no control characters but newline and tab",
        },
        "override": {
            "type": "boolean",
            "description": "past an interlock or the rate limit; needs a reason; audited",
        },
        "text": {
            "type": "string",
            "maxLength": 200,
            "description": "what a sign is to show, sent with the command",
        },
        "incident": {
            "type": "string",
            "description": "the incident the command is for: it and its override go into "
            "the incident's timeline",
        },
        "expires": {
            "oneOf": [{"type": "string"}, {"type": "number", "exclusiveMinimum": 0}],
            "example": "2m",
            "description": "a duration (or seconds) of at most 1d",
        },
    },
}
_NOTE_TEXT: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NOTE,
    "description": "no control characters but newline and tab",
}
_TIMELINE_ENTRY: dict[str, Any] = {
    "type": "object",
    "required": ["ts", "kind", "text"],
    "additionalProperties": True,
    "properties": {
        "ts": {"type": "string", "format": "date-time"},
        "kind": {
            "enum": [
                "opened",
                "acknowledged",
                "note",
                "action",
                "command",
                "notification",
                "detection",
                "escalation",
                "cleared",
                "archived",
            ]
        },
        "by": {"type": "string", "description": "who: a token's name, a rule, an actuator"},
        "text": {"type": "string"},
        "note": {"type": "string", "description": "an acknowledgement's note"},
    },
}


def _note_op() -> dict[str, Any]:
    op = _op(
        "Add an operator's note to an incident (audited, kind note); durable before the answer",
        "operator",
        _json(
            {
                "type": "object",
                "properties": {
                    "note": {
                        "type": "object",
                        "properties": {
                            "incident_id": {"type": "string"},
                            "ts": {"type": "string", "format": "date-time"},
                            "by": {"type": "string"},
                            "text": {"type": "string"},
                        },
                    }
                },
            },
            "the note, kept",
        ),
        params=[_path("id", "incident id")],
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["text"],
            "properties": {"text": _NOTE_TEXT},
        },
        errors=(400, 404),
        status="201",
    )
    op["requestBody"]["required"] = True
    return op


def _snapshot_op() -> dict[str, Any]:
    op = _op(
        "A fresh picture from the camera, grabbed now, faces blurred unless the camera may be "
        "shown unblurred (detection.unblurred and its inventory privacy); audited (kind "
        "snapshot). Answers within detection.snapshot.deadline (default 5 s), a picture or "
        "an error; another region's camera is a 404 for a token of some regions",
        "viewer",
        {
            "description": "the JPEG; Cache-Control: no-store; X-Snapshot-Taken: when it was "
            "grabbed (epoch seconds); X-Faces-Blurred: how many faces were blurred, or "
            "`unblurred`",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        },
        params=[_path("id", "camera id")],
        errors=(404,),
    )
    camera_error = {
        "type": "object",
        "properties": {
            "error": {"type": "string", "example": "camera cam-1: HTTP: connection refused"},
            "status": {"type": "integer"},
            "camera": {"type": "string"},
            "cause": {
                "enum": [
                    "timeout",
                    "refused",
                    "not found",
                    "unknown host",
                    "unreadable",
                    "faces",
                    "unavailable",
                ],
                "description": "why the camera gave no picture",
            },
        },
    }
    for code, why in (
        ("502", "the camera refused, lacks the stream or sent something unreadable"),
        ("503", "faces cannot be blurred (no face model) or capture is not installed"),
        ("504", "no picture within the deadline"),
    ):
        op["responses"][code] = {
            "description": why,
            "content": {"application/json": {"schema": camera_error}},
        }
    return op


_STATES = "active, acknowledged, cleared, or open (active and acknowledged); comma-separated"


def document() -> dict[str, Any]:
    """The OpenAPI document of every endpoint the hub serves."""
    text = {"type": "string"}
    paths: dict[str, Any] = {
        "/": {"get": _op("The situation-room page", None, {"description": "HTML"})},
        "/api/health": {
            "get": _op("Health of the hub's parts", None, _json(_OBJECT), errors=(503,))
        },
        "/metrics": {"get": _op("Prometheus metrics", None, {"description": "text exposition"})},
        "/api/openapi.json": {"get": _op("This document", None, _json(_OBJECT))},
        "/api/me": {
            "get": _op(
                "The token's name, role and regions (null: the whole province), for the page "
                "to show only what the role allows",
                "viewer",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "name": text,
                            "role": {"enum": ["viewer", "operator", "admin"]},
                            "regions": {"type": "array", "items": text, "nullable": True},
                        },
                    }
                ),
            )
        },
        "/api/map": {
            "get": _op(
                "Base tiles URL, regions (GeoJSON), sites, actuators' places",
                "viewer",
                _json(_OBJECT),
            )
        },
        "/api/sensors": {
            "get": _op(
                "Every sensor with its latest value and state",
                "viewer",
                _json(_list("sensors", "Sensor")),
            )
        },
        "/api/sensors/{id}/readings": {
            "get": _op(
                "A sensor's recent readings from InfluxDB, oldest first",
                "viewer",
                _json(_OBJECT),
                params=[
                    _path("id", "sensor id"),
                    _query("since", "a duration back from now (1h, default) or RFC 3339 time"),
                    _query(
                        "limit",
                        "at most this many, the newest (default 2000)",
                        {"type": "integer", "minimum": 1, "maximum": 10000},
                    ),
                ],
                errors=(400, 404, 503),
            )
        },
        "/api/cameras": {
            "get": _op(
                "Every camera, with its last snapshot when there is one",
                "viewer",
                _json(_list("cameras", "Camera")),
            )
        },
        "/api/cameras/{id}/snapshot": {"get": _snapshot_op()},
        "/api/cameras/{id}/live": {
            "get": _op(
                "A ticket to watch a camera live: the relay's URL for it, good for "
                "live.ticket_ttl; the view is audited (kind live); another region's camera is "
                "a 404. Play `url` as MPEG-TS (over HTTP, or as a WebSocket with ws://)",
                "viewer",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "camera": {"type": "string"},
                            "url": {"type": "string"},
                            "expires_at": {"type": "string", "format": "date-time"},
                            "blurred": {"type": "boolean"},
                        },
                    }
                ),
                params=[_path("id", "camera id")],
                errors=(404, 503),
            )
        },
        "/api/incidents/{id}/cameras": {
            "get": _op(
                "The cameras that see an incident's place, best first (detection's choice): "
                "the video wall's tiles",
                "viewer",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "incident": {"type": "string"},
                            "cameras": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "string"},
                                        "name": {"type": ["string", "null"]},
                                        "region": {"type": "string"},
                                    },
                                },
                            },
                        },
                    }
                ),
                params=[_path("id", "incident id")],
                errors=(404,),
            )
        },
        "/api/incidents": {
            "get": _op(
                "Incidents not archived, newest first",
                "viewer",
                _json(_list("incidents", "Incident")),
                params=[
                    _query("state", _STATES),
                    _query("region", "region ids, comma-separated"),
                    _query("severity", "minor, moderate, severe, extreme; comma-separated"),
                ],
                errors=(400,),
            )
        },
        "/api/incidents/{id}": {
            "get": _op(
                "One incident",
                "viewer",
                _json(_one("incident", "Incident")),
                params=[_path("id", "incident id")],
                errors=(404,),
            )
        },
        "/api/incidents/{id}/ack": {
            "post": _op(
                "Acknowledge an incident (audited); twice does nothing more",
                "operator",
                _json(_one("incident", "Incident")),
                params=[_path("id", "incident id")],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "description": "empty, or a note kept in the acknowledgement's audit entry",
                    "properties": {"note": _NOTE_TEXT},
                },
                errors=(400, 404, 409),
            )
        },
        "/api/incidents/{id}/notes": {"post": _note_op()},
        "/api/incidents/{id}/archive": {
            "post": _op(
                "Archive a cleared incident (audited): its retained MQTT message is cleared "
                "and it leaves the incidents; durable before the answer",
                "operator",
                _json(_one("incident", "Incident"), "archived: the incident as it was, archived"),
                params=[_path("id", "incident id")],
                body={"type": "object", "additionalProperties": False, "description": "empty"},
                errors=(400, 404, 409),
            )
        },
        "/api/incidents/{id}/timeline": {
            "get": _op(
                "An incident's history, oldest first: opened, acknowledged, notes, actions, "
                "commands, notifications, detections, cleared, archived; from the incident "
                "(until archived) and the audit trail",
                "viewer",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "incident_id": {"type": "string"},
                            "timeline": {"type": "array", "items": _TIMELINE_ENTRY},
                        },
                    }
                ),
                params=[_path("id", "incident id")],
                errors=(404,),
            )
        },
        "/api/camera-events": {
            "get": _op(
                "The latest camera events from the stream workers, newest first "
                "(docs/streams.md), of the token's regions; an event whose snapshot lies under "
                "the evidence folder has snapshot_url, where GET /api/evidence/{path} serves it",
                "viewer",
                _json(
                    {
                        "type": "object",
                        "properties": {"events": {"type": "array", "items": _OBJECT}},
                    }
                ),
                params=[
                    _query("camera", "one camera's events"),
                    _query(
                        "kind", "entered, left, loitering, crossed, crowd, fall, fire, plate, ..."
                    ),
                    _query("limit", "default 100, at most 1000", {"type": "integer"}),
                ],
                errors=(400,),
            )
        },
        "/api/plates/watchlist": {
            "get": _op(
                "The wanted-vehicle watch-list (docs/plates.md): plate, reason, added_by, "
                "added_at and until (epoch seconds or null) of each entry",
                "operator",
                _json(_WATCHLIST),
            ),
            "post": _op(
                "List a plate, or change a listed plate's reason and until; province tokens "
                "only; audited (kind watchlist). 201 for a new entry, 200 for a change",
                "operator",
                _json({"type": "object", "properties": {"entry": _OBJECT}}, "Created"),
                body={
                    "type": "object",
                    "required": ["plate", "reason"],
                    "properties": {
                        "plate": {
                            "type": "string",
                            "description": "e.g. 123가4567; spaces and hyphens are left out",
                        },
                        "reason": {"type": "string", "maxLength": MAX_TEXT},
                        "until": {
                            "type": "string",
                            "description": "an RFC 3339 time or a "
                            "duration from now (7d); absent: until removed",
                        },
                    },
                },
                errors=(400, 503),
                status="201",
            ),
        },
        "/api/plates/watchlist/{plate}": {
            "delete": _op(
                "Take a plate off the watch-list; province tokens only; audited. Body "
                "optional: {reason}",
                "operator",
                _json({"type": "object", "properties": {"removed": _OBJECT}}),
                params=[_path("plate", "the plate, e.g. 123가4567")],
                body={"type": "object", "properties": {"reason": {"type": "string"}}},
                errors=(400, 404, 503),
            )
        },
        "/api/export/incidents.csv": {
            "get": _op(
                "The incidents opened in a time range and their timelines, as CSV (UTF-8 with "
                "a byte order mark; one row per timeline entry, with the incident's columns; "
                "a cell that a spreadsheet would read as a formula starts with an apostrophe)",
                "viewer",
                {
                    "description": "the file; Content-Disposition: attachment",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                params=[
                    _query("from", "a duration back from now (default 24h) or an RFC 3339 time"),
                    _query("to", "the same (default now); at most 92d after from"),
                ],
                errors=(400, 503),
            )
        },
        "/api/audit": {
            "get": _op(
                "Recent audit entries, newest first",
                "viewer",
                _json(
                    {
                        "type": "object",
                        "properties": {"entries": {"type": "array", "items": _OBJECT}},
                    }
                ),
                params=[
                    _query("limit", "default 100", {"type": "integer", "minimum": 1}),
                    _query("kind", "ack, command, notification, ...; comma-separated"),
                ],
                errors=(400,),
            )
        },
        "/api/rules": {
            "get": _op("Rules in force and the errors of a failed reload", "viewer", _json(_OBJECT))
        },
        "/api/stream": {
            "get": _op(
                "Server-Sent Events: hello, incident, sensors, camera_event, heartbeat, "
                "resync (then reconnect)",
                "viewer",
                {"description": "event stream", "content": {"text/event-stream": {"schema": text}}},
            )
        },
        "/api/evidence/{path}": {
            "get": _op(
                "An evidence snapshot (faces blurred); the snapshot_url of incidents' evidence, "
                "of cameras and of camera events",
                "viewer",
                {
                    "description": "the image; Cache-Control: private",
                    "content": {
                        t: {"schema": {"type": "string", "format": "binary"}}
                        for t in ("image/jpeg", "image/png")
                    },
                },
                params=[_path("path", "the snapshot's path under the evidence folder")],
                errors=(404,),
            )
        },
        "/api/actuators": {
            "get": _op(
                "Actuators with their reported state, pending and last commands, and the "
                "commands their kind takes (`commands`)",
                "viewer",
                _json(_OBJECT),
            )
        },
        "/api/actuators/{id}/command": {
            "post": _op(
                "Command an actuator (audited)",
                "operator",
                _json(_OBJECT, "accepted: the command's job"),
                params=[_path("id", "actuator id")],
                body=_COMMAND,
                errors=(400, 404, 409),
                status="202",
            )
        },
        "/api/actuators/{id}/commands/{command_id}/confirm": {
            "post": _op(
                "Confirm (or refuse) a command held for an operator",
                "operator",
                _json(_OBJECT),
                params=[_path("id", "actuator id"), _path("command_id", "command id")],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"approve": {"type": "boolean"}},
                },
                errors=(400, 404, 409),
            )
        },
        "/cap/feed.atom": {
            "get": _op(
                "Atom feed of the current CAP 1.2 alerts (public unless configured)",
                None,
                {"description": "Atom"},
            )
        },
        "/cap/{incident_id}.xml": {
            "get": _op(
                "An incident's current CAP 1.2 alert",
                None,
                {"description": "CAP XML"},
                params=[_path("incident_id", "incident id")],
                errors=(404,),
            )
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hub: situation-room API",
            "version": __version__,
            "description": "Reads need a viewer token; acknowledging, notes, archiving and "
            "commands an operator "
            "token (Authorization: Bearer <token>). A token with regions (a city's) reads "
            "only those regions, finds another's incidents 404, and is refused acting there "
            "with 403 (audited). Errors are JSON: {error, status}.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": _json(
                    {
                        "type": "object",
                        "properties": {"error": text, "status": {"type": "integer"}},
                    },
                    "an error, with a message a person can act on",
                )
            },
            "schemas": {"Incident": _INCIDENT, "Sensor": _SENSOR, "Camera": _CAMERA},
        },
    }
