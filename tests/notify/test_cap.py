"""CAP 1.2 alerts validated against the official OASIS schema, and the Atom feed over HTTP."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import xmlschema
from aiohttp import web

from hub.config.model import ApiConfig
from hub.inventory import load_inventory
from hub.notify.cap import ATOM_NS, CAP_NS
from hub.notify.service import Notifier
from hub.notify.web import cap_access
from hub.services import free_port
from tests.helpers import eventually, small_province, write_site
from tests.notify.support import (
    CAP_XSD,
    action,
    config,
    event,
    notifier,
    open_incident,
    running,
    webhook_server,
)

C = f"{{{CAP_NS}}}"
A = f"{{{ATOM_NS}}}"


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(CAP_XSD))


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[tuple[Notifier, str]]:
    """A notifier with a public CAP channel, its routes served on a free port."""
    cfg = config(
        channels={
            "public-alerts": {"type": "cap", "sender": "hub@gyeonggi.example", "web": "http://x/"}
        },
        broadcast=["public-alerts"],
    )
    inventory = load_inventory([write_site(tmp_path / "site", small_province())])
    n = notifier(cfg, tmp_path, inventory=inventory)
    app = web.Application()
    n.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with running(n):
        yield n, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _get(url: str, **headers: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, await resp.read()


async def test_alert_update_cancel_validate_and_reference(
    http: tuple[Notifier, str], schema: xmlschema.XMLSchema
) -> None:
    n, base = http
    n.on_incident(event("opened", "inc1", "active"))
    status, alert = await eventually(
        lambda: _ok(_get(f"{base}/cap/inc1.xml")), "the alert to be served"
    )
    n.on_incident(event("acknowledged", "inc1", "acknowledged", acked_by="desk-1"))
    n.on_incident(event("cleared", "inc1", "cleared"))
    await eventually(lambda: len(list(n.outbox.of_incident("inc1"))) == 3, "three notes")
    xmls = [str(note.cap["xml"]).encode() for note in n.outbox.of_incident("inc1") if note.cap]
    assert xmls[0] == alert
    for xml in xmls:
        schema.validate(xml)  # raises with the reason if the message is not CAP 1.2
    roots = [ET.fromstring(x) for x in xmls]
    assert [r.findtext(f"{C}msgType") for r in roots] == ["Alert", "Update", "Cancel"]
    ids = [(r.findtext(f"{C}identifier"), r.findtext(f"{C}sent")) for r in roots]
    assert roots[0].find(f"{C}references") is None
    assert roots[1].findtext(f"{C}references") == f"hub@gyeonggi.example,{ids[0][0]},{ids[0][1]}"
    refs = (roots[2].findtext(f"{C}references") or "").split()
    assert [r.split(",")[1] for r in refs] == [ids[0][0], ids[1][0]]
    info = roots[0].find(f"{C}info")
    assert info is not None
    assert info.findtext(f"{C}severity") == "Severe"
    assert info.findtext(f"{C}area/{C}areaDesc") == "up-1, Suwon"
    assert info.find(f"{C}area/{C}polygon") is not None  # the region's outline
    # After the Cancel the alert stays served (readers must see it end), until archived.
    status, served = await _get(f"{base}/cap/inc1.xml")
    assert status == 200
    assert ET.fromstring(served).findtext(f"{C}msgType") == "Cancel"
    n.on_incident(event("archived", "inc1", "archived"))
    status, _ = await _get(f"{base}/cap/inc1.xml")
    assert status == 404


async def _ok(response: object) -> tuple[int, bytes] | None:
    status, body = await response  # type: ignore[misc]
    return (status, body) if status == 200 else None


async def test_feed_lists_current_alerts(
    http: tuple[Notifier, str], schema: xmlschema.XMLSchema
) -> None:
    n, base = http
    for iid in ("f1", "f2", "f3"):
        n.on_incident(event("opened", iid, "active"))
    n.on_incident(event("cleared", "f3", "cleared"))
    n.on_incident(event("archived", "f3", "archived"))
    await eventually(lambda: all(x.status == "sent" for x in n.outbox.notes.values()), "sent")
    status, body = await _get(f"{base}/cap/feed.atom")
    assert status == 200
    feed = ET.fromstring(body)  # well-formed, or this raises
    assert feed.tag == f"{A}feed"
    for required in ("id", "title", "updated", "author"):
        assert feed.find(f"{A}{required}") is not None
    links = [e.find(f"{A}link").get("href") for e in feed.findall(f"{A}entry")]  # type: ignore[union-attr]
    assert sorted(links) == [f"{base}/cap/f1.xml", f"{base}/cap/f2.xml"]
    for href in links:
        status, xml = await _get(href)
        assert status == 200
        schema.validate(xml)


async def test_cap_posted_to_a_url_with_escalation(
    tmp_path: Path, schema: xmlschema.XMLSchema
) -> None:
    async with webhook_server() as server:
        cfg = config(
            channels={
                "cap-out": {"type": "cap", "url": server.url, "secret_env": "HOOK_SECRET"},
                "duty-officer": {"type": "webhook", "url": server.url},
            }
        )
        async with running(notifier(cfg, tmp_path)) as n:
            await open_incident(n, "e1", ["cap-out"], severity="moderate")
            # An escalation step raising the severity names its own channels.
            await n.execute(
                action(
                    "e1",
                    ["cap-out", "duty-officer"],
                    step="escalate[0]",
                    n=1,
                    severity="extreme",
                    message="UNANSWERED: e1",
                )
            )
            await eventually(lambda: len(server.received) == 3, "alert, update and the page")
    cap_bodies = [b for h, b in server.received if h["Content-Type"].startswith("application/cap")]
    assert len(cap_bodies) == 2
    for body in cap_bodies:
        schema.validate(body)
    update = ET.fromstring(cap_bodies[1])
    assert update.findtext(f"{C}msgType") == "Update"
    assert update.findtext(f"{C}info/{C}severity") == "Extreme"
    assert update.findtext(f"{C}info/{C}description") == "UNANSWERED: e1"


async def test_cap_routes_need_a_token_unless_public(tmp_path: Path) -> None:
    digest = "7c9ddcfed1d2b1e5db7b8cfd2c4f8f5f5bb4c3e1c1b83a3c7b0f5d4f7b8a8a5e"  # not a token
    api = ApiConfig(public=("health",), tokens=({"name": "v", "role": "viewer", "sha256": digest},))  # type: ignore[arg-type]
    check = cap_access(api)
    assert check is not None
    assert cap_access(ApiConfig()) is None
    n = notifier(config(), tmp_path, authorize=check)
    app = web.Application()
    n.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        status, _ = await _get(f"http://127.0.0.1:{port}/cap/feed.atom")
        assert status == 401
    finally:
        await runner.cleanup()
        await n.store.aclose()


async def test_a_city_token_reads_only_its_citys_alerts(tmp_path: Path) -> None:
    """Behind tokens, the feed and each alert keep to the token's regions; the province's
    token sees both cities."""
    tokens = (
        {"name": "wall", "role": "viewer", "sha256": hashlib.sha256(b"wall").hexdigest()},
        {
            "name": "wall-goyang",
            "role": "viewer",
            "sha256": hashlib.sha256(b"goyang").hexdigest(),
            "regions": ["goyang"],
        },
    )
    api = ApiConfig(public=("health",), tokens=tokens)  # type: ignore[arg-type]
    cfg = config(
        channels={"public-alerts": {"type": "cap", "sender": "hub@gyeonggi.example"}},
        broadcast=["public-alerts"],
    )
    n = notifier(cfg, tmp_path, authorize=cap_access(api))
    app = web.Application()
    n.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    base = f"http://127.0.0.1:{free_port()}"
    await web.TCPSite(runner, "127.0.0.1", int(base.rsplit(":", 1)[1])).start()
    try:
        async with running(n):
            n.on_incident(event("opened", "in-suwon", "active"))
            n.on_incident(event("opened", "in-goyang", "active", region="goyang", site="sb-1"))
            await eventually(
                lambda: (
                    len(n.outbox.notes) == 2
                    and all(x.status == "sent" for x in n.outbox.notes.values())
                ),
                "both alerts",
            )
            for token, mine in (("wall", {"in-suwon", "in-goyang"}), ("goyang", {"in-goyang"})):
                bearer = {"Authorization": f"Bearer {token}"}
                status, body = await _get(f"{base}/cap/feed.atom", **bearer)
                assert status == 200
                links = [
                    e.find(f"{A}link").get("href")  # type: ignore[union-attr]
                    for e in ET.fromstring(body).findall(f"{A}entry")
                ]
                assert {link.rsplit("/", 1)[1].removesuffix(".xml") for link in links} == mine
                for iid in ("in-suwon", "in-goyang"):
                    status, _ = await _get(f"{base}/cap/{iid}.xml", **bearer)
                    assert status == (200 if iid in mine else 404), (token, iid)
    finally:
        await runner.cleanup()
