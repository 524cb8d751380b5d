"""The rules' state in the store as keys of their own, so that a save writes what changed.

The space `rules.state` holds, beside `dispatched` (the dispatch note):

    head                 {"version": 4, "gen": g, "seq": n, "format", "clock", "late",
                          "rules": {rule: {"fingerprint", "since"}}}
    s/<rule>/<subject>   a subject's state (subjects in their initial state have none)
    i/<incident id>      an incident, open or cleared (an archived one is deleted)
    v/<bucket>           {"seen": {sensor: ts}, "values": {sensor: value}} of the sensors whose
                         ids hash to the bucket (BUCKETS of them)
    o/<seq>              an event not yet dispatched

Every key but the head holds {"g": generation, "d": data}. A save writes the keys whose data
changed and the head, with the next generation, in one commit when they fit one transaction
of the store (`limit`; SQLite has none). A bigger save (the first after a start, a storm
that touched thousands of subjects) is split into several commits with the head in the last
one; each key written then also carries its previous data ("p"), and a deleted key is
written as {"d": null} and removed by the next save. A store keeps a prefix of the commits
(SIGKILL at any instruction), so a load reads every key as of the head's generation: a key
whose generation is newer than the head's was written by a save that did not finish, and
reads as its "p". No save, split or not, is ever seen in part.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from hub.store import Changes

STATE = "rules.state"
HEAD = "head"
LEGACY = "snapshot"  # version 3: the whole state in one document
VERSION = 4
LEGACY_VERSION = 3
BUCKETS = 64
# What a key costs a request beside its name and value (etcd's framing, the store's
# prefix): counted generously, so that a planned commit never meets the store's refusal.
OP_OVERHEAD = 256


def bucket(sensor: str) -> str:
    """The key of the bucket that keeps a sensor's last reading."""
    return f"v/{zlib.crc32(sensor.encode()) % BUCKETS:02d}"


def _version_error(location: str, what: str, version: object, reads: int) -> RuntimeError:
    return RuntimeError(
        f"{location}: the rules' state ({STATE}/{what}) has version {version!r}, this hub reads "
        f"{reads}; run the hub that wrote it, or delete the spaces {STATE} and rules.events to "
        "start the rules afresh"
    )


