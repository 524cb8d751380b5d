"""Every write endpoint of the HTTP API, fed generated bodies and path parameters: the answer
is 2xx or 4xx with an error sentence, never 5xx, and nothing it took breaks the store, the
audit trail, the actuators' journal or what a device receives."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import math
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hub.app import Hub, running
from hub.config import load_config
from hub.inventory import load_inventory
from hub.services import LocalInflux, LocalMosquitto
from hub.store.sqlite import SqliteStore
from tests.actuators.conftest import OPERATOR, hub_config
from tests.actuators.controller import Controller
from tests.helpers import Peer, eventually

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing is written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DAY_NS = 86400 * 10**9

# -- JSON text, written token by token so that what json.dumps would never write gets sent --

_CHARS = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates
    st.characters(categories=["Cc"]),  # control characters
)
TEXT = st.text(_CHARS, max_size=40)


def _quoted(text: str, ascii_only: bool) -> str:
    # ensure_ascii writes a lone surrogate as a raw \udXXX escape; without it the surrogate is
    # encoded below with surrogatepass, which makes bytes that are not UTF-8.
    return json.dumps(text, ensure_ascii=ascii_only)


STRING = st.builds(_quoted, TEXT, st.booleans())


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


NUMBER = st.one_of(
    st.integers().map(str),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2).map(str),
    st.integers(min_value=-(2**64), max_value=-(2**63) + 2).map(str),
    st.integers(min_value=10**300, max_value=10**400).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(_float),
    st.sampled_from(["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400"]),
)
SCALAR = st.one_of(st.sampled_from(["null", "true", "false"]), NUMBER, STRING)


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"


ANY_JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(st.tuples(STRING, inner), max_size=4).map(_object),
    ),
    max_leaves=12,
)
DEEP = st.integers(min_value=1000, max_value=3000).map(lambda n: "[" * n + "]" * n)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def bodies(fields: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[bytes]:
    """Bodies for an endpoint whose body takes `fields` (each with strategies of odd values)."""
    names = sorted(fields) or ["note"]
    value = {name: st.one_of(fields.get(name, ANY_JSON), ANY_JSON, DEEP) for name in names}
    known = st.one_of(*(st.tuples(st.just(json.dumps(n)), value[n]) for n in names))
    keyed = st.lists(
        st.one_of(known, st.tuples(STRING, ANY_JSON)),  # keys it takes, and others
        max_size=5,
    ).map(_object)
    text = st.one_of(ANY_JSON, keyed, keyed, keyed, DEEP, st.just(""), st.just(" \n"))
    raw = st.binary(max_size=64).filter(_not_utf8)
    spliced = st.tuples(keyed, st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3", b"\x00"])).map(
        lambda t: _encode(t[0]).replace(b":", b":" + t[1], 1) if ":" in t[0] else t[1]
    )
    return st.one_of(text.map(_encode), text.map(_encode), raw, spliced)


def _json_of(values: list[Any]) -> st.SearchStrategy[str]:
    return st.sampled_from([json.dumps(v) for v in values])


BOOL = st.one_of(_json_of([True, False, 0, 1, "true", None, [], {}]), SCALAR)
# Mostly the barrier's own commands (close, open), so that many fuzzed commands go.
COMMAND_WORDS = ["close", "open", "close", "open", "on", "stop", " close ", "CLOSE", "x" * 64]
COMMAND_FIELDS = {
    "command": st.one_of(
        _json_of([*COMMAND_WORDS, "", " ", "close\n", "clo se", "a,b=c", "x" * 65, "x\\"]),
        STRING,
    ),
    "reason": st.one_of(
        _json_of(["", "storm", "line one\nline two\tend", "x" * 500, "x" * 501, "a\x00b", "\r"]),
        STRING,
    ),
    "override": BOOL,
    "expires": st.one_of(
        _json_of(["5m", "1d", "24h", "86400", 86400, 86400.5, "2d", "200000d", "3650d", "0s"]),
        _json_of([0, -1, 1e-300, "1e400s", "nan", "inf", "1h30m", 10**20, "1" * 70]),
        st.text("0123456789.smhdw ", max_size=12).map(json.dumps),
        NUMBER,
    ),
}
CONFIRM_FIELDS = {"approve": BOOL}
# Sometimes the whole of a command an operator would send, so that some fuzzed commands go.
GOOD_COMMAND = st.fixed_dictionaries(
    {"command": st.sampled_from(COMMAND_WORDS)},
    optional={
        "reason": st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=80),
        "override": st.booleans(),
        "expires": st.sampled_from(["30s", "5m", "1d", 600, 0.5]),
    },
).map(orjson.dumps)
ODD_SEGMENT = st.one_of(
    TEXT.map(lambda s: urllib.parse.quote(_encode(s), safe="")),
    st.sampled_from(
        ["%", "%zz", "%00", "%ff", "%ED%A0%80", "..", "%2e%2e", "%2F", "a%2Fb", "%0A", "x" * 1000]
    ),
)


# -- a hub, its controller, and a client in a thread ------------------------------------------


@dataclass
class Fuzzed:
    """The hub under test and what it took."""

    hub: Hub
    controller: Controller
    loop: asyncio.AbstractEventLoop
    taken: dict[str, bytes] = field(default_factory=dict)  # command id -> the body that made it
    answers: list[int] = field(default_factory=list)

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        """Post raw bytes; the status, and the body decoded (the bytes when not JSON)."""
        host, _, port = self.hub.config.api.listen.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            headers = {"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"}
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        self.answers.append(resp.status)
        try:
            return resp.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return resp.status, raw

    def check(self, path: str, body: bytes) -> tuple[int, Any]:
        """Post, and check the answer is never a server error and a refusal says why."""
        status, answer = self.post(path, body)
        assert status < 500, f"{status} for {path} {body[:300]!r}: {answer!r}"
        if status < 300 and body.strip():
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                pytest.fail(f"{status} for {path} {body[:300]!r}, which is not JSON ({exc})")
        if status >= 400:
            assert isinstance(answer, dict), f"{status} without a JSON body: {answer!r}"
            assert isinstance(answer.get("error"), str), answer
            assert answer["error"].strip(), answer
        return status, answer

    def held(self) -> str:
        """A rule's close command held for an operator (the confirmation policy), made now."""
        submit = self.hub.actuators.submit(
            "bar-1", "close", actor="underpass-flood", reason="fuzz", from_rule=True
        )
        job = asyncio.run_coroutine_threadsafe(submit, self.loop).result(30)
        assert job.state == "awaiting_confirmation", job
        return job.command_id


