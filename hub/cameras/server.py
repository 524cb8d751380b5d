"""The local camera server: each sample clip looped as H.264 over RTSP, and JPEG snapshots.

Run by Debian's /usr/bin/python3, which has GStreamer's bindings (python3-gi,
python3-gst-1.0, gir1.2-gst-rtsp-server-1.0), as a child process of `hub cameras serve`,
`hub run --local-services` and `hub demo`; so it imports nothing but the standard library and
GStreamer, never the hub's own packages.

    /usr/bin/python3 hub/cameras/server.py --media var/media --rtsp 127.0.0.1:8554 \
        --http 127.0.0.1:8555

Every clip in the media folder's `clips.json` (made by hub/cameras/media.py) is served at
`rtsp://HOST:PORT/<name>`: the clip's H.264 access units, encoded once when the media were
made, are pushed in a loop with ever-growing timestamps into one shared pipeline per stream
(appsrc ! h264parse ! rtph264pay), whatever the number of clients: nothing is encoded here.
The clips have a keyframe every second, and SPS/PPS are sent with each one. The same clips'
frames are served as JPEG snapshots at `http://HOST:PORT/<name>.jpg`, the frame of the
moment. Port 0 takes a free port; once both listen, one line goes to stdout:
`ready rtsp=PORT http=PORT`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - after require_version

AUD = b"\x00\x00\x00\x01\x09"  # an access unit delimiter: where each frame's NAL units begin
PIPELINE = (
    "( appsrc name=src is-live=true format=time max-bytes=262144 "
    "caps=video/x-h264,stream-format=byte-stream,alignment=au "
    "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


class ClipError(Exception):
    """A clip in the media folder cannot be served."""


def access_units(data: bytes) -> list[bytes]:
    """The frames of an Annex B H.264 stream written with access unit delimiters."""
    starts = []
    at = data.find(AUD)
    while at >= 0:
        starts.append(at)
        at = data.find(AUD, at + len(AUD))
    if not starts:
        raise ClipError("no access unit delimiters: encode with x264's aud=1")
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


class Clip:
    """One looped clip: its H.264 frames for the RTSP stream and its JPEG frames."""

    def __init__(self, media: Path, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.fps = float(spec["fps"])
        self.units = access_units((media / spec["h264"]).read_bytes())
        folder = media / spec["jpeg"]
        self.jpegs = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))]
        if not self.jpegs:
            raise ClipError(f"{folder}: no JPEG frames")
        self.started = time.monotonic()

    def snapshot(self) -> bytes:
        """The JPEG of the frame of this moment, as a camera playing the loop would show."""
        index = int((time.monotonic() - self.started) * self.fps)
        jpeg: bytes = self.jpegs[index % len(self.jpegs)]
        return jpeg


class LoopFactory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]
    """One shared pipeline for a clip; its appsrc is fed the clip's frames round and round."""

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.clip = clip
        self.set_launch(PIPELINE)
        self.set_shared(True)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        source = media.get_element().get_by_name_recurse_up("src")
        frames = {"next": 0}
        duration = int(Gst.SECOND / self.clip.fps)
        units = self.clip.units

        def need_data(src: Gst.Element, _length: int) -> None:
            # A few frames a call, from the source's own thread; the
            # sinks send each frame at its time, so the stream runs at the clip's rate.
            for _ in range(4):
                n = frames["next"]
                frames["next"] = n + 1
                buffer = Gst.Buffer.new_wrapped(units[n % len(units)])
                buffer.pts = buffer.dts = n * duration
                buffer.duration = duration
                if src.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
                    return

        source.connect("need-data", need_data)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT (port 0: any free one)")
    return host, int(port)


def _snapshots(clips: dict[str, Clip]) -> type[BaseHTTPRequestHandler]:
    class Snapshots(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].strip("/")
            if path == "":
                body = json.dumps({"snapshots": [f"/{n}.jpg" for n in sorted(clips)]}).encode()
                self._send(200, "application/json", body)
                return
            clip = clips.get(path.removesuffix(".jpg")) if path.endswith(".jpg") else None
            if clip is None:
                self._send(404, "text/plain", f"no camera at /{path}\n".encode())
                return
            self._send(200, "image/jpeg", clip.snapshot())

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # one line per snapshot would drown the log

    return Snapshots


def load_clips(media: Path) -> dict[str, Clip]:
    """The clips listed in the media folder's clips.json."""
    manifest = media / "clips.json"
    try:
        specs = json.loads(manifest.read_text())["clips"]
        return {name: Clip(media, name, spec) for name, spec in specs.items()}
    except (OSError, ValueError, KeyError, TypeError, ClipError) as exc:
        raise ClipError(f"{manifest}: {exc} (make the media with: hub cameras media)") from exc


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--media", type=Path, required=True, help="folder with clips.json")
    parser.add_argument("--rtsp", type=_address, default=("127.0.0.1", 8554), help="HOST:PORT")
    parser.add_argument("--http", type=_address, default=("127.0.0.1", 8555), help="HOST:PORT")
    args = parser.parse_args(argv)
    try:
        clips = load_clips(args.media)
    except ClipError as exc:
        print(f"camera server: {exc}", file=sys.stderr)
        return 1
    try:  # before GStreamer starts threads of its own, so that a failure exits at once
        http = ThreadingHTTPServer(args.http, _snapshots(clips))
    except OSError as exc:
        where = f"{args.http[0]}:{args.http[1]}"
        print(f"camera server: cannot listen on {where}: {exc}", file=sys.stderr)
        return 1
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.rtsp[0])
    server.set_service(str(args.rtsp[1]))
    mounts = server.get_mount_points()
    for name, clip in clips.items():
        mounts.add_factory(f"/{name}", LoopFactory(clip))
    if server.attach(None) == 0:
        print(f"camera server: cannot listen on {args.rtsp[0]}:{args.rtsp[1]}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)  # GStreamer's threads would hold a normal exit up
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, name="snapshots", daemon=True).start()
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"ready rtsp={server.get_bound_port()} http={http.server_address[1]}", flush=True)
    loop.run()
    http.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
