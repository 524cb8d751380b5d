"""Frames in and boxes out, shared by the backends: the letterbox ultralytics trains with."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]
# Ultralytics pads with this grey; the models were trained on such borders.
PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was fitted into the model's input: scale, then padding left and top."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox(image: Image, height: int, width: int) -> tuple[Floats, Letterbox]:
    """The frame scaled to fit (height, width), padded, as a [1, 3, H, W] RGB float blob."""
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    new_w, new_h = round(w * scale), round(h * scale)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (width - new_w) / 2, (height - new_h) / 2
    # Splitting an odd pad this way matches ultralytics, so boxes agree with theirs.
    top, left = round(dh - 0.1), round(dw - 0.1)
    bottom, right = height - new_h - top, width - new_w - left
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    blob = padded[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(blob), Letterbox(scale, float(left), float(top))


def to_frame(boxes: Floats, fit: Letterbox, image_size: tuple[int, int]) -> Floats:
    """Boxes (xyxy) in the model's input, moved back into the frame's pixels and clipped."""
    boxes = boxes - np.array([fit.pad_x, fit.pad_y, fit.pad_x, fit.pad_y], dtype=np.float32)
    boxes /= fit.scale
    height, width = image_size
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes
