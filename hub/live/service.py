"""The hub's side of live view: tickets for viewers, the wall's cameras for an incident, a
relay of its own as a child process, and warm-ups when incidents open.

    GET /api/cameras/{id}/live        a viewer's ticket: where to play the camera (audited)
    GET /api/incidents/{id}/cameras   the cameras that see the incident's place, best first

The cameras of an incident are the detection's choice (hub.detection.cameras: those that
cover the place first, then nearer ones), so the wall shows what the detectors look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from hub.api.auth import Actor, Recorder, authorized, error
from hub.detection.cameras import CameraIndex
from hub.detection.config import DetectionConfig
from hub.inventory import Inventory
from hub.live.config import LiveConfig, new_secret, relay_settings
from hub.live.tickets import relay_for, sign
from hub.scheduler import Job
from hub.services import free_port

log = logging.getLogger("hub.live")
WARM_QUEUE = 1024  # cameras waiting to be warmed; beyond it a warm-up is skipped, not queued


class Incidents(Protocol):
    """What live view needs of the rules: an incident's place by id (None: not open)."""

    def __call__(self, incident_id: str) -> dict[str, Any] | None: ...


class ChildRelay:
    """`hub relay` as a child process of the hub, given the cameras and secret on stdin."""

    def __init__(self, settings: bytes, host: str) -> None:
        self._settings = settings
        self.host = host
        self.port = free_port(host if host not in ("0.0.0.0", "::") else "127.0.0.1")  # noqa: S104
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def local_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    async def ensure(self, session: aiohttp.ClientSession, deadline_s: float = 15.0) -> None:
        """Start the relay unless it runs, and wait until it answers (RuntimeError if not)."""
        async with self._lock:
            if self._proc is not None and self._proc.returncode is None:
                return
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub", "relay", "--stdin",
                "--listen", f"{self.host}:{self.port}",
                stdin=asyncio.subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
            assert self._proc.stdin is not None
            # One line of settings; the pipe stays open, and the relay stops when it closes
            # (when the hub stops, or is killed).
            self._proc.stdin.write(self._settings + b"\n")
            deadline = time.monotonic() + deadline_s
            while time.monotonic() < deadline:
                if self._proc.returncode is not None:
                    raise RuntimeError(f"the relay exited with code {self._proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{self.local_url}/health") as resp:
                        if resp.status == 200:
                            log.info("live: relay started on %s", self.local_url)
                            return
                await asyncio.sleep(0.05)
            raise RuntimeError(f"the relay did not answer within {deadline_s:g}s")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class LiveService:
    """The `live` component: see the module's docstring."""

    name = "live"
    topic_prefix: str | None = None
    subscriptions: Sequence[tuple[str, int]] = ()

    def __init__(
        self,
        config: LiveConfig,
        inventory: Inventory,
        detection: DetectionConfig,
        *,
        incidents: Incidents,
        audit: Recorder,
        api_host: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.inventory = inventory
        self.detection = detection
        self.incidents = incidents
        self.audit = audit
        self.clock = clock
        self.index = CameraIndex(inventory.cameras.values())
        self.secret = config.secret or new_secret()
        self.child: ChildRelay | None = None
        if not config.relays:
            settings = relay_settings(config, inventory, detection, self.secret)
            host = (config.listen or f"{api_host}:0").rpartition(":")[0].strip("[]")
            self.child = ChildRelay(settings.to_json(), host)
        self._warm: asyncio.Queue[str] = asyncio.Queue(WARM_QUEUE)
        self._session: aiohttp.ClientSession | None = None

    # -- the component ----------------------------------------------------------------------

    def on_messages(self, messages: list[Any]) -> None:
        del messages

    def jobs(self) -> list[Job]:
        return []

    def add_routes(self, app: web.Application) -> None:
        app[LIVE] = self
        app.router.add_get("/api/cameras/{id}/live", _ticket)
        app.router.add_get("/api/incidents/{id}/cameras", _incident_cameras)

    async def run(self) -> None:
        """Warm the cameras asked for, one at a time (a slow camera holds up no viewer)."""
        while True:
            camera = await self._warm.get()
            try:
                await self._warm_one(camera)
            except (aiohttp.ClientError, OSError, RuntimeError, TimeoutError) as exc:
                log.warning("live: could not warm camera %s: %s", camera, exc)

    async def close(self) -> None:
        if self.child is not None:
            await self.child.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- incidents ----------------------------------------------------------------------------

    def on_incident(self, event: dict[str, Any]) -> None:
        """The rules' listener: an incident that opens warms the cameras of its place."""
        if not self.config.enabled or not self.config.warm_on_incident:
            return
        if event.get("event") != "opened":
            return
        for camera in self.cameras_for(event["incident"]):
            with contextlib.suppress(asyncio.QueueFull):
                self._warm.put_nowait(camera)

    def cameras_for(self, incident: dict[str, Any]) -> list[str]:
        """The wall's cameras for an incident: detection's ranking around its place."""
        place = self.inventory.sites.get(incident.get("site") or "")
        spot = place or self.inventory.sensors.get(incident.get("subject") or "")
        if spot is None:
            return []
        found = self.index.nearest(
            spot.lon, spot.lat, count=self.config.wall_cameras, within_m=self.config.within_m
        )
        return [m.camera.id for m in found]

    # -- relays ---------------------------------------------------------------------------------

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._session

    async def relay_url(self, camera: str) -> str:
        """The relay of `camera` as the hub reaches it, started if it is the hub's own."""
        if self.child is None:
            return relay_for(camera, self.config.relays)
        await self.child.ensure(await self.session())
        return self.child.local_url

    def ticket(self, purpose: str, camera: str) -> tuple[str, int]:
        expires = int(self.clock() + self.config.ticket_ttl)
        return sign(self.secret, purpose, camera, expires), expires

    async def _warm_one(self, camera: str) -> None:
        base = await self.relay_url(camera)
        ticket, _ = self.ticket("warm", camera)
        session = await self.session()
        async with session.post(f"{base}/live/{camera}/warm", params={"t": ticket}) as resp:
            if resp.status != 200:
                body = await resp.json(content_type=None)
                log.warning("live: warming camera %s: %s", camera, body.get("error"))


LIVE: web.AppKey[LiveService] = web.AppKey("live", LiveService)


@authorized("viewer")
async def _ticket(request: web.Request, actor: Actor) -> web.StreamResponse:
    live = request.app[LIVE]
    camera_id = request.match_info["id"]
    camera = live.inventory.cameras.get(camera_id)
    if camera is None or not actor.sees(camera.region):  # another city's: as if not there
        return error(404, f"no camera {camera_id!r} in the inventory")
    if not live.config.enabled:
        return error(503, "live view is off (live.enabled: false)")
    try:
        base = await live.relay_url(camera_id)
    except (RuntimeError, OSError, aiohttp.ClientError) as exc:
        return error(503, f"the live relay is not available: {exc}")
    if live.child is not None:
        # The child listens beside the API: the browser reaches it by the hub's own name.
        base = f"{request.scheme}://{request.url.host}:{live.child.port}"
    ticket, expires = live.ticket("view", camera_id)
    live.audit.record(
        "live",
        actor.name,
        f"watched camera {camera_id} live",
        camera=camera_id,
        region=camera.region,
    )
    return web.json_response(
        {
            "camera": camera_id,
            "url": f"{base}/live/{camera_id}.ts?t={ticket}",
            "expires_at": datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z"),
            "blurred": live.detection.blur_faces(camera),
        }
    )


@authorized("viewer")
async def _incident_cameras(request: web.Request, actor: Actor) -> web.StreamResponse:
    live = request.app[LIVE]
    incident_id = request.match_info["id"]
    incident = live.incidents(incident_id)
    if incident is None or not actor.sees(incident.get("region")):
        return error(404, f"no incident {incident_id!r} (it may be archived)")
    cameras = [
        {
            "id": c,
            "name": live.inventory.cameras[c].name,
            "region": live.inventory.cameras[c].region,
        }
        for c in live.cameras_for(incident)
        if actor.sees(live.inventory.cameras[c].region)
    ]
    # `live`: whether they can be watched live here (the page shows no player when not).
    return web.json_response(
        {"incident": incident_id, "cameras": cameras, "live": live.config.enabled}
    )
