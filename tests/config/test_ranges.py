"""Every number in hub.yaml has a range: values past it are refused, naming key and limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.config import ConfigError, HubConfig, load_config

ONNX = "{type: onnx, model: m.onnx"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, so that messages name files as `hub.yaml`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(text: str) -> HubConfig:
    path = Path("hub.yaml")
    path.write_text(text, encoding="utf-8")
    return load_config(path, env={})


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return [p.message for p in caught.value.problems]


def get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


# (key as written under its section, the largest value accepted, the message for one more).
LIMITS = [
    (
        "influx: {buffer_points: 1000000, batch_size: %s}",
        "1000000",
        "influx.batch_size: must be at most 1000000, got the number 1000001",
    ),
    (
        "influx: {buffer_points: %s}",
        "100000000",
        "influx.buffer_points: must be at most 100000000, got the number 100000001",
    ),
    (
        "influx: {spool_max_mb: %s}",
        "16777216",
        "influx.spool_max_mb: must be at most 16777216, got the number 16777217",
    ),
    (
        "ingest: {max_payload_bytes: %s}",
        "16777216",
        "ingest.max_payload_bytes: must be at most 16777216, got the number 16777217",
    ),
    (
        "ingest: {max_gateway_readings: %s}",
        "1000000",
        "ingest.max_gateway_readings: must be at most 1000000, got the number 1000001",
    ),
    (
        "ingest: {deadletter_queue: %s}",
        "1000000",
        "ingest.deadletter_queue: must be at most 1000000, got the number 1000001",
    ),
    (
        "actuators: {rate_limit: {commands: %s}}",
        "1000000",
        "actuators.rate_limit.commands: must be at most 1000000, got the number 1000001",
    ),
    (
        "actuators: {compact_after: %s}",
        "10000000",
        "actuators.compact_after: must be at most 10000000, got the number 10000001",
    ),
    (
        "notify: {max_group: %s}",
        "10000",
        "notify.max_group: must be at most 10000, got the number 10001",
    ),
    (
        "notify: {rate_limit: {count: %s}}",
        "1000000",
        "notify.rate_limit.count: must be at most 1000000, got the number 1000001",
    ),
    (
        "detection: {capture: {workers: %s}}",
        "256",
        "detection.capture.workers: must be at most 256, got the number 257",
    ),
    (
        "detection: {detector: " + ONNX + ", max_detections: %s}}",
        "10000",
        "detection.detector.onnx.max_detections: must be at most 10000, got the number 10001",
    ),
    (
        "detection: {detector: " + ONNX + ", threads: %s}}",
        "1024",
        "detection.detector.onnx.threads: must be at most 1024, got the number 1025",
    ),
]


@pytest.mark.parametrize(("template", "limit", "message"), LIMITS)
def test_a_count_at_its_limit_is_read_and_one_more_is_refused(
    template: str, limit: str, message: str
) -> None:
    load(template % limit + "\n")
    assert problems(template % (int(limit) + 1) + "\n") == [message]


def test_the_detector_input_size_stops_at_8192() -> None:
    config = load("detection: {detector: " + ONNX + ", input_size: 8192}}\n")
    assert config.detection.detector is not None
    assert config.detection.detector.input_size == 8192
    assert problems("detection: {detector: " + ONNX + ", input_size: 8224}}\n") == [
        "detection.detector.onnx.input_size: must be at most 8192, got the number 8224"
    ]


def test_a_count_of_hundreds_of_digits_is_refused_without_them() -> None:
    assert problems(f"ingest: {{deadletter_queue: {10**400}}}\n") == [
        "ingest.deadletter_queue: must be at most 1000000, got a number of about 401 digits"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "mqtt: {keepalive: 65536}",
            "mqtt.keepalive: a duration here is at most 65535s, got 65536 "
            "(MQTT holds the keepalive in 16 bits)",
        ),
        (
            "mqtt: {keepalive: 1d}",
            "mqtt.keepalive: a duration here is at most 65535s, got '1d' "
            "(MQTT holds the keepalive in 16 bits)",
        ),
        (
            "mqtt: {session_expiry: 3651d}",
            "mqtt.session_expiry: a duration here is at most 3650d, got '3651d'",
        ),
        (
            # 0xFFFFFFFF seconds is MQTT 5's "never expires": not a duration the hub sends.
            "mqtt: {session_expiry: 4294967295}",
            "mqtt.session_expiry: a duration here is at most 3650d, got 4294967295",
        ),
        (
            # The command that overflowed a journal: its lifetime is now refused.
            "actuators: {expires: 200000d}",
            "actuators.expires: a duration here is at most 3650d, got '200000d'",
        ),
        (
            f"actuators: {{keep_finished: {10**400}}}",
            "actuators.keep_finished: a duration here is at most 3650d, "
            "got a number of about 401 digits",
        ),
        ("influx: {timeout: .nan}", "influx.timeout: a duration here is at most 3650d, got nan"),
        ("notify: {group_window: .inf}", "notify.group_window: a duration here is at most 3650d"),
    ],
)
def test_durations_past_their_limit_are_refused(text: str, message: str) -> None:
    [found] = problems(text + "\n")
    assert found.startswith(message)


def test_durations_at_their_limit_are_read() -> None:
    config = load(
        "mqtt: {keepalive: 65535, session_expiry: 3650d}\n"
        "actuators: {expires: 3650d, keep_finished: 3650d}\n"
    )
    assert config.mqtt.keepalive == 65535
    assert config.mqtt.session_expiry == 3650 * 86400
    assert config.actuators.expires == 3650 * 86400


FINITE = "expected a finite number (not NaN or infinity), got "


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("detection: {min_score: .nan}", "detection.min_score: " + FINITE + "the number nan"),
        ("detection: {face_threshold: .inf}", "detection.face_threshold: " + FINITE),
        ("influx: {spool_max_mb: .nan}", "influx.spool_max_mb: " + FINITE + "the number nan"),
        ("influx: {spool_max_mb: -.inf}", "influx.spool_max_mb: " + FINITE + "the number -inf"),
        # YAML 1.1 reads 1.0e+400 as a float (infinity) and 1.0e400 as text.
        ("influx: {spool_max_mb: 1.0e+400}", "influx.spool_max_mb: " + FINITE + "the number inf"),
        ("influx: {spool_max_mb: 1.0e400}", "influx.spool_max_mb: " + FINITE + "'1.0e400'"),
        ("influx: {batch_size: .inf}", "influx.batch_size: " + FINITE + "the number inf"),
        ("ingest: {max_gateway_readings: .nan}", "ingest.max_gateway_readings: " + FINITE),
        (
            "detection: {detector: " + ONNX + ", score_threshold: .nan}}",
            "detection.detector.onnx.score_threshold: " + FINITE,
        ),
        (
            "notify: {channels: {mail: {type: email, to: [a@b], port: .inf}}}",
            "notify.channels.mail.email.port: " + FINITE,
        ),
    ],
)
def test_nan_and_infinity_are_refused(text: str, message: str) -> None:
    [found] = problems(text + "\n")
    assert found.startswith(message)


def test_the_spool_bound_may_be_a_fraction_and_its_bytes_are_whole() -> None:
    config = load("influx: {spool_max_mb: 0.05}\n")
    assert config.influx.spool_max_mb == 0.05
    assert config.influx.spool_max_bytes == 52428
    assert isinstance(config.influx.spool_max_bytes, int)
    assert load("").influx.spool_max_bytes == 1 << 30
    assert load("influx: {spool_max_mb: 16777216}\n").influx.spool_max_bytes == 16 << 40
    assert problems("influx: {spool_max_mb: 0}\n") == [
        "influx.spool_max_mb: must be greater than 0, got the number 0"
    ]


@pytest.mark.parametrize("url", ["mqtt://broker:0", "mqtt://broker:65536"])
def test_a_broker_port_is_from_1_to_65535(url: str) -> None:
    [found] = problems(f"mqtt: {{url: '{url}'}}\n")
    assert found == f"mqtt.url: {url!r} has a bad port; a port is a number from 1 to 65535"
    assert load("mqtt: {url: 'mqtt://broker:65535'}\n").mqtt.port == 65535


def test_the_defaults_are_within_every_range() -> None:
    config = load("")
    for key in (
        "influx.batch_size",
        "influx.buffer_points",
        "ingest.max_payload_bytes",
        "ingest.max_gateway_readings",
        "ingest.deadletter_queue",
        "actuators.compact_after",
        "notify.max_group",
        "detection.capture.workers",
    ):
        assert isinstance(get(config, key), int)
    assert config.influx.spool_max_mb == 1024


def test_a_number_of_more_digits_than_python_reads_is_a_problem_not_a_crash() -> None:
    found = problems("influx:\n  batch_size: " + "9" * 5000 + "\n")
    assert "more than 4300 digits" in found[0]
