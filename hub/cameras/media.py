"""Sample camera media, made on this machine from the test images packaged with the models.

scripts/fetch-models puts `bus.jpg` (a bus and people in a street) and `zidane.jpg` (two
people, faces in view) in var/models/images/. From them ffmpeg makes short loops with motion
(a slow pan or zoom that ends where it began), so that a looped clip never jumps:

- `<name>.h264`: H.264 (constrained baseline, no B-frames), Annex B with access unit
  delimiters, 10 frames/s, a keyframe every second, which the camera server sends as is;
- `<name>.frames/NNN.jpg`: the same frames as JPEGs, for the HTTP snapshot camera;
- `clips.json`: the list, with the recipe's digest, so that changed recipes are made again.

Nothing is downloaded. Making all of them takes a few seconds; `ensure_media` does it once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "var" / "models" / "images"
MEDIA = ROOT / "var" / "media"
FPS = 10
SECONDS = 6  # one loop; the motion's period, so the last frame leads back into the first
SIZE = (640, 360)
_X264 = "keyint=10:min-keyint=10:scenecut=0:bframes=0:aud=1:repeat-headers=1"


class MediaError(RuntimeError):
    """The sample media could not be made."""


@dataclass(frozen=True, slots=True)
class Recipe:
    """One clip: which image, and the ffmpeg filter that moves over it (t in seconds)."""

    name: str
    image: str
    motion: str
    shows: str


W, H = SIZE
RECIPES = (
    Recipe(
        "people-pan",
        "zidane.jpg",  # 1280x720: a 960x540 window circles over it
        f"crop=960:540:x='160+160*sin(2*PI*t/{SECONDS})':y='90+90*cos(2*PI*t/{SECONDS})',"
        f"scale={W}:{H}",
        "two people, faces in view, the camera circling",
    ),
    Recipe(
        "street-pan",
        "bus.jpg",  # 810x1080: a 16:9 window tilts from the sky to the kerb and back
        f"crop=810:456:x=0:y='312+312*sin(2*PI*t/{SECONDS})',scale={W}:{H}",
        "a bus and people in a street, the camera tilting",
    ),
    Recipe(
        "people-zoom",
        "zidane.jpg",
        f"zoompan=z='1.25+0.25*sin(2*PI*on/{FPS * SECONDS})':x='iw/2-(iw/zoom/2)'"
        f":y='ih/2-(ih/zoom/2)':d=1:s={W}x{H}:fps={FPS}",
        "two people, the camera zooming in and out",
    ),
)


def digest(recipes: tuple[Recipe, ...] = RECIPES) -> str:
    """What the made media depend on: the recipes and the encoding settings."""
    text = json.dumps([[r.name, r.image, r.motion] for r in recipes] + [FPS, SECONDS, _X264])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ready(media: Path) -> bool:
    """Whether `media` holds the clips of the current recipes."""
    try:
        manifest = json.loads((media / "clips.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("digest") == digest()


def ensure_media(media: Path = MEDIA, images: Path = IMAGES) -> Path:
    """Make the sample clips in `media` unless they are there already; return `media`."""
    if ready(media):
        return media
    if shutil.which("ffmpeg") is None:
        raise MediaError("ffmpeg not found on PATH: run scripts/install to get Debian's package")
    for recipe in RECIPES:
        if not (images / recipe.image).is_file():
            raise MediaError(
                f"{images / recipe.image}: no such image (scripts/fetch-models fetches it)"
            )
    media.parent.mkdir(parents=True, exist_ok=True)
    # Made beside the target and renamed into place, so that a reader never sees half a clip
    # and two makers at once do not mix their files.
    with tempfile.TemporaryDirectory(prefix=".media-", dir=media.parent) as tmp:
        work = Path(tmp) / "media"
        work.mkdir()
        clips = {recipe.name: _make(recipe, images, work) for recipe in RECIPES}
        manifest = {"digest": digest(), "fps": FPS, "size": list(SIZE), "clips": clips}
        (work / "clips.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if ready(media):  # another process made them meanwhile
            return media
        if media.exists():
            shutil.rmtree(media)
        work.rename(media)
    return media


def _make(recipe: Recipe, images: Path, out: Path) -> dict[str, object]:
    h264, frames = out / f"{recipe.name}.h264", out / f"{recipe.name}.frames"
    frames.mkdir()
    _ffmpeg(
        "-loop", "1", "-framerate", str(FPS), "-i", str(images / recipe.image),
        "-t", str(SECONDS), "-vf", f"{recipe.motion},format=yuv420p",
        "-c:v", "libx264", "-preset", "medium", "-profile:v", "baseline",
        "-x264-params", _X264, "-f", "h264", str(h264),
    )  # fmt: skip
    _ffmpeg("-i", str(h264), "-q:v", "5", str(frames / "%03d.jpg"))
    return {
        "h264": h264.name,
        "jpeg": frames.name,
        "fps": FPS,
        "frames": len(list(frames.glob("*.jpg"))),
        "shows": recipe.shows,
    }


def _ffmpeg(*args: str) -> None:
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", "2", *args]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        raise MediaError(f"ffmpeg failed: {exc.stderr.decode(errors='replace')[-800:]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise MediaError("ffmpeg took over 120 s to make a 6 s clip") from exc
