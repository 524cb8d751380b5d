"""Sample cameras and on-demand snapshots: first-snapshot latency (cold and warm) through the
real `GET /api/cameras/{id}/snapshot` handler, and the camera server's CPU per stream. Not a
test: it prints figures.

    .venv/bin/python bench/cameras_local.py [--trials 10] [--seconds 20]

Snapshots: the handler (hub.cameras.snapshot) on an aiohttp server of its own, with the
example's faces model, against the sample camera server (GStreamer) on free ports. "cold" is
the first request of a fresh service: capture worker processes start (OpenCV's import), the
face model loads, the camera is connected; each cold trial is a new service. "warm" are the
requests after it. Beside them, in the same run: the bare grab of one frame by OpenCV in this
process (connect, first keyframe, decode), which is the camera's share of a snapshot.

Camera server: CPU time of its process (utime + stime from /proc) over `--seconds` with no
client, one client per stream, and four clients per stream (`ffmpeg -c copy` readers, whose
own CPU is not counted); beside it, a live libx264 encode of one such stream (640x360,
10 frames/s), which is what a server encoding per stream or per client would pay.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import cv2
from aiohttp import web

from hub.cameras.local import LocalCameras
from hub.cameras.media import IMAGES
from hub.cameras.snapshot import SnapshotService
from hub.detection.config import DetectionConfig
from hub.inventory.model import Camera
from hub.services import free_port

TOKEN = "bench-token"
TICK = os.sysconf("SC_CLK_TCK")


class Tokens:
    name, role, regions = "bench", "viewer", None
    sha256 = hashlib.sha256(TOKEN.encode()).hexdigest()


class Audit:
    def record(self, kind: str, actor: str, detail: str, **fields: object) -> None:
        return None


def camera(cid: str, url: str) -> Camera:
    return Camera(cid, url, "r", None, None, cid, None, None, None, None, 127.0, 37.0)


async def snapshot_times(cameras: LocalCameras, trials: int) -> dict[str, list[float]]:
    inventory = type("Inv", (), {})()
    inventory.cameras = {  # type: ignore[attr-defined]
        "rtsp": camera("rtsp", cameras.url("people-pan")),
        "http": camera("http", cameras.snapshot_url("people-pan")),
    }
    faces = IMAGES.parent / "faces" / "centerface.onnx"
    out: dict[str, list[float]] = {}
    for cold_trial in range(4):
        service = SnapshotService(
            DetectionConfig(), inventory, audit=Audit(), faces_model=faces, tokens=[Tokens()]
        )
        app = web.Application()
        service.add_routes(app)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            first = "rtsp" if cold_trial % 2 == 0 else "http"
            for name in (first, "http" if first == "rtsp" else "rtsp"):
                url = f"http://127.0.0.1:{port}/api/cameras/{name}/snapshot"
                start = time.perf_counter()
                async with session.get(url) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
                # The first of a fresh service starts its workers; the second finds them up.
                key = f"{name} cold" if name == first else f"{name} first, workers up"
                out.setdefault(key, []).append(time.perf_counter() - start)
            if cold_trial == 0:
                for name in ("rtsp", "http"):
                    url = f"http://127.0.0.1:{port}/api/cameras/{name}/snapshot"
                    for _ in range(trials):
                        start = time.perf_counter()
                        async with session.get(url) as resp:
                            assert resp.status == 200
                            await resp.read()
                        out.setdefault(f"{name} warm", []).append(time.perf_counter() - start)
        await service.close()
        await runner.cleanup()
    return out


def bare_grabs(cameras: LocalCameras, trials: int) -> list[float]:
    os.environ.setdefault(
        "OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;1000000"
    )
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        capture = cv2.VideoCapture(cameras.url("people-pan"), cv2.CAP_FFMPEG)
        ok, _ = capture.read()
        capture.release()
        assert ok
        times.append(time.perf_counter() - start)
    return times


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def server_cpu(cameras: LocalCameras, clients: int, seconds: float) -> float:
    assert cameras.proc is not None
    readers = [
        subprocess.Popen(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-rtsp_transport",
                "tcp",
                "-i",
                cameras.url(name),
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ],
            stdin=subprocess.DEVNULL,
        )
        for name in cameras.names
        for _ in range(clients)
    ]
    time.sleep(3)  # connected and playing
    before = cpu_s(cameras.proc.pid)
    time.sleep(seconds)
    used = cpu_s(cameras.proc.pid) - before
    for reader in readers:
        reader.terminate()
        reader.wait()
    return used / seconds


def encode_cpu(cameras: LocalCameras, seconds: float) -> float:
    """A live libx264 encode of one sample clip's frames at its rate, as a per-stream encoder
    would do (its JPEG decoding included, as a camera source's would be)."""
    proc = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
         "-framerate", "10", "-i", str(cameras.media / "people-pan.frames" / "%03d.jpg"),
         "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "10",
         "-f", "null", "-"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(2)
    before = cpu_s(proc.pid)
    time.sleep(seconds)
    used = cpu_s(proc.pid) - before
    proc.terminate()
    proc.wait()
    return used / seconds


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    median = statistics.median(values) * 1000
    return f"median {median:7.0f} ms   p90 {p90 * 1000:7.0f} ms   n={len(values)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalCameras(Path(tmp)) as cameras:
        print(f"camera server: {len(cameras.names)} streams ({', '.join(cameras.names)})")
        times = asyncio.run(snapshot_times(cameras, args.trials))
        print("snapshot through GET /api/cameras/{id}/snapshot (faces blurred, 640x360):")
        for key, values in times.items():
            print(f"  {key:26} {ms(values)}")
        bare = ms(bare_grabs(cameras, args.trials))
        print(f"  peer: bare OpenCV grab of one RTSP frame in this process: {bare}")
        streams = len(cameras.names)
        print(f"camera server CPU over {args.seconds:g} s (one core = 100%):")
        for clients in (0, 1, 4):
            share = server_cpu(cameras, clients, args.seconds)
            per = f"{share * 100 / streams:.2f}% per stream" if clients else ""
            print(f"  {clients} client(s) per stream: {share * 100:5.2f}% in all  {per}")
        encode = encode_cpu(cameras, args.seconds) * 100
        print(f"  peer: live libx264 encode of one stream: {encode:5.2f}%")


if __name__ == "__main__":
    main()
