"""Test media for stream workers, made here by ffmpeg from the packaged images, and a stream
server: ffmpeg itself serving a clip as MPEG-TS over HTTP, round and round, as a camera does.

`walking_clip` is a person cut out of zidane.jpg walking to the right half of a still street
(the top of bus.jpg) and back, every `period` seconds: in a zone over the right half, they
enter near a quarter of the period, leave near three quarters, and enter again next loop.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from hub.cameras.media import digest
from hub.services import free_port
from tests.helpers import point, square

IMAGES = Path(__file__).resolve().parents[2] / "var" / "models" / "images"
W, H = 640, 360
# The person (134 px wide) walks between these lefts, feet at y = 330 (0.92 of the height),
# in front of the top of bus.jpg, where no one is.
LEFT, RIGHT = 20, 480
RIGHT_HALF = [[0.55, 0.0], [1.0, 0.0], [1.0, 1.0], [0.55, 1.0]]


def _ffmpeg(*args: str) -> None:
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", "2", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def walking_clip(folder: Path, period: float = 12.0) -> Path:
    """An MP4 of one period of the walk, 10 frames a second (made once per folder)."""
    clip = folder / f"walk-{period:g}.mp4"
    if clip.exists():
        return clip
    for image in ("zidane.jpg", "bus.jpg"):
        if not (IMAGES / image).is_file():
            raise RuntimeError(f"{IMAGES / image} missing: run scripts/fetch-models")
    # Slowing to turn, as people do (and as a tracker's motion model expects).
    middle, reach = (LEFT + RIGHT) / 2, (RIGHT - LEFT) / 2
    x = f"{middle:g}-{reach:g}*cos(2*PI*t/{period:g})"
    _ffmpeg(
        "-loop", "1", "-framerate", "10", "-i", str(IMAGES / "bus.jpg"),
        "-loop", "1", "-framerate", "10", "-i", str(IMAGES / "zidane.jpg"),
        "-filter_complex",
        f"[0]crop=676:380:120:0,scale={W}:{H}[bg];[1]crop=480:720:700:0,scale=-2:200[p];"
        f"[bg][p]overlay=x='{x}':y=130,format=yuv420p",
        "-t", f"{period:g}", "-c:v", "libx264", "-preset", "veryfast", "-g", "10",
        str(clip),
    )  # fmt: skip
    return clip


def still_clip(folder: Path) -> Path:
    """Two seconds of a still street: a camera where nothing moves."""
    clip = folder / "still.mp4"
    if not clip.exists():
        _ffmpeg(
            "-loop", "1", "-framerate", "5", "-i", str(IMAGES / "bus.jpg"),
            "-vf", f"crop=676:380:120:0,scale={W}:{H},format=yuv420p",
            "-t", "2", "-c:v", "libx264", "-preset", "veryfast", "-g", "5", str(clip),
        )  # fmt: skip
    return clip


class HttpStream:
    """ffmpeg serving `clip` looped at its own rate on http://127.0.0.1:PORT/cam.ts. ffmpeg
    serves one client and exits, so a thread starts it again for the next, as a camera
    takes a new client; `kill` stops both, mid-stream, as a camera that dies."""

    def __init__(self, clip: Path, log: Path) -> None:
        self.clip = clip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/cam.ts"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Not probed: a probe would be the client ffmpeg serves. Clients retry anyway.
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self.log.open("ab") as log:
            while not self._stop.is_set():
                self.proc = subprocess.Popen(
                    ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                     "-stream_loop", "-1", "-i", str(self.clip), "-c", "copy",
                     "-f", "mpegts", "-listen", "1", self.url],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )  # fmt: skip
                self.proc.wait()

    def kill(self) -> None:
        """The camera dies: the server goes, mid-stream, and stays gone until `start`."""
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        if self._thread is not None:
            self._thread.join(10)
        self.proc = None


# What the camera server sends as is: constrained baseline, no B-frames, access unit
# delimiters, a keyframe every second at 10 frames/s (as hub/cameras/media.py encodes).
_X264 = "keyint=10:min-keyint=10:scenecut=0:bframes=0:aud=1:repeat-headers=1"


def rtsp_media(folder: Path, clips: dict[str, Path]) -> Path:
    """A media folder for the project's camera server (hub.cameras.LocalCameras) that serves
    these clips, looped, at rtsp://HOST:PORT/<name>."""
    media = folder / "media"
    if (media / "clips.json").exists():
        return media
    media.mkdir(parents=True)
    specs: dict[str, object] = {}
    for name, clip in clips.items():
        frames = media / f"{name}.frames"
        frames.mkdir()
        _ffmpeg(
            "-i", str(clip), "-vf", "fps=10,format=yuv420p", "-c:v", "libx264",
            "-preset", "veryfast", "-profile:v", "baseline", "-x264-params", _X264,
            "-f", "h264", str(media / f"{name}.h264"),
        )  # fmt: skip
        _ffmpeg("-i", str(media / f"{name}.h264"), "-q:v", "5", str(frames / "%03d.jpg"))
        specs[name] = {"h264": f"{name}.h264", "jpeg": frames.name, "fps": 10,
                       "frames": len(list(frames.glob("*.jpg"))), "shows": name}  # fmt: skip
    # The digest of the current recipes, so that the server takes the folder as made.
    manifest = {"digest": digest(), "fps": 10, "size": [W, H], "clips": specs}
    (media / "clips.json").write_text(json.dumps(manifest))
    return media


def camera_site(folder: Path, cameras: dict[str, dict[str, Any]]) -> Path:
    """An inventory of one region, `suwon`, with these cameras (id: extra properties)."""
    features: list[dict[str, object]] = [
        {
            "type": "Feature",
            "geometry": square(127.0, 37.25),
            "properties": {"type": "region", "id": "suwon", "name": "Suwon"},
        }
    ]
    features += [
        point("camera", 127.01 + i * 0.001, 37.26, id=cid, region="suwon", **props)
        for i, (cid, props) in enumerate(cameras.items())
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cameras.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    return folder
