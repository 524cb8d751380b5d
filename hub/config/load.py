"""Read hub.yaml, apply the environment and command-line overrides, and validate it all."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.config.messages import message
from hub.config.model import HubConfig, _redact
from hub.config.problems import ConfigError, KeyPath, Problem, display_path, format_path
from hub.config.yaml_source import SourceMap, parse_yaml
from hub.tls import KEY_PASSWORD_ENV, TlsSetupError, mqtt_ssl_context

DEFAULT_FILE = Path("hub.yaml")
# Used when the file does not set them, and only if they exist next to it.
_DEFAULT_FOLDERS = {"inventory": "site", "rules": "rules"}
# (path in the file, environment variable): the variable beats the file.
_FROM_ENV: tuple[tuple[KeyPath, str], ...] = (
    (("mqtt", "url"), "HUB_MQTT_URL"),
    (("mqtt", "username"), "HUB_MQTT_USERNAME"),
    (("mqtt", "password"), "HUB_MQTT_PASSWORD"),
    (("mqtt", "key_password"), KEY_PASSWORD_ENV),
    (("influx", "url"), "HUB_INFLUX_URL"),
    (("influx", "username"), "HUB_INFLUX_USERNAME"),
    (("influx", "password"), "HUB_INFLUX_PASSWORD"),
    (("store", "username"), "HUB_STORE_USERNAME"),
    (("store", "password"), "HUB_STORE_PASSWORD"),
    (("live", "secret"), "HUB_LIVE_SECRET"),
    (("plates", "secret"), "HUB_PLATES_SECRET"),
)

# Keys that were removed, with why. A file that still has one is read with a warning that says
# so (`hub check` prints it, `hub run` logs it); a later release will refuse them as unknown.
_REMOVED: tuple[tuple[KeyPath, str], ...] = (
    (
        ("mqtt", "qos"),
        "it was never read: each subscription and message has the QoS it needs (readings, "
        "commands and incidents QoS 1)",
    ),
    (
        ("influx", "create_database"),
        "it was never read: the hub always asks InfluxDB to create the database and goes on "
        "if the user may not (the database must then exist)",
    ),
)


def _config_file(path: Path | None, env: Mapping[str, str]) -> tuple[Path | None, str]:
    """The file to read and where its name came from; None when there is none to read."""
    if path is not None:
        return path, "-c"
    if env.get("HUB_CONFIG"):
        return Path(env["HUB_CONFIG"]), "$HUB_CONFIG"
    if DEFAULT_FILE.is_file():
        return DEFAULT_FILE, "default"
    return None, ""


def _read(path: Path, origin: str) -> tuple[Any, SourceMap, list[Problem]]:
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([Problem(shown, 0, 0, f"no such file (named by {origin})")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(shown, 0, 0, f"not UTF-8 text: {exc.reason}")]) from None
    except OSError as exc:
        raise ConfigError([Problem(shown, 0, 0, f"cannot read: {exc.strerror}")]) from None
    return parse_yaml(text, shown)


def _override(data: dict[str, Any], path: KeyPath, value: str) -> bool:
    """Set `value` at `path`, unless a section on the way is not a mapping (reported later)."""
    section = data.setdefault(str(path[0]), {})
    if section is None:
        section = data[str(path[0])] = {}
    if not isinstance(section, dict):
        return False
    section[str(path[1])] = value
    return True


def _apply_overrides(
    data: dict[str, Any], mqtt_url: str | None, influx_url: str | None, env: Mapping[str, str]
) -> dict[KeyPath, str]:
    """Put flags and environment variables into `data`; return where each value came from."""
    origins: dict[KeyPath, str] = {}
    flags: dict[KeyPath, tuple[str, str | None]] = {
        ("mqtt", "url"): ("--mqtt", mqtt_url),
        ("influx", "url"): ("--influx", influx_url),
    }
    for key_path, variable in _FROM_ENV:
        flag, flag_value = flags.get(key_path, ("", None))
        if flag_value is not None:
            if _override(data, key_path, flag_value):
                origins[key_path] = flag
        elif env.get(variable) and _override(data, key_path, env[variable]):
            origins[key_path] = f"${variable}"
    return origins


def _translate(
    exc: ValidationError, origins: dict[KeyPath, str], where: SourceMap, file: str
) -> list[Problem]:
    """pydantic's errors as problems, at the value's position or named by its flag/variable."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc, text = message(HubConfig, error)
        origin = next((o for p, o in origins.items() if loc[: len(p)] == p), None)
        if origin is not None:
            problems.append(Problem(origin, 0, 0, text))
            continue
        pos = where.nearest(loc, key=error["type"] == "extra_forbidden")
        line, col = (pos.line, pos.col) if pos else (0, 0)
        problems.append(Problem(file, line, col, text))
    return problems