@pytest.fixture
async def fuzzed(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    controller: Controller,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Fuzzed]:
    """A hub whose rule commands wait for an operator and that takes commands without limit;
    after the test: everything it took can be read back, and the store's file decodes."""
    path = hub_config(
        tmp_path,
        mosquitto.url,
        influx.url,
        prefix,
        database,
        uid,
        confirm=[{"commands": ["close"], "kinds": ["barrier"]}],
        rate_limit={"commands": 1_000_000, "per": "1m"},
        expires="1h",
    )
    config = load_config(path)
    async with running(config, load_inventory(config.inventory)) as hub:
        await hub.mqtt.wait_connected(10)
        state = Fuzzed(hub, controller, asyncio.get_running_loop())
        yield state
        await after_the_fuzz(state)
        await asyncio.sleep(0.3)  # the audit's and the commands' points reach InfluxDB
    # Nothing went wrong out of sight: no handler error, no point InfluxDB refused.
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:3]
    documents = 0
    store = SqliteStore(tmp_path / "var" / "hub.db")
    try:
        for space in store.spaces():
            documents += len(store.load(space))  # each document's JSON decodes
    finally:
        await store.aclose()
    assert documents


async def after_the_fuzz(state: Fuzzed) -> None:
    """The hub still reads back everything, still takes a normal command, and every command
    it took went the normal way to the barrier."""
    hub, controller = state.hub, state.controller
    entries = await hub.audit.entries(100_000, ())
    for entry in entries:
        orjson.dumps(entry.to_dict())
    jobs = hub.actuators.commands_list()
    for job in jobs:
        orjson.dumps(job.to_dict())
        assert job.expires_at - job.issued_at <= DAY_NS or job.actor != "desk-1", job
    for incident in hub.rules.engine.incidents():
        orjson.dumps(incident.to_dict())
    audited = {e.fields.get("command_id") for e in entries}
    for cid, body in state.taken.items():
        job = hub.actuators.commands[cid]
        sent = orjson.loads(body) if body.strip() else {}
        if "command" in sent:  # an operator's command, as asked
            assert job.action == sent["command"].strip(), (job, body)
            assert job.actor == "desk-1"
            assert job.reason == (sent.get("reason") or "operator desk-1"), (job, body)
            assert job.override is sent.get("override", False)
        assert cid in audited, f"command {cid} ({body!r}) is not in the audit trail"
    await eventually(
        lambda: all(controller.received[cid] for cid in state.taken),
        "every command the API took to reach the barrier's controller",
    )
    for cid in state.taken:
        delivered = controller.commands[cid]
        job = hub.actuators.commands[cid]
        assert (delivered["action"], delivered["reason"]) == (job.action, job.reason)
    loop = asyncio.get_running_loop()
    status, answer = await loop.run_in_executor(
        None, state.post, "/api/actuators/bar-1/command", b'{"command": "close", "expires": "5m"}'
    )
    assert status == 202, answer
    cid = answer["command"]["command_id"]
    await eventually(lambda: hub.actuators.commands[cid].state == "done", "a normal command done")


