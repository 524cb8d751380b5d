"""A stream worker's Prometheus metrics, read from its cameras' state when scraped
(`hub streams --metrics HOST:PORT` serves them at /metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hub.streams.worker import StreamWorker


class WorkerCollector(Collector):
    """Per camera: up, reconnects, frames analysed and detected; per worker: events."""

    def __init__(self, worker: Callable[[], StreamWorker]) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        worker = self.worker()
        up = GaugeMetricFamily(
            "hub_stream_up", "1 while frames come from the camera's stream", labels=["camera"]
        )
        reconnects = CounterMetricFamily(
            "hub_stream_reconnects",
            "Times the camera's stream was started again",
            labels=["camera"],
        )
        analysed = CounterMetricFamily(
            "hub_stream_frames_analysed", "Frames looked at (motion gate)", labels=["camera"]
        )
        detected = CounterMetricFamily(
            "hub_stream_frames_detected", "Frames the detector ran on", labels=["camera"]
        )
        for camera_id, (watch, _) in sorted(worker.watches.items()):
            state = watch.stream.state
            up.add_metric([camera_id], 1.0 if state.up else 0.0)
            reconnects.add_metric([camera_id], state.reconnects)
            analysed.add_metric([camera_id], watch.stats.analysed)
            detected.add_metric([camera_id], watch.stats.detected)
        yield from (up, reconnects, analysed, detected)
        yield GaugeMetricFamily(
            "hub_stream_cameras", "Cameras this worker watches", value=len(worker.watches)
        )
        yield GaugeMetricFamily(
            "hub_stream_workers",
            "Live stream workers this worker sees",
            value=len(worker.roster.live),
        )
        yield CounterMetricFamily(
            "hub_stream_events_published", "Camera events published", value=worker.published
        )
        yield CounterMetricFamily(
            "hub_stream_events_dropped",
            "Camera events dropped: the queue to the broker was full",
            value=worker.dropped,
        )


def registry_for(worker: StreamWorker) -> CollectorRegistry:
    """A registry of the worker's metrics alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(lambda: worker))
    return registry


def exposition(registry: CollectorRegistry) -> str:
    """The metrics in Prometheus' text format."""
    return generate_latest(registry).decode()