class KeyedState:
    """What the store holds of the rules' state, and the commits that bring it up to date."""

    def __init__(
        self, docs: Mapping[str, Any], *, location: str, limit: tuple[int, int] | None = None
    ) -> None:
        """`docs`: the space's documents; `limit`: (operations, bytes) of one commit, if any."""
        self.limit = limit
        self._data: dict[str, bytes] = {}  # each key's data as of the head, encoded
        self._must: set[str] = set()  # keys whose stored form must be rewritten or deleted
        self._objects: dict[str, object] = {}  # what each key's data was encoded from
        self._legacy = False
        self._plan: tuple[int, dict[str, bytes], set[str], dict[str, object], set[str]] | None
        self._plan = None
        head = docs.get(HEAD)
        if head is not None and head.get("version") != VERSION:
            raise _version_error(location, HEAD, head.get("version"), VERSION)
        self._gen = int(head["gen"]) if head else 0
        for key, doc in docs.items():
            if key[:2] not in ("s/", "i/", "v/", "o/"):
                continue
            if int(doc["g"]) <= self._gen:
                data = doc["d"]
                if data is None:
                    self._must.add(key)  # a tombstone: the next save deletes it
            else:
                data = doc.get("p")
                self._must.add(key)
            if data is not None:
                self._data[key] = orjson.dumps(data)
        self.state: dict[str, Any] | None = None
        if head is not None:
            self.state = self._assemble(head)
        elif (legacy := docs.get(LEGACY)) is not None:
            if legacy.get("version") != LEGACY_VERSION:
                raise _version_error(location, LEGACY, legacy.get("version"), VERSION)
            self.state = legacy
        self._legacy = LEGACY in docs

    def _assemble(self, head: Mapping[str, Any]) -> dict[str, Any]:
        """The state as one snapshot: {"version", "engine", "outbox", "seq"}."""
        rules = {
            rid: {"fingerprint": r["fingerprint"], "since": r["since"], "subjects": {}}
            for rid, r in head["rules"].items()
        }
        engine: dict[str, Any] = {
            "format": head["format"],
            "clock": head["clock"],
            "late": head["late"],
            "seen": {},
            "values": {},
            "incidents": [],
            "rules": rules,
        }
        outbox = []
        for key in sorted(self._data):
            data = orjson.loads(self._data[key])
            kind, rest = key[0], key[2:]
            if kind == "s":
                rid, _, subject = rest.partition("/")
                if rid in rules:
                    rules[rid]["subjects"][subject] = data
            elif kind == "i":
                engine["incidents"].append(data)
            elif kind == "v":
                engine["seen"].update(data["seen"])
                engine["values"].update(data["values"])
            else:
                outbox.append([int(rest), data])
        return {"version": VERSION, "engine": engine, "outbox": outbox, "seq": head["seq"]}

    def save(
        self,
        engine: Mapping[str, Any],
        outbox: Iterable[tuple[int, dict[str, Any]]],
        seq: int,
        last: Changes,
    ) -> list[Changes]:
        """The commits, in order, that make the store hold this state; `last` goes into the
        final one. Call `saved()` once all are committed, `abandoned()` if one failed."""
        parts = self._parts(engine, outbox)
        gen = self._gen + 1
        changed: dict[str, bytes] = {}
        objects: dict[str, object] = {}
        for key, value in parts.items():
            if self._objects.get(key) is value and key not in self._must:
                continue
            data = orjson.dumps(value)
            objects[key] = value
            if self._data.get(key) != data or key in self._must:
                changed[key] = data
        gone = [key for key in (*self._data, *self._must) if key not in parts]
        head = {
            "version": VERSION,
            "gen": gen,
            "seq": seq,
            "format": engine["format"],
            "clock": engine["clock"],
            "late": engine["late"],
            "rules": {
                rid: {"fingerprint": r["fingerprint"], "since": r["since"]}
                for rid, r in engine["rules"].items()
            },
        }
        final = Changes().put(STATE, HEAD, head)
        if self._legacy:
            final.delete(STATE, LEGACY)
        final.extend(last)
        whole = Changes()
        for key, data in changed.items():
            whole.put_json(STATE, key, b'{"g":%d,"d":%b}' % (gen, data))
        for key in dict.fromkeys(gone):
            whole.delete(STATE, key)
        tombs: set[str] = set()
        if self.limit is None or self._fits(len(whole) + len(final), _size(whole) + _size(final)):
            commits = [whole.extend(final)]
        else:
            commits = self._split(gen, changed, dict.fromkeys(gone), final)
            tombs = {key for key in gone if key in self._data}
        self._plan = (gen, changed, set(gone), objects, tombs)
        return commits

    def _split(
        self, gen: int, changed: dict[str, bytes], gone: Iterable[str], final: Changes
    ) -> list[Changes]:
        """Commits that each fit the limit: keys with their previous data, the head last."""
        commits = [Changes()]
        size = 0

        def room(cost: int) -> None:
            nonlocal size
            if commits[-1] and not self._fits(len(commits[-1]) + 1, size + cost):
                commits.append(Changes())
                size = 0
            size += cost

        for key, data in changed.items():
            value = b'{"g":%d,"d":%b,"p":%b}' % (gen, data, self._data.get(key, b"null"))
            room(len(key) + len(value) + OP_OVERHEAD)
            commits[-1].put_json(STATE, key, value)
        for key in gone:
            if key in self._data:
                value = b'{"g":%d,"d":null,"p":%b}' % (gen, self._data[key])
                room(len(key) + len(value) + OP_OVERHEAD)
                commits[-1].put_json(STATE, key, value)
            else:
                # Absent as of the head already (a tombstone, or a key of a save that did
                # not finish): deleting it changes nothing a load would read.
                room(len(key) + OP_OVERHEAD)
                commits[-1].delete(STATE, key)
        if commits[-1] and not self._fits(len(commits[-1]) + len(final), size + _size(final)):
            commits.append(Changes())
        commits[-1].extend(final)
        return commits

    def _fits(self, ops: int, size: int) -> bool:
        assert self.limit is not None
        max_ops, max_bytes = self.limit
        return ops <= max_ops and size <= max_bytes

    def saved(self) -> None:
        """Every commit of the last `save` was made."""
        assert self._plan is not None
        gen, changed, gone, objects, tombs = self._plan
        self._plan = None
        self._gen = gen
        self._data.update(changed)
        self._objects.update(objects)
        for key in gone:
            self._data.pop(key, None)
            self._objects.pop(key, None)
        self._must = tombs
        self._legacy = False

    def abandoned(self) -> None:
        """A commit of the last `save` failed: the store may hold some of its keys (never
        the head), which the next save writes again."""
        if self._plan is not None:
            _, changed, gone, _, _ = self._plan
            self._plan = None
            self._must |= set(changed) | gone

    def _parts(
        self, engine: Mapping[str, Any], outbox: Iterable[tuple[int, dict[str, Any]]]
    ) -> dict[str, object]:
        """The state's keys and their data (orjson fragments, dicts)."""
        parts: dict[str, object] = {}
        for rid, rule in engine["rules"].items():
            for subject, data in rule["subjects"].items():
                parts[f"s/{rid}/{subject}"] = data
        incidents = engine["incidents"]
        for iid, data in incidents.items() if isinstance(incidents, dict) else _by_id(incidents):
            parts[f"i/{iid}"] = data
        buckets: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        values = engine["values"]
        for sensor, ts in engine["seen"].items():
            seen, vals = buckets.setdefault(bucket(sensor), ({}, {}))
            seen[sensor] = ts
            if sensor in values:
                vals[sensor] = values[sensor]
        for key, (seen, vals) in buckets.items():
            parts[key] = {"seen": seen, "values": vals}
        for n, event in outbox:
            parts[f"o/{n:020d}"] = event
        return parts


def _by_id(incidents: Iterable[Any]) -> Iterable[tuple[str, Any]]:
    for data in incidents:
        plain = orjson.loads(orjson.dumps(data)) if isinstance(data, orjson.Fragment) else data
        yield plain["id"], data


def _size(changes: Changes) -> int:
    return sum(len(key) + len(value or b"") + OP_OVERHEAD for _, _, key, value in changes)


def saved_state(docs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The state a store's `rules.state` documents hold, as one snapshot (tools, tests)."""
    return KeyedState(docs, location="the store").state
