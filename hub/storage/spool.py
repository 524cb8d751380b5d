"""An append-only on-disk spool of line-protocol batches, replayed in order.

The folder holds segment files `<seq>.seg` and a `cursor` file. A record is a header
(payload length, point count, CRC-32 of both and of the payload) and the payload, so that
a record torn by a crash is recognised and skipped (headers are checked on opening, CRCs as
records are replayed). Segments are appended to by one process at a time; a new process
starts a new segment and replays the old ones first."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from hub.metrics import POINTS_DROPPED, POINTS_SPOOLED, SPOOL_BYTES, SPOOL_POINTS

log = logging.getLogger("hub.storage")

_HEADER = struct.Struct("<III")  # payload length, point count, crc32
_LEN_COUNT = struct.Struct("<II")
_MAX_RECORD = 1 << 30
_SUFFIX = ".seg"
_CURSOR = "cursor"


class SpoolFullError(OSError):
    """The spool holds `max_bytes` already: nothing is dropped to make room, the caller keeps
    the batch (and does not acknowledge it) until a replay frees a segment."""


@dataclass(frozen=True)
class SpoolRecord:
    """One batch read back from the spool; pass it to `Spool.commit` once it is stored."""

    payload: bytes
    count: int
    segment: int
    start: int  # offsets of the record in its segment
    end: int


@dataclass
class _Segment:
    seq: int
    path: Path
    start: int = 0  # first byte not yet replayed
    end: int = 0  # end of the last whole record
    points: int = 0  # points in [start, end)


def _crc(length: int, count: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_LEN_COUNT.pack(length, count)))


def _scan(path: Path, start: int) -> tuple[int, int, bool]:
    """Walk record headers from `start`: (end of the last whole record, points, torn)."""
    size = path.stat().st_size
    offset, points = start, 0
    with path.open("rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return offset, points, True
            length, count, _ = _HEADER.unpack(header)
            if length > _MAX_RECORD or offset + _HEADER.size + length > size:
                return offset, points, True
            offset += _HEADER.size + length
            points += count
    return offset, points, False


def _read(
    path: Path, start: int, end: int, max_bytes: int
) -> tuple[list[tuple[bytes, int, int, int]], int]:
    """Whole records in [start, end), about `max_bytes` of them, as (payload, count, start,
    end), and the offset of the first record that fails its checks (-1 if none)."""
    records: list[tuple[bytes, int, int, int]] = []
    total = 0
    with path.open("rb") as f:
        f.seek(start)
        buf = f.read(min(end - start, max(max_bytes, _HEADER.size)))
        pos = 0  # buf starts at `start` in the file
        while start + pos < end and total < max_bytes:
            if len(buf) - pos < _HEADER.size:
                if records:
                    break
                buf += f.read(_HEADER.size - len(buf))
                if len(buf) < _HEADER.size:
                    return records, start
            length, count, crc = _HEADER.unpack_from(buf, pos)
            stop = pos + _HEADER.size + length
            if length > _MAX_RECORD or start + stop > end:
                return records, start + pos
            if stop > len(buf):
                if records:
                    break
                buf += f.read(stop - len(buf))  # one record bigger than max_bytes
            payload = buf[pos + _HEADER.size : stop]
            if len(payload) != length or _crc(length, count, payload) != crc:
                return records, start + pos
            records.append((payload, count, start + pos, start + stop))
            total += length
            pos = stop
    return records, -1


class Spool:
    """FIFO of batches on disk with a size cap; a full spool refuses, it never drops."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        # Several segments must fit under the cap, or replaying the oldest frees nothing.
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4))
        self.fsync = fsync
        self._segments: list[_Segment] = []
        self._tail_fd = -1  # this process's segment; those found on disk are never appended to
        self._unsynced: list[int] = []  # fds rotated out, fsynced and closed by sync()
        self._dirty = False
        self._dir_dirty = False
        self._open()

    @classmethod
    async def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync: bool = True,
    ) -> Spool:
        """Create a Spool in a thread, since opening a large one reads every record header."""
        return await asyncio.to_thread(
            lambda: cls(directory, max_bytes=max_bytes, segment_bytes=segment_bytes, fsync=fsync)
        )

    # --- state -----------------------------------------------------------------------------

    @property
    def points(self) -> int:
        """Points waiting to be replayed."""
        return sum(s.points for s in self._segments)

    @property
    def size(self) -> int:
        """Bytes waiting to be replayed."""
        return sum(s.end - s.start for s in self._segments)

    @property
    def disk_bytes(self) -> int:
        """Bytes of the segment files, replayed or not."""
        return sum(s.end for s in self._segments)

    @property
    def empty(self) -> bool:
        """Whether nothing waits to be replayed."""
        return all(s.start >= s.end for s in self._segments)

    def _gauges(self) -> None:
        SPOOL_BYTES.set(self.size)
        SPOOL_POINTS.set(self.points)

    def _open(self) -> None:
        cursor_seq, cursor_offset = self._read_cursor()
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            start = cursor_offset if seq == cursor_seq else 0
            if seq < cursor_seq:
                path.unlink()  # replayed; the process stopped before deleting it
                continue
            end, points, torn = _scan(path, start)
            if torn:
                log.warning("spool %s: a record torn by a crash at byte %d is skipped", path, end)
            if start >= end:
                path.unlink()
                continue
            self._segments.append(_Segment(seq, path, start, end, points))
        if self._segments:
            log.warning(
                "spool %s holds %d points (%d bytes) from before; they will be replayed first",
                self.directory,
                self.points,
                self.size,
            )
        self._next_seq = max([cursor_seq, *(s.seq for s in self._segments)]) + 1
        self._gauges()

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seq, offset = (self.directory / _CURSOR).read_text().split()
            return int(seq), int(offset)
        except (OSError, ValueError):
            return -1, 0

    def _write_cursor(self, seq: int, offset: int) -> None:
        # No fsync: a stale cursor only replays a batch twice, and InfluxDB keeps one copy
        # of a point written twice.
        tmp = self.directory / (_CURSOR + ".tmp")
        tmp.write_text(f"{seq} {offset}\n")
        tmp.replace(self.directory / _CURSOR)

    # --- writing ---------------------------------------------------------------------------

    def append(self, payload: bytes, count: int) -> None:
        """Append one batch (a small write, done inline); call `sync` before relying on it.

        Raises SpoolFullError when the batch does not fit under `max_bytes` (an empty spool
        takes one batch bigger than the cap, or such a batch could never be taken), and
        OSError when the disk fails or is full; the spool is unchanged then."""
        size = _HEADER.size + len(payload)
        if self.disk_bytes + size > self.max_bytes:
            self._reclaim()
            if self.disk_bytes + size > self.max_bytes and not self.empty:
                raise SpoolFullError(
                    f"spool {self.directory} is full ({self.disk_bytes} bytes of "
                    f"{self.max_bytes}); it takes more once a replay frees room"
                )
        try:
            self._write(payload, count, size)
        except OSError:
            if not self._reclaim():  # a replayed segment gives its room back to the disk
                raise
            self._write(payload, count, size)

    def _write(self, payload: bytes, count: int, size: int) -> None:
        tail = self._segments[-1] if self._tail_fd >= 0 else None
        if tail is None or (tail.end > 0 and tail.end + size > self.segment_bytes):
            tail = self._rotate()
        header = _HEADER.pack(len(payload), count, _crc(len(payload), count, payload))
        try:
            written = os.writev(self._tail_fd, [header, payload])
        except OSError as exc:
            raise OSError(exc.errno, f"spool {tail.path}: {exc.strerror}") from None
        if written != size:  # a full disk; keep the segment's end honest and say so
            os.ftruncate(self._tail_fd, tail.end)
            raise OSError(
                errno.ENOSPC, f"spool {tail.path}: short write ({written} of {size} bytes)"
            )
        tail.end += size
        tail.points += count
        self._dirty = True
        POINTS_SPOOLED.inc(count)
        self._gauges()

    def _rotate(self) -> _Segment:
        if self._tail_fd >= 0:
            self._unsynced.append(self._tail_fd)
        path = self.directory / f"{self._next_seq:020d}{_SUFFIX}"
        self._tail_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        segment = _Segment(self._next_seq, path)
        self._next_seq += 1
        self._segments.append(segment)
        self._dir_dirty = True
        return segment

    def _reclaim(self) -> bool:
        """Delete the segments replayed to their end, the one appended to included (the next
        append starts a new one): while appends go on, a replay never deletes that one."""
        tail = self._segments[-1] if self._tail_fd >= 0 else None
        if tail is not None and tail.end > 0 and tail.start >= tail.end:
            os.close(self._tail_fd)  # replayed: nothing to sync, and its room is freed now
            self._tail_fd = -1
            tail = None
        done = [s for s in self._segments if s.start >= s.end and s is not tail]
        for segment in done:
            self._segments.remove(segment)
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("spool %s: cannot delete %s: %s", self.directory, segment.path, exc)
        return any(s.end > 0 for s in done)

    async def sync(self) -> None:
        """Make what was appended durable (fsync in a thread)."""
        if not (self._dirty or self._dir_dirty or self._unsynced):
            return
        fds = [*self._unsynced, *([self._tail_fd] if self._tail_fd >= 0 else [])]
        old, self._unsynced = self._unsynced, []
        dir_dirty, self._dirty, self._dir_dirty = self._dir_dirty, False, False
        if self.fsync:
            await asyncio.to_thread(self._fsync, fds, dir_dirty)
        for fd in old:
            os.close(fd)

    def sync_now(self) -> None:
        """`sync` without a thread, for when the event loop is going away."""
        fds = [*self._unsynced, *([self._tail_fd] if self._tail_fd >= 0 else [])]
        if self.fsync:
            self._fsync(fds, self._dir_dirty)
        for fd in self._unsynced:
            os.close(fd)
        self._unsynced, self._dirty, self._dir_dirty = [], False, False

    def _fsync(self, fds: list[int], dir_dirty: bool) -> None:
        for fd in fds:
            os.fsync(fd)
        if dir_dirty:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def close(self) -> None:
        """Sync and close the spool's files (blocking: call it at shutdown)."""
        self.sync_now()
        if self._tail_fd >= 0:
            os.close(self._tail_fd)
            self._tail_fd = -1

    # --- replay ----------------------------------------------------------------------------

    async def read(self, max_bytes: int = 8 << 20) -> list[SpoolRecord]:
        """The oldest records not yet committed (about `max_bytes` of them, at least one)."""
        while True:
            head = next((s for s in self._segments if s.start < s.end), None)
            if head is None:
                return []
            start = head.start
            try:
                found, bad = await asyncio.to_thread(_read, head.path, start, head.end, max_bytes)
            except FileNotFoundError:
                if head in self._segments:  # removed by someone else
                    self._corrupt(head, start, 0)
                continue
            if head not in self._segments or head.start != start:
                continue  # dropped (spool full) while we read it
            if bad >= 0:
                self._corrupt(head, bad, sum(r[1] for r in found))
            if found:
                return [SpoolRecord(p, c, head.seq, s, e) for p, c, s, e in found]

    def _corrupt(self, segment: _Segment, offset: int, good_points: int) -> None:
        lost = segment.points - good_points
        log.error(
            "spool %s: record at byte %d is corrupt; DROPPED the rest of the segment (%d points)",
            segment.path,
            offset,
            lost,
        )
        POINTS_DROPPED.labels(reason="spool_corrupt").inc(max(lost, 0))
        segment.end, segment.points = offset, good_points
        if segment is self._segments[-1] and self._tail_fd >= 0:
            self._unsynced.append(self._tail_fd)
            self._tail_fd = -1  # append to a fresh segment, after the bad bytes
        self._gauges()

    def commit(self, record: SpoolRecord) -> None:
        """Forget `record`, the oldest record not yet committed, once it is stored."""
        segment = next((s for s in self._segments if s.seq == record.segment), None)
        if segment is None or record.end <= segment.start:
            return  # dropped while it was replayed, or committed already
        if record.start != segment.start:
            raise ValueError("spool records must be committed in the order they were read")
        segment.start = record.end
        segment.points = max(0, segment.points - record.count)
        if segment.start >= segment.end:
            segment.points = 0
        is_tail = segment is self._segments[-1] and self._tail_fd >= 0
        gone = [s for s in self._segments if s.seq < segment.seq]  # corrupt, skipped ones
        if segment.start >= segment.end and not is_tail:
            gone.append(segment)
        for old in gone:
            self._segments.remove(old)
        try:
            for old in gone:
                old.path.unlink(missing_ok=True)
            self._write_cursor(segment.seq, segment.start)
        except OSError as exc:
            # Only costs a second replay of these records after a restart.
            log.warning("spool %s: cannot record replay progress: %s", self.directory, exc)
        self._gauges()