def _taken(state: Fuzzed, status: int, answer: Any, body: bytes) -> None:
    if status in {200, 202} and isinstance(answer, dict) and "command" in answer:
        state.taken[answer["command"]["command_id"]] = body


# -- the endpoints ------------------------------------------------------------------------------


async def test_command_bodies(fuzzed: Fuzzed) -> None:
    paths = st.one_of(st.just("bar-1"), st.just("bar-1"), st.just("bar-1"), ODD_SEGMENT)

    @FUZZ
    @given(actuator=paths, body=st.one_of(bodies(COMMAND_FIELDS), GOOD_COMMAND, GOOD_COMMAND))
    @example(actuator="bar-1", body=b'{"command": "open", "reason": "a plain one goes"}')
    @example(actuator="bar-1", body=b'{"command": "close", "expires": "200000d"}')
    @example(actuator="bar-1", body=b'{"command": "close", "expires": "3650d"}')
    @example(actuator="bar-1", body=b'{"command": "close", "expires": ' + b"9" * 400 + b"}")
    @example(actuator="bar-1", body=b'{"command": "close", "expires": 1e400}')
    @example(actuator="bar-1", body=b'{"command": "close", "expires": 100000000000000000000}')
    @example(actuator="bar-1", body=b'{"command": "close", "reason": "\\udc00"}')
    @example(actuator="bar-1", body=b'{"command": "\\ud800close"}')
    @example(actuator="bar-1", body=b'{"command": "close\\nnow"}')
    @example(actuator="bar-1", body=b'{"command": "close", "override": NaN}')
    @example(actuator="bar-1", body=b'{"command": "close", "reason": "\xed\xa0\x80"}')
    @example(actuator="bar-1", body=b"[" * 2000 + b"]" * 2000)
    @example(actuator="%ED%A0%80", body=b'{"command": "close"}')
    def fuzz(actuator: str, body: bytes) -> None:
        path = f"/api/actuators/{actuator}/command"
        status, answer = fuzzed.check(path, body)
        _taken(fuzzed, status, answer, body)

    await asyncio.to_thread(fuzz)
    assert 202 in fuzzed.answers
    assert 400 in fuzzed.answers


async def test_confirm_bodies(fuzzed: Fuzzed) -> None:
    ids = st.sampled_from(["held", "held", "held", "unknown", "odd"])

    @FUZZ
    @given(
        which=ids,
        actuator=st.one_of(st.just("bar-1"), ODD_SEGMENT),
        odd=ODD_SEGMENT,
        body=st.one_of(bodies(CONFIRM_FIELDS), _json_of([{"approve": True}, {}]).map(_encode)),
    )
    # One well-formed confirmation at least, whatever the draw: the success path is fuzzed too.
    @example(which="held", actuator="bar-1", odd="", body=b'{"approve": true}')
    @example(which="held", actuator="bar-1", odd="", body=b'{"approve": "\\udfff"}')
    @example(which="held", actuator="bar-1", odd="", body=b'{"approve": 1e400}')
    @example(which="held", actuator="bar-1", odd="", body=b'{"aprove": false}')
    @example(which="odd", actuator="bar-1", odd="%ED%A0%80", body=b"{}")
    @example(which="held", actuator="bar-1", odd="", body=b"\xff\xfe")
    def fuzz(which: str, actuator: str, odd: str, body: bytes) -> None:
        cid = fuzzed.held() if which == "held" else str(uuid.uuid4()) if which == "unknown" else odd
        status, answer = fuzzed.check(f"/api/actuators/{actuator}/commands/{cid}/confirm", body)
        if status == 200 and answer["command"]["state"] != "rejected":  # approved
            _taken(fuzzed, status, answer, b"")

    await asyncio.to_thread(fuzz)
    assert 200 in fuzzed.answers
    assert 400 in fuzzed.answers


