"""Configuration: hub.yaml, its overrides, and problems reported as `file:line:col: message`."""

from hub.config.load import load_config
from hub.config.model import (
    ApiConfig,
    ApiToken,
    HubConfig,
    InfluxConfig,
    IngestConfig,
    MqttConfig,
)
from hub.config.paths import collect_files
from hub.config.problems import ConfigError, KeyPath, Problem, did_you_mean, format_path
from hub.config.yaml_source import Position, SourceMap, load_yaml, parse_yaml

__all__ = [
    "ApiConfig",
    "ApiToken",
    "ConfigError",
    "HubConfig",
    "InfluxConfig",
    "IngestConfig",
    "KeyPath",
    "MqttConfig",
    "Position",
    "Problem",
    "SourceMap",
    "collect_files",
    "did_you_mean",
    "format_path",
    "load_config",
    "load_yaml",
    "parse_yaml",
]
