"""The onnxruntime detector on the packaged fall model and bus.jpg, its decoding and filters."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from hub.detection.backends.base import Detection, DetectionFilter, DetectorError, inside
from hub.detection.backends.config import DetectorConfig, OnnxDetectorConfig
from hub.detection.backends.onnx import Letterbox, decode, letterbox, metadata_names, nms
from hub.detection.backends.registry import load_detector

MODELS = Path(__file__).resolve().parents[2] / "var" / "models"
FALL_MODEL = MODELS / "fall" / "best_fp16.onnx"
BUS = MODELS / "images" / "bus.jpg"


def _config(**values: object) -> OnnxDetectorConfig:
    return TypeAdapter(DetectorConfig).validate_python({"type": "onnx", **values})


@pytest.fixture(scope="module")
def bus_detections() -> list[Detection]:
    if not FALL_MODEL.is_file() or not BUS.is_file():
        pytest.fail("models missing: run scripts/fetch-models (scripts/install does)")
    # The model's classes are Normal and Fall; both are people, renamed as the hub calls them.
    detector = load_detector(
        _config(model=str(FALL_MODEL), names=["person", "fallen_person"], threads=2)
    )
    image = cv2.imread(str(BUS))
    assert image is not None
    return detector.detect(np.asarray(image, np.uint8))


def test_finds_the_people_in_bus_jpg(bus_detections: list[Detection]) -> None:
    people = [d for d in bus_detections if d.cls == "person" and d.score > 0.5]
    assert len(people) >= 3
    for person in people:
        x1, y1, x2, y2 = person.box
        assert 0 <= x1 < x2 <= 810
        assert 0 <= y1 < y2 <= 1080
        # Standing adults in this 810x1080 photo: about 450-550 px tall, feet near y = 880.
        assert 400 < y2 - y1 < 600
        assert 80 < x2 - x1 < 250
        assert 850 < y2 < 930


def test_boxes_match_the_people_by_hand(bus_detections: list[Detection]) -> None:
    # Boxes read off bus.jpg by eye: the man on the left, the one in the middle, the one on
    # the right; the fourth person, cut by the left edge, is too partial for this model.
    by_hand = [(50, 400, 240, 905), (220, 405, 345, 880), (670, 370, 810, 875)]
    found = sorted(d.box for d in bus_detections if d.cls == "person")
    for expected in by_hand:
        nearest = min(
            found, key=lambda box: sum(abs(a - b) for a, b in zip(box, expected, strict=True))
        )
        assert all(abs(a - b) < 40 for a, b in zip(nearest, expected, strict=True)), (
            nearest,
            expected,
        )


def test_letterbox_fits_and_pads_like_ultralytics() -> None:
    image = np.full((1080, 810, 3), 255, np.uint8)
    blob, fit = letterbox(image, 640, 640)
    assert blob.shape == (1, 3, 640, 640)
    assert blob.dtype == np.float32
    assert fit == Letterbox(scale=640 / 1080, pad_x=80.0, pad_y=0.0)
    assert blob[0, :, :, 79].max() == pytest.approx(114 / 255)
    assert blob[0, :, :, 80:560].min() == 1.0


def test_decode_by_hand() -> None:
    # Three anchors, two classes, in a 640x640 input that holds a 1280x640 frame scaled by
    # 0.5 and padded by 160 px top and bottom.
    output = np.zeros((1, 6, 3), np.float32)
    output[0, :, 0] = [320, 320, 100, 50, 0.9, 0.1]  # class 0, kept
    output[0, :, 1] = [322, 320, 100, 50, 0.8, 0.0]  # same place, class 0: suppressed
    output[0, :, 2] = [322, 320, 100, 50, 0.1, 0.7]  # same place, class 1: kept
    fit = Letterbox(scale=0.5, pad_x=0.0, pad_y=160.0)
    boxes, scores, classes = decode(
        output, fit, (640, 1280), score_threshold=0.25, iou_threshold=0.45, max_detections=10
    )
    assert classes.tolist() == [0, 1]
    assert scores.tolist() == pytest.approx([0.9, 0.7])
    # (320 +- 50, 320 +- 25) in the input is (270..370, 295..345); unpadded and unscaled:
    assert boxes[0].tolist() == pytest.approx([540, 270, 740, 370])
    assert boxes[1].tolist() == pytest.approx([544, 270, 744, 370])


def test_decode_clips_to_the_frame_and_drops_low_scores() -> None:
    output = np.zeros((1, 5, 2), np.float32)
    output[0, :, 0] = [10, 10, 40, 40, 0.6]
    output[0, :, 1] = [300, 300, 10, 10, 0.2]
    boxes, scores, _ = decode(
        output, Letterbox(1.0, 0.0, 0.0), (100, 100),
        score_threshold=0.25, iou_threshold=0.45, max_detections=10,
    )  # fmt: skip
    assert boxes.tolist() == [[0, 0, 30, 30]]
    assert scores.tolist() == pytest.approx([0.6])


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.4], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]


def test_names_come_from_ultralytics_metadata() -> None:
    assert metadata_names({"names": "{0: 'Normal', 1: 'Fall'}"}) == ("Normal", "Fall")
    assert metadata_names({"names": "not python"}) == ()
    assert metadata_names({}) == ()


def test_detections_serialise_as_the_contract_says() -> None:
    d = Detection("person", 0.87654, (1.04, 2.0, 3.0, 4.06))
    assert d.to_json() == {"class": "person", "score": 0.8765, "box": [1.0, 2.0, 3.0, 4.1]}


PERSON = Detection("person", 0.9, (100, 100, 200, 300))  # centre (150, 200)
CAR = Detection("car", 0.4, (400, 100, 600, 200))  # centre (500, 150)


def test_filter_by_class_and_score() -> None:
    assert DetectionFilter(classes=("car",)).apply([PERSON, CAR]) == [CAR]
    assert DetectionFilter(min_score=0.5).apply([PERSON, CAR]) == [PERSON]
    assert DetectionFilter().apply([PERSON, CAR]) == [PERSON, CAR]


def test_filter_by_zone_uses_the_box_centre() -> None:
    left_half = ((0, 0), (320, 0), (320, 480), (0, 480))
    assert DetectionFilter(zones=(left_half,)).apply([PERSON, CAR]) == [PERSON]
    # The person's box overlaps this zone but its centre is outside it.
    corner = ((0, 0), (120, 0), (120, 120), (0, 120))
    assert DetectionFilter(zones=(corner,)).apply([PERSON, CAR]) == []
    both = DetectionFilter(zones=(corner, ((450, 100), (550, 100), (500, 200))))
    assert both.apply([PERSON, CAR]) == [CAR]


def test_point_in_a_concave_polygon() -> None:
    u_shape = ((0, 0), (30, 0), (30, 30), (20, 30), (20, 10), (10, 10), (10, 30), (0, 30))
    assert inside((5, 20), u_shape)
    assert not inside((15, 20), u_shape)
    assert inside((15, 5), u_shape)
    assert inside((0, 15), u_shape)  # on an edge


def test_zone_needs_three_points() -> None:
    with pytest.raises(ValidationError, match="at least 3"):
        DetectionFilter.model_validate({"zones": [[[0, 0], [1, 1]]]})


def test_config_union_rejects_unknown_types_and_keys() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags: 'onnx'"):
        TypeAdapter(DetectorConfig).validate_python({"type": "tflite", "model": "m"})
    with pytest.raises(ValidationError, match="thresold"):
        _config(model="m.onnx", thresold=0.5)


def test_relative_model_path_is_read_against_the_config_folder(tmp_path: Path) -> None:
    config = TypeAdapter(DetectorConfig).validate_python(
        {"type": "onnx", "model": "m.onnx"}, context={"base": tmp_path}
    )
    assert config.model == tmp_path / "m.onnx"


def test_missing_model_is_a_clear_error_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(DetectorError, match=r"nowhere\.onnx: no such file.*fetch-models"):
        load_detector(_config(model=str(missing)))


def test_a_file_that_is_no_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(DetectorError, match=r"bad\.onnx: onnxruntime cannot load it"):
        load_detector(_config(model=str(bad)))


def test_names_that_do_not_fit_the_model_are_an_error() -> None:
    with pytest.raises(DetectorError, match="it has 2 classes but the config's names lists 3"):
        load_detector(_config(model=str(FALL_MODEL), names=["a", "b", "c"]))
