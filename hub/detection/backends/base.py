"""What every detector returns and the filters that cameras and rules put on its results."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Protocol

from pydantic import Field

from hub.config.types import Section

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Box = tuple[float, float, float, float]
Point = tuple[float, float]
# A zone is a polygon in the pixel coordinates of the camera's frames.
Polygon = Annotated[tuple[Point, ...], Field(min_length=3)]


class DetectorError(Exception):
    """A detector cannot load its model or cannot run it."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One object found in a frame: class name, score in [0, 1], box (x1, y1, x2, y2) in px."""

    cls: str
    score: float
    box: Box

    @property
    def centre(self) -> Point:
        """The middle of the box."""
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2, (y1 + y2) / 2)

    def to_json(self) -> dict[str, object]:
        """The detection as the contract's `{"class", "score", "box"}` object."""
        return {
            "class": self.cls,
            "score": round(self.score, 4),
            "box": [round(v, 1) for v in self.box],
        }


class Detector(Protocol):
    """A loaded model; `detect` is CPU-bound and must run off the event loop."""

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        """The objects found in one BGR frame."""
        ...


class DetectionFilter(Section):
    """Which detections a camera or rule cares about; empty means everything."""

    classes: tuple[str, ...] = ()
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    zones: tuple[Polygon, ...] = ()

    def keep(self, detection: Detection) -> bool:
        """Whether the detection passes: known class, high enough score, centre in a zone."""
        if self.classes and detection.cls not in self.classes:
            return False
        if detection.score < self.min_score:
            return False
        if not self.zones:
            return True
        return any(inside(detection.centre, zone) for zone in self.zones)

    def apply(self, detections: Iterable[Detection]) -> list[Detection]:
        """The detections that pass, in their order."""
        return [d for d in detections if self.keep(d)]


def inside(point: Point, polygon: Sequence[Point]) -> bool:
    """Whether the point lies inside the polygon (even-odd rule; edges count as inside)."""
    x, y = point
    result = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if _on_segment(point, polygon[i], polygon[(i + 1) % n]):
            return True
        if (y1 > y) != (y2 > y):
            cross_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < cross_x:
                result = not result
    return result


def _on_segment(point: Point, a: Point, b: Point) -> bool:
    (x, y), (x1, y1), (x2, y2) = point, a, b
    cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    if abs(cross) > 1e-9:
        return False
    return min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2)
