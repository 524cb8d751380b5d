"""The detector backends this hub knows, by their config's `type`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.detection.backends.config import DetectorConfig, OnnxDetectorConfig

if TYPE_CHECKING:
    from hub.detection.backends.base import Detector


def _onnx(config: OnnxDetectorConfig) -> Detector:
    # Imported on use, so that reading a config needs neither numpy nor onnxruntime.
    from hub.detection.backends.onnx import OnnxDetector  # noqa: PLC0415

    return OnnxDetector(config)


BACKENDS: dict[str, Callable[[DetectorConfig], Detector]] = {"onnx": _onnx}


def load_detector(config: DetectorConfig) -> Detector:
    """The detector a config describes, its model loaded; raises DetectorError if it cannot."""
    return BACKENDS[config.type](config)
