"""Configuration: hub.yaml, its overrides, and problems reported as `file:line:col: message`.

The names below load on first use (PEP 562): the model imports the sections that other
parts own (`hub.actuators.config`, `hub.notify.config`), and those build on
`hub.config.types`; loading the model eagerly here would make that a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.config.load import load_config
    from hub.config.model import (
        ApiConfig,
        ApiToken,
        HaConfig,
        HubConfig,
        InfluxConfig,
        IngestConfig,
        MqttConfig,
        StoreConfig,
    )
    from hub.config.paths import collect_files
    from hub.config.problems import ConfigError, KeyPath, Problem, did_you_mean, format_path
    from hub.config.yaml_source import Position, SourceMap, load_yaml, parse_yaml

_WHERE = {
    "load_config": "load",
    "ApiConfig": "model",
    "ApiToken": "model",
    "HubConfig": "model",
    "InfluxConfig": "model",
    "IngestConfig": "model",
    "MqttConfig": "model",
    "HaConfig": "model",
    "StoreConfig": "model",
    "collect_files": "paths",
    "ConfigError": "problems",
    "KeyPath": "problems",
    "Problem": "problems",
    "did_you_mean": "problems",
    "format_path": "problems",
    "Position": "yaml_source",
    "SourceMap": "yaml_source",
    "load_yaml": "yaml_source",
    "parse_yaml": "yaml_source",
}

__all__ = [
    "ApiConfig",
    "ApiToken",
    "ConfigError",
    "HaConfig",
    "HubConfig",
    "InfluxConfig",
    "IngestConfig",
    "KeyPath",
    "MqttConfig",
    "Position",
    "Problem",
    "SourceMap",
    "StoreConfig",
    "collect_files",
    "did_you_mean",
    "format_path",
    "load_config",
    "load_yaml",
    "parse_yaml",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hub.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hub.config.{module}"), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value
