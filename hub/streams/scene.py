"""Camera events from tracks: zones entered, left and loitered in, lines crossed, crowds,
falls, fires and smoke. Pure: tracks and times in, events out; no frames, no I/O.

A track is where it stands: the bottom centre of its box, normalised to the image. Time is
the frames' own (epoch seconds), so a test moves it by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.detection.backends.base import inside
from hub.inventory.model import ImagePoint, Line, Zone

KINDS = ("entered", "left", "loitering", "crossed", "crowd", "fall", "fire", "smoke")
STREAM_KINDS = ("stream_down", "stream_up")


@dataclass(frozen=True, slots=True)
class Track:
    """A tracked object in one frame: box (x1, y1, x2, y2) normalised to the image."""

    id: int
    cls: str  # the model's class name, before aliases
    score: float
    box: tuple[float, float, float, float]

    @property
    def foot(self) -> ImagePoint:
        """Where the object stands: the bottom centre of its box."""
        x1, _, x2, y2 = self.box
        return ((x1 + x2) / 2, y2)


@dataclass(frozen=True, slots=True)
class CameraEvent:
    """One event of the contract's `camera-events` topic (snapshot filled in by the worker)."""

    camera: str
    kind: str
    ts: float
    cls: str | None = None
    score: float | None = None
    track_id: int | None = None
    zone: str | None = None
    line: str | None = None
    direction: str | None = None
    count: int = 1
    snapshot: str | None = None
    detail: str | None = None  # stream events: why, in words
    plate: str | None = None  # plate events: the listed plate, normalised (hub.plates)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict[str, Any]:
        """The event as published."""
        body: dict[str, Any] = {
            "event_id": self.event_id,
            "camera": self.camera,
            "kind": self.kind,
            "class": self.cls,
            "score": None if self.score is None else round(self.score, 4),
            "track_id": self.track_id,
            "zone": self.zone,
            "line": self.line,
            "direction": self.direction,
            "count": self.count,
            "ts": round(self.ts, 3),
            "snapshot": self.snapshot,
            "clip": None,
        }
        if self.detail is not None:
            body["detail"] = self.detail
        if self.plate is not None:
            body["plate"] = self.plate
        return body


def side(line: Line, point: ImagePoint) -> str | None:
    """Which side of the line (walking from its first point to its second) the point is on.

    In image coordinates (y down): for a line drawn left to right across the picture, the
    upper half of the picture is its left.
    """
    (ax, ay), (bx, by), (px, py) = line.a, line.b, point
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    if cross == 0:
        return None
    return "left" if cross < 0 else "right"


def _segments_meet(p1: ImagePoint, p2: ImagePoint, q1: ImagePoint, q2: ImagePoint) -> bool:
    def orient(a: ImagePoint, b: ImagePoint, c: ImagePoint) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return (d1 * d2 < 0) and (d3 * d4 <= 0)


@dataclass(slots=True)
class _Presence:
    """A track in a zone: since when, and how many frames in a row it was seen outside."""

    since: float
    outside: int = 0
    loitered: bool = False


@dataclass(slots=True)
class _TrackState:
    foot: ImagePoint
    last_seen: float
    cls: str
    score: float
    zones: dict[str, _Presence] = field(default_factory=dict)
    # Each line's side it was last seen off the line on, and where: a step onto the line and
    # off again on the other side is one crossing, from that place.
    sides: dict[str, tuple[str, ImagePoint]] = field(default_factory=dict)
    alerted: set[str] = field(default_factory=set)


