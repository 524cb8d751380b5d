"""The `streams:` section of hub.yaml: defaults, values and mistakes at their file:line:col."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hub.config import ConfigError, load_config


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "hub.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    try:
        return load_config(path, env={})
    except ConfigError as exc:
        return [str(p).split("hub.yaml:", 1)[1] for p in exc.problems]


def test_defaults_and_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no hub.yaml here: every default
    config = load_config(None, env={})
    s = config.streams
    assert (s.fps, s.width, s.height, s.detector, s.min_score) == (2.0, 640, 360, None, 0.4)
    assert s.aliases == {"fallen_person": "person"}
    assert s.snapshot_path(Path("/e")) == Path("/e/streams")
    loaded = load(
        tmp_path,
        """
        streams:
          fps: 5
          detector: {type: onnx, model: m.onnx}
          motion: {threshold: 40}
          presence: {keepalive: 3s, heartbeat: 1s, timeout: 4s}
          reconnect_min: 500ms
          snapshots: snaps
        """,
    )
    assert not isinstance(loaded, list), loaded
    s = loaded.streams  # type: ignore[attr-defined]
    assert (s.fps, s.motion.threshold, s.presence.timeout, s.reconnect_min) == (5, 40, 4.0, 0.5)
    assert s.detector.model == tmp_path / "m.onnx"
    assert s.snapshots == tmp_path / "snaps"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("streams: {fps: 0}", "3:16: streams.fps: must be greater than 0"),
        ("streams: {fsp: 2}", "did you mean 'fps'?"),
        ("streams: {motion: {min_area: 2}}", "streams.motion.min_area"),
        ("streams: {reconnect_min: 2m, reconnect_max: 1m}", "shorter than reconnect_min"),
        ("streams: {presence: {heartbeat: 5s, timeout: 5s}}", "must be longer than"),
        ("streams: {width: 639}", "width and height must be even, not 639x360"),
        ("streams: {alerts: {flood: [water]}}", "unknown event kind 'flood'"),
        ("streams: {detector: {type: onnxx, model: m}}", "streams.detector"),
    ],
)
def test_mistakes(tmp_path: Path, text: str, expected: str) -> None:
    found = load(tmp_path, "\n\n" + text + "\n")
    assert isinstance(found, list)
    assert any(expected in p for p in found), found
