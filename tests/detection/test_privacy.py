"""CenterFace face blurring on zidane.jpg, and evidence JPEGs that are never stored unblurred."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from hub.detection.backends.base import Detection, DetectorError
from hub.detection.evidence import EvidenceError, EvidenceWriter
from hub.detection.privacy import FaceBlurrer

MODELS = Path(__file__).resolve().parents[2] / "var" / "models"
FACE_MODEL = MODELS / "faces" / "centerface.onnx"
ZIDANE = MODELS / "images" / "zidane.jpg"
Image = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def blurrer() -> FaceBlurrer:
    if not FACE_MODEL.is_file() or not ZIDANE.is_file():
        pytest.fail("models missing: run scripts/fetch-models (scripts/install does)")
    return FaceBlurrer(FACE_MODEL, threads=2)


@pytest.fixture(scope="module")
def zidane() -> Image:
    image = cv2.imread(str(ZIDANE))
    assert image is not None
    return np.asarray(image, np.uint8)


@pytest.fixture(scope="module")
def faces(blurrer: FaceBlurrer, zidane: Image) -> list[Detection]:
    return blurrer.faces(zidane)


def sharpness(image: Image, box: tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian inside the box: high for detail, near zero for a blur."""
    x1, y1, x2, y2 = (round(v) for v in box)
    grey = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def test_finds_both_faces_in_zidane_jpg(faces: list[Detection]) -> None:
    assert len(faces) == 2
    assert all(f.cls == "face" and f.score > 0.6 for f in faces)
    # Zidane's face (centre left) and Ancelotti's (upper right) in the 1280x720 frame.
    centres = sorted(f.centre for f in faces)
    assert 560 < centres[0][0] < 680
    assert 300 < centres[0][1] < 400
    assert 920 < centres[1][0] < 1040
    assert 130 < centres[1][1] < 240
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert 60 < x2 - x1 < 250
        assert 80 < y2 - y1 < 250


def test_blurring_removes_the_detail_of_faces_only(
    blurrer: FaceBlurrer, zidane: Image, faces: list[Detection]
) -> None:
    blurred = blurrer.blur(zidane, faces)
    for face in faces:
        assert sharpness(blurred, face.box) < sharpness(zidane, face.box) / 20
    outside = np.ones(zidane.shape[:2], bool)
    for face in faces:
        x1, y1, x2, y2 = face.box
        dx, dy = (x2 - x1) * 0.25, (y2 - y1) * 0.25
        outside[max(0, int(y1 - dy)) : int(y2 + dy), max(0, int(x1 - dx)) : int(x2 + dx)] = False
    assert np.array_equal(blurred[outside], zidane[outside])
    # The source frame is left as it was.
    assert sharpness(zidane, faces[0].box) > 20


def test_no_faces_in_a_blank_frame(blurrer: FaceBlurrer) -> None:
    blank = np.full((480, 640, 3), 128, np.uint8)
    out, found = blurrer.anonymize(blank)
    assert found == []
    assert np.array_equal(out, blank)


def test_missing_face_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match=r"centerface\.onnx: no such file"):
        FaceBlurrer(tmp_path / "centerface.onnx")


def test_evidence_jpeg_is_blurred_and_annotated(
    blurrer: FaceBlurrer, zidane: Image, faces: list[Detection], tmp_path: Path
) -> None:
    person = Detection("person", 0.91, (100.0, 50.0, 700.0, 715.0))
    path = EvidenceWriter(blurrer).write(tmp_path / "snap" / "a.jpg", zidane, [person])
    assert path.is_file()
    assert not list(path.parent.glob("*.part"))
    stored = np.asarray(cv2.imread(str(path)), np.uint8)
    assert stored.shape == zidane.shape
    for face in faces:
        assert sharpness(stored, face.box) < sharpness(zidane, face.box) / 10
    # The box is drawn in red along the person's left edge.
    b, g, r = stored[400, 100].astype(int)
    assert r > 200
    assert max(g, b) < 60


def test_evidence_refuses_to_write_without_a_blurrer() -> None:
    with pytest.raises(EvidenceError, match="needs a face blurrer"):
        EvidenceWriter(None)


def test_a_camera_that_opts_out_is_stored_as_seen(
    zidane: Image, faces: list[Detection], tmp_path: Path
) -> None:
    path = EvidenceWriter(None, blur_faces=False).write(tmp_path / "b.jpg", zidane, [])
    stored = np.asarray(cv2.imread(str(path)), np.uint8)
    for face in faces:
        assert sharpness(stored, face.box) > sharpness(zidane, face.box) / 3
