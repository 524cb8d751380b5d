"""Each condition kind, with time moved by hand: thresholds, `for`, clear, rate, missing,
grouping, incident and detection conditions."""

from __future__ import annotations

from tests.rules.helpers import at, brief, engine, feed, r

FLOOD = """
rules:
  - id: flood
    severity: severe
    sensors: {id: wl-1}
    trigger: {above: 15 cm, for: 30s}
"""


def opened(events: list) -> list[tuple[float, str]]:  # type: ignore[type-arg]
    return [(t, subject) for t, kind, _, subject in brief(events) if kind == "opened"]


def kinds(events: list) -> list[tuple[float, str, str]]:  # type: ignore[type-arg]
    return [(t, kind, rule) for t, kind, rule, _ in brief(events) if kind != "action"]


def test_threshold_converts_units_and_fires_on_entering_only() -> None:
    eng = engine(FLOOD.replace(", for: 30s", ""))
    events = feed(eng, ("wl-1", 0.14, 0), ("wl-1", 0.16, 10), ("wl-1", 0.20, 20), ("wl-1", 0.3, 30))
    assert kinds(events) == [(10.0, "opened", "flood")]


def test_for_completes_on_the_clock_without_another_reading() -> None:
    eng = engine(FLOOD)
    assert feed(eng, ("wl-1", 0.2, 0)) == []
    assert eng.tick(at(29)) == []
    assert kinds(eng.tick(at(45))) == [(30.0, "opened", "flood")]


def test_for_completes_at_its_deadline_when_the_next_reading_comes_later() -> None:
    eng = engine(FLOOD)
    events = eng.on_readings([r("wl-1", 0.2, 0), r("wl-1", 0.2, 40)])
    assert kinds(events) == [(30.0, "opened", "flood")]


def test_for_restarts_when_the_value_drops_in_between() -> None:
    eng = engine(FLOOD)
    events = feed(eng, ("wl-1", 0.2, 0), ("wl-1", 0.1, 20), ("wl-1", 0.2, 25), ("wl-1", 0.2, 50))
    events += eng.tick(at(60))
    assert kinds(events) == [(55.0, "opened", "flood")]


def test_for_does_not_complete_on_a_stale_reading() -> None:
    # wl-1 reports every 30 s: a reading is stale after 90 s, so a 5 min `for` cannot be
    # carried by one reading, and the next one after a long gap starts it again.
    eng = engine(FLOOD.replace("for: 30s", "for: 5m"))
    assert feed(eng, ("wl-1", 0.2, 0)) == []
    assert eng.tick(at(400)) == []
    events = feed(eng, *[("wl-1", 0.2, t) for t in range(420, 720, 60)])
    events += eng.tick(at(800))
    assert kinds(events) == [(720.0, "opened", "flood")]


def test_stale_after_lets_a_rule_trust_sparse_readings() -> None:
    eng = engine(FLOOD.replace("for: 30s", "for: 5m") + "    stale_after: 1h\n")
    feed(eng, ("wl-1", 0.2, 0))
    assert kinds(eng.tick(at(400))) == [(300.0, "opened", "flood")]


def test_below_band_and_equals() -> None:
    eng = engine(
        """
rules:
  - {id: low, severity: minor, sensors: {id: wl-1}, trigger: {below: 5 cm}}
  - {id: band, severity: minor, sensors: {id: wl-1}, trigger: {above: 10 cm, below: 20 cm}}
  - {id: switch, severity: minor, sensors: {id: fs-1}, trigger: {equals: 1}}
"""
    )
    events = feed(eng, ("wl-1", 0.15, 0), ("wl-1", 0.25, 10), ("wl-1", 0.01, 20), ("fs-1", 1, 30))
    assert kinds(events) == [
        (0.0, "opened", "band"),
        (10.0, "cleared", "band"),
        (20.0, "opened", "low"),
        (30.0, "opened", "switch"),
    ]


def test_default_clear_is_the_trigger_without_its_for() -> None:
    eng = engine(FLOOD)
    events = feed(eng, ("wl-1", 0.2, 0), ("wl-1", 0.2, 30), ("wl-1", 0.14, 40))
    assert kinds(events) == [(30.0, "opened", "flood"), (40.0, "cleared", "flood")]


def test_explicit_clear_has_its_own_level_and_duration() -> None:
    eng = engine(FLOOD + "    clear: {below: 10 cm, for: 1m}\n")
    events = feed(
        eng,
        *[("wl-1", 0.2, t) for t in (0, 30)],
        ("wl-1", 0.12, 60),  # below the trigger, above the clear level: stays open
        ("wl-1", 0.05, 90),
        ("wl-1", 0.05, 120),
        ("wl-1", 0.05, 150),
    )
    assert kinds(events) == [(30.0, "opened", "flood"), (150.0, "cleared", "flood")]


