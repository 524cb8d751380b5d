"""A real headless Chromium (Debian's) driven by Playwright, and a hub process for it to show."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from hub.services import LocalInflux, LocalMosquitto, free_port
from tests.api.support import hub_config
from tests.helpers import HubProcess, Peer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


# Module scope, not session: while Playwright's sync API is started it keeps an event loop
# running in this thread, and the asyncio tests that come after would fail to start theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser for the module; each test opens its own contexts."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run scripts/install")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def rules_text() -> str | None:
    """The hub's rule file; None keeps the room's flood rule. A test module may override it."""
    return None


@pytest.fixture
def extra_tokens() -> list[dict[str, Any]]:
    """API tokens besides the demo operator and viewer; a test module may override it."""
    return []


# The room's province has cameras at addresses that do not exist here: pages whose subject
# is not live view keep it off, or the wall's failed streams would be console errors.
NO_LIVE = {"live": {"enabled": False}}


@pytest.fixture
def extra_sections() -> dict[str, Any]:
    """hub.yaml sections besides the room's (notify, actuators, ...); a test module may
    override it (keeping NO_LIVE unless it shows live view)."""
    return dict(NO_LIVE)


@pytest.fixture
def hub_process(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    prefix: str,
    database: str,
    uid: str,
    hub_processes: Callable[[Path], HubProcess],
    rules_text: str | None,
    extra_tokens: list[dict[str, Any]],
    extra_sections: dict[str, Any],
) -> HubProcess:
    listen = f"127.0.0.1:{free_port()}"
    config = hub_config(
        tmp_path,
        mosquitto.url,
        influx.url,
        prefix,
        database,
        uid,
        listen,
        extra_tokens,
        **extra_sections,
    )
    if rules_text is not None:
        (tmp_path / "rules" / "flood.yaml").write_text(rules_text)
    hub = hub_processes(config)
    hub.start()
    return hub


class Room:
    """A signed-in page of the situation room, with the console errors it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@pytest.fixture
def open_room(browser: Browser, hub_process: HubProcess) -> Iterator[Callable[[str], Room]]:
    """`open_room(token)`: a new browser context on the page, signed in with `token`."""
    contexts = []

    def open_with(token: str) -> Room:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        contexts.append(context)
        room = Room(context.new_page())
        room.page.goto(f"http://{hub_process.listen}/")
        expect(room.page.locator("#login")).to_be_visible()
        room.page.fill("#token", token)
        room.page.click("#login-submit")
        room.page.wait_for_selector("body[data-ready=true]", timeout=10_000)
        expect(room.page.locator("#live.on")).to_be_visible(timeout=10_000)
        return room

    yield open_with
    for context in contexts:
        context.close()


@pytest.fixture
def mosquitto_peer(mosquitto: LocalMosquitto, uid: str) -> Iterator[Peer]:
    """The sensors' side of the broker."""
    peer = Peer(mosquitto.url, f"sensors-{uid}")
    yield peer
    peer.close()
