"""`hub check`: every channel a rule notifies, or a region it notifies lists, is configured."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hub.config.problems import ConfigError, KeyPath, Problem, did_you_mean, display_path
from hub.config.yaml_source import SourceMap, parse_yaml
from hub.inventory import Inventory

if TYPE_CHECKING:
    from hub.config import HubConfig


def _notifies(rule: Any, base: KeyPath) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
    """Each `notify:` mapping of a rule as written, with its path."""

    def in_list(items: Any, path: KeyPath) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
        placed = list(enumerate(items)) if isinstance(items, list) else []
        for i, item in placed:
            if isinstance(item, dict) and isinstance(item.get("notify"), dict):
                yield (*path, i, "notify"), item["notify"]

    if not isinstance(rule, dict):
        return
    yield from in_list(rule.get("actions"), (*base, "actions"))
    yield from in_list(rule.get("on_clear"), (*base, "on_clear"))
    steps = rule.get("escalate")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict):
            if isinstance(step.get("notify"), dict):
                yield (*base, "escalate", i, "notify"), step["notify"]
            yield from in_list(step.get("actions"), (*base, "escalate", i, "actions"))


def _problem(file: str, where: SourceMap, path: KeyPath, message: str) -> Problem:
    pos = where.nearest(path)
    return Problem(file, pos.line if pos else 0, pos.col if pos else 0, message)


def notify_checker(config: HubConfig, inventory: Inventory | None) -> list[Problem]:
    """For `hub check`: rules' notify channels (and region contacts) not configured."""
    known = sorted(config.notify.channels)
    problems: list[Problem] = []
    for path in config.rule_files():
        file = display_path(path)
        try:
            data, where, _ = parse_yaml(path.read_text(encoding="utf-8"), file)
        except (OSError, UnicodeDecodeError, ConfigError):
            continue  # the rules' own check reports files it cannot read
        rules = data.get("rules") if isinstance(data, dict) else None
        for r, rule in enumerate(rules if isinstance(rules, list) else []):
            for at, notify in _notifies(rule, ("rules", r)):
                channels = notify.get("channels")
                for i, name in enumerate(channels if isinstance(channels, list) else []):
                    if isinstance(name, str) and name not in config.notify.channels:
                        hint = did_you_mean(name, known) or _listing(known)
                        message = f"channel {name!r} is not configured in notify.channels{hint}"
                        problems.append(_problem(file, where, (*at, "channels", i), message))
                if notify.get("region_contacts") is True and inventory is not None:
                    problems += _contacts(config, inventory, file, where, (*at, "region_contacts"))
    return problems


def _listing(known: list[str]) -> str:
    return f"; configured: {', '.join(known)}" if known else "; none are configured"


def _contacts(
    config: HubConfig, inventory: Inventory, file: str, where: SourceMap, at: KeyPath
) -> list[Problem]:
    missing = sorted(
        {
            (contact, region.id)
            for region in inventory.regions.values()
            for contact in region.contacts
            if contact not in config.notify.channels
        }
    )
    if not missing:
        return []
    names = ", ".join(f"{c!r} (region {r})" for c, r in missing)
    message = f"region contacts not configured in notify.channels: {names}"
    return [_problem(file, where, at, message)]