def test_flapping_around_the_trigger_level_pages_once() -> None:
    eng = engine(FLOOD.replace(", for: 30s", "") + "    clear: {below: 10 cm, for: 5m}\n")
    values = [0.16, 0.14, 0.17, 0.13, 0.18, 0.12, 0.16]
    events = feed(eng, *[("wl-1", v, 10 * i) for i, v in enumerate(values)])
    assert kinds(events) == [(0.0, "opened", "flood")]


def test_rate_rise_within_a_window() -> None:
    eng = engine(
        """
rules:
  - id: tilting
    severity: severe
    sensors: {id: tilt-1}
    trigger: {rate: {rise: 0.5 deg, within: 10m}}
"""
    )
    # +0.3 in 10 min is not enough; then +0.6 in 8 min is; a slow creep of +0.6 over 30 min
    # never is, because the window forgets the low readings.
    events = feed(eng, ("tilt-1", 1.0, 0), ("tilt-1", 1.3, 600), ("tilt-1", 1.0, 900))
    events += feed(eng, ("tilt-1", 1.6, 1380))
    assert kinds(events) == [(1380.0, "opened", "tilting")]


def test_rate_fall_and_its_units() -> None:
    eng = engine(
        """
rules:
  - {id: drop, severity: minor, sensors: {id: wl-1}, trigger: {rate: {fall: 20 cm, within: 5m}}}
"""
    )
    events = feed(eng, ("wl-1", 1.0, 0), ("wl-1", 0.9, 60), ("wl-1", 0.79, 120))
    assert kinds(events) == [(120.0, "opened", "drop")]


def test_rate_does_not_see_a_slow_creep() -> None:
    eng = engine(
        """
rules:
  - {id: t, severity: minor, sensors: {id: tilt-1}, trigger: {rate: {rise: 0.5 deg, within: 10m}}}
"""
    )
    events = feed(eng, *[("tilt-1", 1.0 + 0.1 * i, 300 * i) for i in range(10)])
    assert events == []


def test_missing_fires_on_the_clock_and_clears_on_the_next_reading() -> None:
    eng = engine(
        """
rules:
  - {id: silent, severity: minor, sensors: {id: wl-1}, trigger: {missing: 5m}}
"""
    )
    events = feed(eng, ("wl-1", 0.0, 0), ("wl-1", 0.0, 100))
    assert eng.tick(at(399)) == []
    events += eng.tick(at(1000))
    events += feed(eng, ("wl-1", 0.0, 1100))
    assert kinds(events) == [(400.0, "opened", "silent"), (1100.0, "cleared", "silent")]


def test_missing_counts_a_never_seen_sensor_from_the_watch_start() -> None:
    eng = engine(
        """
rules:
  - {id: silent, severity: minor, sensors: {id: [wl-1, wl-2]}, trigger: {missing: 5m}}
"""
    )
    eng.tick(at(0))
    events = feed(eng, ("wl-1", 0.0, 100))
    events += eng.tick(at(1000))
    assert [(t, subj) for t, _, _, subj in brief(events)] == [(300.0, "wl-2"), (400.0, "wl-1")]


def test_per_site_any_and_all() -> None:
    eng = engine(
        """
rules:
  - {id: any-wl, severity: minor, per: site, sensors: {kind: water_level}, trigger: {above: 1 m}}
  - id: all-wl
    severity: minor
    per: site
    sensors: {kind: water_level}
    trigger: {above: 1 m, match: all}
"""
    )
    events = feed(eng, ("wl-1", 2.0, 0), ("wl-2", 2.0, 10), ("wl-3", 2.0, 20), ("wl-1", 0.0, 30))
    assert brief(events) == [
        (0.0, "opened", "any-wl", "u1"),
        (10.0, "opened", "all-wl", "u1"),
        (20.0, "opened", "any-wl", "u2"),
        (20.0, "opened", "all-wl", "u2"),
        (30.0, "cleared", "all-wl", "u1"),
    ]


def test_grouped_clear_waits_for_every_sensor_by_default() -> None:
    eng = engine(
        """
rules:
  - id: site-flood
    severity: minor
    per: site
    sensors: {kind: water_level}
    trigger: {above: 1 m}
    clear: {below: 50 cm}
"""
    )
    events = feed(eng, ("wl-1", 2.0, 0), ("wl-2", 2.0, 10), ("wl-1", 0.1, 20), ("wl-2", 0.1, 30))
    assert kinds(events) == [(0.0, "opened", "site-flood"), (30.0, "cleared", "site-flood")]


def test_match_a_number_of_sensors_and_per_region() -> None:
    eng = engine(
        """
rules:
  - id: two-of-region
    severity: minor
    per: region
    sensors: {kind: water_level}
    trigger: {above: 1 m, match: 2}
"""
    )
    events = feed(eng, ("wl-1", 2.0, 0), ("wl-3", 2.0, 5), ("wl-2", 2.0, 10))
    assert brief(events) == [(10.0, "opened", "two-of-region", "r1")]


