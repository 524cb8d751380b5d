"""Validation: every message, with its position, and every problem in one pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import load_config
from hub.inventory import load_inventory
from hub.rules import check_rules, rules_checker
from hub.rules.check import check_text
from tests.rules.helpers import INVENTORY, ROOT, problems, rules

HEAD = "rules:\n  - {id: a, severity: minor, sensors: {kind: water_level}, "


def one(rest: str, **kw: object) -> list[str]:
    """Problems of a one-rule file whose rule ends with `rest`."""
    return problems(HEAD + rest + "}\n", **kw)  # type: ignore[arg-type]


def messages(found: list[str]) -> list[str]:
    return [p.split(": ", 1)[1] for p in found]


def test_unknown_keys_get_did_you_mean_at_the_key() -> None:
    text = """
rules:
  - id: a
    severity: severe
    sensors: {kind: water_level}
    trigger: {abvoe: 15 cm}
    clr: {below: 1}
"""
    assert problems(text) == [
        "6:15: trigger.abvoe: unknown key 'abvoe', did you mean 'above'?",
        "7:5: clr: unknown key 'clr', did you mean 'clear'?",
    ]


def test_unknown_values_get_did_you_mean() -> None:
    text = """
rules:
  - id: a
    severity: sever
    mode: singel
    per: sit
    sensors: {kind: water_levl, site_type: underpas, region: r3, site: u3, id: wl-9}
    trigger: {above: 15 cm}
