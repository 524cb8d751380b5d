"""hub.yaml: defaults, values, and every kind of mistake reported at its file:line:col."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hub.config import ConfigError, HubConfig, load_config


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, so that messages name files as `hub.yaml`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(text: str, name: str = "hub.yaml") -> Path:
    path = Path(name)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path | None, **kwargs: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=kwargs.pop("env", {}), **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def test_no_file_at_all_means_every_default(in_tmp: Path) -> None:
    config = load_config(None, env={})
    assert config.source is None
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert config.mqtt.client_id == "hub-1"
    assert config.mqtt.keepalive == 30.0
    assert config.mqtt.session_expiry == 7 * 86400.0
    assert config.mqtt.reconnect_min == pytest.approx(0.1)
    assert config.influx.url == "http://127.0.0.1:8086"
    assert config.influx.database == "hub"
    assert config.influx.flush_interval == pytest.approx(0.2)
    assert config.influx.batch_size == 5000
    assert config.ingest.max_age == 30 * 86400.0
    assert config.inventory == ()
    assert config.rules == ()
    assert config.api.listen == "127.0.0.1:8080"
    assert config.api.tokens == ()
    assert config.data_dir == in_tmp / "var"
    assert config.influx.spool_dir == in_tmp / "var" / "spool"
    assert config.log_level == "info"


def test_an_empty_file_is_all_defaults() -> None:
    config = load_config(write("# nothing here yet\n"), env={})
    defaults = HubConfig.model_validate({}, context={"base": Path.cwd()})
    assert config.model_dump() == defaults.model_dump()
    assert config.source == Path("hub.yaml")


def test_values_are_read_and_durations_become_seconds(in_tmp: Path) -> None:
    (in_tmp / "site").mkdir()
    (in_tmp / "conf").mkdir()
    path = write(
        """\
        mqtt: {url: "mqtts://broker.example:8883", keepalive: 1m, reconnect_max: 2m30s}
        influx: {flush_interval: 250ms, timeout: 5, spool_dir: /tmp/spool}
        inventory: ../site
        data_dir: state
        log_level: DEBUG
        api:
          listen: "[::1]:9000"
          tokens:
            - {name: desk-1, role: operator, sha256: "%s"}
        """
        % ("AB" * 32),
        "conf/hub.yaml",
    )
    config = load_config(path, env={})
    assert config.mqtt.tls
    assert (config.mqtt.host, config.mqtt.port) == ("broker.example", 8883)
    assert config.mqtt.keepalive == 60.0
    assert config.mqtt.reconnect_max == 150.0
    assert config.influx.flush_interval == 0.25
    assert config.influx.timeout == 5.0
    assert config.influx.spool_dir == Path("/tmp/spool")
    # Relative paths are read against the config file's folder.
    assert config.inventory == (in_tmp / "conf" / ".." / "site",)
    assert config.data_dir == in_tmp / "conf" / "state"
    assert config.log_level == "debug"
    assert (config.api.host, config.api.port) == ("::1", 9000)
    assert config.api.tokens[0].sha256 == "ab" * 32


def test_site_and_rules_next_to_the_file_are_the_defaults(in_tmp: Path) -> None:
    (in_tmp / "site").mkdir()
    config = load_config(write("log_level: info\n"), env={})
    assert config.inventory == (in_tmp / "site",)
    # No rules/ folder here, so no rules: a default that is not there is no mistake.
    assert config.rules == ()


def test_passwords_stay_out_of_repr() -> None:
    config = load_config(write("mqtt: {password: hunter2}\n"), env={})
    assert config.mqtt.password == "hunter2"
    assert "hunter2" not in repr(config)


def test_every_problem_in_one_pass() -> None:
    path = write(
        """\
        mqtt:
          url: tcp://broker:1883
          usrname: hub
          prefix: "#"
          keepalive: 30 sec
        influx:
          batch_size: -1
          flush_interval: [1]
          timeout: maybe
        ingest: 4
        inventory: [nowhere/]
        api:
          listen: 8080
          tokens:
            - {name: desk-1, role: oprator, sha256: abc}
            - name: desk-1
              role: viewer
        log_level: verbose
        inventroy: []
        data_dir: state
        data_dir: var
        """
    )
    assert problems(path) == [
        "hub.yaml:2:8: mqtt.url: expected a URL like mqtt://HOST[:PORT] or "
        "mqtts://HOST[:PORT], got 'tcp://broker:1883'",
        "hub.yaml:3:3: mqtt.usrname: unknown key 'usrname', did you mean 'username'?",
        "hub.yaml:4:11: mqtt.prefix: a topic prefix cannot hold '+', '#' or start with '$': '#'",
        "hub.yaml:5:14: mqtt.keepalive: cannot read '30 sec' as a duration; "
        "write it like 30s, 5m, 1h30m, 250ms or 2d",
        "hub.yaml:7:15: influx.batch_size: must be greater than 0, got the number -1",
        "hub.yaml:8:19: influx.flush_interval: expected a duration such as 30s, 5m or 250ms, "
        "got a list",
        "hub.yaml:9:12: influx.timeout: cannot read 'maybe' as a duration; "
        "write it like 30s, 5m, 1h30m, 250ms or 2d",
        "hub.yaml:10:9: ingest: expected a mapping of keys to values, got the number 4",
        "hub.yaml:11:13: inventory[0]: no such file or folder: nowhere/",
        "hub.yaml:13:11: api.listen: expected text, got the number 8080; put it in quotes",
        "hub.yaml:15:28: api.tokens[0].role: 'oprator' is not one of viewer, operator, admin, "
        "did you mean 'operator'?",
        "hub.yaml:15:45: api.tokens[0].sha256: expected the token's SHA-256 as 64 hex digits, "
        "got 3 characters (make it with: printf %s TOKEN | sha256sum)",
        "hub.yaml:16:7: api.tokens[1]: missing required key 'sha256'",
        "hub.yaml:16:13: api.tokens[1].name: 'desk-1' is already the name of api.tokens[0]",
        "hub.yaml:18:12: log_level: 'verbose' is not one of debug, info, warning, error, critical",
        "hub.yaml:19:1: inventroy: unknown key 'inventroy', did you mean 'inventory'?",
        "hub.yaml:21:1: duplicate key 'data_dir'; it is already set at line 20, column 1",
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("colour: red\n", "1:1: colour: unknown key 'colour'; expected one of: mqtt, influx, "),
        ("mqtt: {clientid: a}\n", "1:8: mqtt.clientid: unknown key 'clientid', did you mean "),
        ("mqtt: {url: 'mqtt://h:99999'}\n", "1:13: mqtt.url: 'mqtt://h:99999' has a bad port"),
        ("mqtt: {url: 'mqtt://h/x'}\n", "1:13: mqtt.url: 'mqtt://h/x' has a path; an MQTT URL"),
        ("mqtt: {url: 'mqtt://'}\n", "1:13: mqtt.url: 'mqtt://' names no host"),
        ("mqtt: {url: 'mqtt://u:pw@h:1:2'}\n", "1:13: mqtt.url: 'mqtt://u:***@h:1:2' has a bad"),
        ("influx: {url: 'localhost:8086'}\n", "1:15: influx.url: expected a URL like http://"),
        ("influx: {url: 'mqtt://h'}\n", "1:15: influx.url: expected a URL like http://HOST"),
        ("mqtt: {prefix: 'hub/#'}\n", "1:16: mqtt.prefix: a topic prefix cannot hold '+', '#'"),
        ("mqtt: {prefix: '/hub'}\n", "1:16: mqtt.prefix: a topic prefix such as 'hub'"),
        ("mqtt: {client_id: ''}\n", "1:19: mqtt.client_id: must not be empty"),
        ("mqtt: {client_id: 12}\n", "1:19: mqtt.client_id: expected text, got the number 12;"),
        (
            "mqtt: {reconnect_min: 1m, reconnect_max: 10s}\n",
            "1:42: mqtt.reconnect_max: the longest wait between reconnects (10s) is shorter "
            "than the first one, reconnect_min (1m)",
        ),
        (
            "influx: {batch_size: 100, buffer_points: 10}\n",
            "1:42: influx.buffer_points: the buffer (10 points) must hold at least one batch",
        ),
        ("influx: {timeout: 0}\n", "1:19: influx.timeout: must be greater than 0, got "),
        ("ingest: {max_future: -5}\n", "1:22: ingest.max_future: a duration cannot be negative"),
        ("ingest: {max_payload_bytes: 1.5}\n", "1:29: ingest.max_payload_bytes: expected a whole"),
        ("api: {listen: 'localhost'}\n", "1:15: api.listen: expected HOST:PORT such as 127."),
        ("api: {public: [helth]}\n", "1:16: api.public[0]: 'helth' is not one of health, cap, "),
        ("api: {tokens: {name: x}}\n", "1:15: api.tokens: expected a list, got a mapping"),
        ("api: {tokens: [{name: x, role: admin}]}\n", "1:16: api.tokens[0]: missing required"),
        ("data_dir: 5\n", "1:11: data_dir: expected a file or folder path, got the number 5"),
        ("rules: [3]\n", "1:9: rules[0]: expected a file or folder path, got the number 3"),
        ("- mqtt\n", "1:1: expected sections such as mqtt:, influx: and inventory: here"),
        ("mqtt: !env X\n", "1:7: unknown tag !env; this file takes plain YAML"),
        ("mqtt: {url: [\n", "2:1: YAML syntax error: "),
    ],
)
def test_each_kind_of_mistake(text: str, error: str) -> None:
    [found] = problems(write(text))
    assert found.startswith(f"hub.yaml:{error}"), found


def test_duplicate_token_digests_are_refused() -> None:
    digest = "0" * 64
    path = write(
        f"""\
        api:
          tokens:
            - {{name: a, role: viewer, sha256: "{digest}"}}
            - {{name: b, role: admin, sha256: "{digest.upper()}"}}
        """
    )
    assert problems(path) == [
        "hub.yaml:4:38: api.tokens[1].sha256: the same token as api.tokens[0]; "
        "give each client its own"
    ]


def test_a_token_pasted_in_place_of_its_digest_is_not_echoed() -> None:
    [found] = problems(write("api: {tokens: [{name: a, role: viewer, sha256: s3cr3t-t0ken}]}\n"))
    assert "s3cr3t" not in found


def test_a_named_file_that_is_missing() -> None:
    assert problems(Path("nope.yaml")) == ["nope.yaml: no such file (named by -c)"]
    assert problems(None, env={"HUB_CONFIG": "gone.yaml"}) == [  # type: ignore[arg-type]
        "gone.yaml: no such file (named by $HUB_CONFIG)"
    ]


def test_removed_keys_are_warnings_whatever_their_value() -> None:
    path = write(
        """\
        mqtt:
          qos: 7
        influx: {create_database: maybe}
        """
    )
    config = load_config(path, env={})
    assert [(str(w).split(": warning: ")[0], w.warning) for w in config.warnings] == [
        ("hub.yaml:2:3", True),
        ("hub.yaml:3:10", True),
    ]
    assert "mqtt.qos was removed, and is ignored" in str(config.warnings[0])
    assert load_config(write("mqtt: {}\n", "other.yaml"), env={}).warnings == ()
