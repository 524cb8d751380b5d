"""The plug-in point for plate readers (docs/plates.md, "Plugging in a reader").

A reader is any object with `read(crop) -> list[PlateRead]`, made by a factory that
`plates.reader` names as `module:factory` and called with `plates.options` as keyword
arguments once per worker at start. The crop is one tracked vehicle (BGR, uint8, H x W x 3,
a copy the reader may keep); the reads are what the reader found on it, as it spelled them
(the worker normalises them), each with a score from 0 to 1 and a box in the crop's pixels.
`read` runs in a worker thread, one call at a time, and must not block on I/O. A factory that
fails, or returns something without `read`, stops the worker from starting.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Box = tuple[float, float, float, float]


class PlateReaderError(Exception):
    """A reader that cannot be loaded, in a sentence."""


@dataclass(frozen=True, slots=True)
class PlateRead:
    """One plate read on a crop: its text as read, score in [0, 1], box (x1, y1, x2, y2) px."""

    text: str
    score: float
    box: Box


@runtime_checkable
class PlateReader(Protocol):
    """Reads the plates on a vehicle's crop; CPU-bound, run off the event loop."""

    def read(self, crop_bgr: npt.NDArray[np.uint8]) -> list[PlateRead]:
        """The plates on this crop (usually none or one)."""
        ...


def load_reader(path: str, options: Mapping[str, Any]) -> PlateReader:
    """The reader that `path` (`module:factory`) makes with `options`; PlateReaderError."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PlateReaderError(f"plates.reader: cannot import {module_name}: {exc}") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise PlateReaderError(f"plates.reader: {module_name} has no callable {attribute!r}")
    try:
        reader = factory(**options)
    except Exception as exc:
        raise PlateReaderError(f"plates.reader: {path}(**options) failed: {exc}") from exc
    if not isinstance(reader, PlateReader):
        raise PlateReaderError(
            f"plates.reader: {path} made a {type(reader).__name__}, which has no read(crop)"
        )
    return reader
