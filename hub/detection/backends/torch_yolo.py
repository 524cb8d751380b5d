"""Models ultralytics loads (`.pt` weights and its exports), run on torch.

Only ultralytics' model loader (`AutoBackend`) and its non-maximum suppression are used; the
frame goes through the same letterbox as the ONNX backend, so that both backends see the same
input and their boxes can be compared. Skipping ultralytics' predictor also skips its warm-up,
which imports torchvision: a CPU-only torch whose torchvision build does not match it still
runs here, with ultralytics' own NMS in torch.
"""

from __future__ import annotations

import os
from typing import Any

from hub.detection.backends.base import Detection, DetectorError
from hub.detection.backends.config import UltralyticsDetectorConfig
from hub.detection.backends.frames import Image, letterbox, to_frame

# Before ultralytics is imported: its progress lines stay out of the hub's log.
os.environ.setdefault("YOLO_VERBOSE", "False")


class UltralyticsDetector:
    """One model loaded once; `detect` runs it on one frame (blocking, CPU- or GPU-bound)."""

    def __init__(self, config: UltralyticsDetectorConfig) -> None:
        self.config = config
        try:
            import torch  # noqa: PLC0415 - the extra is optional
            from ultralytics.nn.autobackend import AutoBackend  # noqa: PLC0415
            from ultralytics.utils.nms import non_max_suppression  # noqa: PLC0415
        except ImportError as exc:
            raise DetectorError(
                f"detector type 'ultralytics' needs torch and ultralytics, which are not "
                f"installed ({exc}); install the hub's `detect-torch` extra, or use type 'onnx'"
            ) from exc
        self._torch = torch
        self._nms = non_max_suppression
        path = config.model
        # A bare official name (yolo11n.pt) is ultralytics' to download where it can.
        source = str(path) if path.exists() else path.name
        if config.threads:
            torch.set_num_threads(config.threads)
        try:
            self.device = torch.device(config.device)
            self.model: Any = AutoBackend(
                source, device=self.device, fp16=config.half, fuse=True, verbose=False
            )
        except Exception as exc:  # ultralytics and torch raise many kinds for a bad model
            raise DetectorError(
                f"detector model {path}: ultralytics cannot load it: {exc}"
            ) from exc
        self.model.eval()
        names = self.model.names
        found = tuple(str(names[i]) for i in sorted(names))
        self.names = config.names or found
        if len(self.names) != len(found):
            raise DetectorError(
                f"detector model {path}: it has {len(found)} classes but the config's names "
                f"lists {len(self.names)}"
            )
        size = getattr(self.model, "imgsz", None)  # an export's fixed input size, if any
        self.size = (
            (int(size[0]), int(size[1]))
            if isinstance(size, list | tuple) and len(size) == 2
            else (config.input_size, config.input_size)
        )
        self.end2end = bool(getattr(self.model, "end2end", False))

    def detect(self, image_bgr: Image) -> list[Detection]:
        """The objects found in one BGR frame, best first."""
        torch = self._torch
        blob, fit = letterbox(image_bgr, *self.size)
        with torch.inference_mode():
            tensor = torch.from_numpy(blob).to(self.device)
            if self.config.half:
                tensor = tensor.half()
            predictions = self.model(tensor)
            (found,) = self._nms(
                predictions,
                self.config.score_threshold,
                self.config.iou_threshold,
                max_det=self.config.max_detections,
                end2end=self.end2end,
            )
        found = found.float().cpu().numpy()
        boxes = to_frame(found[:, :4], fit, (image_bgr.shape[0], image_bgr.shape[1]))
        return [
            Detection(
                self.names[int(c)], float(s), (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            )
            for b, s, c in zip(boxes, found[:, 4], found[:, 5], strict=True)
        ]
