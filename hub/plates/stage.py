"""The plate stage of a stream worker: tracked vehicles' crops to a plate reader, the reads
normalised and matched against the watch-list's digests, and one `plate` event per track on
a hit. Nothing of a plate that is not listed leaves the worker: no event, no log line.

Synchronous and free of I/O but the reader's own work; the watch runs it in its model's
executor, on frames that were just detected (so the boxes are this frame's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.plates.listed import Listed
from hub.plates.reader import PlateReader
from hub.plates.text import normalize
from hub.streams.scene import CameraEvent, Track

if TYPE_CHECKING:
    from hub.plates.config import PlatesConfig
    from hub.streams.motion import Image

MARGIN = 0.05  # of the box on each side: a box cut tight to the bumper cuts the plate too


@dataclass(slots=True)
class _Seen:
    reads: int = 0
    last: float = float("-inf")
    hit: bool = False
    seen: float = 0.0  # when the track was last in a frame


class PlateStage:
    """Reads the plates of one camera's tracked vehicles and reports the listed ones."""

    def __init__(
        self,
        camera: str,
        reader: PlateReader,
        listed: Listed,
        settings: PlatesConfig,
        *,
        name: Callable[[str], str] = lambda cls: cls,
        forget_after: float = 60.0,
    ) -> None:
        self.camera = camera
        self.reader = reader
        self.listed = listed
        self.settings = settings
        self.name = name  # a model class as events name it (streams.aliases)
        self.forget_after = forget_after
        self.pattern = re.compile(settings.pattern)
        self.reads = 0  # crops given to the reader, for health and tests
        self._tracks: dict[int, _Seen] = {}

    def events(self, tracks: Sequence[Track], image: Image, ts: float) -> list[CameraEvent]:
        """The `plate` events of this frame: at most one per track, ever."""
        out: list[CameraEvent] = []
        h, w = image.shape[:2]
        s = self.settings
        for track in tracks:
            cls = self.name(track.cls)
            if cls not in s.classes:
                continue
            seen = self._tracks.setdefault(track.id, _Seen())
            seen.seen = ts
            if seen.hit or seen.reads >= s.reads or ts - seen.last < s.every:
                continue
            crop = _crop(image, track.box, w, h)
            if crop.shape[1] < s.min_width:
                continue
            seen.reads += 1
            seen.last = ts
            self.reads += 1
            event = self._match(track, cls, crop, ts)
            if event is not None:
                seen.hit = True
                out.append(event)
        for track_id in [k for k, v in self._tracks.items() if ts - v.seen > self.forget_after]:
            del self._tracks[track_id]
        return out

    def _match(self, track: Track, cls: str, crop: Image, ts: float) -> CameraEvent | None:
        for read in sorted(self.reader.read(crop), key=lambda r: -r.score):
            if read.score < self.settings.min_score:
                continue
            plate = normalize(read.text)
            if self.pattern.fullmatch(plate) and self.listed.match(plate, ts):
                return CameraEvent(
                    self.camera, "plate", ts, cls=cls, score=read.score, track_id=track.id,
                    plate=plate,
                )  # fmt: skip
        return None


def _crop(image: Image, box: tuple[float, float, float, float], w: int, h: int) -> Image:
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
    left, top = max(0, round((x1 - mx) * w)), max(0, round((y1 - my) * h))
    right, bottom = min(w, round((x2 + mx) * w)), min(h, round((y2 + my) * h))
    return image[top:bottom, left:right].copy()
