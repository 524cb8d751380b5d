"""Numbers in rule files are finite and in range; a refusal names the key and the range."""

from __future__ import annotations

import pytest

from tests.rules.helpers import problems, rules

HEAD = "rules:\n  - {id: a, severity: minor, sensors: {kind: water_level}, "
SPAN = "a number here is from -1e+12 to 1e+12 (not NaN or infinity), got "


def one(rest: str) -> list[str]:
    """The messages (without positions) of a one-rule file whose rule ends with `rest`."""
    return [p.split(": ", 1)[1] for p in problems(HEAD + rest + "}\n")]


def ok(rest: str) -> None:
    rules(HEAD + rest + "}\n")


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("trigger: {above: .nan}", "trigger.above: " + SPAN + "nan"),
        ("trigger: {above: .inf}", "trigger.above: " + SPAN + "inf"),
        ("trigger: {below: -.inf}", "trigger.below: " + SPAN + "-inf"),
        # YAML 1.1 reads 1.0e+400 as a float (infinity), and 1.0e400 as text.
        ("trigger: {above: 1.0e+400}", "trigger.above: " + SPAN + "inf"),
        ("trigger: {above: 1.0e400}", "trigger.above: " + SPAN + "'1.0e400'"),
        ("trigger: {above: 1e400 cm}", "trigger.above: " + SPAN + "'1e400 cm'"),
        ("trigger: {above: 1000000000001}", "trigger.above: " + SPAN + "1000000000001"),
        (f"trigger: {{above: {10**400}}}", "trigger.above: " + SPAN + "a number of about 401"),
        (
            "trigger: {rate: {rise: .inf, within: 1h}}",
            "trigger.rate.rise: " + SPAN + "inf",
        ),
        (
            "trigger: {rate: {fall: 2.0e+12 cm, within: 1h}}",
            "trigger.rate.fall: " + SPAN + "'2.0e+12 cm'",
        ),
    ],
)
def test_thresholds_must_be_finite_and_in_range(rest: str, message: str) -> None:
    [found] = one(rest)
    assert found.startswith(message)


def test_thresholds_at_the_limit_are_read() -> None:
    ok("trigger: {above: 1000000000000}")
    ok("trigger: {below: -1e12 m}")
    ok("trigger: {rate: {rise: 1e12 mm, within: 1h}}")


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        (
            "trigger: {detection: {classes: [person], within: 1m, min_count: 1000001}}",
            "trigger.detection.min_count: must be at most 1000000, got 1000001",
        ),
        (
            "per: site, trigger: {above: 1, match: 1000001}",
            "trigger.match: must be at most 1000000, got 1000001",
        ),
        (
            f"per: site, trigger: {{above: 1, match: {10**400}}}",
            "trigger.match: must be at most 1000000, got a number of about 401 digits",
        ),
        (
            "trigger: {above: 1}, actions: [{detect: {cameras: nearest, count: 1000001}}]",
            "actions[0].detect.count: must be at most 1000000, got 1000001",
        ),
        (
            "trigger: {above: 1}, actions: [{detect: {cameras: nearest, within: 20001 km}}]",
            "actions[0].detect.within: a distance here is at most 20000 km, got '20001 km'",
        ),
        (
            "trigger: {above: 1}, actions: [{detect: {cameras: nearest, within: .inf}}]",
            "actions[0].detect.within: a distance here is at most 20000 km, got the number inf",
        ),
        (
            "trigger: {above: 1}, actions: [{detect: {cameras: nearest, within: 1.0e+400 m}}]",
            "actions[0].detect.within: a distance here is at most 20000 km, got '1.0e+400 m'",
        ),
        (
            "trigger: {above: 1}, actions: [{detect: {cameras: nearest, within: .nan}}]",
            "actions[0].detect.within: expected a distance such as 300 m or 1.5 km, "
            "got the number nan",
        ),
        (
            "trigger: {above: 1}, actions: [{detect: {cameras: nearest, min_score: .nan}}]",
            "actions[0].detect.min_score: expected a number from 0 to 1, got the number nan",
        ),
    ],
)
def test_counts_and_distances_have_a_ceiling(rest: str, message: str) -> None:
    assert one(rest) == [message]


def test_counts_and_distances_at_the_limit_are_read() -> None:
    ok("trigger: {detection: {classes: [person], within: 1m, min_count: 1000000}}")
    ok("per: site, trigger: {above: 1, match: 1000000}")
    ok(
        "trigger: {above: 1}, actions: "
        "[{detect: {cameras: nearest, count: 1000000, within: 20000 km}}]"
    )
    ok("trigger: {above: 1}, actions: [{detect: {cameras: nearest, within: 20000000}}]")


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("trigger: {above: 1, for: 200000d}", "trigger.for: a duration here is at most 3650d"),
        ("trigger: {above: 1, for: .nan}", "trigger.for: a duration here is at most 3650d"),
        ("trigger: {above: 1, for: .inf}", "trigger.for: a duration here is at most 3650d"),
        (
            f"trigger: {{above: 1, for: {10**400}}}",
            "trigger.for: a duration here is at most 3650d, got a number of about 401 digits",
        ),
        (
            "trigger: {above: 1}, actions: [{actuate: {command: close, expires: 200000d}}]",
            "actions[0].actuate.expires: a duration here is at most 3650d, got '200000d'",
        ),
        (
            "trigger: {above: 1}, escalate: [{after: 3651d, severity: severe}]",
            "escalate[0].after: a duration here is at most 3650d, got '3651d'",
        ),
        ("trigger: {above: 1}, stale_after: 1.0e+400", "stale_after: a duration here is at most"),
    ],
)
def test_durations_have_a_ceiling(rest: str, message: str) -> None:
    [found] = one(rest)
    assert found.startswith(message)


def test_durations_at_the_ceiling_are_read() -> None:
    ok(
        "trigger: {above: 1, for: 3650d}, "
        "actions: [{actuate: {command: close, expires: 3650d}}], "
        "escalate: [{after: 3650d, severity: severe}]"
    )
