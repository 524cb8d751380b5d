"""The delivery outbox: every message accepted for delivery, kept on disk until delivered.

A journal of JSON lines, appended and flushed to the operating system on each change, so a
SIGKILL loses nothing that was accepted (fsync follows in the background, and before an
action is reported as handed over). One note per incident, state and channel: its key is
the deduplication key, so a message delivered is never accepted, and so never sent, again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from hub.statefile import write_atomic

log = logging.getLogger("hub.notify")

PENDING, SENT, GIVEN_UP = "pending", "sent", "given_up"
_COMPACT_EVERY = 2000  # journal lines between rewrites


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


class Outbox:
    """Notes by key, with a journal on disk; single-threaded (the event loop's)."""

    def __init__(self, path: Path, *, keep: float, clock: Callable[[], float]) -> None:
        self.path = path
        self.keep = keep
        self.clock = clock
        self.notes: dict[str, Note] = {}
        self.archived: dict[str, float] = {}  # incident id -> when it was archived
        self._seq = 0
        self._lines = 0
        self._dirty = False
        self._load()
        self._compact()
        self._file: IO[bytes] = path.open("ab")

    # -- disk ---------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        for line in raw.splitlines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                # Only the last line can be torn (a crash mid-append); it was never accepted.
                log.warning("notify: skipping a torn line in %s", self.path)
                continue
            self._apply(record)

    def _apply(self, record: dict[str, Any]) -> None:
        op = record["op"]
        if op == "put":
            note = Note(**record["note"])
            self.notes[note.key] = note
            self._seq = max(self._seq, note.seq)
        elif op == "done":
            note_or_none = self.notes.get(record["key"])
            if note_or_none is not None:
                note_or_none.status = record["status"]
                note_or_none.done_at = record["at"]
                note_or_none.error = record.get("error")
        elif op == "archived":
            self.archived[record["incident"]] = record["at"]

    def _compact(self) -> None:
        """Rewrite the journal as the current notes, dropping what is past keeping."""
        horizon = self.clock() - self.keep
        self.notes = {
            k: n
            for k, n in self.notes.items()
            if n.status == PENDING or (n.done_at or n.created) >= horizon
        }
        self.archived = {i: at for i, at in self.archived.items() if at >= horizon}
        lines = [orjson.dumps({"op": "put", "note": n.to_dict()}) for n in self.notes.values()]
        lines += [
            orjson.dumps({"op": "archived", "incident": i, "at": at})
            for i, at in self.archived.items()
        ]
        write_atomic(self.path, b"".join(line + b"\n" for line in lines))
        self._lines = len(lines)

    def _append(self, record: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(record) + b"\n")
        # In the operating system's hands now: a SIGKILL of this process cannot lose it.
        self._file.flush()
        self._dirty = True
        self._lines += 1

    def sync(self) -> None:
        """fsync the journal (blocking, and safe to run in a thread beside appends)."""
        if self._dirty:
            self._dirty = False
            os.fsync(self._file.fileno())

    def compact_if_long(self) -> None:
        """Rewrite the journal when it grew long (on the event loop: appends must wait)."""
        if self._lines > len(self.notes) + _COMPACT_EVERY:
            self._file.close()
            self._compact()
            self._file = self.path.open("ab")

    def close(self) -> None:
        """fsync and close the journal."""
        self.sync()
        self._file.close()

    # -- notes --------------------------------------------------------------------------------

    def accept(self, note: Note) -> bool:
        """Keep `note` for delivery; False if its key was accepted already.

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
            self._seq += 1
            note.seq = self._seq
        self.notes[note.key] = note
        self._append({"op": "put", "note": note.to_dict()})
        return old is None

    def finish(self, note: Note, status: str, error: str | None = None) -> None:
        """Mark a note delivered (`sent`) or given up; it is kept for deduplication."""
        note.status, note.done_at, note.error = status, self.clock(), error
        self._append({"op": "done", "key": note.key, "status": status, "at": note.done_at,
                      "error": error})  # fmt: skip

    def archive(self, incident_id: str) -> None:
        """The incident was archived: its alerts leave the CAP feed."""
        if incident_id not in self.archived:
            self.archived[incident_id] = self.clock()
            self._append({"op": "archived", "incident": incident_id, "at": self.clock()})

    def pending(self, channel: str) -> list[Note]:
        """The channel's notes waiting for delivery, oldest first."""
        found = [n for n in self.notes.values() if n.channel == channel and n.status == PENDING]
        return sorted(found, key=lambda n: n.seq)

    def of_incident(self, incident_id: str) -> Iterator[Note]:
        """Every note kept for an incident, in order of acceptance."""
        found = [n for n in self.notes.values() if n.incident_id == incident_id]
        return iter(sorted(found, key=lambda n: n.seq))
