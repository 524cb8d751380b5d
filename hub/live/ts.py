"""MPEG-TS as the relay sees it: 188-byte packets, and the picture group a new viewer starts on.

The relay's ffmpeg is told its PIDs (PMT 0x1000, video 0x100), so nothing here parses tables.
A viewer that joins mid-stream needs the tables and a keyframe before anything it can decode:
`GopCache` keeps the latest PAT and PMT and every packet since the last keyframe (a video
packet that starts a picture with the random-access flag set), and hands them out as one
block, so a warm relay shows a picture at once instead of after the next keyframe.
"""

from __future__ import annotations

PACKET = 188
SYNC = 0x47
PAT_PID = 0x0000
PMT_PID = 0x1000
VIDEO_PID = 0x0100
# A group of pictures larger than this (a camera with keyframes minutes apart) is not kept:
# viewers then wait for the next keyframe rather than the relay's memory growing.
MAX_CACHE = 8 * 1024 * 1024


class StreamError(ValueError):
    """The bytes are not MPEG-TS (ffmpeg wrote something else)."""


def pid(packet: bytes | memoryview) -> int:
    """The packet's PID."""
    return ((packet[1] & 0x1F) << 8) | packet[2]


def is_keyframe(packet: bytes | memoryview) -> bool:
    """Whether the packet starts a video picture viewers can start decoding from."""
    if pid(packet) != VIDEO_PID or not packet[1] & 0x40:  # payload_unit_start
        return False
    has_adaptation = packet[3] & 0x20
    return bool(has_adaptation and packet[4] > 0 and packet[5] & 0x40)  # random_access


class GopCache:
    """Splits ffmpeg's output into whole packets and remembers what a new viewer needs."""

    def __init__(self, limit: int = MAX_CACHE) -> None:
        self._limit = limit
        self._rest = b""
        self._pat = b""
        self._pmt = b""
        self._gop: bytearray | None = None
        self.keyframes = 0

    def feed(self, data: bytes) -> bytes:
        """Take a read from ffmpeg; give back the whole packets in it (the rest waits)."""
        data = self._rest + data if self._rest else data
        whole = len(data) - len(data) % PACKET
        self._rest = data[whole:]
        view = memoryview(data)[:whole]
        for start in range(0, whole, PACKET):
            packet = view[start : start + PACKET]
            if packet[0] != SYNC:
                raise StreamError(f"byte {start} of a read is {packet[0]:#04x}, not a TS sync")
            ident = pid(packet)
            if ident == PAT_PID:
                self._pat = bytes(packet)
            elif ident == PMT_PID:
                self._pmt = bytes(packet)
            elif is_keyframe(packet) and self._pat and self._pmt:
                self._gop = bytearray(self._pat + self._pmt)
                self.keyframes += 1
            if self._gop is not None:
                self._gop += packet
                if len(self._gop) > self._limit:
                    self._gop = None
        return bytes(view)

    @property
    def start(self) -> bytes | None:
        """Tables, the last keyframe and what followed it; None before the first keyframe."""
        return None if self._gop is None else bytes(self._gop)
