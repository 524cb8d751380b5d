"""The on-disk spool: order, restarts, torn records after a crash, corruption and the size cap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.storage import Spool
from hub.storage.spool import SpoolFullError

from .conftest import sample


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.seg"))


def _tear(folder: Path) -> None:
    """Cut the last record short, as a crash in the middle of a write would."""
    (segment,) = _segments(folder)
    os.truncate(segment, segment.stat().st_size - 7)


def _damage(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"!")


def payload(i: int, size: int = 100) -> bytes:
    """A recognisable record: its number, padded."""
    return f"{i:08d}".encode().ljust(size, b".")


async def drain(spool: Spool) -> list[bytes]:
    """Read and commit everything, as a replay does."""
    seen: list[bytes] = []
    while records := await spool.read(max_bytes=1000):
        for record in records:
            seen.append(record.payload)
            spool.commit(record)
    return seen


async def test_replays_in_order_and_forgets_what_was_committed(spool: Spool) -> None:
    assert spool.empty
    for i in range(50):
        spool.append(payload(i), 10)
    await spool.sync()
    assert (spool.points, spool.size) == (500, 50 * (12 + 100))
    first = await spool.read(max_bytes=300)  # the records that fit whole in 300 bytes
    assert [r.payload for r in first] == [payload(i) for i in range(2)]
    assert [r.payload for r in await spool.read(max_bytes=300)] == [r.payload for r in first]
    with pytest.raises(ValueError, match="in the order"):
        spool.commit(first[1])
    for record in first:
        spool.commit(record)
    assert spool.points == 480
    assert await drain(spool) == [payload(i) for i in range(2, 50)]
    assert spool.empty
    assert spool.points == 0


async def test_a_record_bigger_than_a_read(spool: Spool) -> None:
    spool.append(payload(1, 5000), 1)
    spool.append(payload(2), 1)
    assert [r.payload for r in await spool.read(max_bytes=100)] == [payload(1, 5000)]


async def test_a_new_spool_continues_where_the_last_stopped(tmp_path: Path) -> None:
    first = Spool(tmp_path, segment_bytes=1000, fsync=False)
    for i in range(30):
        first.append(payload(i), 1)
    for record in await first.read(max_bytes=500):
        first.commit(record)  # four of them
    first.close()
    second = await Spool.open(tmp_path, segment_bytes=1000, fsync=False)
    assert second.points == 26
    second.append(payload(30), 1)  # goes after the old ones
    assert await drain(second) == [payload(i) for i in range(4, 31)]
    second.close()
    assert len(_segments(tmp_path)) == 1  # replayed segments are deleted


_WRITER = """
import sys
from hub.storage import Spool
from hub.storage.spool import SpoolFullError
spool = Spool(sys.argv[1], segment_bytes=4096)
i = 0
while True:
    spool.append(f"{i:08d}".encode().ljust(int(sys.argv[2]), b"."), 1)
    i += 1
    if i == int(sys.argv[3]):
        spool.sync_now()
        print("ready", flush=True)
"""


def _kill_writer_midway(folder: Path, size: int, ready_after: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(folder), str(size), str(ready_after)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.05)  # let it append some more, at full speed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()


async def test_survives_a_killed_process(tmp_path: Path) -> None:
    """SIGKILL a process in the middle of appending: what it wrote replays as a gapless
    prefix, and a torn last record (if the kill tore one) is skipped."""
    _kill_writer_midway(tmp_path, 3000, 200)
    spool = Spool(tmp_path, fsync=False)
    seen = await drain(spool)
    assert len(seen) >= 200
    assert seen == [payload(i, 3000) for i in range(len(seen))]


async def test_a_torn_last_record_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, fsync=False)
    for i in range(3):
        spool.append(payload(i), 5)
    spool.close()
    _tear(tmp_path)
    reopened = Spool(tmp_path, fsync=False)
    assert "torn" in caplog.text
    assert reopened.points == 10
    reopened.append(payload(3), 5)
    assert await drain(reopened) == [payload(0), payload(1), payload(3)]


async def test_a_corrupt_record_drops_the_rest_of_its_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096, fsync=False)
    for i in range(40):  # 112 bytes each: 36 in the first segment, 4 in the next
        spool.append(payload(i), 1)
    spool.close()
    _damage(_segments(tmp_path)[0], 112 * 10 + 50)  # a byte of record 10
    before = sample("hub_points_dropped_total", reason="spool_corrupt")
    reopened = Spool(tmp_path, fsync=False)
    assert await drain(reopened) == [payload(i) for i in [*range(10), *range(36, 40)]]
    assert sample("hub_points_dropped_total", reason="spool_corrupt") - before == 26


def fill(spool: Spool, count: int) -> int:
    """Append records until the spool refuses one: how many it took."""
    for i in range(200):
        try:
            spool.append(payload(i), count)
        except SpoolFullError:
            with pytest.raises(SpoolFullError, match="is full"):
                spool.append(payload(i), count)  # and again: unchanged, still full
            return i
    return 200


async def test_when_full_it_refuses_and_drops_nothing(tmp_path: Path) -> None:
    """Readings in the spool were acknowledged to the broker: none may be dropped for room."""
    spool = Spool(tmp_path, max_bytes=8192, segment_bytes=2048, fsync=False)
    taken = fill(spool, 3)
    assert 0 < taken < 200
    assert spool.disk_bytes <= 8192
    with pytest.raises(SpoolFullError):
        spool.append(payload(taken), 3)  # still full: unchanged, nothing dropped
    assert spool.points == 3 * taken

    # A replay that frees a segment makes room; what was refused is appended after the rest.
    first = await spool.read(max_bytes=4096)  # the oldest segment, whole
    for record in first:
        spool.commit(record)
    spool.append(payload(taken), 3)
    seen = [r.payload for r in first] + await drain(spool)
    assert seen == [payload(i) for i in range(taken + 1)]


async def test_a_full_spool_replayed_to_its_end_frees_all_its_room(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=8192, segment_bytes=2048, fsync=False)
    assert fill(spool, 1) < 200
    await drain(spool)
    for i in range(40):  # the segment appended to is gone too once it is replayed
        spool.append(payload(i), 1)
    assert await drain(spool) == [payload(i) for i in range(40)]
    assert len(_segments(tmp_path)) <= 1


async def test_an_empty_spool_takes_a_batch_bigger_than_its_cap(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=4096, fsync=False)
    spool.append(payload(0, 10_000), 1)
    with pytest.raises(SpoolFullError):
        spool.append(payload(1), 1)
    assert await drain(spool) == [payload(0, 10_000)]
    spool.append(payload(1), 1)


async def test_metrics_follow_the_spool(spool: Spool) -> None:
    spooled = sample("hub_points_spooled_total")
    spool.append(payload(0), 7)
    assert sample("hub_points_spooled_total") - spooled == 7
    assert sample("hub_spool_points") == 7
    assert sample("hub_spool_bytes") == 112
    await drain(spool)
    assert sample("hub_spool_points") == 0


async def test_fsync_runs(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=True)
    spool.append(payload(0), 1)
    await spool.sync()
    spool.close()
    assert Spool(tmp_path).points == 1
