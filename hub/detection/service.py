"""The hub's side of detection: `detect` actions become jobs, results become evidence.

One job per camera the engine resolved for the action (covering cameras first), with the
job id made of the action id and the camera, so that an action handed over twice makes the
same jobs. Results feed the rule engine (detection conditions, incidents' evidence), the
`detection` measurement and the audit trail. A job unanswered after `resend_after` is sent
again until its deadline: a worker that died took its queued jobs with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from hub import metrics
from hub.api.auth import Actor, Token, authorized, error, install
from hub.audit import AuditLog
from hub.detection.config import DetectionConfig
from hub.detection.worker import Job, Result, requests_topic
from hub.inventory import Inventory
from hub.mqtt import Message, MqttClient, MqttError
from hub.rules.events import ActionRequested
from hub.rules.service import RuleService, Sink
from hub.scheduler import Job as ScheduledJob
from hub.storage.line import point_line

log = logging.getLogger("hub.detection")

_REMEMBER = 10_000  # finished actions and answered jobs kept to recognise repeats
EVIDENCE_URL = "/api/evidence/"
EVIDENCE_DIR: web.AppKey[Path] = web.AppKey("evidence_dir", Path)
# The regions a snapshot belongs to (its cameras' and incidents'), for tokens of some regions.
EVIDENCE_REGIONS: web.AppKey[Callable[[str], set[str]]] = web.AppKey("evidence_regions")
# Snapshots are not edited once reported, so browsers may keep them a while.
EVIDENCE_MAX_AGE_S = 3600
_SNAPSHOT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


@dataclass(slots=True)
class _Pending:
    job: Job
    asked_at: float  # when it was first sent
    sent_at: float  # the last time it was sent


@dataclass(slots=True)
class _Action:
    action_id: str
    rule: str
    jobs: set[str]
    found: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class DetectionService:
    """Sends detection jobs for `detect` actions and takes their results in."""

    name = "detection"

    def __init__(
        self,
        config: DetectionConfig,
        inventory: Inventory,
        *,
        rules: RuleService,
        mqtt: MqttClient,
        sink: Sink,
        audit: AuditLog,
        data_dir: Path,
        prefix: str,
        tokens: Sequence[Token] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.inventory = inventory
        self.rules = rules
        self.mqtt = mqtt
        self.sink = sink
        self.audit = audit
        self.clock = clock
        self.prefix = prefix
        self.tokens = tuple(tokens)
        self.evidence_dir = config.evidence_path(data_dir)
        self.topic_prefix: str | None = f"{prefix}/detect/results/"
        self.subscriptions: Sequence[tuple[str, int]] = [(f"{prefix}/detect/results/+", 1)]
        self.results: deque[Result] = deque(maxlen=1000)  # the latest, for the API and tests
        # Others whose snapshots GET /api/evidence serves (camera events): the regions of the
        # snapshot at a URL, as far as each knows.
        self.snapshot_holders: list[Callable[[str], set[str]]] = []
        self.resent = 0
        self._pending: dict[str, _Pending] = {}
        self._actions: dict[str, _Action] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._answered: OrderedDict[str, None] = OrderedDict()

    # -- actions ----------------------------------------------------------------------------

    async def execute(self, action: ActionRequested) -> None:
        """Send one job per camera of a `detect` action; repeats of an action do nothing."""
        if action.action_id in self._actions or action.action_id in self._finished:
            return
        params = action.params
        cameras = [c for c in params.get("cameras", ()) if c in self.inventory.cameras]
        min_score = params.get("min_score")
        await self.request(
            action.action_id,
            action.incident_id,
            action.rule,
            cameras,
            classes=tuple(params.get("classes", ())),
            min_score=float(min_score) if min_score is not None else None,
        )

    async def request(
        self,
        action_id: str,
        incident_id: str,
        rule: str,
        cameras: Sequence[str],
        *,
        classes: Sequence[str] = (),
        min_score: float | None = None,
    ) -> list[Job]:
        """Publish a job per camera, without waiting for the broker to take them."""
        expires = self.clock() + self.config.deadline
        jobs = [
            Job(f"{action_id}:{c}", c, action_id, incident_id, tuple(classes), min_score, expires)
            for c in cameras
        ]
        if not jobs:
            self.rules.update_action(action_id, "failed", "no camera in the inventory to ask")
            return []
        self._actions[action_id] = _Action(action_id, rule, {j.job_id for j in jobs})
        for job in jobs:
            now = self.clock()
            self._pending[job.job_id] = _Pending(job, now, now)
        metrics.DETECT_JOBS.inc(len(jobs))
        metrics.DETECT_PENDING.set(len(self._pending))
        self.audit.record(
            "detect",
            rule,
            f"asked {len(jobs)} camera(s) for {', '.join(classes) or 'anything'}: "
            + ", ".join(cameras),
            incident_id=incident_id,
            action_id=action_id,
        )
        for job in jobs:
            self._send(job)
        return jobs

    def _send(self, job: Job) -> None:
        """Hand the job to the MQTT client without waiting for the broker: the rules' events
        behind this action must not wait for a broker that is down (the client holds the
        message until it is back, and `run` sends a job again that stays unanswered)."""
        try:
            taken = self.mqtt.publish_nowait(requests_topic(self.prefix), job.to_json())
        except MqttError as exc:
            log.warning("job %s not sent: %s", job.job_id, exc)
            return
        taken.add_done_callback(partial(_sent, job.job_id))

    # -- results ----------------------------------------------------------------------------

    def on_messages(self, messages: list[Message]) -> None:
        """Results from the workers; each is acknowledged once handled."""
        for message in messages:
            try:
                self.handle(Result.parse(message.payload))
            except ValueError as exc:
                log.warning("%s: result cannot be read: %s", message.topic, exc)
            except Exception:
                log.exception("%s: result could not be handled", message.topic)
        self.mqtt.ack(messages)

    def handle(self, result: Result, *, expired: bool = False) -> None:
        """One result: the engine, the `detection` measurement and the audit trail.

        `expired`: the hub's own failed result for a job that got no answer in time.
        """
        if result.job_id in self._answered:
            metrics.DETECT_RESULTS.labels("duplicate").inc()
            return  # a job sent twice may be answered twice
        _remember(self._answered, result.job_id)
        self.results.append(result)
        pending = self._pending.pop(result.job_id, None)
        metrics.DETECT_PENDING.set(len(self._pending))
        if pending is not None:
            metrics.DETECT_SECONDS.observe(max(0.0, self.clock() - pending.asked_at))
        metrics.DETECT_RESULTS.labels(
            "ok" if result.error is None else "expired" if expired else "error"
        ).inc()
        camera = self.inventory.cameras.get(result.camera_id)
        region = camera.region if camera is not None else ""
        action = self._actions.get(pending.job.action_id) if pending is not None else None
        actor = action.rule if action is not None else "detector"
        if result.error is not None:
            self.audit.record(
                "detect", actor, f"{result.camera_id}: {result.error}", job_id=result.job_id
            )
            if action is not None:
                action.errors.append(f"{result.camera_id}: {result.error}")
        else:
            ts_ns = round(result.ts * 1e9)
            self.rules.on_detection(
                result.camera_id,
                camera.site if camera is not None else None,
                ts_ns,
                result.detections,
                snapshot=result.snapshot,
                job_id=result.job_id,
            )
            counts = self._write(result, region, ts_ns, pending)
            summary = ", ".join(f"{n} {c}" for c, n in counts.items()) or "nothing"
            self.audit.record(
                "detect",
                actor,
                f"{result.camera_id}: {summary}",
                job_id=result.job_id,
                snapshot=result.snapshot,
            )
            if action is not None:
                for cls, n in counts.items():
                    action.found[cls] = action.found.get(cls, 0) + n
        if action is not None:
            action.jobs.discard(result.job_id)
            if not action.jobs:
                self._finish(action)

    def _write(
        self, result: Result, region: str, ts_ns: int, pending: _Pending | None
    ) -> dict[str, int]:
        """`detection` points, one per class asked for (zeros included) or found."""
        counts: dict[str, int] = dict.fromkeys(pending.job.classes if pending else (), 0)
        best: dict[str, float] = {}
        for d in result.detections:
            cls, score = str(d.get("class")), float(d.get("score", 0.0))
            counts[cls] = counts.get(cls, 0) + 1
            best[cls] = max(best.get(cls, 0.0), score)
        lines = b"".join(
            point_line(
                "detection",
                {"camera": result.camera_id, "class": cls, "region": region},
                {"count": n, "max_score": best.get(cls, 0.0), "job_id": result.job_id},
                ts_ns,
            )
            for cls, n in counts.items()
        )
        if lines:
            self.sink.submit(lines, len(counts))
        return counts

    def _finish(self, action: _Action) -> None:
        self._actions.pop(action.action_id, None)
        _remember(self._finished, action.action_id)
        found = ", ".join(f"{n} {c}" for c, n in sorted(action.found.items()) if n)
        detail = found or "nothing found"
        if action.errors:
            detail += "; " + "; ".join(action.errors)
        status = "failed" if action.errors and not action.found else "done"
        self.rules.update_action(action.action_id, status, detail)

    # -- the clock --------------------------------------------------------------------------

    def check_deadlines(self) -> None:
        """Jobs past their deadline count as failed; return the ones to send again."""
        now = self.clock()
        for job_id, pending in list(self._pending.items()):
            expires = pending.job.expires_at
            if expires is not None and now >= expires:
                self.handle(
                    Result(
                        job_id,
                        pending.job.camera_id,
                        now,
                        error=f"no result within the {self.config.deadline:g} s deadline",
                    ),
                    expired=True,
                )

    def due(self) -> list[Job]:
        """Jobs unanswered for `resend_after`, marked as sent again now."""
        now = self.clock()
        out = []
        for pending in self._pending.values():
            if now - pending.sent_at >= self.config.resend_after:
                pending.sent_at = now
                out.append(pending.job)
        self.resent += len(out)
        metrics.DETECT_RESENT.inc(len(out))
        return out

    async def run(self) -> None:
        """Resend unanswered jobs and time out late ones, until cancelled."""
        step = min(0.5, self.config.resend_after / 2)
        while True:
            await asyncio.sleep(step)
            self.check_deadlines()
            if not self.mqtt.connected:
                continue  # the client holds what was sent; a copy per turn would pile up
            for job in self.due():
                log.info("job %s: no result yet, sending it again", job.job_id)
                self._send(job)

    # -- evidence retention -----------------------------------------------------------------

    async def _prune(self) -> None:
        cutoff = self.clock() - self.config.retention
        removed = await asyncio.to_thread(prune_evidence, self.evidence_dir, cutoff)
        if removed:
            log.info("evidence retention: deleted %d snapshot(s)", removed)

    def jobs(self) -> list[ScheduledJob]:
        """The hourly evidence retention."""
        return [ScheduledJob("evidence-retention", 3600.0, self._prune)]

    def add_routes(self, app: web.Application) -> None:
        """`GET /api/evidence/{path}`: a snapshot under the evidence folder, for viewers."""
        app[EVIDENCE_DIR] = self.evidence_dir
        app[EVIDENCE_REGIONS] = self.evidence_regions
        install(app, self.tokens)
        app.router.add_get(EVIDENCE_URL + "{path:.+}", _evidence)

    async def close(self) -> None:
        """Nothing to flush: unanswered jobs are redone by the workers or time out."""

    def evidence_regions(self, relative: str) -> set[str]:
        """The regions of the snapshot at `relative` under the evidence folder: those of the
        incidents whose evidence holds it and of the cameras that took it (for a detection
        result or, as the holders know, a camera event)."""
        want = evidence_url(os.path.join(self.evidence_dir, relative), self.evidence_dir)
        found: set[str] = set()
        if want is None:
            return found

        def camera(camera_id: object) -> None:
            cam = self.inventory.cameras.get(str(camera_id or ""))
            if cam is not None:
                found.add(cam.region)

        for incident in self.rules.engine.incidents():
            for item in incident.evidence:
                if snapshot_url_of(item, self.evidence_dir) == want:
                    found.add(incident.region)
                    camera(item.get("camera"))
        for result in self.results:
            if evidence_url(result.snapshot, self.evidence_dir) == want:
                camera(result.camera_id)
        for holder in self.snapshot_holders:
            found |= holder(want)
        return found


def event_snapshot_url(snapshot: object, folder: Path) -> str | None:
    """The API's URL of a camera event's snapshot: a path relative to `folder` (the contract of
    docs/streams.md) or an absolute one under it; None for a URL or a path elsewhere."""
    if not isinstance(snapshot, str) or not snapshot or "://" in snapshot:
        return None
    return evidence_url(os.path.join(folder, snapshot), folder)


def snapshot_url_of(item: Mapping[str, Any], folder: Path) -> str | None:
    """The API's URL of an evidence item's snapshot: a camera event's is relative to `folder`,
    a detection result's absolute."""
    if item.get("kind") == "camera_event":
        return event_snapshot_url(item.get("snapshot"), folder)
    return evidence_url(item.get("snapshot"), folder)


