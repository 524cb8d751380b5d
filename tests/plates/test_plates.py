"""Plates without I/O: normalisation, the digests the watch-list travels as, the workers'
copy of it, the plate stage on a drawn car read by the stand-in, the reader's plug-in point
and the `plates:` section's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from hub.plates.config import PlatesConfig
from hub.plates.listed import Listed, encode
from hub.plates.reader import PlateRead, PlateReaderError, load_reader
from hub.plates.stage import PlateStage
from hub.plates.standin import StandinReader
from hub.plates.text import KOREAN, digest, normalize, plate_pattern
from hub.streams.scene import Track
from tests.plates.support import car

KEY = b"a secret of the province, 32 by"
SECRET = KEY.decode()


@pytest.mark.parametrize(
    ("text", "plate"),
    [
        ("12가 3456", "12가3456"),
        ("123가-4567", "123가4567"),
        ("서울 12가 3456", "서울12가3456"),
        ("\u1100\u1161 ", "가"),  # jamo typed apart become one syllable (NFC)
        ("12.가·3456", "12가3456"),
    ],
)
def test_plates_are_compared_in_one_spelling(text: str, plate: str) -> None:
    assert normalize(text) == plate


@pytest.mark.parametrize("plate", ["12가3456", "123가4567", "서울12가3456"])
def test_korean_plates_match_the_pattern(plate: str) -> None:
    assert plate_pattern(KOREAN).fullmatch(plate)


@pytest.mark.parametrize("text", ["1234567", "12가345", "ABC123", "12가34567", "가12가3456"])
def test_what_is_not_a_korean_plate_does_not(text: str) -> None:
    assert not plate_pattern(KOREAN).fullmatch(normalize(text))


def test_digests_need_the_key_and_hide_the_plate() -> None:
    one = digest(KEY, "123가4567")
    assert one == digest(KEY, "123가4567")
    assert one != digest(b"another key entirely, 32 bytes!", "123가4567")
    assert one != digest(KEY, "123가4568")
    payload = encode(KEY, [("123가4567", None)], 1.0)
    assert "123가4567".encode() not in payload
    assert "가".encode() not in payload


def test_a_worker_matches_listed_plates_until_their_time() -> None:
    listed = Listed(KEY)
    assert not listed.match("123가4567", 10.0)
    listed.update(encode(KEY, [("123가4567", None), ("45나6789", 100.0)], 1.0))
    assert len(listed) == 2
    assert listed.match("123가4567", 10.0)
    assert listed.match("45나6789", 99.0)
    assert not listed.match("45나6789", 100.0)
    assert not listed.match("12가3456", 10.0)
    # A list keyed otherwise (another province's, a forger's) matches nothing here.
    other = Listed(b"another key entirely, 32 bytes!")
    other.update(encode(KEY, [("123가4567", None)], 1.0))
    assert not other.match("123가4567", 10.0)


@pytest.mark.parametrize(
    "payload", [b"not json", b"[]", b'{"entries": [{"digest": "ab"}]}', b'{"entries": 3}']
)
def test_an_unreadable_list_leaves_the_last_good_one(payload: bytes) -> None:
    listed = Listed(KEY)
    listed.update(encode(KEY, [("123가4567", None)], 1.0))
    with pytest.raises(ValueError, match="not a"):
        listed.update(payload)
    assert listed.match("123가4567", 10.0)


def test_an_empty_message_empties_the_list() -> None:
    listed = Listed(KEY)
    listed.update(encode(KEY, [("123가4567", None)], 1.0))
    listed.update(b"")
    assert not listed.match("123가4567", 10.0)


@pytest.mark.parametrize("text", ["123가4567", "12나3456", "98허0021", "345조6789"])
def test_the_standin_reads_what_is_drawn(text: str) -> None:
    reads = StandinReader().read(car(text))
    assert [r.text for r in reads] == [text]
    assert reads[0].score > 0.8


def test_the_standin_finds_no_plate_on_a_car_without_one() -> None:
    bare = car("123가4567")
    bare[bare.shape[0] // 3 :, :] = (150, 20, 150)  # the plate painted over
    assert StandinReader().read(bare) == []


def _stage(**settings: Any) -> tuple[PlateStage, Listed]:
    listed = Listed(KEY)
    listed.update(encode(KEY, [("123가4567", None)], 0.0))
    config = PlatesConfig(
        cameras=("cam-1",), reader="hub.plates.standin:StandinReader", secret=SECRET,
        **settings,
    )  # fmt: skip
    return PlateStage("cam-1", StandinReader(), listed, config), listed


def _frame(text: str) -> tuple[np.ndarray[Any, Any], Track]:
    frame = np.full((360, 640, 3), 90, np.uint8)
    body = car(text)
    h, w = body.shape[:2]
    frame[200 : 200 + h, 100 : 100 + w] = body
    return frame, Track(7, "car", 0.9, (100 / 640, 200 / 360, (100 + w) / 640, (200 + h) / 360))


def test_a_listed_plate_is_one_event_for_its_track() -> None:
    stage, _ = _stage(every=0.5)
    frame, track = _frame("123가4567")
    found = [e for ts in (1.0, 1.5, 2.0, 3.0) for e in stage.events([track], frame, ts)]
    assert len(found) == 1
    event = found[0]
    assert (event.kind, event.plate, event.track_id, event.cls) == ("plate", "123가4567", 7, "car")
    assert event.to_json()["plate"] == "123가4567"
    assert stage.reads == 1  # a hit ends the reading of its track


def test_a_plate_not_listed_is_no_event_and_is_read_at_most_reads_times() -> None:
    stage, _ = _stage(every=1.0, reads=3)
    frame, track = _frame("45나6789")
    found = [e for ts in range(10) for e in stage.events([track], frame, float(ts))]
    assert found == []
    assert stage.reads == 3


def test_a_plate_listed_while_the_track_is_read_is_found_then() -> None:
    stage, listed = _stage(every=1.0)
    frame, track = _frame("45나6789")
    assert stage.events([track], frame, 0.0) == []
    listed.update(encode(KEY, [("45나6789", None)], 0.5))
    assert [e.plate for e in stage.events([track], frame, 1.0)] == ["45나6789"]


def test_people_and_small_vehicles_are_not_read() -> None:
    stage, _ = _stage(min_width=400)
    frame, track = _frame("123가4567")
    assert stage.events([track], frame, 0.0) == []
    person = Track(8, "person", 0.9, track.box)
    stage, _ = _stage()
    assert stage.events([person], frame, 0.0) == []
    assert stage.reads == 0


class _Reader:
    def __init__(self, text: str = "123가4567") -> None:
        self.text = text

    def read(self, crop_bgr: Any) -> list[PlateRead]:
        return [PlateRead(self.text, 0.99, (0.0, 0.0, 1.0, 1.0))]


def make_reader(text: str = "123가4567") -> _Reader:
    return _Reader(text)


def not_a_reader() -> object:
    return object()


def test_a_reader_is_loaded_by_its_path_with_its_options() -> None:
    reader = load_reader(f"{__name__}:make_reader", {"text": "12가3456"})
    assert reader.read(np.zeros((4, 4, 3), np.uint8))[0].text == "12가3456"


@pytest.mark.parametrize(
    ("path", "options", "message"),
    [
        ("no_such_module_here:make", {}, "cannot import no_such_module_here"),
        (f"{__name__}:missing", {}, "has no callable 'missing'"),
        (f"{__name__}:make_reader", {"colour": "red"}, "failed"),
        (f"{__name__}:not_a_reader", {}, "has no read"),
        ("hub.plates.standin:StandinReader", {"font": "/nowhere/font.ttf"}, "no such font"),
    ],
)
def test_a_reader_that_cannot_load_says_why(
    path: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(PlateReaderError, match=message):
        load_reader(path, options)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"cameras": ["cam-1"], "secret": SECRET}, "no reader is named"),
        ({"cameras": ["cam-1"], "reader": "hub.plates.standin:StandinReader"}, "no secret"),
        ({"secret": "short"}, "at least 16 characters"),
        ({"reader": "hub.plates.standin.StandinReader"}, "expected module:factory"),
        ({"pattern": "[0-9"}, "not a regular expression"),
        ({"min_score": 1.5}, "less than or equal to 1"),
    ],
)
def test_the_section_refuses_what_cannot_work(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlatesConfig(**section)


def test_the_secret_comes_from_the_environment(tmp_path: Path) -> None:
    from hub.config import load_config  # noqa: PLC0415

    path = tmp_path / "hub.yaml"
    path.write_text("plates: {cameras: [cam-1], reader: 'hub.plates.standin:StandinReader'}\n")
    config = load_config(path, env={"HUB_PLATES_SECRET": SECRET})
    assert config.plates.key == KEY


def test_a_worker_refuses_plate_cameras_not_in_its_inventory(tmp_path: Path) -> None:
    from hub.config import load_config  # noqa: PLC0415
    from hub.inventory import load_inventory  # noqa: PLC0415
    from hub.streams.worker import _plate_reading  # noqa: PLC0415
    from tests.streams.support import camera_site  # noqa: PLC0415

    site = camera_site(tmp_path / "site", {"cam-1": {"url": "rtsp://127.0.0.1:1/x"}})
    path = tmp_path / "hub.yaml"
    for cameras, reader, outcome in (
        (["cam-1", "cam-9"], "hub.plates.standin:StandinReader", "no camera cam-9"),
        (["cam-1"], f"{__name__}:not_a_reader", "has no read"),
    ):
        path.write_text(
            f"inventory: [{site}]\n"
            f"plates: {{cameras: {cameras}, reader: '{reader}', secret: '{SECRET}'}}\n"
        )
        config = load_config(path)
        with pytest.raises(PlateReaderError, match=outcome):
            _plate_reading(config, load_inventory(config.inventory))
    path.write_text(f"inventory: [{site}]\n")
    config = load_config(path)
    assert _plate_reading(config, load_inventory(config.inventory)) is None