"""
    assert problems(text) == [
        "4:15: severity: unknown severity 'sever', did you mean 'severe'?",
        "5:11: mode: unknown mode 'singel', did you mean 'single'?",
        "6:10: per: unknown grouping 'sit', did you mean 'site'?",
        "7:21: sensors.kind: unknown sensor kind 'water_levl', did you mean 'water_level'?",
        "7:44: sensors.site_type: unknown site type 'underpas', did you mean 'underpass'?",
        "7:62: sensors.region: unknown region 'r3'",
        "7:72: sensors.site: unknown site 'u3'",
        "7:80: sensors.id: unknown sensor id 'wl-9', did you mean 'wl-3'?",
    ]


def test_without_an_inventory_only_near_misses_of_site_types_are_typos() -> None:
    text = HEAD.replace("{kind: water_level}", "{site_type: [canal, underpas]}") + "trigger: {}}\n"
    found = problems(text, inventory=None)
    assert "unknown site type 'underpas', did you mean 'underpass'?" in found[0]
    assert not any("canal" in p for p in found)


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("trigger: {above: 15 kg}", "trigger.above: unknown unit 'kg' in '15 kg'"),
        (
            "trigger: {above: 15 %}",
            "trigger.above: 15 % does not fit the selected water_level sensors, "
            "whose readings are in m",
        ),
        (
            "trigger: {above: 20 cm, below: 10 cm}",
            "trigger: a value can never be above 20 cm and below 10 cm at the same time; "
            "you probably want two conditions under any:",
        ),
        (
            "trigger: {above: fifteen}",
            "trigger.above: cannot read 'fifteen' as a number with a unit, such as 15 cm",
        ),
        (
            "trigger: {above: 1, for: 5 minutes}",
            "trigger.for: cannot read '5 minutes' as a duration; write it like 30s, 5m, 1h30m, "
            "250ms or 2d",
        ),
        (
            "trigger: {above: 1, equals: 2}",
            "trigger.equals: equals: cannot go with above: or below:",
        ),
    ],
)
def test_levels_and_units(rest: str, message: str) -> None:
    assert messages(one(rest)) == [message]


def test_a_threshold_over_sensors_of_several_kinds_is_ambiguous() -> None:
    text = "rules:\n  - {id: c, severity: minor, sensors: {site: u1}, trigger: {above: 15 cm}}\n"
    assert messages(problems(text)) == [
        "trigger: compares readings of flood_switch and water_level sensors, whose units "
        "differ; narrow sensors: with kind:"
    ]


@pytest.mark.parametrize(
    ("trigger", "clear", "message"),
    [
        (
            "above: 15 cm",
            "below: 20 cm",
            "clear.below: 20 cm is above trigger.above 15 cm: the incident would clear while "
            "still triggered; put the clear level below the trigger level",
        ),
        (
            "below: 15 cm",
            "above: 10 cm",
            "clear.above: 10 cm is below trigger.below 15 cm: the incident would clear while "
            "still triggered; put the clear level above the trigger level",
        ),
        (
            "above: 15 cm",
            "above: 10 cm",
            "clear.above: the trigger is above 15 cm, so clearing above 10 cm would clear the "
            "incident while the value is still high; did you mean clear.below?",
        ),
        (
            "below: 15 cm",
            "below: 10 cm",
            "clear.below: the trigger is below 15 cm, so clearing below 10 cm would clear the "
            "incident while the value is still low; did you mean clear.above?",
        ),
    ],
)
def test_clear_levels_on_the_wrong_side_explain_themselves(
    trigger: str, clear: str, message: str
) -> None:
    assert messages(one(f"trigger: {{{trigger}}}, clear: {{{clear}}}")) == [message]


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        (
            "trigger: {missing: 5m, for: 1m}",
            "trigger.for: for: does not go with missing:, which already waits; write the whole "
            "time as missing:, e.g. missing: 10m instead of missing: 5m, for: 5m",
        ),
        (
            "trigger: {all: [{above: 1}], for: 1m}",
            "trigger.for: for: goes on each sensor condition inside all:, any: or at_least:, not "
            "on the group",
        ),
        (
            "trigger: {incident: x, for: 1m}",
            "trigger.for: for: does not go with incident:; an incident already stands for a "
            "condition that held, so put the for: on that rule's trigger",
        ),
        (
            "trigger: {detection: {classes: [person], within: 1m}, for: 1m}",
            "trigger.for: for: does not go with detection:; say how recent the detection must be "
            "with within:",
        ),
        (
            "trigger: {at_least: 3, of: [{above: 1}, {below: 0}]}",
            "trigger.at_least: at_least: 3 but of: has only 2 conditions, so it can never hold",
        ),
        (
            "trigger: {above: 1, rate: {rise: 1, within: 1m}}",
            "trigger: a condition tests one thing, and above and rate are different tests; write "
            "them as separate conditions under all: or any:",
        ),
        (
            "trigger: {above: 1}, all: [{above: 2}]",
            "all: write the condition either under trigger: or as all:/any:/at_least: on the "
            "rule, not both",
        ),
        ("title: t", "a rule needs a trigger: (or all:, any: or at_least: with of:)"),
        (
            "trigger: {sensors: {id: wl-1}, above: 1}",
            "trigger.sensors: a condition's own sensors: needs per: site or per: region; with "
            "per: sensor each incident is about one of the rule's sensors",
        ),
        (
            "trigger: {above: 1, match: all}",
            "trigger.match: match: counts the sensors of a site or region; it needs per: site or "
            "per: region",
        ),
        (
            "per: site, trigger: {sensors: {kind: tilt}, above: 1}",
            "trigger.sensors: selects no sensor in the inventory (together with the rule's "
            "sensors:): nothing matches kind water_level, kind tilt",
        ),
        ("trigger: {of: [{above: 1}]}", "trigger.of: of: needs at_least: N before it"),
        (
            "trigger: {at_least: 1}",
            "trigger.at_least: at_least: needs of: with the list of conditions",
        ),
        (
            "trigger: {all: [{above: 1}], any: [{above: 2}]}",
            "trigger: all and any cannot go together; nest one inside the other, e.g. all: "
            "[{any: [...]}, ...]",
        ),
        (
            "trigger: {}",
            "trigger: a condition needs one of above, below, equals, rate, missing, incident, "
            "detection, camera_event, all, any, at_least, not",
        ),
        ("trigger: {all: []}", "trigger.all: expected a list of conditions, got a list"),
        (
            "trigger: {rate: {within: 1m}}",
            "trigger.rate: say either rise: or fall:, for example {rise: 0.5 deg, within: 1h}",
        ),
        (
            "trigger: {rate: {rise: 0 cm, within: 1m}}",
            "trigger.rate.rise: must be more than zero, got 0 cm",
        ),
        (
            "trigger: {rate: {rise: 1 cm}}",
            "trigger.rate: say within how long, for example {rise: 0.5 deg, within: 1h}",
        ),
        (
            "per: region, trigger: {detection: {classes: [person], within: 1m, cameras: site}}",
            "trigger.detection.cameras: a region has no site; write cameras: region or list "
            "camera ids",
        ),
        (
            "trigger: {detection: {within: 1m, min_score: 2}}",
            "trigger.detection: classes: is missing; for example {classes: [person, car], "
            "min_count: 1, within: 2m}",
        ),
        (
            "trigger: {incident: {state: open}}",
            "trigger.incident: say which rule's incidents, for example {rule: heavy-rain, state: "
            "active}",
        ),
        (
            "trigger: {incident: {rule: a, state: actve}}",
            "trigger.incident.state: unknown incident state 'actve', did you mean 'active'?",
        ),
        (
            "trigger: 15 cm",
            "trigger: expected a condition such as {above: 15 cm, for: 30s}, got '15 cm'",
        ),
    ],
)
def test_condition_structure(rest: str, message: str) -> None:
    assert message in messages(one(rest))


def test_rule_level_problems() -> None:
    text = """
