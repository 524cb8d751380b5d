"""The delivery outbox: every message accepted for delivery, kept in the store until delivered.

Each note is a document of the store (space `notify.notes`, by note key), committed on each
change, so a SIGKILL loses nothing that was accepted; the notifier syncs the store soon after
(and the rules' sync before they acknowledge a reading covers it too). One note per incident,
state and channel: its key is the deduplication key, so a message delivered is never
accepted, and so never sent, again. Archived incidents (space `notify.archived`, by incident
id, the time they were archived) leave the CAP feed. Delivered notes and archived incidents
are deleted once they are older than `keep`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.store import Changes, Store
from hub.store.legacy import adopt, read_json_lines

log = logging.getLogger("hub.notify")

PENDING, SENT, GIVEN_UP = "pending", "sent", "given_up"
NOTES = "notify.notes"  # note key -> Note.to_dict()
ARCHIVED = "notify.archived"  # incident id -> when it was archived (seconds since the epoch)
_PRUNE_EVERY = 2000  # changes between looks for what is past keeping


def note_key(incident_id: str, state: str, channel: str) -> str:
    """The deduplication key: one message per incident, state change and channel."""
    return f"{incident_id}/{state}/{channel}"


def replaces(old: Note, new: Note) -> bool:
    """Whether `new` takes the place of `old`, a note with the same key."""
    return old.status == PENDING and old.origin == "event" and new.origin == "action"


@dataclass(slots=True)
class Note:
    """One message to one channel about one incident state change."""

    key: str
    channel: str
    incident_id: str
    state: str  # active | acknowledged | cleared | escalate[i]: the change it reports
    event: str  # alert | acknowledged | cleared: which template made `text`
    text: str
    incident: dict[str, Any]
    created: float  # seconds since the epoch, when accepted
    seq: int = 0  # order of acceptance, for stable grouping and CAP references
    status: str = PENDING
    done_at: float | None = None
    error: str | None = None
    cap: dict[str, Any] | None = field(default=None)  # identifier, sent, kind, xml
    origin: str = "action"  # action (a rule's notify) | event (the hub's own text)
    action_id: str | None = None  # the rule's notify action that asked for it, if one did
    # The delivery it went out in first (its id): a delivery repeated after a crash or a
    # failure carries the same notes, so the same id, which receivers deduplicate by.
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


class Outbox:
    """Notes by key, kept in the store; single-threaded (the event loop's)."""

    def __init__(
        self,
        store: Store,
        *,
        keep: float,
        clock: Callable[[], float],
        legacy_path: Path | None = None,
    ) -> None:
        self.store = store
        self.keep = keep
        self.clock = clock
        if legacy_path is not None:
            import_legacy(store, legacy_path)
        notes = [Note(**d) for d in store.load(NOTES).values()]
        # In order of acceptance, as they were accepted: the CAP feed lists them so.
        self.notes: dict[str, Note] = {n.key: n for n in sorted(notes, key=lambda n: n.seq)}
        self.archived: dict[str, float] = {
            str(i): float(at) for i, at in store.load(ARCHIVED).items()
        }
        self._seq = max((n.seq for n in notes), default=0)
        self._changes = 0
        self.prune()

    # -- the store ----------------------------------------------------------------------------

    def _commit(self, changes: Changes) -> None:
        # Committed is kept through a SIGKILL of this process; syncs are the notifier's.
        self.store.commit(changes)
        self._changes += 1

    def prune(self) -> None:
        """Delete the delivered notes and archived incidents that are past keeping."""
        horizon = self.clock() - self.keep
        old = [
            k
            for k, n in self.notes.items()
            if n.status != PENDING and (n.done_at or n.created) < horizon
        ]
        gone = [i for i, at in self.archived.items() if at < horizon]
        self._changes = 0
        if not old and not gone:
            return
        changes = Changes()
        for key in old:
            changes.delete(NOTES, key)
        for iid in gone:
            changes.delete(ARCHIVED, iid)
        self.store.commit(changes)
        for key in old:
            del self.notes[key]
        for iid in gone:
            del self.archived[iid]

    def prune_if_due(self) -> None:
        """Prune once enough changed since the last time (a look costs a pass over the notes)."""
        if self._changes >= _PRUNE_EVERY:
            self.prune()

    # -- notes --------------------------------------------------------------------------------

    def accept(self, note: Note) -> bool:
        """Keep `note` for delivery (committed on return); False if its key was accepted already.

        A pending note of the hub's own text takes a rule's text for the same change (its
        on_clear notify comes just after the clearing itself).
        """
        old = self.notes.get(note.key)
        if old is not None and not replaces(old, note):
            return False
        if old is not None:
            note = dataclasses.replace(
                old, text=note.text, event=note.event, cap=note.cap, origin=note.origin
            )
        else:
            note.seq = self._seq + 1
        self._commit(Changes().put(NOTES, note.key, note.to_dict()))
        self._seq = max(self._seq, note.seq)
        self.notes[note.key] = note
        return old is None

    def finish(self, note: Note, status: str, error: str | None = None) -> None:
        """Mark a note delivered (`sent`) or given up; it is kept for deduplication."""
        done = dataclasses.replace(note, status=status, done_at=self.clock(), error=error)
        self._commit(Changes().put(NOTES, note.key, done.to_dict()))
        note.status, note.done_at, note.error = done.status, done.done_at, done.error

    def hold(self, batch: list[Note], group: str) -> None:
        """Note `batch` as the delivery `group`, before it is first sent (committed on return):
        until they are delivered, these notes go out together, whatever comes meanwhile."""
        changes = Changes()
        for note in batch:
            note.group = group
            changes.put(NOTES, note.key, note.to_dict())
        self._commit(changes)

    def held(self, pending: list[Note]) -> list[Note]:
        """The oldest delivery already begun among `pending` (its notes still waiting), or []."""
        group = next((n.group for n in pending if n.group is not None), None)
        return [n for n in pending if n.group == group] if group is not None else []

    def archive(self, incident_id: str) -> None:
        """The incident was archived: its alerts leave the CAP feed."""
        if incident_id not in self.archived:
            at = self.clock()
            self._commit(Changes().put(ARCHIVED, incident_id, at))
            self.archived[incident_id] = at

    def pending(self, channel: str) -> list[Note]:
        """The channel's notes waiting for delivery, oldest first."""
        found = [n for n in self.notes.values() if n.channel == channel and n.status == PENDING]
        return sorted(found, key=lambda n: n.seq)

    def of_incident(self, incident_id: str) -> Iterator[Note]:
        """Every note kept for an incident, in order of acceptance."""
        found = [n for n in self.notes.values() if n.incident_id == incident_id]
        return iter(sorted(found, key=lambda n: n.seq))


def import_legacy(store: Store, path: Path) -> None:
    """Move an older hub's outbox file into the store, once (at the first start after the
    upgrade), then rename it `<name>.imported`."""
    if not path.exists():
        return
    if store.count(NOTES) or store.count(ARCHIVED):
        log.warning("notify: %s left alone: the store already holds notes (remove the file)", path)
        return
    notes, archived = _read_legacy(path)
    changes = Changes()
    for key, note in notes.items():
        changes.put(NOTES, key, note)
    for iid, at in archived.items():
        changes.put(ARCHIVED, iid, at)
    adopt(store, changes, [path])
    log.info(
        "notify: imported %d notes and %d archived incidents from %s into %s",
        len(notes),
        len(archived),
        path,
        store.location,
    )


def _read_legacy(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Notes by key and archived incidents of an older hub's outbox (JSON lines of changes)."""
    notes: dict[str, dict[str, Any]] = {}
    archived: dict[str, float] = {}
    for record in read_json_lines(path):
        op = record["op"]
        if op == "put":
            notes[record["note"]["key"]] = dict(record["note"])
        elif op == "done" and record["key"] in notes:
            notes[record["key"]].update(
                status=record["status"], done_at=record["at"], error=record.get("error")
            )
        elif op == "archived":
            archived[record["incident"]] = record["at"]
    return notes, archived
