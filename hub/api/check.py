"""Tokens' regions against the inventory: for `hub check`, and before the hub starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.config.problems import ConfigError, Problem, did_you_mean
from hub.config.yaml_source import source_map
from hub.inventory import Inventory

if TYPE_CHECKING:
    from hub.config import HubConfig


def tokens_checker(config: HubConfig, inventory: Inventory | None) -> list[Problem]:
    """A problem for each region a token of `api.tokens` names that the inventory lacks."""
    if inventory is None:
        return []  # the inventory's own problems are reported
    known = sorted(inventory.regions)
    wrong = [
        (i, j, token.name, region)
        for i, token in enumerate(config.api.tokens)
        for j, region in enumerate(token.regions or ())
        if region not in inventory.regions
    ]
    if not wrong:
        return []
    file, where = source_map(config.source)
    problems = []
    for i, j, name, region in wrong:
        pos = where.nearest(("api", "tokens", i, "regions", j))
        hint = did_you_mean(region, known) or f"; the inventory has {', '.join(known) or 'none'}"
        text = f"api.tokens[{i}].regions: token {name!r} names region {region!r}, which the "
        text += f"inventory does not have{hint}"
        problems.append(Problem(file, pos.line if pos else 0, pos.col if pos else 0, text))
    return problems


def check_tokens(config: HubConfig, inventory: Inventory) -> None:
    """Before the hub starts: ConfigError if a token names a region the inventory lacks (a
    city's desk that sees nothing, silently, is worse than a hub that does not start)."""
    problems = tokens_checker(config, inventory)
    if problems:
        raise ConfigError(problems)
