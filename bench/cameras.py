"""Camera selection benchmark: nearest-camera queries over 100,000 cameras. Not a test: it prints
figures.

    .venv/bin/python bench/cameras.py [--cameras 100000] [--queries 1000] [--within 300]

Two layouts: cameras spread over a province (about 200 x 200 km, a few per square km) and
packed into one city (20 x 20 km, 250 per square km, the worst case for a grid). Each
query asks for the best 3 within the radius; the full scan is timed on a few queries.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from hub.detection.cameras import CameraIndex, scan
from hub.inventory.model import Camera


def cameras(n: int, span_deg: float, rng: random.Random) -> list[Camera]:
    """`n` cameras in a square of `span_deg` degrees, half with a view sector."""
    out = []
    for i in range(n):
        lon = 127.0 + rng.random() * span_deg
        lat = 37.0 + rng.random() * span_deg
        sector = i % 2 == 0
        heading = rng.uniform(0, 360) if sector else None
        fov = rng.uniform(40, 120) if sector else None
        out.append(
            Camera(f"c{i}", "rtsp://x", "r", None, None, "", heading, fov, 150.0, None, lon, lat)
        )
    return out


def run(name: str, n: int, span: float, queries: int, within: float, rng: random.Random) -> None:
    """Build the index for one layout and time the queries."""
    cams = cameras(n, span, rng)
    t0 = time.perf_counter()
    index = CameraIndex(cams)
    build = time.perf_counter() - t0
    points = [(127.0 + rng.random() * span, 37.0 + rng.random() * span) for _ in range(queries)]
    times, hits = [], 0
    for lon, lat in points:
        t = time.perf_counter()
        hits += len(index.nearest(lon, lat, count=3, within_m=within))
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    for lon, lat in points[:5]:
        scan(cams, lon, lat, count=3, within_m=within)
    full = (time.perf_counter() - t) / 5
    times.sort()
    print(
        f"{name}: {n:,} cameras, index built in {build * 1000:.0f} ms; {queries:,} queries in "
        f"{sum(times) * 1000:.0f} ms: mean {statistics.mean(times) * 1e6:.0f} us, "
        f"p99 {times[int(len(times) * 0.99) - 1] * 1e6:.0f} us, {hits / queries:.2f} cameras "
        f"per answer; a full scan takes {full * 1000:.0f} ms per query"
    )


def main() -> None:
    """Print the figures for both layouts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--within", type=float, default=300.0)
    args = parser.parse_args()
    rng = random.Random(1)
    run("province", args.cameras, 1.8, args.queries, args.within, rng)
    run("city", args.cameras, 0.18, args.queries, args.within, rng)


if __name__ == "__main__":
    main()