class Scene:
    """One camera's zones and lines, and what its tracks are doing in them."""

    def __init__(
        self,
        camera: str,
        zones: Sequence[Zone] = (),
        lines: Sequence[Line] = (),
        *,
        aliases: Mapping[str, str] | None = None,
        alerts: Mapping[str, Iterable[str]] | None = None,
        leave_frames: int = 2,
        lost_after: float = 3.0,
    ) -> None:
        self.camera = camera
        self.zones = tuple(zones)
        self.lines = tuple(lines)
        self.aliases = dict(aliases or {})
        # Model class -> the alert kinds it raises.
        self.alerts: dict[str, list[str]] = {}
        for kind, classes in (alerts or {}).items():
            for cls in classes:
                self.alerts.setdefault(cls, []).append(kind)
        self.leave_frames = leave_frames
        self.lost_after = lost_after
        self.tracks: dict[int, _TrackState] = {}
        self.crowded: set[str] = set()

    def name(self, cls: str) -> str:
        """The class as events name it."""
        return self.aliases.get(cls, cls)

    def update(self, tracks: Iterable[Track], ts: float) -> list[CameraEvent]:
        """The events of one analysed frame: `tracks` are the objects seen in it."""
        events: list[CameraEvent] = []
        seen: set[int] = set()
        for track in tracks:
            seen.add(track.id)
            events += self._move(track, ts)
        for track_id in [t for t in self.tracks if t not in seen]:
            state = self.tracks[track_id]
            if ts - state.last_seen >= self.lost_after:
                # Gone: it has left every zone it was in, at the place it was last seen.
                for zone_id in list(state.zones):
                    del state.zones[zone_id]
                    events.append(self._event("left", track_id, state, ts, zone=zone_id))
                del self.tracks[track_id]
        events += self._crowds(ts)
        return events

    def _event(
        self, kind: str, track_id: int, state: _TrackState, ts: float, **extra: Any
    ) -> CameraEvent:
        return CameraEvent(
            self.camera, kind, ts, self.name(state.cls), state.score, track_id, **extra
        )

    def _move(self, track: Track, ts: float) -> list[CameraEvent]:
        events: list[CameraEvent] = []
        foot = track.foot
        state = self.tracks.get(track.id)
        if state is None:
            state = self.tracks[track.id] = _TrackState(foot, ts, track.cls, track.score)
        state.foot, state.last_seen, state.cls, state.score = foot, ts, track.cls, track.score
        for kind in self.alerts.get(track.cls, ()):
            if kind not in state.alerted:
                state.alerted.add(kind)
                events.append(self._event(kind, track.id, state, ts))
        for zone in self.zones:
            events += self._zone(zone, track.id, state, inside(foot, zone.polygon), ts)
        for line in self.lines:
            now = side(line, foot)
            if now is None:
                continue
            was = state.sides.get(line.id)
            state.sides[line.id] = (now, foot)
            if was is None or now == was[0]:
                continue
            if _segments_meet(was[1], foot, line.a, line.b):
                direction = "in" if now == line.in_side else "out"
                events.append(
                    self._event("crossed", track.id, state, ts, line=line.id, direction=direction)
                )
        return events

    def _zone(
        self, zone: Zone, track_id: int, state: _TrackState, now_in: bool, ts: float
    ) -> list[CameraEvent]:
        presence = state.zones.get(zone.id)
        if presence is None:
            if not now_in:
                return []
            state.zones[zone.id] = _Presence(ts)
            return [self._event("entered", track_id, state, ts, zone=zone.id)]
        if not now_in:
            presence.outside += 1
            if presence.outside < self.leave_frames:
                return []
            del state.zones[zone.id]
            return [self._event("left", track_id, state, ts, zone=zone.id)]
        presence.outside = 0
        if zone.loiter is not None and not presence.loitered and ts - presence.since >= zone.loiter:
            presence.loitered = True
            return [self._event("loitering", track_id, state, ts, zone=zone.id)]
        return []

    def _crowds(self, ts: float) -> list[CameraEvent]:
        events: list[CameraEvent] = []
        for zone in self.zones:
            if zone.crowd is None:
                continue
            members = [
                (tid, s)
                for tid, s in self.tracks.items()
                if zone.id in s.zones and s.last_seen == ts
            ]
            if len(members) >= zone.crowd and zone.id not in self.crowded:
                self.crowded.add(zone.id)
                # About the zone, not one track: the best-scored member names the class.
                best = max((s for _, s in members), key=lambda s: s.score)
                events.append(
                    CameraEvent(
                        self.camera, "crowd", ts, self.name(best.cls), best.score, None,
                        zone=zone.id, count=len(members),
                    )
                )  # fmt: skip
            elif len(members) < zone.crowd:
                self.crowded.discard(zone.id)
        return events
