"""The local camera server as a child process, for `hub cameras serve`, `hub run
--local-services`, `hub demo` and tests.

The server itself (hub/cameras/server.py) runs on Debian's /usr/bin/python3, which has
GStreamer's Python bindings; the hub's virtual environment does not need them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from hub.cameras.media import IMAGES, MEDIA, ensure_media
from hub.services import ServiceError, port_open, terminate

SERVER = Path(__file__).with_name("server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
LOOPBACK = ("127.0.0.1", "localhost")
_PACKAGES = "python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}"


class LocalCameras:
    """The sample clips served as cameras: `rtsp://HOST:PORT/<name>` and, for snapshots,
    `http://HOST:PORT/<name>.jpg`, by a GStreamer RTSP server in a child process.

    Ports 0 (the default) take free ones; `url(name)` and `snapshot_url(name)` give the
    addresses once started. Use it as a context manager, or `start()` and `stop()`:

        with LocalCameras(tmp_path) as cameras:
            cameras.url("people-pan")           # rtsp://127.0.0.1:40123/people-pan
            cameras.snapshot_url("street-pan")  # http://127.0.0.1:40124/street-pan.jpg

    The clips (made once into var/media by hub.cameras.media) are people-pan, street-pan and
    people-zoom; `names` lists them. The log is `<data_dir>/cameras.log`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        rtsp_port: int = 0,
        http_port: int = 0,
        host: str = "127.0.0.1",
        media: Path = MEDIA,
        images: Path = IMAGES,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.rtsp_port = rtsp_port
        self.http_port = http_port
        self.media = media
        self.images = images
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    name = "camera server"

    @property
    def names(self) -> list[str]:
        """The streams served (the clips' names)."""
        return sorted(json.loads((self.media / "clips.json").read_text())["clips"])

    @property
    def log_path(self) -> Path:
        return self.data_dir / "cameras.log"

    def url(self, name: str) -> str:
        """The RTSP address of the clip `name`."""
        return f"rtsp://{self.host}:{self.rtsp_port}/{name}"

    def snapshot_url(self, name: str) -> str:
        """The HTTP snapshot address of the clip `name` (a JPEG on GET)."""
        return f"http://{self.host}:{self.http_port}/{name}.jpg"

    def command(self) -> list[str]:
        """The server's command line."""
        return [
            SYSTEM_PYTHON, str(SERVER), "--media", str(self.media),
            "--rtsp", f"{self.host}:{self.rtsp_port}", "--http", f"{self.host}:{self.http_port}",
        ]  # fmt: skip

    def start(self, deadline_s: float = 30.0) -> None:
        """Make the media if needed, start the server and return once both ports listen."""
        if self.proc is not None and self.proc.poll() is None:
            return
        check_gstreamer()
        try:
            ensure_media(self.media, self.images)
        except RuntimeError as exc:
            raise ServiceError(f"camera media: {exc}") from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the child
        )
        line = self._ready_line(deadline_s)
        ports = dict(part.split("=", 1) for part in line.split()[1:])
        self.rtsp_port, self.http_port = int(ports["rtsp"]), int(ports["http"])

    def _ready_line(self, deadline_s: float) -> str:
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + deadline_s
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if selector.select(left):
                    line = self.proc.stdout.readline().decode(errors="replace")
                    if line.startswith("ready "):
                        return line
                    if not line:  # it exited
                        break
        try:
            code: int | None = self.proc.wait(1)  # it closed its output: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        self.stop()
        what = f"exited with code {code}" if code is not None else f"not ready in {deadline_s:g}s"
        raise ServiceError(f"{self.name} {what}: {_tail(self.log_path)}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, timeout_s)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalCameras:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_gstreamer(python: str = SYSTEM_PYTHON) -> None:
    """ServiceError naming the Debian packages when GStreamer's RTSP server is missing."""
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst; Gst.init(None);"
        "assert all(Gst.ElementFactory.find(e) for e in ('appsrc', 'h264parse', 'rtph264pay'))"
    )
    if not os.access(python, os.X_OK):
        raise ServiceError(f"{python} not found: the camera server runs on Debian's Python 3")
    done = subprocess.run([python, "-c", probe], capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        raise ServiceError(
            f"GStreamer's RTSP server is missing from {python}: install Debian's {_PACKAGES} "
            "(scripts/install does)"
        )


def loopback_ports(urls: Iterable[str]) -> tuple[int | None, int | None]:
    """The RTSP and HTTP ports that most cameras on this machine (127.0.0.1) use, if any."""
    rtsp: Counter[int] = Counter()
    http: Counter[int] = Counter()
    for url in urls:
        parts = urlsplit(url)
        with contextlib.suppress(ValueError):
            if parts.hostname in LOOPBACK and parts.scheme == "rtsp":
                rtsp[parts.port or 554] += 1
            elif parts.hostname in LOOPBACK and parts.scheme == "http":
                http[parts.port or 80] += 1
    return (
        rtsp.most_common(1)[0][0] if rtsp else None,
        http.most_common(1)[0][0] if http else None,
    )


def for_inventory(urls: Iterable[str], data_dir: Path) -> LocalCameras | None:
    """The camera server the inventory's cameras on this machine expect, when nothing answers
    on their ports yet; None when no camera is on this machine or a server already answers."""
    rtsp, http = loopback_ports(urls)
    if rtsp is None and http is None:
        return None
    if (rtsp is None or port_open("127.0.0.1", rtsp)) and (
        http is None or port_open("127.0.0.1", http)
    ):
        return None
    # A port of one kind only: the other kind takes any free port.
    return LocalCameras(data_dir, rtsp_port=rtsp or 0, http_port=http or 0)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- `hub cameras` ---------------------------------------------------------------------------


def add_cameras_arguments(parser: argparse.ArgumentParser) -> None:
    """`hub cameras serve` and `hub cameras media`."""
    sub = parser.add_subparsers(dest="cameras_command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve the sample clips as RTSP and HTTP cameras")
    serve.add_argument("--rtsp", metavar="HOST:PORT", default="127.0.0.1:8554")
    serve.add_argument("--http", metavar="HOST:PORT", default="127.0.0.1:8555")
    serve.add_argument("--media", metavar="DIR", type=Path, default=MEDIA, help="default var/media")
    media = sub.add_parser("media", help="make the sample clips (done on first use otherwise)")
    media.add_argument("--media", metavar="DIR", type=Path, default=MEDIA, help="default var/media")


def cameras_main(args: argparse.Namespace) -> int:  # noqa: RET503 - execv does not return
    """`hub cameras ...`."""
    try:
        ensure_media(args.media)
        if args.cameras_command == "media":
            print(f"hub cameras: sample clips in {args.media}")
            return 0
        check_gstreamer()
    except (RuntimeError, OSError) as exc:
        print(f"hub cameras: {exc}", file=sys.stderr)
        return 1
    command = [SYSTEM_PYTHON, str(SERVER), "--media", str(args.media)]
    # The server takes this process's place: it prints its ports and serves until SIGTERM
    # or Ctrl-C.
    os.execv(SYSTEM_PYTHON, [*command, "--rtsp", args.rtsp, "--http", args.http])  # noqa: S606
