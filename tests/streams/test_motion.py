"""The motion gate on synthetic frames: still, a moving square, a flash of light."""

from __future__ import annotations

import numpy as np

from hub.streams.motion import MotionDetector


def frame(x: int | None = None, level: int = 90) -> np.ndarray:
    image = np.full((360, 640, 3), level, np.uint8)
    if x is not None:
        image[150:250, x : x + 60] = 230  # a bright object 60 x 100 px
    return image


def test_still_frames_are_no_motion() -> None:
    gate = MotionDetector()
    assert [gate.changed(frame()) for _ in range(10)] == [0.0] * 10


def test_an_object_moving_is_motion_of_about_its_size() -> None:
    gate = MotionDetector()
    gate.changed(frame())
    moved = [gate.changed(frame(100 + 40 * i)) for i in range(5)]
    assert all(0.02 < m < 0.2 for m in moved), moved


def test_small_changes_are_below_the_area() -> None:
    gate = MotionDetector(min_area=0.05)
    gate.changed(frame())
    assert gate.changed(frame(100)) == 0.0  # 60 x 100 px is 2.6% of the picture


def test_a_flash_resets_the_background_instead_of_counting() -> None:
    gate = MotionDetector()
    gate.changed(frame(level=30))
    assert gate.changed(frame(level=220)) == 0.0  # the whole picture: light, not motion
    assert gate.changed(frame(level=220)) == 0.0  # the new background
