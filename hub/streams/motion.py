"""Motion gating: is anything moving in this frame? Background subtraction on a small grey
copy, as Frigate does, so that the detector runs only when something moves."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]


class MotionDetector:
    """A running-average background of one camera; `changed` compares a frame with it."""

    def __init__(
        self,
        *,
        height: int = 90,
        threshold: int = 25,
        min_area: float = 0.002,
        alpha: float = 0.05,
        lightning: float = 0.8,
    ) -> None:
        self.height = height
        self.threshold = threshold
        self.min_area = min_area
        self.alpha = alpha
        self.lightning = lightning
        self.background: npt.NDArray[np.float32] | None = None
        self._kernel = np.ones((3, 3), np.uint8)

    def small(self, image: Image) -> Image:
        """The frame (grey, or BGR) as the detector compares it: grey, `height` rows, lightly
        blurred."""
        h, w = image.shape[:2]
        width = max(1, round(w * self.height / h))
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(grey, (width, self.height), interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.GaussianBlur(small, (3, 3), 0), np.uint8)

    def changed(self, image: Image) -> float:
        """The fraction of the frame (grey, or BGR) that moved (0 when below `min_area` or on
        a first frame)."""
        small = self.small(image)
        if self.background is None or self.background.shape != small.shape:
            self.background = small.astype(np.float32)
            return 0.0
        diff = cv2.absdiff(small, cv2.convertScaleAbs(self.background))
        _, mask = cv2.threshold(diff, self.threshold, 255, cv2.THRESH_BINARY)
        mask = cv2.dilate(mask, self._kernel, iterations=1)
        fraction = float(np.count_nonzero(mask)) / mask.size
        if fraction >= self.lightning:
            # The whole picture changed at once: light, not motion. Start a new background.
            self.background = small.astype(np.float32)
            return 0.0
        cv2.accumulateWeighted(small, self.background, self.alpha)
        return fraction if fraction >= self.min_area else 0.0