def test_all_any_at_least_and_not_combine_conditions_of_a_site() -> None:
    eng = engine(
        """
rules:
  - id: slope
    severity: extreme
    per: site
    sensors: {site: s1}
    all:
      - {sensors: {kind: tilt}, rate: {rise: 0.5 deg, within: 1h}}
      - any:
          - {sensors: {kind: rain_rate}, above: 30 mm/h}
          - at_least: 2
            of:
              - {sensors: {kind: rain_rate}, above: 10 mm/h}
              - {sensors: {kind: tilt}, above: 5 deg}
              - {not: {sensors: {kind: tilt}, below: 0 deg}}
"""
    )
    events = feed(eng, ("tilt-1", 1.0, 0), ("rain-1", 5.0, 10), ("tilt-1", 1.6, 20))
    assert kinds(events) == []  # rising, but rain only 5 mm/h and tilt not above 5 deg
    events = feed(eng, ("rain-1", 12.0, 30))
    assert kinds(events) == [(30.0, "opened", "slope")]


def test_incident_condition_matches_at_the_coarser_grouping() -> None:
    eng = engine(
        """
rules:
  - {id: flood, severity: severe, sensors: {kind: water_level}, trigger: {above: 15 cm}}
  - id: people
    severity: extreme
    per: site
    sensors: {kind: water_level}
    all:
      - {incident: {rule: flood, state: active}}
      - {detection: {classes: [person], within: 2m}}
"""
    )
    events = feed(eng, ("wl-3", 0.2, 0))  # the other underpass floods
    events += eng.on_detection("cam-1", "u1", at(10), [{"class": "person", "score": 0.9}])
    events += feed(eng, ("wl-2", 0.2, 20))
    assert kinds(events) == [
        (0.0, "opened", "flood"),
        (20.0, "opened", "flood"),
        (20.0, "opened", "people"),
    ]
    # acknowledging the flood makes it no longer `active`: the people incident clears
    flood = eng.open_incident("flood", "wl-2")
    assert flood is not None
    events = eng.acknowledge(flood.id, "desk", at(30))
    assert kinds(events) == [(30.0, "acknowledged", "flood"), (30.0, "cleared", "people")]


def test_detection_condition_holds_within_its_window_and_counts_scores() -> None:
    eng = engine(
        """
rules:
  - id: crowd
    severity: moderate
    per: site
    sensors: {site: u1, kind: water_level}
    trigger: {detection: {classes: [person], min_count: 2, min_score: 0.5, within: 1m}}
"""
    )
    low = [{"class": "person", "score": 0.9}, {"class": "person", "score": 0.4}]
    assert eng.on_detection("cam-1", "u1", at(0), low) == []
    assert eng.on_detection("cam-2", "u2", at(1), low + low) == []  # not this site's camera
    two = [{"class": "person", "score": 0.9}, {"class": "person", "score": 0.6}]
    events = eng.on_detection("cam-1", "u1", at(10), two)
    events += eng.on_detection("cam-1", "u1", at(40), two)
    events += eng.tick(at(200))
    assert kinds(events) == [(10.0, "opened", "crowd"), (100.0, "cleared", "crowd")]


def test_incident_condition_states_acknowledged_and_cleared() -> None:
    eng = engine(
        """
rules:
  - {id: flood, severity: severe, sensors: {id: wl-1}, trigger: {above: 15 cm}}
  - id: acked
    severity: minor
    sensors: {id: wl-1}
    trigger: {incident: {rule: flood, state: acknowledged}}
  - id: after
    severity: minor
    sensors: {id: wl-1}
    trigger: {incident: {rule: flood, state: cleared}}
"""
    )
    events = feed(eng, ("wl-1", 0.2, 0))
    flood = eng.open_incident("flood", "wl-1")
    assert flood is not None
    events += eng.acknowledge(flood.id, "desk", at(10))
    events += feed(eng, ("wl-1", 0.0, 20))
    events += eng.archive(flood.id, at(30))
    assert kinds(events) == [
        (0.0, "opened", "flood"),
        (10.0, "acknowledged", "flood"),
        (10.0, "opened", "acked"),
        (20.0, "cleared", "flood"),
        (20.0, "cleared", "acked"),
        (20.0, "opened", "after"),
        (30.0, "archived", "flood"),
        (30.0, "cleared", "after"),
    ]


def test_detection_cameras_by_region_and_by_id() -> None:
    eng = engine(
        """
rules:
  - id: region-wide
    severity: minor
    per: region
    sensors: {kind: water_level}
    trigger: {detection: {classes: [car], within: 1m}}
  - id: listed
    severity: minor
    sensors: {id: wl-3}
    trigger: {detection: {classes: [car], within: 1m, cameras: [cam-1]}}
"""
    )
    events = eng.on_detection("cam-1", "u1", at(0), [{"class": "car", "score": 0.7}])
    assert brief(events) == [
        (0.0, "opened", "region-wide", "r1"),
        (0.0, "opened", "listed", "wl-3"),
    ]
