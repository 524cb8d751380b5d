"""The sample media and the local camera server (GStreamer's RTSP server, HTTP snapshots)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from hub.cameras.local import check_gstreamer, for_inventory, loopback_ports
from hub.cameras.media import IMAGES, MediaError, ensure_media
from hub.services import ServiceError, free_port
from tests.cameras.support import HEIGHT, STREAMS, WIDTH, LocalCameras


def keyframes(path: Path) -> list[int]:
    """The indexes of the keyframes of an H.264 file, by ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
         "frame=key_frame", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.split()  # fmt: skip
    return [i for i, key in enumerate(out) if key.strip(",") == "1"]


def test_the_media_are_loops_with_a_keyframe_every_second(local_cameras: LocalCameras) -> None:
    manifest = json.loads((local_cameras.media / "clips.json").read_text())
    assert sorted(manifest["clips"]) == sorted(STREAMS) == local_cameras.names
    for name, clip in manifest["clips"].items():
        assert clip["fps"] == 10
        assert clip["frames"] == 60, name
        assert keyframes(local_cameras.media / clip["h264"]) == list(range(0, 60, 10)), name
        frames = [
            cv2.imread(str(path))
            for path in sorted((local_cameras.media / clip["jpeg"]).glob("*.jpg"))
        ]
        assert frames[0].shape == (HEIGHT, WIDTH, 3)
        # The motion ends where it began: the loop's seam is a step like any other, no jump.
        steps = [diff(a, b) for a, b in itertools.pairwise(frames)]
        assert diff(frames[-1], frames[0]) <= 1.5 * max(steps), name
        assert min(steps) > 1, name  # and every frame moves


def diff(a: np.ndarray, b: np.ndarray) -> float:  # type: ignore[type-arg]
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_media_are_made_the_same_each_time_and_only_once(tmp_path: Path) -> None:
    one, two = ensure_media(tmp_path / "a"), ensure_media(tmp_path / "b")
    for name in STREAMS:
        assert (one / f"{name}.h264").read_bytes() == (two / f"{name}.h264").read_bytes()
    stamp = (one / "clips.json").stat().st_mtime_ns
    ensure_media(one)
    assert (one / "clips.json").stat().st_mtime_ns == stamp


def test_media_need_the_packaged_images(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"zidane\.jpg: no such image \(scripts/fetch-models"):
        ensure_media(tmp_path / "media", tmp_path / "no-images")
    assert IMAGES.is_dir()


def test_every_stream_and_snapshot_is_served(local_cameras: LocalCameras) -> None:
    for name in STREAMS:
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries",
             "stream=codec_name,width,height", "-of", "csv=p=0", local_cameras.url(name)],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert probe.stdout.strip() == f"h264,{WIDTH},{HEIGHT}"
        with urllib.request.urlopen(local_cameras.snapshot_url(name), timeout=5) as resp:
            assert resp.headers["Content-Type"] == "image/jpeg"
            image = cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(local_cameras.snapshot_url("nothing"), timeout=5)
    assert missing.value.code == 404


def test_a_stream_plays_on_in_real_time_across_the_loop(local_cameras: LocalCameras) -> None:
    # 7 s is more than one 6 s loop: the stream goes on past the clip's end, at 10 frames/s.
    start = time.monotonic()
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
         "-i", local_cameras.url("people-pan"), "-t", "7", "-f", "null", "-",
         "-progress", "pipe:1"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    frames = [int(line.split("=")[1]) for line in done.stdout.split() if line.startswith("frame=")]
    assert frames[-1] == pytest.approx(70, abs=1)
    # Paced by the server, not sent as fast as it can (ffmpeg buffers its first seconds).
    assert time.monotonic() - start > 4
    assert done.stderr == ""  # no decoding error at the loop's seam


def test_ports_in_use_are_refused_with_the_reason(tmp_path: Path) -> None:
    with LocalCameras(tmp_path / "a") as first:
        for taken, ports in (
            ("http", {"http_port": first.http_port}),
            ("rtsp", {"rtsp_port": first.rtsp_port}),
        ):
            second = LocalCameras(tmp_path / taken, **ports)
            start = time.monotonic()
            port = ports[f"{taken}_port"]
            with pytest.raises(ServiceError, match=rf"exited with code 1: .*listen on .*:{port}"):
                second.start()
            assert time.monotonic() - start < 10
            assert second.proc is None


def test_a_python_without_gstreamer_names_the_packages() -> None:
    with pytest.raises(ServiceError, match=r"install Debian's python3-gst-1\.0 gir1\.2-gst-rtsp"):
        check_gstreamer(sys.executable)  # the virtual environment has no GStreamer bindings


def test_the_inventory_says_which_ports_to_serve(tmp_path: Path) -> None:
    urls = [
        "rtsp://127.0.0.1:8554/people-pan",
        "rtsp://127.0.0.1:8554/street-pan",
        "http://127.0.0.1:8555/people-zoom.jpg",
        "rtsp://10.0.0.1:554/stream1",
    ]
    assert loopback_ports(urls) == (8554, 8555)
    assert loopback_ports(["rtsp://10.0.0.1/s", "https://cam.example/a.jpg"]) == (None, None)
    assert for_inventory(["rtsp://10.0.0.1/s"], tmp_path) is None
    port = free_port()
    wanted = for_inventory([f"rtsp://127.0.0.1:{port}/people-pan"], tmp_path)
    assert wanted is not None
    assert (wanted.rtsp_port, wanted.http_port) == (port, 0)
