"""The relay's keyframe cache over MPEG-TS packets."""

from __future__ import annotations

import pytest

from hub.live.ts import PACKET, PAT_PID, PMT_PID, VIDEO_PID, GopCache, StreamError


def packet(pid: int, *, start: bool = False, keyframe: bool = False, fill: int = 0) -> bytes:
    b1 = (0x40 if start else 0) | (pid >> 8)
    # A keyframe carries an adaptation field with the random-access flag.
    tail = [0x30, 1, 0x40] if keyframe else [0x10]
    head = bytes([0x47, b1, pid & 0xFF, *tail])
    return head + bytes([fill]) * (PACKET - len(head))


PAT, PMT = packet(PAT_PID, start=True), packet(PMT_PID, start=True)


def test_a_viewer_starts_at_the_tables_and_the_last_keyframe() -> None:
    cache = GopCache()
    assert cache.feed(PAT + PMT + packet(VIDEO_PID, start=True, fill=1)) != b""
    assert cache.start is None  # no keyframe yet: nothing a decoder could start on
    first = packet(VIDEO_PID, start=True, keyframe=True, fill=2)
    cache.feed(first + packet(VIDEO_PID, fill=3))
    assert cache.start == PAT + PMT + first + packet(VIDEO_PID, fill=3)
    second = packet(VIDEO_PID, start=True, keyframe=True, fill=4)
    cache.feed(PAT + PMT + second)
    assert cache.start == PAT + PMT + second
    assert cache.keyframes == 2


def test_reads_that_split_packets_are_joined() -> None:
    cache = GopCache()
    data = PAT + PMT + packet(VIDEO_PID, start=True, keyframe=True) + packet(VIDEO_PID)
    out = b"".join(cache.feed(data[i : i + 100]) for i in range(0, len(data), 100))
    assert out == data
    assert cache.start == data


def test_a_group_of_pictures_over_the_limit_is_not_kept() -> None:
    cache = GopCache(limit=PACKET * 4)
    cache.feed(PAT + PMT + packet(VIDEO_PID, start=True, keyframe=True))
    assert cache.start is not None
    cache.feed(packet(VIDEO_PID) * 3)
    assert cache.start is None


def test_bytes_that_are_not_ts_are_an_error() -> None:
    with pytest.raises(StreamError, match="not a TS sync"):
        GopCache().feed(b"x" * PACKET)
