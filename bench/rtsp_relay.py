"""A minimal RTSP server for bench/live.py: ffmpeg encodes frames to RTP, this serves them.

The tests use the real GStreamer server instead (tests/cameras/support.py); bench/live.py
keeps this one because its camera paints the time into every frame, live, which a server of
pre-encoded clips cannot do.

ffmpeg's RTSP muxer only pushes to a server (its `listen` flag is for input), so ffmpeg sends
H.264 over RTP to a local UDP port and this server answers OPTIONS, DESCRIBE, SETUP and PLAY
and relays the packets to each playing client over interleaved TCP, as a camera would.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

from hub.services import free_port


class RtspServer:
    """Serves `rtsp://127.0.0.1:{port}/cam` until `stop()`."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self._sdp = tmp / "stream.sdp"
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self._udp.settimeout(0.2)
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._players: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        rtp_port = self._udp.getsockname()[1]
        # A keyframe every second, so that a client joining at any time soon has a picture.
        self._ffmpeg = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
             "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10",
             "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10",
             "-pix_fmt", "yuv420p",  # 4:2:0, as cameras send and browsers decode
             "-flags", "+global_header",  # SPS and PPS in the SDP, as cameras send them
             "-f", "rtp", "-sdp_file", str(self._sdp), f"rtp://127.0.0.1:{rtp_port}"],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._relay, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop ffmpeg (by its PID) and the server."""
        self._stop.set()
        self._ffmpeg.terminate()
        try:
            self._ffmpeg.wait(5)
        except subprocess.TimeoutExpired:
            self._ffmpeg.kill()
            self._ffmpeg.wait()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()
        self._udp.close()

    def _description(self) -> str:
        deadline = time.monotonic() + 10
        while not (self._sdp.exists() and "m=video" in self._sdp.read_text()):
            if time.monotonic() > deadline:
                raise RuntimeError("ffmpeg wrote no SDP")
            self._stop.wait(0.05)
        lines = self._sdp.read_text().strip().splitlines()
        return "\r\n".join([*lines, "a=control:track0"]) + "\r\n"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._session, args=(client,), daemon=True).start()

    def _relay(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._udp.recv(65536)
            except TimeoutError:
                continue
            frame = b"$\x00" + len(packet).to_bytes(2, "big") + packet
            with self._lock:
                for player in list(self._players):
                    try:
                        player.sendall(frame)
                    except OSError:
                        self._players.remove(player)

    def _session(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        try:
            while not self._stop.is_set():
                first = reader.read(1)
                if not first:
                    return
                if first == b"$":  # the client's RTCP reports, interleaved: skip them
                    header = reader.read(3)
                    reader.read(int.from_bytes(header[1:3], "big"))
                    continue
                lines = [first + reader.readline()]
                while lines[-1].strip():
                    lines.append(reader.readline())
                self._answer(client, [line.decode().strip() for line in lines if line.strip()])
        except OSError:
            return
        finally:
            with self._lock:
                if client in self._players:
                    self._players.remove(client)
            client.close()

    def _answer(self, client: socket.socket, request: list[str]) -> None:
        method = request[0].split()[0]
        headers = dict(line.split(":", 1) for line in request[1:])
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        reply = ["RTSP/1.0 200 OK", f"CSeq: {headers.get('cseq', '0')}"]
        body = ""
        if method == "OPTIONS":
            reply.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN")
        elif method == "DESCRIBE":
            body = self._description()
            reply += [f"Content-Base: {self.url}/", "Content-Type: application/sdp"]
        elif method == "SETUP":
            if "interleaved" not in headers.get("transport", "") and "TCP" not in headers.get(
                "transport", ""
            ):
                reply[0] = "RTSP/1.0 461 Unsupported Transport"
            else:
                reply += ["Transport: RTP/AVP/TCP;unicast;interleaved=0-1", "Session: 1"]
        elif method == "PLAY":
            reply.append("Session: 1")
        reply.append(f"Content-Length: {len(body.encode())}")
        # Under the lock: the relay writes packets to the same socket once it plays.
        with self._lock:
            client.sendall(("\r\n".join(reply) + "\r\n\r\n" + body).encode())
            if method == "PLAY":
                self._players.append(client)