async def test_ack_bodies(fuzzed: Fuzzed, mosquitto: LocalMosquitto, prefix: str, uid: str) -> None:
    gauge = Peer(mosquitto.url, f"gauge-{uid}")
    try:
        gauge.publish(f"{prefix}/sensors/suwon/wl-1", json.dumps({"value": 20, "ts": time.time()}))
        (incident,) = await eventually(fuzzed.hub.rules.engine.incidents, "the flood incident")
    finally:
        gauge.close()
    ids = st.one_of(st.just(incident.id), st.just(incident.id), ODD_SEGMENT)

    @FUZZ
    @given(incident_id=ids, body=bodies({}))
    @example(incident_id=incident.id, body=b'{"note": "\\ud800"}')
    @example(incident_id=incident.id, body=b"{}")
    @example(incident_id="%ED%A0%80", body=b"")
    def fuzz(incident_id: str, body: bytes) -> None:
        fuzzed.check(f"/api/incidents/{incident_id}/ack", body)

    await asyncio.to_thread(fuzz)
    assert 200 in fuzzed.answers
    now = fuzzed.hub.rules.engine.incident(incident.id)
    assert now is not None
    assert now.state == "acknowledged"


# -- the limits, each named in its refusal ---------------------------------------------------

REFUSALS: list[tuple[str, bytes, int, str]] = [
    ("command", b'{"command": "close", "expires": "2d"}', 400, "'expires'"),
    ("command", b'{"command": "close", "expires": "200000d"}', 400, "at most 1d"),
    ("command", b'{"command": "close", "expires": 1e400}', 400, "not JSON"),
    ("command", b'{"command": "close", "expires": true}', 400, "'expires'"),
    ("command", b'{"command": "close", "expires": "0s"}', 400, "'expires'"),
    ("command", b'{"command": "close", "reason": "' + b"x" * 501 + b'"}', 400, "500 characters"),
    ("command", b'{"command": "close", "reason": "a\\u0000b"}', 400, "'reason'"),
    ("command", b'{"command": "close", "reason": "\\udc00"}', 400, "not JSON"),
    ("command", b'{"command": "' + b"x" * 65 + b'"}', 400, "'command'"),
    ("command", b'{"command": "close\\nnow"}', 400, "'command'"),
    ("command", b'{"command": "close", "override": "yes"}', 400, "'override'"),
    ("command", b'{"command": "close", "override": 1}', 400, "'override'"),
    ("command", b'{"command": "close", "reason": "\xff"}', 400, "UTF-8"),
    ("command", b"[" * 2000 + b"]" * 2000, 400, "not JSON"),
    ("command", b"[]", 400, "JSON object"),
    ("command", b'{"reason": "' + b"x" * 2**21 + b'"}', 413, "larger than"),
    ("confirm", b'{"approve": "no"}', 400, "'approve'"),
    ("confirm", b'{"aprove": false}', 400, "unknown keys"),
    ("ack", b'{"reason": "x"}', 400, "unknown keys"),
    ("ack", b'{"note": "' + b"x" * 2001 + b'"}', 400, "2000 characters"),
    ("ack", b'{"note": "a\\u0007b"}', 400, "'note'"),
    ("note", b'{"text": ""}', 400, "'text'"),
    ("note", b'{"text": "' + b"x" * 2001 + b'"}', 400, "2000 characters"),
    ("note", b'{"text": "ok", "by": "me"}', 400, "unknown keys"),
    ("archive", b'{"force": true}', 400, "unknown keys"),
]
PATHS = {
    "command": "/api/actuators/bar-1/command",
    "confirm": "/api/actuators/bar-1/commands/{cid}/confirm",
    "ack": "/api/incidents/whatever/ack",
    "note": "/api/incidents/whatever/notes",
    "archive": "/api/incidents/whatever/archive",
}


async def test_each_limit_is_named_in_its_refusal(fuzzed: Fuzzed) -> None:
    def refusals() -> None:
        cid = fuzzed.held()
        for endpoint, body, status, words in REFUSALS:
            path = PATHS[endpoint].format(cid=cid)
            got, answer = fuzzed.check(path, body)
            assert got == status, (body, got, answer)
            assert words in answer["error"], (body, answer)

    await asyncio.to_thread(refusals)
    job = next(j for j in fuzzed.hub.actuators.commands_list() if j.actor == "underpass-flood")
    assert job.state == "awaiting_confirmation"  # no refused body let it go


async def test_the_limits_themselves_are_taken(fuzzed: Fuzzed) -> None:
    def at_the_limits() -> None:
        for body in (
            b'{"command": "close", "expires": "1d"}',
            b'{"command": "close", "expires": 86400}',
            b'{"command": " close ", "reason": "' + b"x" * 500 + b'"}',
            b'{"command": "close", "reason": "line one\\nline two\\tend", "override": true}',
            b"",
        ):
            status, answer = fuzzed.check("/api/actuators/bar-1/command", body)
            if body:
                assert status == 202, (body, answer)
                _taken(fuzzed, status, answer, body)
            else:
                assert (status, "'command' is missing" in answer["error"]) == (400, True)

    await asyncio.to_thread(at_the_limits)
