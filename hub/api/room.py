"""The situation room's view of the hub: the latest value and state of every sensor, and the
wiring of the room's routes, page and live stream into a Hub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from hub.api.stream import Broadcaster
from hub.detection.camera_events import CameraEvent
from hub.detection.service import snapshot_url_of
from hub.ingest.validate import Reading
from hub.inventory import Camera, Inventory, Sensor
from hub.rules.service import incident_payload, rfc3339
from hub.units import CANONICAL

if TYPE_CHECKING:
    from hub.app import Hub

# A sensor is silent after this many of its expected intervals without a reading.
SILENT_FACTOR = 3
STATES = ("active", "acknowledged", "cleared")


class Room:
    """Keeps what the page shows that the rest of the hub does not: sensors' latest readings."""

    def __init__(
        self,
        hub: Hub,
        *,
        clock: Callable[[], int] = time.time_ns,
        heartbeat_s: float = 15.0,
        queue_size: int = 256,
    ) -> None:
        self.hub = hub
        self.clock = clock
        self.latest: dict[str, tuple[float, int]] = {}  # sensor id -> (value, ts ns)
        self.broadcaster = Broadcaster(queue_size=queue_size)
        self.heartbeat_s = heartbeat_s
        # Snapshots under it are served by GET /api/evidence/{path}: they get a snapshot_url.
        self.evidence_dir = hub.config.detection.evidence_path(Path(hub.config.data_dir))
        self._shown: dict[str, str] = {}  # the state each sensor was last announced in
        self._dirty: set[str] = set()

    @property
    def inventory(self) -> Inventory:
        return self.hub.inventory

    # -- listeners ----------------------------------------------------------------------------

    def on_readings(self, readings: list[Reading]) -> None:
        """Ingest's listener: keep the newest reading of each sensor (cheap: the hot path)."""
        latest = self.latest
        for reading in readings:
            seen = latest.get(reading.sensor.id)
            if seen is None or reading.ts_ns >= seen[1]:
                latest[reading.sensor.id] = (reading.value, reading.ts_ns)
                self._dirty.add(reading.sensor.id)

    def on_camera_event(self, event: CameraEvent) -> None:
        """Tell the clients that see its region of a camera event (`camera_event`)."""
        shown = event.to_dict(self.evidence_dir)
        self.broadcaster.publish("camera_event", {"event": shown}, region=event.region)

    def on_incident(self, event: dict[str, Any]) -> None:
        """The rules' listener: pass the event on, and the state of the sensors it touches."""
        incident = event["incident"]
        self.broadcaster.publish(
            "incident",
            {
                "event": event["event"],
                "at": rfc3339(event["at"]),
                "incident": public(incident, self.evidence_dir),
            },
            region=incident.get("region") or "",
        )
        # Only the subject's state changes now; other sensors' values wait for the ticker. This
        # runs on the way out of every incident event, so it must not cost one view per sensor.
        sensor = self.inventory.sensors.get(incident.get("subject") or "")
        if sensor is not None:
            self._dirty.discard(sensor.id)
            ids = self.hub.rules.engine.open_for(sensor.id)
            item = self.sensor(sensor, self.clock(), {sensor.id: ids} if ids else {})
            self.broadcaster.publish("sensors", {"sensors": [item]}, region=sensor.region)

    async def flush(self, chunk: int = 100, scan: int = 1000) -> None:
        """Announce the sensors whose value or state changed since the last flush, `chunk` at a
        time, letting the event loop run between chunks (thousands of sensors change a second).
        Whether a sensor fell silent is checked `scan` sensors at a time, for the same reason."""
        now = self.clock()
        alarms = self.alarms()
        shown = list(self._shown.items())
        for start in range(0, len(shown), scan):
            if start:
                await asyncio.sleep(0)
            for sensor_id, state in shown[start : start + scan]:
                if state != self.state_of(self.inventory.sensors[sensor_id], now, alarms):
                    self._dirty.add(sensor_id)
        if not self._dirty:
            return
        changed, self._dirty = sorted(self._dirty), set()
        for start in range(0, len(changed), chunk):
            if start:
                await asyncio.sleep(0)
            part = changed[start : start + chunk]
            items = [self.sensor(self.inventory.sensors[s], now, alarms) for s in part]
            self.broadcaster.publish_items("sensors", "sensors", items)

    # -- views --------------------------------------------------------------------------------

    def alarms(self) -> dict[str, list[str]]:
        """Open incidents' ids by their subject."""
        return self.hub.rules.engine.open_by_subject()

    def state_of(self, sensor: Sensor, now: int, alarms: dict[str, list[str]]) -> str:
        """ok, alarm (subject of an open incident), silent (no reading for 3 intervals), unknown."""
        if sensor.id in alarms:
            return "alarm"
        seen = self.latest.get(sensor.id)
        if seen is None:
            return "unknown"
        if sensor.expected_interval and now - seen[1] > (
            SILENT_FACTOR * sensor.expected_interval * 1e9
        ):
            return "silent"
        return "ok"

    def sensor(self, sensor: Sensor, now: int, alarms: dict[str, list[str]]) -> dict[str, Any]:
        """A sensor as the API shows it; value and unit are canonical."""
        seen = self.latest.get(sensor.id)
        self._shown[sensor.id] = state = self.state_of(sensor, now, alarms)
        return {
            "id": sensor.id,
            "name": sensor.name,
            "kind": sensor.kind,
            "region": sensor.region,
            "site": sensor.site,
            "site_type": sensor.site_type,
            "lon": sensor.lon,
            "lat": sensor.lat,
            "unit": CANONICAL.get(sensor.kind),
            "expected_interval": sensor.expected_interval,
            "value": seen[0] if seen else None,
            "ts": rfc3339(seen[1]) if seen else None,
            "state": state,
            "incidents": alarms.get(sensor.id, []),
        }

    def sensors(self) -> list[dict[str, Any]]:
        """Every sensor, sorted by id."""
        now, alarms = self.clock(), self.alarms()
        return [self.sensor(s, now, alarms) for _, s in sorted(self.inventory.sensors.items())]

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """The newest detection evidence with a snapshot, by camera."""
        found: dict[str, dict[str, Any]] = {}
        for incident in self.hub.rules.engine.incidents():
            for item in incident.evidence:
                camera, snap = item.get("camera"), item.get("snapshot")
                if not camera or not snap:
                    continue
                ts = int(item.get("ts") or 0)
                if camera not in found or ts >= found[camera]["ts_ns"]:
                    found[camera] = {"snapshot": snap, "ts_ns": ts, "incident": incident.id,
                                     "kind": item.get("kind")}  # fmt: skip
        return found

    def cameras(self) -> list[dict[str, Any]]:
        """Every camera, with its last snapshot when an incident's evidence holds one."""
        snaps = self.snapshots()
        return [
            camera_view(c, snaps.get(c.id), self.evidence_dir)
            for _, c in sorted(self.inventory.cameras.items())
        ]


