"""The ingest stage: MQTT messages in, readings out to storage and to the rules, bad ones to the
dead-letter topic. Messages are acknowledged to the broker only once their readings are durable.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Protocol

import orjson

from hub import metrics
from hub.ingest.validate import Reading, Rejection, Validator
from hub.inventory import Sensor
from hub.mqtt import Message
from hub.storage.line import reading_prefix

log = logging.getLogger("hub.ingest")

ReadingListener = Callable[[list[Reading]], None]

# Messages stamped on arrival kept for a redelivery: more than a broker sends unacknowledged
# to one session (MQTT's Receive Maximum is at most 65535), in at most 16 MiB of payloads.
REDELIVERY_KEPT = 65_536
REDELIVERY_MEMORY = 16 << 20


class Publisher(Protocol):
    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> None: ...


class Sink(Protocol):
    def submit(self, lines: bytes, count: int, token: object | None = None) -> None: ...

    @property
    def full(self) -> bool: ...


class Ingest:
    """Routes messages by topic, validates them, and hands readings on."""

    def __init__(
        self,
        validator: Validator,
        sink: Sink,
        publisher: Publisher,
        *,
        prefix: str = "hub",
        deadletter_queue: int = 10000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.validator = validator
        self.sink = sink
        self.publisher = publisher
        self.prefix = prefix.rstrip("/")
        self._depth = self.prefix.count("/") + 1
        self.clock = clock
        self.listeners: list[ReadingListener] = []
        self._lines: dict[str, str] = {}
        self._deadletters: collections.deque[bytes] = collections.deque(maxlen=deadletter_queue)
        self._deadletter_ready = asyncio.Event()
        self._deadletters_idle = asyncio.Event()
        self._deadletters_idle.set()
        self._closing = False
        self.on_full: Callable[[], None] = lambda: None
        self._stamped: collections.OrderedDict[tuple[str, bytes], list[Reading]] = (
            collections.OrderedDict()
        )
        self._stamped_bytes = 0

    @staticmethod
    def topics_for(prefix: str) -> tuple[str, str]:
        """The starts of the topics ingest reads: sensors' and gateways'."""
        prefix = prefix.rstrip("/")
        return (f"{prefix}/sensors/", f"{prefix}/gateways/")

    @staticmethod
    def subscriptions_for(prefix: str) -> list[tuple[str, int]]:
        """The topic filters ingest needs, at QoS 1 so that nothing sent at QoS 1 is lost."""
        return [(f"{start}+/+", 1) for start in Ingest.topics_for(prefix)]

    @property
    def deadletter_topic(self) -> str:
        return f"{self.prefix}/deadletter"

    def set_validator(self, validator: Validator) -> None:
        """Swap in a validator for a new inventory; line prefixes are rebuilt lazily."""
        validator.stamps = self.validator.stamps
        self.validator = validator
        self._lines.clear()

    # -- the hot path -------------------------------------------------------------------------

    def on_messages(self, messages: list[Message]) -> None:
        """Handle a batch of messages as the MQTT client read them off the socket."""
        if self._closing:
            return  # not acknowledged: the broker delivers them again next session
        now = self.clock()
        depth = self._depth
        accepted: list[Reading] = []
        received = 0
        sensors = gateways = 0
        validator = self.validator
        for msg in messages:
            parts = msg.topic.split("/")
            family = parts[depth] if len(parts) == depth + 3 else ""
            stamped = validator.stamped
            if msg.dup and (again := self._stamped.get((msg.topic, msg.payload))) is not None:
                # A redelivery of a message whose readings were stamped on arrival: the same
                # points again (InfluxDB keeps one), not new ones at a later time.
                accepted.extend(again)
                continue
            if family == "sensors":
                sensors += 1
                readings, rejections = self.validator.sensor_message(
                    parts[depth + 1], parts[depth + 2], msg.payload, now
                )
                received += 1
            elif family == "gateways":
                gateways += 1
                readings, rejections = self.validator.gateway_message(
                    parts[depth + 1], parts[depth + 2], msg.payload, now
                )
                received += len(readings) + len(rejections)
            else:
                readings = []
                rejections = [Rejection("unknown_topic", f"no ingest route for {msg.topic!r}")]
            accepted.extend(readings)
            for rejection in rejections:
                self._reject(msg, rejection, now)
            if msg.qos and validator.stamped != stamped:
                self._remember(msg, readings)
        if sensors:
            metrics.MESSAGES_IN.labels("sensors").inc(sensors)
        if gateways:
            metrics.MESSAGES_IN.labels("gateways").inc(gateways)
        metrics.READINGS_IN.inc(received)
        metrics.READINGS_ACCEPTED.inc(len(accepted))
        # The rules see the readings first, and what they wake (the dispatch of a barrier's
        # command) runs before the batch's line protocol is written: that is queued behind it,
        # still ahead of anything read later, so batches reach storage in order.
        if accepted and self.listeners:
            for listener in self.listeners:
                try:
                    listener(accepted)
                except Exception:
                    # A failing consumer must not stop ingest or storage of the readings.
                    log.exception("reading listener %r failed", listener)
            asyncio.get_running_loop().call_soon(self._store, accepted, messages)
            return
        self._store(accepted, messages)

    def _remember(self, msg: Message, readings: list[Reading]) -> None:
        """Keep the stamped readings of a QoS 1 message for a redelivery (after a reconnect,
        the broker sends again what the hub had not acknowledged yet), within a bound."""
        key = (msg.topic, msg.payload)
        self._stamped[key] = readings
        self._stamped_bytes += len(msg.payload) + len(msg.topic)
        while self._stamped_bytes > REDELIVERY_MEMORY or len(self._stamped) > REDELIVERY_KEPT:
            (topic, payload), _ = self._stamped.popitem(last=False)
            self._stamped_bytes -= len(payload) + len(topic)

    def _store(self, accepted: list[Reading], messages: list[Message]) -> None:
        line = self._line_prefix
        lines = [f"{line(r.sensor)}{r.value!r} {r.ts_ns}\n" for r in accepted]
        # One submit per batch; the messages ride along and are acknowledged, in order, once
        # the readings are in InfluxDB or in the spool. Messages whose readings were all
        # refused ride along too, so that acknowledgements keep the order of arrival.
        acks = [m for m in messages if m.qos]
        self.sink.submit("".join(lines).encode(), len(lines), acks or None)
        if self.sink.full:
            self.on_full()

    def _line_prefix(self, sensor: Sensor) -> str:
        prefix = self._lines.get(sensor.id)
        if prefix is None:
            prefix = reading_prefix(
                sensor.id, sensor.kind, sensor.region, sensor.site or ""
            ).decode()
            self._lines[sensor.id] = prefix
        return prefix

    # -- dead letters -------------------------------------------------------------------------

    def _reject(self, msg: Message, rejection: Rejection, now_ns: int) -> None:
        metrics.READINGS_REJECTED.labels(rejection.reason).inc()
        if len(self._deadletters) == self._deadletters.maxlen:
            metrics.DEADLETTERS_DROPPED.inc()
        self._deadletters.append(
            orjson.dumps(
                {
                    "topic": msg.topic,
                    "payload": msg.payload[:1024].decode("utf-8", errors="backslashreplace"),
                    "error": rejection.error,
                    "reason": rejection.reason,
                    "ts": now_ns / 1e9,
                }
            )
        )
        metrics.DEADLETTER_QUEUE.set(len(self._deadletters))
        self._deadletters_idle.clear()
        self._deadletter_ready.set()

    async def publish_deadletters(self) -> None:
        """Publish dead letters at QoS 1, forever; a burst is sent concurrently."""
        while True:
            await self._deadletter_ready.wait()
            self._deadletter_ready.clear()
            while self._deadletters:
                burst = [
                    self._deadletters.popleft() for _ in range(min(256, len(self._deadletters)))
                ]
                outcomes = await asyncio.gather(
                    *(self.publisher.publish(self.deadletter_topic, body, qos=1) for body in burst),
                    return_exceptions=True,
                )
                refused = [o for o in outcomes if isinstance(o, Exception)]
                if refused:
                    # A broker that refuses a dead letter (an ACL, a quota) costs that letter
                    # only: it is counted and logged, and the loop goes on.
                    metrics.DEADLETTERS_DROPPED.inc(len(refused))
                    log.error("%d dead letters not published: %s", len(refused), refused[0])
                metrics.DEADLETTER_QUEUE.set(len(self._deadletters))
            self._deadletters_idle.set()

    async def close(self, grace: float = 5.0) -> None:
        """Stop taking messages and publish the dead letters still queued, for up to `grace` s.

        What was not acknowledged is delivered again by the broker next session.
        """
        self._closing = True
        try:
            async with asyncio.timeout(grace):
                await self._deadletters_idle.wait()
        except TimeoutError:
            log.warning("%d dead letters not published at shutdown", len(self._deadletters))
