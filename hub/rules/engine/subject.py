"""One rule's state for one subject: which of its conditions hold, and its open incident.

Each leaf condition of a rule is one bit. A leaf holds for the subject when at least `need`
of the subject's sensors satisfy it (1 for `match: any`, all of them for `match: all`), so
a sensor's change costs a counter update, and the condition trees are evaluated only when a
bit flips. Two sets of bits are kept: `held` (with each condition's `for:`) decides the
trigger and an explicit clear; `raw` (without `for:`) decides the default clear, so that an
incident clears as soon as its trigger stops holding, not after another `for:`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from hub.rules.targets import Place

if TYPE_CHECKING:
    from hub.rules.engine.incidents import IncidentRecord
    from hub.rules.engine.runtime import RuleRuntime

Order = tuple[int, ...]


class Evaluator(Protocol):
    """What a subject calls when one of its bits flips: the engine."""

    def evaluate(self, subject: SubjectState, t: int) -> None:
        """Re-evaluate the subject's rule at time t."""


class TimerTarget(Protocol):
    """Anything the engine can wake up at a deadline."""

    def on_timer(self, eng: Any, deadline: int, token: Any) -> None:
        """The deadline came; `token` says which scheduling this was, to drop stale ones."""


Tree = Callable[[int], bool]


class SubjectState:
    """A rule's state for one subject (a sensor, a site or a region)."""

    __slots__ = (
        "bindings",
        "dirty",
        "held_bits",
        "held_counts",
        "id",
        "incident",
        "need",
        "order",
        "place",
        "raw_bits",
        "raw_counts",
        "rt",
        "settle_until",
        "triggered",
        "world",
    )

    def __init__(
        self, rt: RuleRuntime, subject_id: str, place: Place, order: Order, n_leaves: int
    ) -> None:
        self.rt = rt
        self.id = subject_id
        self.place = place
        self.order = order
        self.raw_bits = 0
        self.held_bits = 0
        self.raw_counts = [0] * n_leaves
        self.held_counts = [0] * n_leaves
        self.need = [1] * n_leaves
        self.triggered = False
        self.incident: IncidentRecord | None = None
        # Set on a hot reload that changed the rule's conditions while an incident was open:
        # until then the fresh conditions may not clear it, so that it is not cleared on
        # half the evidence and paged again.
        self.settle_until: int | None = None
        self.bindings: list[Any] = []
        self.world: Evaluator | None = None
        self.dirty = True  # new: encoded at the next snapshot
        rt.touched.append(self)

    def touch(self) -> None:
        """Its state changed (a binding's, `triggered` or `settle_until`): the next snapshot
        encodes it again. Everything that changes what the snapshot keeps must call this."""
        if not self.dirty:
            self.dirty = True
            self.rt.touched.append(self)

    def update(self, bit: int, d_raw: int, d_held: int, t: int) -> None:
        """A sensor (or a non-sensor leaf) changed its raw and/or held truth for leaf `bit`."""
        mask = 1 << bit
        flipped = False
        if d_raw:
            count = self.raw_counts[bit] + d_raw
            self.raw_counts[bit] = count
            if (count >= self.need[bit]) != bool(self.raw_bits & mask):
                self.raw_bits ^= mask
                flipped = True
        if d_held:
            count = self.held_counts[bit] + d_held
            self.held_counts[bit] = count
            if (count >= self.need[bit]) != bool(self.held_bits & mask):
                self.held_bits ^= mask
                flipped = True
        if flipped and self.world is not None:
            self.world.evaluate(self, t)

    def recount(self) -> None:
        """Rebuild counts and bits from the bindings' flags (after a restore)."""
        n = len(self.need)
        self.raw_counts = [0] * n
        self.held_counts = [0] * n
        for b in self.bindings:
            self.raw_counts[b.bit] += 1 if b.raw else 0
            self.held_counts[b.bit] += 1 if b.held else 0
        self.raw_bits = self.held_bits = 0
        for bit in range(n):
            if self.raw_counts[bit] >= self.need[bit]:
                self.raw_bits |= 1 << bit
            if self.held_counts[bit] >= self.need[bit]:
                self.held_bits |= 1 << bit

    def on_timer(self, eng: Any, deadline: int, token: Any) -> None:
        """The settling time after a hot reload is over: the clear may now apply."""
        if self.settle_until == token:
            self.settle_until = None
            self.touch()
            if self.world is not None:
                self.world.evaluate(self, deadline)