def camera_view(
    camera: Camera, snap: dict[str, Any] | None, evidence_dir: Path | None = None
) -> dict[str, Any]:
    """A camera as the API shows it; credentials in its URL are not shown."""
    return {
        "id": camera.id,
        "name": camera.name,
        "region": camera.region,
        "site": camera.site,
        "lon": camera.lon,
        "lat": camera.lat,
        "heading": camera.heading,
        "fov": camera.fov,
        "range": camera.range,
        "privacy": camera.privacy,
        "url": without_credentials(camera.url),
        "snapshot": snap["snapshot"] if snap else None,
        "snapshot_url": _snapshot_url(snap, evidence_dir),
        "snapshot_ts": rfc3339(snap["ts_ns"]) if snap else None,
        "snapshot_incident": snap["incident"] if snap else None,
    }


def without_credentials(url: str) -> str:
    """The URL without user and password: viewers must not learn cameras' passwords."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def public(incident: dict[str, Any], evidence_dir: Path | None = None) -> dict[str, Any]:
    """An incident as the API shows it: the contract's JSON, times in RFC 3339, and a
    `snapshot_url` beside each snapshot written under `evidence_dir`."""
    out = incident_payload(incident)
    out["evidence"] = [_evidence_item(item, evidence_dir) for item in out.get("evidence", [])]
    return out


def _evidence_item(item: dict[str, Any], evidence_dir: Path | None) -> dict[str, Any]:
    shown = {**item, "ts": rfc3339(item["ts"])} if isinstance(item.get("ts"), int) else item
    url = _snapshot_url(item, evidence_dir)
    return {**shown, "snapshot_url": url} if url is not None else shown


def _snapshot_url(item: dict[str, Any] | None, evidence_dir: Path | None) -> str | None:
    """Where the API serves an evidence item's snapshot: only those under the evidence folder
    have a URL."""
    if item is None or evidence_dir is None:
        return None
    return snapshot_url_of(item, evidence_dir)


def matching(
    incidents: Iterable[dict[str, Any]],
    states: set[str],
    regions: set[str],
    severities: set[str],
) -> list[dict[str, Any]]:
    """Incidents passing the filters; an empty filter passes everything."""
    return [
        i
        for i in incidents
        if (not states or i["state"] in states)
        and (not regions or i["region"] in regions)
        and (not severities or i["severity"] in severities)
    ]
