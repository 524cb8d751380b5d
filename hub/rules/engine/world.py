"""The engine's state and the incident lifecycle: open, re-trigger, escalate, acknowledge,
clear, archive; the clock and its timers.

Timers sit in a heap ordered by (deadline, a key fixed at compile time), never by when they
were set, so that a restored engine, whose timers are rebuilt from its state, fires them in
the same order as one that never stopped. Stale timers are not removed: each carries a
token, and a timer whose token no longer matches does nothing.
"""

from __future__ import annotations

import heapq
from typing import Any

from hub.inventory import Inventory
from hub.rules.engine.effects import evidence, record, request, template_values, unwatch
from hub.rules.engine.incidents import IncidentRecord, incident_id
from hub.rules.engine.leaves import IncidentBinding, MissingBinding
from hub.rules.engine.runtime import NS, RuleRuntime
from hub.rules.engine.subject import Order, SubjectState, TimerTarget
from hub.rules.events import (
    ActionRequested,
    Event,
    IncidentAcknowledged,
    IncidentArchived,
    IncidentCleared,
    IncidentOpened,
    IncidentUpdated,
)
from hub.rules.model import SEVERITIES
from hub.rules.text import render

NO_CLOCK = -(1 << 62)
# Incidents the hub opens about itself (a command to an actuator that failed), not from a
# rule's conditions: they live with the others but have no rule runtime behind them.
SYSTEM_RULES = frozenset({"actuator-command"})
ORPHAN: Order = (-1,)
DEFAULT_ARCHIVE_NS = 86400 * NS


