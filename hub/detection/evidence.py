"""Evidence snapshots: the frame with faces blurred, then boxes and labels drawn, as JPEG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from hub.detection.backends.base import Detection
from hub.detection.privacy import FaceBlurrer

Image = npt.NDArray[np.uint8]
BOX_COLOUR = (0, 0, 255)
TEXT_COLOUR = (255, 255, 255)


class EvidenceError(Exception):
    """A snapshot cannot be written as asked."""


def annotate(image_bgr: Image, detections: Sequence[Detection]) -> Image:
    """A copy of the frame with each detection's box and `class score` label drawn."""
    out = image_bgr.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for d in detections:
        x1, y1, x2, y2 = (round(v) for v in d.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
        label = f"{d.cls} {d.score:.2f}"
        scale = thickness / 3
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        # Labels sit above the box, or inside it when the box touches the top edge.
        top = y1 - th - base if y1 - th - base >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), BOX_COLOUR, cv2.FILLED)
        cv2.putText(
            out, label, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR, thickness
        )
    return out


class EvidenceWriter:
    """Writes annotated JPEGs; faces are blurred first unless the camera opted out."""

    def __init__(
        self, blurrer: FaceBlurrer | None, *, blur_faces: bool = True, quality: int = 85
    ) -> None:
        if blur_faces and blurrer is None:
            raise EvidenceError(
                "evidence needs a face blurrer; pass blur_faces=False only for a camera "
                "whose privacy setting opts out"
            )
        self.blurrer = blurrer
        self.blur_faces = blur_faces
        self.quality = quality

    def render(self, image_bgr: Image, detections: Sequence[Detection]) -> Image:
        """The frame as it will be stored: faces blurred, then detections drawn."""
        frame = image_bgr
        if self.blur_faces:
            assert self.blurrer is not None  # the constructor refuses otherwise
            frame, _ = self.blurrer.anonymize(image_bgr)
        return annotate(frame, detections)

    def write(self, path: Path, image_bgr: Image, detections: Sequence[Detection]) -> Path:
        """Writes the rendered frame as a JPEG at `path`, whole or not at all."""
        ok, data = cv2.imencode(
            ".jpg", self.render(image_bgr, detections), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        )
        if not ok:
            raise EvidenceError(f"{path}: OpenCV could not encode the frame as JPEG")
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_bytes(data.tobytes())
        # A reader (the dashboard, a notifier) never sees a half-written snapshot.
        os.replace(part, path)
        return path
