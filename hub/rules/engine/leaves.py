"""The runtime side of each leaf condition: small objects, one per (leaf, sensor) or per
(leaf, subject), that turn readings, detections and incidents into a leaf's truth.

The hot path is `feed` of threshold bindings: a comparison and, unless the truth changed,
nothing else; no allocation.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from hub.rules.engine.subject import Order, SubjectState, TimerTarget

# A `for:` whose last reading is older than this at its deadline cannot complete on the
# clock when the sensor has no expected_interval: without one, any age is accepted.
UNLIMITED = 1 << 62


class Host(Protocol):
    """What bindings need of the engine."""

    clock: int
    seen: dict[str, int]
    missing_held: dict[str, list[MissingBinding]]

    def schedule(self, deadline: int, order: Order, target: TimerTarget, token: object) -> None:
        """Wake `target` at `deadline`."""


class SensorBinding:
    """One leaf condition on one sensor, for one subject of a rule."""

    __slots__ = ("bit", "held", "order", "raw", "sensor", "subject")

    def __init__(self, subject: SubjectState, bit: int, sensor: str, order: Order) -> None:
        self.subject = subject
        self.bit = bit
        self.sensor = sensor
        self.order = order
        self.raw = False
        self.held = False

    def dump(self) -> list[Any] | None:
        """The state to keep across a restart, or None when it is the initial state."""
        return [self.raw, self.held] if self.raw or self.held else None

    def load(self, data: list[Any]) -> None:
        """Restore what dump() gave."""
        self.raw, self.held = bool(data[0]), bool(data[1])


class HeldBinding(SensorBinding):
    """A reading test with an optional `for:`: raw is the test, held adds the duration.

    A `for:` holds while readings keep satisfying the test, no further apart than `stale`;
    a gap longer than that restarts it, since nothing says the value held in between.
    """

    __slots__ = ("hold", "since", "stale")

    def __init__(
        self, subject: SubjectState, bit: int, sensor: str, order: Order, *, hold: int, stale: int
    ) -> None:
        super().__init__(subject, bit, sensor, order)
        self.hold = hold
        self.stale = stale
        self.since = -1

    def apply(self, eng: Host, ok: bool, ts: int, prev: int | None) -> None:
        """Take the outcome of the test on a reading at `ts` (prev: the previous reading)."""
        self.subject.touch()
        if not ok:
            if self.raw:
                d_held = -1 if self.held else 0
                self.raw = self.held = False
                self.since = -1
                self.subject.update(self.bit, -1, d_held, ts)
            return
        if self.held:
            return
        if not self.raw:
            self.raw = True
            if self.hold == 0:
                self.held = True
                self.subject.update(self.bit, 1, 1, ts)
                return
            self.since = ts
            eng.schedule(ts + self.hold, self.order, self, ts)
            self.subject.update(self.bit, 1, 0, ts)
            return
        if prev is not None and ts - prev > self.stale:
            self.since = ts
            eng.schedule(ts + self.hold, self.order, self, ts)
        elif ts - self.since >= self.hold:
            # Only reached by a reading older than the clock, whose timer is not due yet.
            self.held = True
            self.subject.update(self.bit, 0, 1, ts)

    def on_timer(self, eng: Host, deadline: int, token: object) -> None:
        """The `for:` is over: it holds if the last reading is recent enough."""
        if token != self.since or self.held or not self.raw:
            return
        last = eng.seen.get(self.sensor)
        if last is None or last < deadline - self.stale:
            return  # the next reading decides, and restarts the `for:` after the gap
        self.held = True
        self.subject.touch()
        self.subject.update(self.bit, 0, 1, deadline)

    def pending(self) -> int | None:
        """The deadline of a running `for:`, to re-arm its timer after a restore."""
        return self.since + self.hold if self.raw and not self.held and self.hold else None

    def dump(self) -> list[Any] | None:
        """See SensorBinding.dump."""
        return [self.raw, self.held, self.since] if self.raw else None

    def load(self, data: list[Any]) -> None:
        """See SensorBinding.load."""
        self.raw, self.held, self.since = bool(data[0]), bool(data[1]), int(data[2])


class ThresholdBinding(HeldBinding):
    """`above`/`below` as an open interval (lo, hi), in the sensor's canonical unit."""

    __slots__ = ("hi", "lo")
    lo: float
    hi: float

    def feed(self, eng: Host, value: float, ts: int, prev: int | None) -> None:
        """A new reading of the sensor."""
        ok = self.lo < value < self.hi
        if self.held if ok else not self.raw:
            return
        self.apply(eng, ok, ts, prev)


class EqualsBinding(HeldBinding):
    """`equals`: exactly this value (meant for switches)."""

    __slots__ = ("value",)
    value: float

    def feed(self, eng: Host, value: float, ts: int, prev: int | None) -> None:
        """A new reading of the sensor."""
        ok = value == self.value
        if self.held if ok else not self.raw:
            return
        self.apply(eng, ok, ts, prev)


class RateBinding(HeldBinding):
    """`rate`: the reading minus the lowest reading of the window (or the highest minus
    it, for a fall) reaches `amount`. A monotonic deque keeps the window's extreme in
    amortised O(1) per reading."""

    __slots__ = ("amount", "rise", "tss", "vals", "within")

    def setup(self, rise: bool, amount: float, within: int) -> None:
        """Set the rate's parameters (kept out of __init__ to share HeldBinding's)."""
        self.rise = rise
        self.amount = amount
        self.within = within
        self.tss: deque[int] = deque()
        self.vals: deque[float] = deque()

    def feed(self, eng: Host, value: float, ts: int, prev: int | None) -> None:
        """A new reading of the sensor."""
        tss, vals = self.tss, self.vals
        cutoff = ts - self.within
        while tss and tss[0] < cutoff:
            tss.popleft()
            vals.popleft()
        ref = vals[0] if vals else value
        if self.rise:
            ok = value - ref >= self.amount
            while vals and vals[-1] >= value:
                vals.pop()
                tss.pop()
        else:
            ok = ref - value >= self.amount
            while vals and vals[-1] <= value:
                vals.pop()
                tss.pop()
        tss.append(ts)
        vals.append(value)
        self.subject.touch()  # the window is saved too
        if self.held if ok else not self.raw:
            return
        self.apply(eng, ok, ts, prev)

    def dump(self) -> list[Any] | None:
        """See SensorBinding.dump; the window is kept too."""
        if not self.raw and not self.tss:
            return None
        return [self.raw, self.held, self.since, list(self.tss), list(self.vals)]

    def load(self, data: list[Any]) -> None:
        """See SensorBinding.load."""
        super().load(data)
        self.tss = deque(int(t) for t in data[3])
        self.vals = deque(float(v) for v in data[4])


class MissingBinding(SensorBinding):
    """`missing`: no reading for `after` ns, on the clock. Its timer is re-armed lazily:
    a reading only moves `seen`, and a timer that finds a newer reading sleeps again."""

    __slots__ = ("after", "since")

    def __init__(
        self, subject: SubjectState, bit: int, sensor: str, order: Order, after: int
    ) -> None:
        super().__init__(subject, bit, sensor, order)
        self.after = after
        self.since: int | None = None  # when the rule began watching

    def deadline(self, eng: Host) -> int | None:
        """When the sensor counts as missing, from its last reading (or the watch start)."""
        if self.since is None:
            return None
        last = eng.seen.get(self.sensor)
        return (self.since if last is None or last < self.since else last) + self.after

    def arm(self, eng: Host) -> None:
        """Schedule the check, unless the sensor is already missing."""
        deadline = self.deadline(eng)
        if deadline is not None and not self.held:
            eng.schedule(deadline, self.order, self, None)

    def on_timer(self, eng: Host, deadline: int, token: object) -> None:
        """Missing now, unless a reading came since the timer was set."""
        due = self.deadline(eng)
        if self.held or due is None:
            return
        if due > deadline:
            eng.schedule(due, self.order, self, None)
            return
        self.raw = self.held = True
        eng.missing_held.setdefault(self.sensor, []).append(self)
        self.subject.touch()
        self.subject.update(self.bit, 1, 1, due)

    def seen_again(self, eng: Host, ts: int) -> None:
        """A reading came after the sensor was missing."""
        self.raw = self.held = False
        self.subject.touch()
        self.subject.update(self.bit, -1, -1, ts)
        eng.schedule(ts + self.after, self.order, self, None)