def _take_removed(data: dict[str, Any], where: SourceMap, file: str) -> list[Problem]:
    """Drop the removed keys from `data`, with a warning for each one found."""
    warnings: list[Problem] = []
    for path, why in _REMOVED:
        section = data.get(str(path[0]))
        if not isinstance(section, dict) or path[1] not in section:
            continue
        del section[path[1]]
        pos = where.nearest(path, key=True)
        text = (
            f"{format_path(path)} was removed, and is ignored: {why}; delete it "
            "(a later release will refuse it)"
        )
        line, col = (pos.line, pos.col) if pos else (0, 0)
        warnings.append(Problem(file, line, col, text, warning=True))
    return warnings


def _tls_check(
    config: HubConfig, origins: dict[KeyPath, str], where: SourceMap, file: str
) -> list[Problem]:
    """The CA bundle, certificate and key can be loaded, and the key matches the certificate."""
    try:
        mqtt_ssl_context(config.mqtt)
    except TlsSetupError as exc:
        path: KeyPath = ("mqtt", exc.key)
        text = str(exc)
        if path in origins:
            return [Problem(origins[path], 0, 0, text)]
        pos = where.nearest(path)
        return [Problem(file, pos.line if pos else 0, pos.col if pos else 0, text)]
    return []


def _cross_checks(data: dict[str, Any], base: Path, where: SourceMap, file: str) -> list[Problem]:
    """Checks that span several values, or the disk, with the position of the culprit.

    They read the raw data, defensively, so that they run even when other values are wrong.
    """
    problems: list[Problem] = []

    def at(path: KeyPath, text: str) -> None:
        pos = where.nearest(path)
        line, col = (pos.line, pos.col) if pos else (0, 0)
        problems.append(Problem(file, line, col, text))

    for key in ("inventory", "rules"):
        items = data.get(key)
        for i, item in enumerate([items] if isinstance(items, str) else items or ()):
            if isinstance(item, str) and not (base / Path(item).expanduser()).exists():
                at((key, i), f"{key}[{i}]: no such file or folder: {item}")
    api = data.get("api")
    tokens = api.get("tokens") if isinstance(api, dict) else None
    seen: dict[tuple[str, str], int] = {}
    for i, token in enumerate(tokens if isinstance(tokens, list) else ()):
        if not isinstance(token, dict):
            continue
        for field in ("name", "sha256"):
            value = token.get(field)
            if not isinstance(value, str):
                continue
            first = seen.setdefault((field, value.strip().lower()), i)
            if first == i:
                continue
            if field == "name":
                text = f"{value!r} is already the name of api.tokens[{first}]"
            else:
                text = f"the same token as api.tokens[{first}]; give each client its own"
            at(("api", "tokens", i, field), f"api.tokens[{i}].{field}: {text}")
    return problems


def load_config(
    path: Path | None = None,
    *,
    mqtt_url: str | None = None,
    influx_url: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> HubConfig:
    """Load and validate the configuration, or raise ConfigError with every problem in it.

    The file is `path`, else $HUB_CONFIG, else ./hub.yaml if it exists, else none (all
    defaults). A flag beats its environment variable, which beats the file.
    """
    source, origin = _config_file(path, env)
    data: Any = None
    where = SourceMap(None)
    file = "<defaults>"
    problems: list[Problem] = []
    if source is not None:
        file = display_path(source)
        data, where, problems = _read(source, origin)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(
            Problem(file, 1, 1, "expected sections such as mqtt:, influx: and inventory: here")
        )
        raise ConfigError(problems)
    base = source.absolute().parent if source is not None else Path.cwd()
    if source is not None:
        for key, folder in _DEFAULT_FOLDERS.items():
            if key not in data and (base / folder).exists():
                data[key] = [folder]

    warnings = _take_removed(data, where, file)
    origins = _apply_overrides(data, mqtt_url, influx_url, env)
    problems += _cross_checks(data, base, where, file)
    try:
        config = HubConfig.model_validate(data, context={"base": base})
    except ValidationError as exc:
        problems += _translate(exc, origins, where, file)
        raise ConfigError(problems) from None
    problems += _tls_check(config, origins, where, file)
    if problems:
        raise ConfigError(problems)
    config._source = source
    config._warnings = tuple(warnings)
    return config


def defaults_notice(config: HubConfig) -> str | None:
    """For a hub started without a config file: one line that says where it looked and what
    it runs on; None when it read a file."""
    if config.source is not None:
        return None
    folders = {
        key: ", ".join(str(p) for p in paths) or "none"
        for key, paths in (("inventory", config.inventory), ("rules", config.rules))
    }
    if not config.inventory:
        folders["inventory"] += " (no sensors: every reading is refused)"
    return (
        f"no config file (no -c, no $HUB_CONFIG, no {DEFAULT_FILE} in {Path.cwd()}): running on "
        f"the defaults: MQTT {_redact(config.mqtt.url)}, InfluxDB {_redact(config.influx.url)} "
        f"database {config.influx.database}, data_dir {Path(config.data_dir).absolute()}, "
        f"inventory {folders['inventory']}, rules {folders['rules']}"
    )
