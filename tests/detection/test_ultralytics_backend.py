"""The ultralytics backend on torch, with the fall model's `.pt` weights, against the ONNX
backend on the same model's fp16 export: the same people in bus.jpg, with matching boxes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import TypeAdapter

from hub.detection.backends.base import Detection, DetectorError
from hub.detection.backends.config import DetectorConfig
from hub.detection.backends.registry import load_detector

MODELS = Path(__file__).resolve().parents[2] / "var" / "models"
NAMES = ["person", "fallen_person"]


def _detect(config: dict[str, object], image: str = "bus.jpg") -> list[Detection]:
    model = Path(str(config["model"]))
    if not model.is_file() or not (MODELS / "images" / image).is_file():
        pytest.fail("models missing: run scripts/fetch-models (scripts/install does)")
    detector = load_detector(TypeAdapter(DetectorConfig).validate_python(config))
    frame = cv2.imread(str(MODELS / "images" / image))
    assert frame is not None
    return detector.detect(np.asarray(frame, np.uint8))


@pytest.fixture(scope="module")
def both() -> tuple[list[Detection], list[Detection]]:
    torch_found = _detect(
        {"type": "ultralytics", "model": str(MODELS / "fall" / "best.pt"), "threads": 2}
    )
    onnx_found = _detect(
        {"type": "onnx", "model": str(MODELS / "fall" / "best_fp16.onnx"), "threads": 2}
    )
    return torch_found, onnx_found


def test_both_backends_find_the_same_people_in_bus_jpg(
    both: tuple[list[Detection], list[Detection]],
) -> None:
    torch_found, onnx_found = both
    people = [d for d in torch_found if d.cls == "Normal" and d.score > 0.5]
    assert len(people) >= 3, torch_found
    assert [d.cls for d in torch_found] == [d.cls for d in onnx_found]
    for mine, theirs in zip(torch_found, onnx_found, strict=True):
        # fp32 weights against the fp16 export: the same boxes to within a pixel or two.
        assert all(abs(a - b) < 3.0 for a, b in zip(mine.box, theirs.box, strict=True)), (
            mine,
            theirs,
        )
        assert mine.score == pytest.approx(theirs.score, abs=0.02)


def test_the_boxes_are_the_people_by_hand(
    both: tuple[list[Detection], list[Detection]],
) -> None:
    torch_found, _ = both
    # The man on the left, the one in the middle, the one on the right (see the ONNX test).
    by_hand = [(50, 400, 240, 905), (220, 405, 345, 880), (670, 370, 810, 875)]
    for expected in by_hand:
        nearest = min(
            (d.box for d in torch_found),
            key=lambda box: sum(abs(a - b) for a, b in zip(box, expected, strict=True)),
        )
        assert all(abs(a - b) < 40 for a, b in zip(nearest, expected, strict=True))


def test_class_names_from_the_config_replace_the_models() -> None:
    found = _detect(
        {"type": "ultralytics", "model": str(MODELS / "fall" / "best.pt"), "names": NAMES}
    )
    assert {d.cls for d in found} <= set(NAMES)
    assert "person" in {d.cls for d in found}


def test_a_model_that_cannot_load_says_so(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a torch checkpoint")
    config = TypeAdapter(DetectorConfig).validate_python(
        {"type": "ultralytics", "model": str(broken)}
    )
    with pytest.raises(DetectorError, match=r"broken\.pt: ultralytics cannot load it"):
        load_detector(config)


def test_names_that_do_not_fit_the_model_are_refused() -> None:
    config = TypeAdapter(DetectorConfig).validate_python(
        {"type": "ultralytics", "model": str(MODELS / "fall" / "best.pt"), "names": ["one"]}
    )
    with pytest.raises(DetectorError, match="it has 2 classes but the config's names lists 1"):
        load_detector(config)