@dataclass(frozen=True, slots=True)
class CameraEventFacts:
    """What a `camera_event` condition looks at in a camera event."""

    kind: str
    cls: str | None
    score: float | None
    zone: str | None
    line: str | None
    count: int


class DetectionBinding:
    """`detection` (or `camera_event`) for one subject: holds from a qualifying result (or
    event) until `within` after it."""

    __slots__ = (
        "bit",
        "classes",
        "events",
        "held",
        "item",
        "last",
        "min_count",
        "min_score",
        "order",
        "raw",
        "subject",
        "within",
        "zones",
    )

    def __init__(
        self,
        subject: SubjectState,
        bit: int,
        order: Order,
        *,
        classes: frozenset[str],
        min_count: int,
        min_score: float,
        within: int,
        events: frozenset[str] | None = None,
        zones: frozenset[str] = frozenset(),
    ) -> None:
        self.subject = subject
        self.events = events
        self.zones = zones
        self.item: dict[str, Any] | None = None  # the last qualifying camera event
        self.bit = bit
        self.order = order
        self.classes = classes
        self.min_count = min_count
        self.min_score = min_score
        self.within = within
        self.last = -1
        self.raw = self.held = False

    def observe(self, eng: Host, ts: int, labels: list[tuple[str, float]]) -> None:
        """A detection result from one of this subject's cameras."""
        if self.events is not None:
            return  # a camera_event condition: results of detect actions are not events
        count = sum(1 for cls, score in labels if cls in self.classes and score >= self.min_score)
        self._qualified(eng, ts, count)

    def observe_event(
        self, eng: Host, ts: int, event: CameraEventFacts, item: dict[str, Any]
    ) -> None:
        """A camera event from one of this subject's cameras; `item` is kept as evidence."""
        if self.events is None or event.kind not in self.events:
            return
        if self.zones and not ({event.zone, event.line} & self.zones):
            return
        if self.classes and event.cls not in self.classes:
            return
        if event.score is not None and event.score < self.min_score:
            return
        # Kept before it counts: the incident it opens takes it as evidence at once.
        previous, self.item = self.item, item
        if not self._qualified(eng, ts, event.count):
            self.item = previous

    def _qualified(self, eng: Host, ts: int, count: int) -> bool:
        if count < self.min_count or ts <= self.last or ts + self.within <= eng.clock:
            return False
        self.last = ts
        self.subject.touch()
        eng.schedule(ts + self.within, self.order, self, ts)
        if not self.held:
            self.raw = self.held = True
            self.subject.update(self.bit, 1, 1, ts)
        return True

    def on_timer(self, eng: Host, deadline: int, token: object) -> None:
        """The last qualifying result is now too old."""
        if token == self.last and self.held:
            self.raw = self.held = False
            self.subject.touch()
            self.subject.update(self.bit, -1, -1, deadline)

    def dump(self) -> list[Any] | None:
        """See SensorBinding.dump."""
        if self.last < 0:
            return None
        return [self.last, self.held, self.item] if self.item else [self.last, self.held]

    def load(self, data: list[Any]) -> None:
        """See SensorBinding.load."""
        self.last, self.held = int(data[0]), bool(data[1])
        self.item = dict(data[2]) if len(data) > 2 and data[2] else None
        self.raw = self.held


class IncidentBinding:
    """`incident` for one subject: another rule has an incident in one of `states` whose
    subject matches this one at the coarser of the two rules' groupings."""

    __slots__ = ("bit", "held", "key", "level", "raw", "rule", "states", "subject")

    def __init__(
        self,
        subject: SubjectState,
        bit: int,
        *,
        rule: str,
        states: frozenset[str],
        level: int,
        key: str | None,
    ) -> None:
        self.subject = subject
        self.bit = bit
        self.rule = rule
        self.states = states
        self.level = level
        self.key = key
        self.raw = self.held = False

    def set(self, truth: bool, t: int) -> None:
        """Take the truth computed from the other rule's incidents."""
        if truth != self.held:
            self.raw = self.held = truth
            d = 1 if truth else -1
            self.subject.update(self.bit, d, d, t)
