"""A STAND-IN plate reader, for tests and demonstrations only: no plate model that reads
Hangul can be had offline from a package registry here (docs/plates.md), so this one reads
plates the way the tests draw them, and nothing else.

It finds the plate as the largest bright, plate-shaped rectangle of the vehicle's crop, cuts
out the band of dark ink on it, renders each digit and each syllable of Korean plates with the
font it is given (Debian's fonts-nanum, which the set-up installs) at the ink's height, slides
every glyph over the band (OpenCV's normalised cross-correlation) and decodes the best
non-overlapping glyphs from left to right. It reads what is drawn: it is told the font, never
the text. Real plates (worn, dirty, skewed, at night, in other fonts) need a real reader:
plug one in with `plates.reader` (hub.plates.reader).
"""

from __future__ import annotations

import bisect
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from hub.plates.reader import PlateRead, PlateReaderError

Image = npt.NDArray[np.uint8]
Grey = npt.NDArray[Any]  # what OpenCV's typing makes of a grey uint8 picture
FONT = Path("/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf")
DIGITS = "0123456789"
# The syllables of Korean registration plates: private cars, commercial vehicles, hire cars
# and delivery vans.
SYLLABLES = "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주바사아자하허호배"
_PAD = 3  # white pixels round each glyph's template: its edges are part of its shape
BAND = 48  # px: the plate's ink is scaled to this height before matching
# The digits' ink is about 0.82 of the tallest syllable's: the band's height (the tallest
# glyph on this plate) puts the templates' scale in this range, which is searched.
SCALES = (1.0, 1.05, 1.1, 1.15, 1.2, 1.25)


class StandinReader:
    """Template-matching stand-in for a plate reader (see the module's docstring)."""

    def __init__(self, font: str | Path = FONT, min_match: float = 0.6) -> None:
        self.font = Path(font)
        if not self.font.is_file():
            raise PlateReaderError(f"{self.font}: no such font (Debian's fonts-nanum has it)")
        self.min_match = min_match
        try:
            _glyphs(str(self.font))
        except (ImportError, OSError) as exc:
            raise PlateReaderError(f"{self.font}: cannot be loaded by Pillow: {exc}") from exc

    def read(self, crop_bgr: Image) -> list[PlateRead]:
        """The plate on the crop, if one is found and anything on it is read."""
        grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
        found = _plate(grey)
        if found is None:
            return []
        x, y, w, h = found
        band = _ink_band(grey[y : y + h, x : x + w])
        if band is None:
            return []
        _, chosen = max((self._decode(band, f) for f in SCALES), key=lambda d: d[0])
        if not chosen:
            return []
        text = "".join(glyph for _, glyph in chosen)
        score = min(score for score, _ in chosen)
        return [PlateRead(text, score, (float(x), float(y), float(x + w), float(y + h)))]

    def _decode(self, band: Grey, scale: float) -> tuple[float, tuple[tuple[float, str], ...]]:
        """The glyphs that explain the band best at this scale, left to right, with their
        weight: each glyph's match squared times its width, summed. The widths count so that
        a narrow glyph (a 1) that matches a stroke of a wide one does not win over it; the
        best set of glyphs that do not overlap is weighted interval scheduling."""
        found: list[tuple[int, int, float, str]] = []  # left, right, score, glyph
        for glyph, template in _templates(str(self.font), round(BAND * scale)).items():
            th, tw = template.shape
            if th > band.shape[0] or tw > band.shape[1]:
                continue
            response = cv2.matchTemplate(band, template, cv2.TM_CCOEFF_NORMED).max(axis=0)
            near = np.maximum.reduce([np.roll(response, k) for k in (-2, -1, 1, 2)])
            peaks = np.flatnonzero((response >= self.min_match) & (response >= near))
            ink = tw - 2 * _PAD
            found += [
                (int(p) + _PAD, int(p) + _PAD + ink, float(response[p]), glyph) for p in peaks
            ]
        found.sort(key=lambda c: c[1])
        rights = [c[1] for c in found]
        best: list[tuple[float, tuple[tuple[float, str], ...]]] = [(0.0, ())]
        for i, (left, right, score, glyph) in enumerate(found):
            before = bisect.bisect_right(rights, left + 1, 0, i)  # glyphs may touch
            weight = best[before][0] + score * score * (right - left)
            if weight > best[i][0]:
                best.append((weight, (*best[before][1], (score, glyph))))
            else:
                best.append(best[i])
        return best[-1]


