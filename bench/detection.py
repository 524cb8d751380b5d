"""Detection benchmark: per-frame time of each detector backend at 640 and of face blurring on
this machine's CPU, median and p90. Not a test: it prints figures.

    .venv/bin/python bench/detection.py [--frames 50] [--threads 0]

The model is the packaged YOLOv8 fall model on bus.jpg: its fp16 ONNX export on onnxruntime,
and its `.pt` weights on torch through ultralytics (when the detect-torch extra is installed).
The time covers letterbox, inference, decoding and NMS. Face blurring is CenterFace plus the blur
on zidane.jpg (1280x720). For scale, the Ultralytics docs give 56 ms for YOLO11n exported to
ONNX at 640 on their CPU; the fall model is larger than a nano model (44.7 MB as fp16).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from hub.detection.backends.base import DetectorError
from hub.detection.backends.config import OnnxDetectorConfig, UltralyticsDetectorConfig
from hub.detection.backends.onnx import OnnxDetector
from hub.detection.backends.registry import load_detector
from hub.detection.privacy import FaceBlurrer

MODELS = Path(__file__).resolve().parent.parent / "var" / "models"
# The Ultralytics docs' figure, on their CPU, for comparison only.
ULTRALYTICS_YOLO11N_ONNX_CPU_MS = 56.0


def timings(work: Callable[[], object], frames: int) -> dict[str, float]:
    """Median and p90 wall time of `work` in ms, after two warm-up runs."""
    for _ in range(2):
        work()
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return {
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(float(np.percentile(times, 90)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="0: onnxruntime chooses")
    args = parser.parse_args()
    bus = cv2.imread(str(MODELS / "images" / "bus.jpg"))
    zidane = cv2.imread(str(MODELS / "images" / "zidane.jpg"))
    if bus is None or zidane is None:
        raise SystemExit("bench: test images missing, run scripts/fetch-models")
    bus_bgr, zidane_bgr = np.asarray(bus, np.uint8), np.asarray(zidane, np.uint8)
    config = OnnxDetectorConfig(
        type="onnx", model=MODELS / "fall" / "best_fp16.onnx", threads=args.threads
    )
    detector = OnnxDetector(config)
    blurrer = FaceBlurrer(MODELS / "faces" / "centerface.onnx", threads=args.threads)
    result: dict[str, object] = {
        "frames": args.frames,
        "threads": args.threads,
        "onnx_detector_640": timings(lambda: detector.detect(bus_bgr), args.frames),
        "ultralytics_docs_yolo11n_onnx_cpu_640_ms": ULTRALYTICS_YOLO11N_ONNX_CPU_MS,
        "face_blur_1280x720": timings(lambda: blurrer.anonymize(zidane_bgr), args.frames),
    }
    try:
        torch_detector = load_detector(
            UltralyticsDetectorConfig(
                type="ultralytics", model=MODELS / "fall" / "best.pt", threads=args.threads
            )
        )
        result["ultralytics_torch_pt_640"] = timings(
            lambda: torch_detector.detect(bus_bgr), args.frames
        )
    except DetectorError as exc:
        result["ultralytics_torch_pt_640"] = f"not measured: {exc}"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
