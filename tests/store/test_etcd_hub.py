"""A hub whose `store.backend` is etcd keeps its state there, not in a file, and the next
hub on the same prefix starts from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.services import EtcdCluster, LocalInflux, LocalMosquitto
from hub.store.etcd import EtcdStore
from hub.store.etcd_client import EtcdClient
from tests.helpers import hub_in_process, hub_yaml

pytestmark = pytest.mark.integration


async def test_a_hub_keeps_its_state_in_etcd(
    tmp_path: Path,
    mosquitto: LocalMosquitto,
    influx: LocalInflux,
    etcd: EtcdCluster,
    prefix: str,
    database: str,
    uid: str,
) -> None:
    store = {"backend": "etcd", "endpoints": etcd.endpoints, "prefix": f"t{uid}"}
    config = hub_yaml(tmp_path, mosquitto.url, influx.url, prefix, database, uid, store=store)
    async with hub_in_process(config) as hub:
        assert isinstance(hub.store, EtcdStore)
        await hub.audit.record_durable("note", "tester", "kept in etcd")
    assert not (tmp_path / "var" / "hub.db").exists()
    stored = EtcdStore(EtcdClient(etcd.endpoints), f"t{uid}", mode="reader")
    assert stored.count("rules.state") >= 1
    entries = list(stored.load("audit").values())
    assert any(e.get("detail") == "kept in etcd" for e in entries), entries
