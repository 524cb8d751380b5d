"""A small province and a hub.yaml for the situation room's tests (API and browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import (
    api_tokens,
    point,
    service_sections,
    small_province,
    write_config,
    write_site,
)

OPERATOR = "demo-operator-token"
VIEWER = "demo-viewer-token"
FLOOD = """
rules:
  - id: underpass-flood
    title: "Flooding at {site_name}"
    severity: severe
    sensors: [wl-1]
    trigger: {above: 15 cm, for: 1s}
    clear: {below: 10 cm, for: 1s}
    actions:
      - notify: {channels: [situation-room]}
"""


def province() -> dict[str, Any]:
    """The small province with a barrier and a sign at the underpass, a camera and a gauge that
    should report every 1 s."""
    inv = small_province()
    features = inv["features"]
    assert isinstance(features, list)
    features += [
        point(
            "actuator",
            127.011,
            37.261,
            id="bar-1",
            kind="barrier",
            region="suwon",
            site="up-1",
            name="North gate",
        ),
        point(
            "actuator",
            127.0105,
            37.2605,
            id="sign-1",
            kind="sign",
            region="suwon",
            site="up-1",
            name="Entrance sign",
        ),
        point(
            "camera",
            127.012,
            37.262,
            id="cam-1",
            region="suwon",
            site="up-1",
            url="rtsp://admin:secret@10.0.0.9/stream1",
            name="Underpass camera",
        ),
        point(
            "sensor",
            127.03,
            37.28,
            id="fast-1",
            kind="rain_rate",
            region="suwon",
            expected_interval="1s",
        ),
    ]
    return inv


def hub_config(
    tmp_path: Path,
    mosquitto_url: str,
    influx_url: str,
    prefix: str,
    database: str,
    uid: str,
    listen: str,
    extra_tokens: list[dict[str, Any]] | None = None,
    **sections: Any,
) -> Path:
    """A hub.yaml with the demo tokens, the flood rule and a listen address of the test's own;
    `sections` adds others (notify, actuators, ...)."""
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "flood.yaml").write_text(FLOOD)
    tokens: list[dict[str, Any]] = [*api_tokens(OPERATOR, VIEWER), *(extra_tokens or [])]
    return write_config(
        tmp_path / "hub.yaml",
        **service_sections(mosquitto_url, influx_url, prefix, database, uid, flush_interval="50ms"),
        inventory=[str(write_site(tmp_path / "site", province()))],
        rules=[str(tmp_path / "rules")],
        api={"listen": listen, "tokens": tokens},
        data_dir=str(tmp_path / "var"),
        **sections,
    )