rules:
  - {id: j, severity: minor, sensors: {kind: tilt, site: u2}, trigger: {above: 1}}
  - {severity: minor, sensors: {kind: water_level}, trigger: {above: 1}}
  - {id: "bad id!", sensors: {kind: water_level}, trigger: {above: 1}}
  - {id: k, severity: minor, trigger: {above: 1}}
  - {id: l, severity: minor, sensors: {}, trigger: {above: 1}}
  - {id: m, severity: minor, sensors: {kind: water_level}, trigger: {above: 1}, stale_after: -1}
"""
    assert problems(text) == [
        "3:39: sensors: selects no sensor in the inventory: nothing matches kind tilt, site u2",
        "4:5: id: is missing; every rule needs an id such as underpass-flooding",
        "5:5: severity: is missing; one of minor, moderate, severe, extreme",
        "5:10: id: 'bad id!' is not a rule id: use letters, digits, '-', '_', '.'",
        "6:5: sensors: is missing: say which sensors this rule watches",
        "7:39: sensors: say which sensors, for example {kind: water_level, site_type: underpass}",
        "8:94: stale_after: a duration cannot be negative: -1",
    ]


def test_references_between_rules() -> None:
    text = """
rules:
  - {id: a, severity: minor, sensors: {kind: water_level}, trigger: {incident: {rule: b}}}
  - {id: b, severity: minor, sensors: {kind: water_level}, trigger: {incident: {rule: c}}}
  - {id: c, severity: minor, sensors: {kind: water_level}, trigger: {incident: {rule: a}}}
  - {id: d, severity: minor, sensors: {kind: water_level}, trigger: {incident: {rule: flod}}}
  - {id: flood, severity: minor, sensors: {kind: water_level}, trigger: {incident: flood}}
  - {id: a, severity: minor, sensors: {kind: water_level}, trigger: {above: 1}}
"""
    assert problems(text) == [
        "3:10: id: rule a depends on its own incidents through a -> b -> c -> a; "
        "incident conditions cannot form a cycle",
        "6:87: trigger.incident.rule: unknown rule 'flod', did you mean 'flood'?",
        "7:10: id: rule flood depends on its own incidents through flood -> flood; "
        "incident conditions cannot form a cycle",
        "8:10: id: duplicate rule id 'a'; it is already at test.yaml:3",
    ]


def test_actions_and_escalation() -> None:
    text = """
