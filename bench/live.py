"""Live view: request -> first frame, and glass-to-glass latency, for 1, 4 and 16 streams.

A camera on this machine draws its own clock into every frame as a pixel code (40 black or
white 16x16 blocks across the top: milliseconds, mod 2^40), encodes H.264 (640x360, 25 fps,
a keyframe a second) and serves it over RTSP. `hub relay` runs as the hub runs it (a child
process, cameras on stdin) and a headless Chromium plays N cameras with mpegts.js, as the
page does; on each frame it shows (requestVideoFrameCallback) it reads the code back from a
canvas: latency = the browser's clock - the camera's clock in the frame (same machine, same
clock). First frame: from asking the relay (a cold camera: ffmpeg starts, connects, waits for a
keyframe) to the first frame shown; warm: a second viewer of a camera already relayed.
CPU: the relay's Python process and its ffmpeg children, over the latency window, per stream.

    .venv/bin/python bench/live.py [--streams 1,4,16] [--window 8]
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtsp_relay import RtspServer  # bench/rtsp_relay.py: run as a script from bench/

from hub.live.feed import Source
from hub.live.relay import RelaySettings
from hub.live.tickets import sign
from hub.services import free_port

WIDTH, HEIGHT, FPS, BITS, BLOCK = 640, 360, 25, 40, 16
TARGET_FIRST_S, TARGET_P95_S = 1.5, 1.0
SECRET = "bench-secret"
ROOT = Path(__file__).resolve().parents[1]
MPEGTS = ROOT / "hub" / "web" / "vendor" / "mpegts" / "mpegts.js"


class ClockCamera(RtspServer):
    """The test RTSP server, fed frames that carry the time they were made."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        # The test pattern's encoder is replaced by ours: same RTP port, same SDP file.
        self._ffmpeg.terminate()
        self._ffmpeg.wait()
        self._sdp.unlink(missing_ok=True)
        rtp_port = self._udp.getsockname()[1]
        self._ffmpeg = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error",
             "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS),
             "-i", "pipe:0",
             "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(FPS),
             "-pix_fmt", "yuv420p", "-flags", "+global_header",
             "-f", "rtp", "-sdp_file", str(self._sdp), f"rtp://127.0.0.1:{rtp_port}"],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        self._painter = threading.Thread(target=self._paint, daemon=True)
        self._painter.start()

    def _paint(self) -> None:
        frame = np.full((HEIGHT, WIDTH), 96, np.uint8)
        start = time.monotonic()
        n = 0
        assert self._ffmpeg.stdin is not None
        while not self._stop.is_set():
            now_ms = int(time.time() * 1000) % (1 << BITS)
            for bit in range(BITS):
                on = (now_ms >> (BITS - 1 - bit)) & 1
                frame[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 235 if on else 16
            frame[BLOCK + 40 : BLOCK + 80, :] = 96
            frame[BLOCK + 40 : BLOCK + 80, (n * 8) % WIDTH : (n * 8) % WIDTH + 40] = 200  # motion
            try:
                self._ffmpeg.stdin.write(frame.tobytes())
                self._ffmpeg.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            n += 1
            self._stop.wait(max(0.0, start + n / FPS - time.monotonic()))


PAGE = """<!doctype html><html><body style="margin:0;background:#000">
<canvas id="c" width="%d" height="%d" hidden></canvas>
<script src="/mpegts.js"></script><script>
const results = {};
const canvas = document.getElementById("c");
const ctx = canvas.getContext("2d", { willReadFrequently: true });
function code(video) {
  ctx.drawImage(video, 0, 0, %d, %d, 0, 0, %d, %d);
  const px = ctx.getImageData(0, 0, %d, %d).data;
  let value = 0;
  for (let bit = 0; bit < %d; bit++) {
    const x = bit * %d + %d, y = %d;
    value = value * 2 + (px[(y * %d + x) * 4] > 128 ? 1 : 0);
  }
  return value;
}
function watch(key, url) {
  const r = results[key] = { asked: performance.now(), first: null, latencies: [], errors: [] };
  const video = document.createElement("video");
  video.muted = true; video.width = 160;
  document.body.append(video);
  const p = mpegts.createPlayer({ type: "mpegts", isLive: true, url: url.replace(/^http/, "ws") },
    { enableWorker: false, enableStashBuffer: false, lazyLoad: false, autoCleanupSourceBuffer: true,
      liveBufferLatencyChasing: true, liveBufferLatencyMaxLatency: 1.2,
      liveBufferLatencyMinRemain: 0.3 });
  p.on(mpegts.Events.ERROR, (a, b) => r.errors.push(`${a} ${b}`));
  p.attachMediaElement(video); p.load(); video.play().catch(() => {});
  const onFrame = () => {
    const now = performance.timeOrigin + performance.now();
    if (r.first === null) r.first = performance.now() - r.asked;
    if (r.collect) {
      const shown = code(video), mod = 2 ** %d;
      r.latencies.push(((now %% mod) - shown + mod) %% mod);
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  r.stop = () => { p.destroy(); video.remove(); };
}
</script></body></html>""" % (  # noqa: UP031
    WIDTH, BLOCK, WIDTH, BLOCK, WIDTH, BLOCK, WIDTH, BLOCK, BITS, BLOCK, BLOCK // 2, BLOCK // 2,
    WIDTH, BITS,
)  # fmt: skip


def serve_page() -> str:
    """The player page and mpegts.js from a loopback HTTP server; its address."""
    script = MPEGTS.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (script, "text/javascript") if "mpegts" in self.path else (
                PAGE.encode(), "text/html")  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(relay: psutil.Process) -> dict[int, float]:
    out = {}
    for proc in [relay, *relay.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="1,4,16")
    parser.add_argument("--window", type=float, default=8.0, help="seconds of latency samples")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    camera = ClockCamera(tmp)
    cameras = {
        f"s{n}-{i}": Source(f"s{n}-{i}", f"{camera.url}{n}x{i}", blur=False)
        for n in counts
        for i in range(n)
    }
    port = free_port()
    settings = RelaySettings(cameras, SECRET, idle_after=3.0, first_picture=10.0)
    relay_proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "relay", "--stdin", "--listen", f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert relay_proc.stdin is not None
    relay_proc.stdin.write(settings.to_json() + b"\n")
    relay_proc.stdin.flush()
    relay = psutil.Process(relay_proc.pid)
    time.sleep(1.0)  # the relay's start is not measured; it listens within a second

    def url(cam: str) -> str:
        ticket = sign(SECRET, "view", cam, int(time.time()) + 600)
        return f"http://127.0.0.1:{port}/live/{cam}.ts?t={ticket}"

    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--autoplay-policy=no-user-gesture-required",
                ],
            )
            page = browser.new_page()
            # Served from loopback, as the hub serves the page: Chromium keeps pages from
            # elsewhere off local addresses.
            page.goto(serve_page())
            for n in counts:
                ids = [f"s{n}-{i}" for i in range(n)]
                for cam in ids:
                    page.evaluate("([k, u]) => watch(k, u)", [cam, url(cam)])
                try:
                    page.wait_for_function(
                        "(ids) => ids.every((k) => results[k].first !== null)",
                        arg=ids,
                        timeout=30_000,
                    )
                except Exception:
                    print(page.evaluate("() => JSON.stringify(results)"), file=sys.stderr)
                    raise
                # A second viewer of the first camera: the relay is warm.
                page.evaluate("([k, u]) => watch(k, u)", [f"warm-{n}", url(ids[0])])
                page.wait_for_function(f"() => results['warm-{n}'].first !== null", timeout=30_000)
                page.evaluate("(ids) => ids.forEach((k) => { results[k].collect = true; })", ids)
                before, t0 = cpu_seconds(relay), time.monotonic()
                time.sleep(args.window)
                after, elapsed = cpu_seconds(relay), time.monotonic() - t0
                data = page.evaluate(
                    "(ids) => ids.map((k) => [results[k].first, results[k].latencies,"
                    " results[k].errors])",
                    [*ids, f"warm-{n}"],
                )
                page.evaluate("() => Object.values(results).forEach((r) => r.stop && r.stop())")
                page.evaluate("() => { for (const k of Object.keys(results)) delete results[k]; }")
                firsts = [d[0] / 1000 for d in data[:-1]]
                warm = data[-1][0] / 1000
                latencies = [ms / 1000 for d in data[:-1] for ms in d[1] if ms < 60_000]
                errors = [e for d in data for e in d[2]]
                ffmpeg = sum(after[p] - before[p] for p in after if p in before and p != relay.pid)
                python = after[relay.pid] - before[relay.pid]
                rows.append(
                    (n, firsts, warm, latencies, ffmpeg / elapsed / n, python / elapsed / n, errors)
                )
                time.sleep(4)  # the relay's feeds go idle and stop before the next count
            browser.close()
    finally:
        relay_proc.terminate()
        relay_proc.wait(10)
        camera.stop()
    print(f"targets: first frame < {TARGET_FIRST_S} s, glass-to-glass p95 < {TARGET_P95_S} s "
          f"({WIDTH}x{HEIGHT} H.264 {FPS} fps, keyframe every 1 s; 2 cores shared with Chromium "
          "and the camera)")  # fmt: skip
    print("streams | first frame cold p50 / p95 (s) | warm (s) | latency p50 / p95 (s) | samples "
          "| relay CPU per stream: ffmpeg + python (% of a core)")  # fmt: skip
    for n, firsts, warm, lat, ff, py, errors in rows:
        verdict = (
            "ok"
            if pct(firsts, 0.95) < TARGET_FIRST_S and pct(lat, 0.95) < TARGET_P95_S
            else "MISSED"
        )
        print(
            f"{n:7d} | {statistics.median(firsts):.2f} / {pct(firsts, 0.95):.2f} | {warm:.2f} "
            f"| {pct(lat, 0.5):.2f} / {pct(lat, 0.95):.2f} | {len(lat)} "
            f"| {ff * 100:.1f} + {py * 100:.1f} | {verdict}"
            + (f" | player errors: {json.dumps(errors[:3])}" if errors else "")
        )


if __name__ == "__main__":
    main()
