"""The `store:` section: SQLite by default, etcd with its members, prefix and limits, and
each mistake named at its place in the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hub.config import ConfigError, load_config


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(text: str) -> Path:
    path = Path("hub.yaml")
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_sqlite_is_the_default() -> None:
    config = load_config(None, env={})
    assert config.store.backend == "sqlite"


def test_an_etcd_store_is_read_with_its_durations_and_secrets_from_the_environment() -> None:
    path = _write(
        """
        store:
          backend: etcd
          endpoints: [http://10.0.0.1:2379/, http://10.0.0.2:2379, http://10.0.0.3:2379]
          prefix: province/hub
          username: hub
          request_timeout: 500ms
          timeout: 3s
          max_txn_ops: 1024
        """
    )
    config = load_config(path, env={"HUB_STORE_PASSWORD": "secret"})
    store = config.store
    assert store.backend == "etcd"
    assert store.endpoints == (
        "http://10.0.0.1:2379",
        "http://10.0.0.2:2379",
        "http://10.0.0.3:2379",
    )
    assert (store.prefix, store.request_timeout, store.timeout) == ("province/hub", 0.5, 3.0)
    assert store.password == "secret"
    assert store.max_txn_ops == 1024
    assert "secret" not in repr(store)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("store: {backend: etc}\n", "1:18: store.backend: 'etc' is not one of sqlite, etcd"),
        ("store: {endpoints: []}\n", "1:20: store.endpoints: list at least one etcd member"),
        ("store: {endpoints: [h:2379]}\n", "1:20: store.endpoints: expected a URL like http://"),
        (
            "store: {endpoints: ['http://a:1/v3']}\n",
            "1:20: store.endpoints: 'http://a:1/v3' has a path",
        ),
        (
            "store: {endpoints: ['http://a:1', 'https://b:1']}\n",
            "1:20: store.endpoints: mixes http:// and https://",
        ),
        ("store: {prefix: /hub}\n", "1:17: store.prefix: a key prefix such as 'hub'"),
        ("store: {prefix: ''}\n", "1:17: store.prefix: a key prefix such as 'hub'"),
        ("store: {password: x}\n", "1:19: store.password: set without store.username"),
        (
            "store: {max_txn_ops: 2}\n",
            "1:22: store.max_txn_ops: must be at least 8, got the number 2",
        ),
        ("store: {timeout: 0}\n", "1:18: store.timeout: must be greater than 0"),
        ("store: {ca_file: hub.yaml}\n", "1:18: store.ca_file: applies to TLS only"),
    ],
)
def test_each_kind_of_mistake(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(text), env={})
    [found] = [str(p) for p in caught.value.problems]
    assert found.startswith(f"hub.yaml:{error}"), found