def _plate(grey: Grey) -> tuple[int, int, int, int] | None:
    """The largest bright rectangle of a plate's shape (2 to 6.5 times as wide as high)."""
    _, bright = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Thin bright seams (a lit kerb behind, compression's ringing) must not join the plate
    # to its surroundings.
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    best: tuple[int, int, int, int] | None = None
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if h < 10 or not 2.0 <= w / h <= 6.5:
            continue
        if cv2.contourArea(contour) < 0.8 * w * h:  # a rectangle fills its bounding box
            continue
        if best is None or w * h > best[2] * best[3]:
            best = (x, y, w, h)
    return best


def _ink_band(plate: Grey) -> Grey | None:
    """The plate's characters (grey, the border cut off), cut to the ink, BAND px high."""
    h, w = plate.shape
    inner = plate[round(h * 0.1) : h - round(h * 0.1), round(w * 0.03) : w - round(w * 0.03)]
    _, ink = cv2.threshold(inner, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    # Two pixels of ink make a row: a syllable's top stroke is all that rises above digits.
    rows = np.flatnonzero((ink > 0).sum(axis=1) >= 2)
    cols = np.flatnonzero((ink > 0).sum(axis=0) >= 2)
    if len(rows) < 6 or len(cols) < 6:
        return None
    cut = inner[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    k = BAND / cut.shape[0]
    cut = cv2.resize(cut, (round(cut.shape[1] * k), BAND), interpolation=cv2.INTER_CUBIC)
    cut = cv2.normalize(cut, np.empty_like(cut), 0, 255, cv2.NORM_MINMAX)
    cut = cv2.copyMakeBorder(cut, _PAD, _PAD, _PAD, _PAD, cv2.BORDER_CONSTANT, value=255)
    blurred: Grey = cv2.GaussianBlur(cut, (0, 0), 1.0)
    return blurred


@lru_cache(maxsize=4)
def _glyphs(font: str) -> dict[str, Grey]:
    """Each glyph's ink, black on white, drawn 200 px high."""
    from PIL import Image as Pil  # noqa: PLC0415
    from PIL import ImageDraw, ImageFont  # noqa: PLC0415

    face = ImageFont.truetype(font, 200)
    out: dict[str, Grey] = {}
    for glyph in DIGITS + SYLLABLES:
        canvas = Pil.new("L", (300, 300), 255)
        ImageDraw.Draw(canvas).text((10, 10), glyph, font=face, fill=0)
        pixels = np.asarray(canvas, dtype=np.uint8)
        ys, xs = np.nonzero(pixels < 128)
        if len(xs):
            out[glyph] = pixels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return out


@lru_cache(maxsize=16)
def _templates(font: str, tallest: int) -> dict[str, Grey]:
    """The glyphs scaled so that the tallest is `tallest` px high, padded and blurred as
    the band is."""
    glyphs = _glyphs(font)
    k = tallest / max(g.shape[0] for g in glyphs.values())
    out: dict[str, Grey] = {}
    for glyph, ink in glyphs.items():
        size = (max(1, round(ink.shape[1] * k)), max(1, round(ink.shape[0] * k)))
        small = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
        small = cv2.copyMakeBorder(small, _PAD, _PAD, _PAD, _PAD, cv2.BORDER_CONSTANT, value=255)
        out[glyph] = cv2.GaussianBlur(small, (0, 0), 1.0)
    return out