rules:
  - id: a
    severity: minor
    title: "At {sitename}"
    sensors: {kind: water_level}
    trigger: {above: 1}
    actions:
      - notfy: {channels: [x]}
      - {notify: {}, detect: {}}
      - detect: {cameras: [cam-9]}
      - actuate: {actuators: site, kind: barier}
      - notify: {channels: [x], message: "{titel}"}
      - detect: {cameras: site, count: 2, classes: [person]}
      - notify: {}
      - detect: {cameras: nearest, within: 3 miles, classes: [car]}
    escalate:
      - {after: 10m, unless: acked}
      - {notify: {channels: [x]}}
      - {after: 1m}
      - {after: 1m, severity: high}
    on_clear: {notify: {channels: [x]}}
"""
    assert problems(text) == [
        "5:12: title: unknown placeholder {sitename}, did you mean 'site_name'?",
        "9:9: actions[0].notfy: unknown action 'notfy', did you mean 'notify'?",
        "10:9: actions[1]: expected one action such as {notify: {channels: [situation-room]}}, "
        "got a mapping",
        "11:28: actions[2].detect.cameras[0]: unknown camera 'cam-9', did you mean 'cam-2'?",
        "12:18: actions[3].actuate: command: is missing: say what to do, e.g. command: close",
        "12:42: actions[3].actuate.kind: unknown actuator kind 'barier', did you mean 'barrier'?",
        "13:42: actions[4].notify.message: unknown placeholder {titel}, did you mean 'title'?",
        "14:33: actions[5].detect.count: count: goes with cameras: nearest",
        "15:17: actions[6].notify: say who to notify: channels: [...] or region_contacts: true",
        "16:44: actions[7].detect.within: expected a distance such as 300 m or 1.5 km, "
        "got '3 miles'",
        "18:30: escalate[0].unless: unknown condition 'acked'; expected one of acknowledged",
        "19:9: escalate[1]: after: is missing: say how long after the incident opened, e.g. 10m",
        "20:9: escalate[2]: this step does nothing: give it actions (notify:, ...) or a severity:",
        "21:31: escalate[3].severity: unknown severity 'high'; expected one of minor, moderate, "
        "severe, extreme",
        "22:15: on_clear: expected a list of actions, got a mapping",
    ]


def test_an_action_that_finds_no_device_for_any_subject() -> None:
    pump = "{actuate: {actuators: site, kind: pump, command: start}}"
    found = one(f"trigger: {{above: 1}}, actions: [{pump}]")
    assert messages(found) == [
        "actions[0].actuate: finds no pump actuator at the site of any of this rule's subjects "
        "(kind water_level)"
    ]


def test_file_level_problems() -> None:
    assert problems("rulez: []") == ["1:1: rulez: unknown key 'rulez', did you mean 'rules'?"]
    assert problems("rules: 3") == ["1:8: rules: expected a list of rules, got the number 3"]
    assert problems("- a\n") == ["1:1: expected a mapping such as rules: [...], got a list"]
    assert problems("{}") == ["1:1: rules: is missing; a rule file holds rules: [...]"]
    assert problems("rules: [\n  - {id: a") == [
        "2:3: YAML syntax error: did not find expected node content (while parsing a flow node "
        "at 2:3)"
    ]
    assert problems("") == []


def test_every_problem_of_every_file_in_one_pass(tmp_path: Path) -> None:
    inventory = load_inventory([ROOT / "site"])
    (tmp_path / "a.yaml").write_text(
        "rules:\n"
        "  - {id: x, severity: sever, sensors: {kind: water_level}, trigger: {above: 1}}\n"
        "  - {id: y, severity: minor, sensors: {kind: tilt}, trigger: {abov: 1}}\n"
    )
    (tmp_path / "b.yml").write_text(
        "rules:\n  - {id: x, severity: minor, sensors: {kind: tilt}, trigger: {below: 1 furlong}}\n"
    )
    (tmp_path / "notes.txt").write_text("not a rule file")
    ruleset, found = check_rules([tmp_path, tmp_path / "missing.yaml"], inventory)
    assert ruleset is None
    shown = [str(p).replace(str(tmp_path) + "/", "") for p in found]
    assert shown == [
        "a.yaml:2:23: severity: unknown severity 'sever', did you mean 'severe'?",
        "a.yaml:3:63: trigger.abov: unknown key 'abov', did you mean 'above'?",
        "b.yml:2:10: id: duplicate rule id 'x'; it is already at a.yaml:2",
        "b.yml:2:70: trigger.below: 1 furlong does not fit the selected tilt sensors, whose "
        "readings are in deg",
        "missing.yaml: no such file or folder",
    ]


def test_the_example_rules_validate_against_the_example_province() -> None:
    inventory = load_inventory([ROOT / "site"])
    ruleset, found = check_rules([ROOT / "rules"], inventory)
    assert found == []
    assert ruleset is not None
    assert len(ruleset) >= 10


def test_hub_check_gets_the_rule_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    config = load_config(ROOT / "hub.yaml")
    assert rules_checker(config, load_inventory(config.inventory)) == []


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_rules_or_positioned_problems_never_an_exception(text: str) -> None:
    ruleset, found = check_text(text, "fuzz.yaml", None)
    assert (ruleset is None) == bool(found)
    assert all(p.line >= 0 and p.col >= 0 for p in found)


KEYS = ["above", "below", "for", "rate", "missing", "all", "any", "sensors", "match", "clear"]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(KEYS),
        st.one_of(
            st.sampled_from(["15 cm", "5m", "1", "x", "0.5 deg"]),
            st.integers(-5, 5),
            st.just([{"above": 1}]),
            st.just({"rise": "1 cm", "within": "1m"}),
        ),
        max_size=4,
    )
)
def test_any_condition_mapping_is_either_accepted_or_explained(cond: dict[str, object]) -> None:
    text = yaml.safe_dump(
        {"rules": [{"id": "a", "severity": "minor", "per": "site",
                    "sensors": {"kind": "water_level"}, "trigger": cond}]}
    )  # fmt: skip
    ruleset, found = check_text(text, "fuzz.yaml", None)
    assert (ruleset is None) == bool(found)
    assert all(p.line >= 1 for p in found)


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("trigger: {above: 1}, description: [1]", "description: expected text"),
        (
            "trigger: {above: 1}, escalate: {after: 1m}",
            "escalate: expected a list of steps such as {after: 10m, notify: ...}",
        ),
        (
            "trigger: {above: 1, for: 0s}",
            "trigger.for: a duration here must be longer than zero, got '0s'",
        ),
        (
            "trigger: {all: [{above: 1}], of: [{above: 2}]}",
            "trigger.of: of: goes with at_least:, not with all:",
        ),
        (
            "trigger: {detection: {classes: [person], within: 1m, min_count: 0}}",
            "trigger.detection.min_count: must be at least 1, got 0",
        ),
        (
            "trigger: {detection: {classes: [person], within: 1m, min_score: 2}}",
            "trigger.detection.min_score: expected a number from 0 to 1, got the number 2",
        ),
        (
            "trigger: {above: 1}, title: 'At {site'",
            "title: cannot read the placeholders in 'At {site': expected '}' before end of "
            "string; write {{ for {",
        ),
        (
            "trigger: {above: 1}, actions: [{notify: {channels: [x], region_contacts: maybe}}]",
            "actions[0].notify.region_contacts: expected true or false, got 'maybe'",
        ),
        (
            "trigger: {above: 1}, actions: [{detect: {cameras: 3, classes: [x]}}]",
            "actions[0].detect.cameras: expected nearest, site, region or a list of camera ids, "
            "got the number 3",
        ),
        (
            "trigger: {above: 1}, actions: [{notify: {channels: []}}]",
            "actions[0].notify.channels: expected at least one channel, got an empty list",
        ),
    ],
)
def test_more_values(rest: str, message: str) -> None:
    assert messages(one(rest)) == [message]


def test_selector_and_rule_shapes() -> None:
    assert problems("rules:\n  - just text\n") == [
        "2:5: expected a mapping such as {id: underpass-flooding, severity: severe, "
        "sensors: {...}, trigger: {...}}, got 'just text'"
    ]
    text = "rules:\n  - {id: a, severity: minor, sensors: {kinds: tilt}, trigger: {above: 1}}\n"
    assert problems(text) == ["2:40: sensors.kinds: unknown key 'kinds', did you mean 'kind'?"]
    text = "rules:\n  - {id: a, severity: minor, sensors: {kind: [1]}, trigger: {above: 1}}\n"
    assert problems(text) == ["2:47: sensors.kind[0]: expected a sensor kind, got the number 1"]


def test_a_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"rules: [\xff]\n")
    _, found = check_rules([tmp_path / "bad.yaml"], None)
    assert [p.message for p in found] == ["not UTF-8 text (bad byte at offset 8)"]


def test_a_detect_action_without_classes_leaves_them_to_the_detectors() -> None:
    found = rules(
        """
