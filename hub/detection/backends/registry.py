"""The detector backends this hub knows, by their config's `type`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.detection.backends.config import (
    DetectorConfig,
    OnnxDetectorConfig,
    UltralyticsDetectorConfig,
)

if TYPE_CHECKING:
    from hub.detection.backends.base import Detector


def _onnx(config: OnnxDetectorConfig) -> Detector:
    # Imported on use, so that reading a config needs neither numpy nor onnxruntime.
    from hub.detection.backends.onnx import OnnxDetector  # noqa: PLC0415

    return OnnxDetector(config)


def _ultralytics(config: UltralyticsDetectorConfig) -> Detector:
    from hub.detection.backends.torch_yolo import UltralyticsDetector  # noqa: PLC0415

    return UltralyticsDetector(config)


def load_detector(config: DetectorConfig) -> Detector:
    """The detector a config describes, its model loaded; raises DetectorError if it cannot."""
    if isinstance(config, UltralyticsDetectorConfig):
        return _ultralytics(config)
    return _onnx(config)