def evidence_url(snapshot: object, folder: Path) -> str | None:
    """The API's URL of a snapshot written under `folder`; None for a URL or a path elsewhere."""
    if not isinstance(snapshot, str) or not os.path.isabs(snapshot):
        return None
    try:
        relative = Path(os.path.normpath(snapshot)).relative_to(os.path.normpath(folder))
    except ValueError:
        return None
    if not relative.parts:
        return None
    return EVIDENCE_URL + quote(relative.as_posix(), safe="/")


def evidence_file(folder: Path, relative: str) -> Path | str:
    """The snapshot `relative` names under `folder`, or why it cannot be served.

    Links are followed before the check, so that none leads out of the folder.
    """
    if not relative or "\0" in relative or os.path.isabs(relative):
        return "the path must be relative to the evidence folder"
    try:
        root = folder.resolve()
        path = (root / relative).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a loop of links (Python < 3.13)
        return "the path cannot be followed"
    if not path.is_relative_to(root):
        return "the path must stay inside the evidence folder"
    if path.suffix.lower() not in _SNAPSHOT_TYPES:
        return "only snapshots (.jpg, .jpeg, .png) are served"
    if not path.is_file():
        return "no such snapshot (retention may have deleted it)"
    return path


@authorized("viewer")
async def _evidence(request: web.Request, actor: Actor) -> web.StreamResponse:
    relative = request.match_info["path"]
    if actor.regions is not None and not actor.sees_any(request.app[EVIDENCE_REGIONS](relative)):
        # Another city's snapshot, or one no incident, result or recent camera event holds:
        # as if it were not there.
        return error(404, f"{relative}: no such snapshot in this token's regions")
    # resolve() and stat() touch the disk: off the event loop, as FileResponse reads it.
    found = await asyncio.to_thread(evidence_file, request.app[EVIDENCE_DIR], relative)
    if isinstance(found, str):
        return error(404, f"{relative}: {found}")
    return web.FileResponse(
        found,
        headers={
            "Content-Type": _SNAPSHOT_TYPES[found.suffix.lower()],
            "Cache-Control": f"private, max-age={EVIDENCE_MAX_AGE_S}",
            "X-Content-Type-Options": "nosniff",
        },
    )


def prune_evidence(folder: Path, cutoff: float) -> int:
    """Delete snapshots under `folder` last written before `cutoff` (epoch s); how many went."""
    if not folder.is_dir():
        return 0
    removed = 0
    # Deepest first, so that a day's folder is seen after its snapshots.
    for path in sorted(folder.rglob("*"), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return removed


def _remember(seen: OrderedDict[str, Any], key: str) -> None:
    seen[key] = None
    if len(seen) > _REMEMBER:
        seen.popitem(last=False)


def _sent(job_id: str, taken: asyncio.Future[None]) -> None:
    if not taken.cancelled() and (exc := taken.exception()) is not None:
        log.warning("job %s: the broker did not take it: %s", job_id, exc)
