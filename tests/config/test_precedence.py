"""Where settings come from: a flag beats the environment, which beats the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load_config

FILE = """\
mqtt: {url: "mqtt://file:1883", username: file-user, password: file-pw}
influx: {url: "http://file:8086", password: file-pw}
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "hub.yaml"
    path.write_text(FILE)
    return path


def test_the_file_alone(config_file: Path) -> None:
    config = load_config(config_file, env={})
    assert config.mqtt.url == "mqtt://file:1883"
    assert config.influx.url == "http://file:8086"


def test_the_environment_beats_the_file(config_file: Path) -> None:
    env = {"HUB_MQTT_URL": "mqtt://env:1883", "HUB_INFLUX_URL": "https://env:8086/"}
    config = load_config(config_file, env=env)
    assert config.mqtt.url == "mqtt://env:1883"
    assert config.influx.url == "https://env:8086"


def test_a_flag_beats_the_environment(config_file: Path) -> None:
    env = {"HUB_MQTT_URL": "mqtt://env:1883", "HUB_INFLUX_URL": "http://env:8086"}
    config = load_config(
        config_file, mqtt_url="mqtts://flag:8883", influx_url="http://flag:8086", env=env
    )
    assert config.mqtt.url == "mqtts://flag:8883"
    assert config.influx.url == "http://flag:8086"


def test_an_empty_variable_is_unset(config_file: Path) -> None:
    assert load_config(config_file, env={"HUB_MQTT_URL": ""}).mqtt.url == "mqtt://file:1883"


def test_secrets_from_the_environment(config_file: Path) -> None:
    env = {
        "HUB_MQTT_USERNAME": "env-user",
        "HUB_MQTT_PASSWORD": "env-pw",
        "HUB_INFLUX_USERNAME": "influx-user",
        "HUB_INFLUX_PASSWORD": "influx-pw",
    }
    config = load_config(config_file, env=env)
    assert (config.mqtt.username, config.mqtt.password) == ("env-user", "env-pw")
    assert (config.influx.username, config.influx.password) == ("influx-user", "influx-pw")


def test_overrides_apply_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, mqtt_url="mqtt://flag", env={"HUB_INFLUX_URL": "http://env:1"})
    assert config.source is None
    assert config.mqtt.url == "mqtt://flag"
    assert config.influx.url == "http://env:1"


def test_hub_config_names_the_file(config_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("mqtt: {client_id: from-env-file}\n")
    config = load_config(None, env={"HUB_CONFIG": str(other)})
    assert config.source == other
    assert config.mqtt.client_id == "from-env-file"
    # -c beats $HUB_CONFIG.
    assert load_config(config_file, env={"HUB_CONFIG": str(other)}).mqtt.client_id == "hub-1"


def test_hub_yaml_in_the_working_folder_is_the_default(config_file: Path) -> None:
    assert load_config(None, env={}).mqtt.url == "mqtt://file:1883"


def test_a_bad_override_is_named_by_where_it_came_from(config_file: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            config_file,
            influx_url="ftp://x",
            env={"HUB_MQTT_URL": "broker:1883", "HUB_INFLUX_URL": "http://fine"},
        )
    assert [str(p) for p in caught.value.problems] == [
        "$HUB_MQTT_URL: mqtt.url: expected a URL like mqtt://HOST[:PORT] or "
        "mqtts://HOST[:PORT], got 'broker:1883' (the scheme is missing)",
        "--influx: influx.url: expected a URL like http://HOST[:PORT] or "
        "https://HOST[:PORT], got 'ftp://x'",
    ]


def test_an_override_does_not_hide_a_broken_section(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("mqtt: [1, 2]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, mqtt_url="mqtt://flag", env={})
    assert [p.message for p in caught.value.problems] == [
        "mqtt: expected a mapping of keys to values, got a list"
    ]
