"""Tracking objects from frame to frame with ByteTrack (ultralytics' implementation), so that one
person walking through a camera's view is one track, and one event, not one per frame.

ByteTrack matches boxes by overlap and a Kalman filter of their motion; it needs no
appearance model, which suits a few frames a second on a CPU. Ultralytics keeps it up to
date; it solves the assignment with the `lap` package (both in the `detect-torch` extra).
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.detection.backends.base import Detection, DetectorError
from hub.streams.scene import Track

Floats = npt.NDArray[np.float32]


class _Boxes:
    """What BYTETracker reads of a detector's results: conf, cls and xywh, boolean-indexable."""

    def __init__(self, conf: Floats, cls: Floats, xywh: Floats) -> None:
        self.conf, self.cls, self.xywh = conf, cls, xywh

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, mask: Any) -> _Boxes:
        return _Boxes(self.conf[mask], self.cls[mask], self.xywh[mask])


class Tracker:
    """One camera's tracks; `update` takes a frame's detections (pixels) and gives its tracks."""

    def __init__(
        self,
        *,
        fps: float,
        lost_after: float = 3.0,
        high_score: float = 0.5,
        low_score: float = 0.1,
        new_track_score: float = 0.5,
        match_iou: float = 0.8,
        buffer: float = 1.0,
    ) -> None:
        try:
            from ultralytics.trackers.byte_tracker import BYTETracker  # noqa: PLC0415
        except ImportError as exc:  # ultralytics itself, or the lap package it needs
            raise DetectorError(
                f"tracking needs ultralytics and lap (the detect-torch extra): {exc}"
            ) from exc
        # ByteTrack counts lost time in frames; it is configured here in seconds.
        frames_lost = max(1, round(lost_after * fps))
        args = Namespace(
            track_high_thresh=high_score,
            track_low_thresh=low_score,
            new_track_thresh=new_track_score,
            track_buffer=frames_lost,
            match_thresh=match_iou,
            fuse_score=True,
        )
        # Boxes are matched enlarged by `buffer` of their size on each side (the buffered IoU
        # of C-BIoU): at a few frames a second a walking person moves about their own
        # width between frames, and plain boxes lose them where they turn.
        self.scale = 1.0 + 2.0 * buffer
        self._tracker = BYTETracker(args)  # type: ignore[no-untyped-call]
        self._classes: list[str] = []

    def _index(self, cls: str) -> int:
        if cls not in self._classes:
            self._classes.append(cls)
        return self._classes.index(cls)

    def update(self, detections: Sequence[Detection], width: int, height: int) -> list[Track]:
        """The tracks alive in this frame, boxes normalised to the image."""
        n = len(detections)
        boxes = np.array([d.box for d in detections], np.float32).reshape(n, 4)
        xywh = np.empty_like(boxes)
        xywh[:, 0] = (boxes[:, 0] + boxes[:, 2]) / 2
        xywh[:, 1] = (boxes[:, 1] + boxes[:, 3]) / 2
        xywh[:, 2] = (boxes[:, 2] - boxes[:, 0]) * self.scale
        xywh[:, 3] = (boxes[:, 3] - boxes[:, 1]) * self.scale
        conf = np.array([d.score for d in detections], np.float32)
        cls = np.array([self._index(d.cls) for d in detections], np.float32)
        rows = self._tracker.update(_Boxes(conf, cls, xywh))
        tracks = []
        for bx1, by1, bx2, by2, track_id, score, c, _ in rows.tolist():
            # Back to the object's own size, about the same centre.
            cx, cy = (bx1 + bx2) / 2, (by1 + by2) / 2
            half_w, half_h = (bx2 - bx1) / 2 / self.scale, (by2 - by1) / 2 / self.scale
            box = (
                min(max((cx - half_w) / width, 0.0), 1.0),
                min(max((cy - half_h) / height, 0.0), 1.0),
                min(max((cx + half_w) / width, 0.0), 1.0),
                min(max((cy + half_h) / height, 0.0), 1.0),
            )
            tracks.append(Track(int(track_id), self._classes[int(c)], float(score), box))
        return tracks
