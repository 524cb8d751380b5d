"""Detector configs, one class per backend, told apart by `type`; importable without numpy."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hub.config.types import ConfigPath, Section

# An 8192 x 8192 input is twice the side of a 4K frame and a tensor of 800 MB; models are
# trained at 640 to 1280.
MAX_INPUT_SIZE = 8192
# YOLO models keep 300 by default; ten thousand boxes in one frame is noise, not a scene.
MAX_DETECTIONS = 10_000
# Threads of one worker; no machine the hub runs on has more cores.
MAX_THREADS = 1024


class OnnxDetectorConfig(Section):
    """A YOLOv8/YOLO11-format ONNX model (output [1, 4 + classes, anchors]) on onnxruntime."""

    type: Literal["onnx"]
    model: ConfigPath
    # Class names by index; when empty they come from the model's `names` metadata.
    names: tuple[str, ...] = ()
    # Used only when the model's input size is dynamic; a fixed size in the model wins.
    input_size: int = Field(default=640, gt=0, le=MAX_INPUT_SIZE, multiple_of=32)
    score_threshold: float = Field(default=0.25, gt=0.0, le=1.0)
    iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0)
    max_detections: int = Field(default=300, gt=0, le=MAX_DETECTIONS)
    # 0 lets onnxruntime choose; a worker sharing the machine with the hub sets fewer.
    threads: int = Field(default=0, ge=0, le=MAX_THREADS)


class UltralyticsDetectorConfig(Section):
    """A model ultralytics loads: `.pt` weights or an export (`.onnx`, `.torchscript`,
    `_openvino_model/`, ...), on torch. Needs the `detect-torch` extra."""

    type: Literal["ultralytics"]
    # A file; or an official name such as `yolo11n.pt`, which ultralytics downloads itself
    # where the internet is reachable (and fails, with the reason, where it is not).
    model: ConfigPath
    names: tuple[str, ...] = ()  # overrides the model's own class names
    input_size: int = Field(default=640, gt=0, le=MAX_INPUT_SIZE, multiple_of=32)
    score_threshold: float = Field(default=0.25, gt=0.0, le=1.0)
    iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0)
    max_detections: int = Field(default=300, gt=0, le=MAX_DETECTIONS)
    device: str = "cpu"  # "cuda:0" where torch sees a GPU
    half: bool = False  # fp16 inference (GPU only)
    # torch's CPU threads; 0 leaves torch's default
    threads: int = Field(default=0, ge=0, le=MAX_THREADS)


DetectorConfig = Annotated[
    OnnxDetectorConfig | UltralyticsDetectorConfig, Field(discriminator="type")
]
