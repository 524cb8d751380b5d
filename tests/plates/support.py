"""Pictures for the plate tests: a plate drawn with the stand-in's font, a car-like box that
carries it, and a clip of that car driving across the top of bus.jpg, made by ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from hub.plates.standin import FONT

Image = npt.NDArray[np.uint8]
IMAGES = Path(__file__).resolve().parents[2] / "var" / "models" / "images"
W, H = 640, 360
CAR = (220, 110)  # the car's width and height in the clip's frames, px
BODY = (150, 20, 150)  # BGR: a purple car, a colour bus.jpg's street has not


def plate(text: str, height: int = 30) -> Image:
    """A white plate with a black border and `text` in the stand-in's font, `height` px high
    and 4.7 times as wide (520 x 110 mm)."""
    from PIL import Image as Pil  # noqa: PLC0415
    from PIL import ImageDraw, ImageFont  # noqa: PLC0415

    width = round(height * 4.7)
    canvas = Pil.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(0, 0, 0), width=max(2, height // 12))
    size = round(height * 0.75)
    face = ImageFont.truetype(str(FONT), size)
    x1, y1, x2, y2 = draw.textbbox((0, 0), text, font=face)
    draw.text(((width - (x2 - x1)) / 2 - x1, (height - (y2 - y1)) / 2 - y1), text, fill=(0, 0, 0),
              font=face)  # fmt: skip
    return cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)


def _shape(out: Image, colour: tuple[int, int, int]) -> None:
    h, w = out.shape[:2]
    cv2.rectangle(out, (0, h // 3), (w - 1, h - h // 6), colour, cv2.FILLED)
    cv2.rectangle(out, (w // 6, 0), (w - w // 6, h // 3), colour, cv2.FILLED)
    for x in (w // 5, w - w // 5):
        cv2.circle(out, (x, h - h // 6), h // 7, colour, cv2.FILLED)


def car_mask(size: tuple[int, int] = CAR) -> Image:
    """Where the car is opaque (255) in its picture, as one grey channel."""
    out = np.zeros((size[1], size[0], 3), np.uint8)
    _shape(out, (255, 255, 255))
    return out[:, :, 0].copy()


def car(text: str, size: tuple[int, int] = CAR) -> Image:
    """A car-like box: a purple body with windows and wheels, the plate in the middle."""
    w, h = size
    out = np.full((h, w, 3), 255, np.uint8)
    _shape(out, BODY)
    cv2.rectangle(out, (w // 6 + 8, 8), (w - w // 6 - 8, h // 3), (90, 80, 70), cv2.FILLED)
    for x in (w // 5, w - w // 5):
        cv2.circle(out, (x, h - h // 6), h // 7, (30, 30, 30), cv2.FILLED)
    p = plate(text, height=round(h * 0.25))
    ph, pw = p.shape[:2]
    top, left = h // 3 + (h - h // 6 - h // 3 - ph) // 2, (w - pw) // 2
    out[top : top + ph, left : left + pw] = p
    return out


def car_clip(folder: Path, text: str, seconds: float = 8.0) -> Path:
    """An H.264 MP4 (10 fps) of the car driving slowly across the top of bus.jpg and back,
    every `seconds` (looped, it never jumps), its plate `text`."""
    clip = folder / f"car-{text}.mp4"
    if clip.exists():
        return clip
    art = folder / f"car-{text}.png"
    cv2.imwrite(str(art), car(text))
    mask = folder / "car-mask.png"
    cv2.imwrite(str(mask), car_mask())
    middle, reach = W / 2 - CAR[0] / 2, (W - CAR[0] - 80) / 2
    x = f"{middle:g}-{reach:g}*cos(2*PI*t/{seconds:g})"
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", "2",
        "-loop", "1", "-framerate", "10", "-i", str(IMAGES / "bus.jpg"),
        "-loop", "1", "-framerate", "10", "-i", str(art),
        "-loop", "1", "-framerate", "10", "-i", str(mask),
        "-filter_complex",
        f"[0]crop=676:380:120:0,scale={W}:{H}[bg];[1][2]alphamerge[car];"
        f"[bg][car]overlay=x='{x}':y={H - CAR[1] - 20},format=yuv420p",
        "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "veryfast", "-g", "10", str(clip),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return clip
