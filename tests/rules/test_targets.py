"""Which cameras and actuators an action means for a subject."""

from __future__ import annotations

from hub.rules.model import Targets
from hub.rules.targets import Place, metres, resolve
from tests.rules.helpers import INVENTORY

U1 = Place("u1", "r1", 127.0, 37.0)


def test_nearest_counts_and_limits_the_distance() -> None:
    cams = INVENTORY.cameras
    assert resolve(Targets("nearest", count=1, within_m=1000), U1, cams) == ("cam-1",)
    assert resolve(Targets("nearest", count=5, within_m=100_000), U1, cams) == ("cam-1", "cam-2")
    far = Place(None, "r1", 128.0, 38.0)
    assert resolve(Targets("nearest", count=5, within_m=10), far, cams) == ()


def test_site_region_ids_and_kinds() -> None:
    acts = INVENTORY.actuators
    assert resolve(Targets("site"), U1, acts) == ("barrier-1",)
    assert resolve(Targets("site"), Place(None, "r1", 0, 0), acts) == ()
    assert resolve(Targets("region"), U1, acts) == ("barrier-1", "siren-1")
    assert resolve(Targets("region", kinds=("siren",)), U1, acts) == ("siren-1",)
    assert resolve(Targets("ids", ids=("siren-1", "gone")), U1, acts) == ("siren-1",)


def test_distances() -> None:
    assert round(metres(127.0, 37.0, 127.0, 38.0)) == 111_195
    assert metres(127.0, 37.0, 127.0, 37.0) == 0.0