class World:
    """Everything the engine knows, and what happens to incidents."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.clock = NO_CLOCK
        self.seen: dict[str, int] = {}
        self.values: dict[str, float] = {}
        self.missing_held: dict[str, list[MissingBinding]] = {}
        self.heap: list[tuple[int, Order, int, TimerTarget, object]] = []
        self._seq = 0
        self.out: list[Event] = []
        self.rules: dict[str, RuleRuntime] = {}
        self.by_sensor: dict[str, list[Any]] = {}
        self.by_camera: dict[str, list[Any]] = {}
        # Incident conditions by the rule they look at, then by (level, key) of the subject.
        self.deps: dict[str, dict[tuple[int, str | None], list[IncidentBinding]]] = {}
        # Incidents not archived (open and cleared), by id and by rule.
        self.incidents: dict[str, IncidentRecord] = {}
        self.by_rule: dict[str, dict[str, IncidentRecord]] = {}
        # Cameras that open incidents asked to look through: their results become evidence.
        self.watching: dict[str, dict[str, None]] = {}
        self.late = 0

    # -- the clock ----------------------------------------------------------------------------

    def schedule(self, deadline: int, order: Order, target: TimerTarget, token: object) -> None:
        """Wake `target` at `deadline` with `token`."""
        heapq.heappush(self.heap, (deadline, order, self._seq, target, token))
        self._seq += 1

    def run_due(self, until: int | None = None) -> None:
        """Fire every timer due by `until` (default: the clock), in (deadline, key) order.

        The clock steps through the deadlines, so that what a timer causes is stamped with
        its deadline, and what it makes due meanwhile fires in turn.
        """
        heap = self.heap
        until = self.clock if until is None else until
        while heap and heap[0][0] <= until:
            deadline, _, _, target, token = heapq.heappop(heap)
            self.clock = max(self.clock, deadline)
            target.on_timer(self, deadline, token)
        self.clock = max(self.clock, until)

    def advance(self, t: int) -> None:
        """Move the clock forward to t (never back) and fire what falls due."""
        if self.clock == NO_CLOCK:
            self.clock = t
            self.start_watching(t)
        if self.heap and self.heap[0][0] <= t:
            self.run_due(t)
        elif t > self.clock:
            self.clock = t

    def start_watching(self, t: int) -> None:
        """Rules that have not begun watching for missing readings begin at t."""
        for rt in self.rules.values():
            if rt.since is None:
                rt.since = t
                for b in rt.missing:
                    b.since = t
                    b.arm(self)

    def seen_again(self, sensor: str, ts: int) -> None:
        """A reading from a sensor that some rules counted as missing."""
        # In compile order, not in the order they went missing, which a restore cannot know.
        for b in sorted(self.missing_held.pop(sensor, []), key=lambda b: b.order):
            b.seen_again(self, ts)

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, subj: SubjectState, t: int) -> None:
        """A condition of `subj` flipped at t: open, clear or re-trigger its incident."""
        cause = t  # the reading's own time (or a timer's): what the incident's id follows
        t = max(t, self.clock)  # caused by a reading older than the clock: it happens now
        rt = subj.rt
        trig = rt.trigger(subj.held_bits)
        entered = trig and not subj.triggered
        if trig != subj.triggered:
            subj.triggered = trig
            subj.touch()
        if subj.incident is None:
            if entered:
                self.open(subj, t, cause)
            return
        # The default clear is the trigger without its `for:`s no longer holding.
        clear = rt.clear(subj.held_bits) if rt.clear else not rt.trigger(subj.raw_bits)
        if clear and (subj.settle_until is None or t >= subj.settle_until):
            self.clear(subj, t)
        elif entered:
            self.retrigger(subj, t)

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self, subj: SubjectState, t: int, cause: int | None = None) -> None:
        """Open an incident for `subj` at t and ask for the rule's actions.

        Its id follows `cause`, the time of the reading (or timer) that opened it, not the
        clock: a reading delivered again after a crash or a takeover, to an engine whose
        clock has moved on meanwhile, opens the same incident, whose actions keep their ids
        (so a barrier command already made is not made twice)."""
        rule = subj.rt.rule
        first = incident_id(rule.id, subj.id, t if cause is None else cause)
        iid = first
        n = 1
        while iid in self.incidents:  # reopened at the very instant it cleared
            n += 1
            iid = f"{first}-{n}"
        place = subj.place
        rec = IncidentRecord(
            id=iid,
            rule=rule.id,
            title="",
            severity=rule.severity,
            region=place.region,
            site=place.site,
            subject=subj.id,
            opened_at=t,
        )
        rec.title = render(rule.title, template_values(self, rec))
        rec.evidence = evidence(self, subj)
        subj.incident = rec
        self.incidents[iid] = rec
        self.by_rule.setdefault(rule.id, {})[iid] = rec
        requests = request(self, rec, place, rule.actions, step="open", t=t)
        self.out.append(IncidentOpened(t, rec.view()))
        self.out.extend(requests)
        self.arm_escalation(rec, subj)
        self.changed(rec, t)

    def arm_escalation(self, rec: IncidentRecord, subj: SubjectState) -> None:
        """Schedule the escalation steps not yet run, counted from rec.esc_base."""
        for i, step in enumerate(subj.rt.rule.escalate):
            if not rec.esc_done & (1 << i):
                deadline = rec.esc_base + int(step.after_s * NS)
                self.schedule(deadline, (*subj.order, 2, i), rec, ("esc", i, rec.esc_base))

    def retrigger(self, subj: SubjectState, t: int) -> None:
        """The trigger was entered again while the incident is open: the rule's mode says."""
        rec, rule = subj.incident, subj.rt.rule
        if rec is None or rule.mode == "single":
            return
        for item in evidence(self, subj):
            rec.add_evidence(item)
        if SEVERITIES.index(rule.severity) > SEVERITIES.index(rec.severity):
            rec.severity = rule.severity
        requests: list[ActionRequested] = []
        if rule.mode == "restart":
            rec.esc_base, rec.esc_done = t, 0
            self.arm_escalation(rec, subj)
            requests = request(self, rec, subj.place, rule.actions, step="retrigger", t=t)
        self.out.append(IncidentUpdated(t, rec.view(), "retrigger"))
        self.out.extend(requests)

    def escalate(self, rec: IncidentRecord, i: int, t: int) -> None:
        """Run escalation step i, unless it waits for no acknowledgement that came."""
        rec.esc_done |= 1 << i
        rt = self.rules.get(rec.rule)
        subj = rt.subjects.get(rec.subject) if rt else None
        if rt is None or subj is None or i >= len(rt.rule.escalate):
            return
        step = rt.rule.escalate[i]
        if step.unless_acknowledged and rec.state == "acknowledged":
            return
        if step.severity is not None:
            rec.severity = step.severity
        requests = request(self, rec, subj.place, step.actions, step=f"escalate[{i}]", t=t)
        self.out.append(IncidentUpdated(t, rec.view(), f"escalate[{i}]"))
        self.out.extend(requests)

    def clear(self, subj: SubjectState, t: int) -> None:
        """The clear condition held: clear the incident and undo what it actuated."""
        rec = subj.incident
        if rec is None:
            return
        subj.incident = None
        rec.state, rec.cleared_at = "cleared", t
        requests: list[ActionRequested] = []
        undone: set[tuple[tuple[str, ...], str]] = set()
        for action in list(rec.actions):
            undo = action.params.get("on_clear")
            if action.kind != "actuate" or not undo or action.step == "clear":
                continue
            key = (tuple(action.params["actuators"]), str(undo))
            if key not in undone:
                undone.add(key)
                params = {"actuators": list(key[0]), "command": key[1]}
                requests.append(record(self, rec, "actuate", step="clear", params=params, t=t))
        requests += request(self, rec, subj.place, subj.rt.rule.on_clear, step="clear", t=t)
        unwatch(self, rec)
        self.out.append(IncidentCleared(t, rec.view()))
        self.out.extend(requests)
        self.arm_archive(rec, subj.rt, subj.order)
        self.changed(rec, t)

    def clear_orphan(self, rec: IncidentRecord, t: int) -> None:
        """Clear an open incident whose rule (or subject) is gone; nothing is undone, since
        the actions belonged to a rule that no longer says what undoing means."""
        rec.state, rec.cleared_at = "cleared", t
        rec.add_evidence({"kind": "note", "text": "cleared: its rule or subject was removed"})
        unwatch(self, rec)
        self.out.append(IncidentCleared(t, rec.view()))
        self.arm_archive(rec, None, ORPHAN)
        self.changed(rec, t)

    def arm_archive(self, rec: IncidentRecord, rt: RuleRuntime | None, order: Order) -> None:
        """Schedule the automatic archiving of a cleared incident."""
        after = int(rt.rule.archive_after_s * NS) if rt else DEFAULT_ARCHIVE_NS
        if rec.cleared_at is not None:
            token = ("archive", rec.cleared_at)
            self.schedule(rec.cleared_at + after, (*order, 3, rec.opened_at), rec, token)

    def acknowledge(self, rec: IncidentRecord, by: str, t: int) -> None:
        """An operator acknowledged the incident; a cleared one only records who."""
        if rec.state == "active":
            rec.state, rec.acked_by, rec.acked_at = "acknowledged", by, t
            self.out.append(IncidentAcknowledged(t, rec.view()))
            self.changed(rec, t)
        elif rec.state == "cleared" and rec.acked_by is None:
            rec.acked_by, rec.acked_at = by, t
            self.out.append(IncidentAcknowledged(t, rec.view()))

    def archive(self, rec: IncidentRecord, t: int) -> None:
        """Archive a cleared incident and forget it."""
        rec.state, rec.archived_at = "archived", t
        del self.incidents[rec.id]
        self.by_rule.get(rec.rule, {}).pop(rec.id, None)
        self.out.append(IncidentArchived(t, rec.view()))
        self.changed(rec, t)

    def incident_timer(self, rec: IncidentRecord, deadline: int, token: Any) -> None:
        """An incident's escalation step or automatic archiving fell due."""
        if token[0] == "archive":
            if rec.state == "cleared" and rec.cleared_at == token[1]:
                self.archive(rec, deadline)
        elif rec.is_open and rec.esc_base == token[2] and not rec.esc_done & (1 << token[1]):
            self.escalate(rec, token[1], deadline)

    def open_system(
        self,
        rule: str,
        subject: str,
        *,
        place: tuple[str, str | None],
        head: tuple[str, str],
        evidence: dict[str, Any],
        t: int,
    ) -> IncidentRecord:
        """Open an incident of the hub's own (`head` is title and severity) at t."""
        iid = incident_id(rule, subject, t)
        n = 1
        while iid in self.incidents:
            n += 1
            iid = f"{incident_id(rule, subject, t)}-{n}"
        rec = IncidentRecord(
            id=iid,
            rule=rule,
            title=head[0],
            severity=head[1],
            region=place[0],
            site=place[1],
            subject=subject,
            opened_at=t,
        )
        self.incidents[iid] = rec
        self.by_rule.setdefault(rule, {})[iid] = rec
        rec.add_evidence(evidence)
        self.out.append(IncidentOpened(t, rec.view()))
        self.changed(rec, t)
        return rec

    def clear_system(self, rec: IncidentRecord, t: int) -> None:
        """Clear an incident of the hub's own; it is archived on the default schedule."""
        rec.state, rec.cleared_at = "cleared", t
        self.out.append(IncidentCleared(t, rec.view()))
        self.arm_archive(rec, None, ORPHAN)
        self.changed(rec, t)

    def changed(self, rec: IncidentRecord, t: int) -> None:
        """Tell the rules whose conditions look at `rec`'s rule that its incidents changed."""
        watchers = self.deps.get(rec.rule)
        if not watchers:
            return
        for level, key in enumerate((rec.subject, rec.site, rec.region)):
            if key is not None:  # an incident without a site matches no site
                for b in watchers.get((level, key), ()):
                    b.set(self.incident_truth(b), t)

    def incident_truth(self, b: IncidentBinding) -> bool:
        """Whether some incident of b's rule, in one of b's states, matches b's subject."""
        if b.key is None:
            return False
        for rec in self.by_rule.get(b.rule, {}).values():
            if rec.state in b.states and (rec.subject, rec.site, rec.region)[b.level] == b.key:
                return True
        return False