rules:
  - id: flood
    severity: severe
    sensors: [wl-1]
    trigger: {above: 15 cm}
    actions:
      - detect: {cameras: site}
      - detect: {cameras: site, classes: [person]}
"""
    )
    first, second = found.rules[0].actions
    assert first.classes == ()  # type: ignore[union-attr]
    assert second.classes == ("person",)  # type: ignore[union-attr]


# -- commands: what each actuator kind takes (hub.yaml's actuators.commands) -----------------

COMMANDS = """
rules:
  - id: a
    severity: severe
    sensors: [wl-1]
    trigger: {above: 1}
    actions:
      - actuate: {actuators: site, kind: barrier, command: explode, on_clear: open}
      - actuate: {actuators: site, kind: barrier, command: close, on_clear: blow}
      - actuate: {actuators: [siren-1], command: close}
      - actuate: {actuators: region, command: close}
    escalate:
      - {after: 10m, actuate: {actuators: site, kind: [barrier, siren], command: "on"}}
"""


def test_a_command_its_kind_does_not_take_is_a_problem_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "flood.yaml").write_text(COMMANDS)
    ruleset, found = check_rules([tmp_path], INVENTORY)
    assert ruleset is None
    assert [str(p).replace(str(tmp_path) + "/", "") for p in found] == [
        "flood.yaml:8:60: actions[0].actuate.command: 'explode' is not a command of barrier; "
        "a barrier takes close, open",
        "flood.yaml:9:77: actions[1].actuate.on_clear: 'blow' is not a command of barrier; "
        "a barrier takes close, open",
        "flood.yaml:10:50: actions[2].actuate.command: 'close' is not a command of siren "
        "siren-1; a siren takes on, off",
        "flood.yaml:11:47: actions[3].actuate.command: 'close' is not a command of siren "
        "siren-1; a siren takes on, off (this action names no kind, and finds it in the region "
        "of a subject of this rule: add kind: barrier)",
        "flood.yaml:13:82: escalate[0].actuate.command: 'on' is not a command of barrier; "
        "a barrier takes close, open",
    ]


def test_commands_come_from_the_configuration() -> None:
    lock = "trigger: {above: 1}, actions: [{actuate: {kind: barrier, command: lock}}]"
    assert messages(one(lock)) == [
        "actions[0].actuate.command: 'lock' is not a command of barrier; a barrier takes "
        "close, open"
    ]
    assert one(lock, commands={"barrier": ("close", "open", "lock")}) == []
    pump = "trigger: {above: 1}, actions: [{actuate: {kind: barrier, command: close}}]"
    assert messages(one(pump, commands={"pump": ("start", "stop")})) == [
        "actions[0].actuate.command: barrier takes no commands: actuators.commands in hub.yaml "
        "lists none for the kind 'barrier'; add barrier: [...] there with the commands it takes"
    ]


def test_without_an_inventory_the_kind_named_is_checked() -> None:
    text = HEAD + "trigger: {above: 1}, actions: [{actuate: {kind: pump, command: close}}]}\n"
    assert messages(problems(text, None)) == [
        "actions[0].actuate.command: 'close' is not a command of pump; a pump takes start, stop"
    ]
