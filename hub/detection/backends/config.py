"""Detector configs, one class per backend, told apart by `type`; importable without numpy."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hub.config.types import ConfigPath, Section


class OnnxDetectorConfig(Section):
    """A YOLOv8/YOLO11-format ONNX model (output [1, 4 + classes, anchors]) on onnxruntime."""

    type: Literal["onnx"]
    model: ConfigPath
    # Class names by index; when empty they come from the model's `names` metadata.
    names: tuple[str, ...] = ()
    # Used only when the model's input size is dynamic; a fixed size in the model wins.
    input_size: int = Field(default=640, gt=0, multiple_of=32)
    score_threshold: float = Field(default=0.25, gt=0.0, le=1.0)
    iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0)
    max_detections: int = Field(default=300, gt=0)
    # 0 lets onnxruntime choose; a worker sharing the machine with the hub sets fewer.
    threads: int = Field(default=0, ge=0)


# Further backends (an ultralytics one, say) join as more members of this union.
DetectorConfig = Annotated[OnnxDetectorConfig, Field(discriminator="type")]
