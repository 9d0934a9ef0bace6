#!/usr/bin/env python3
"""JPEG files and the pixels the official reader, cv2.imread, gives for them: jpeg_cv2.npz.

Run with a Python that has opencv-python and numpy (not a dependency of this project):
    python tests/data/make_jpeg_fixture.py tests/data/jpeg_cv2.npz

For each of three JPEGs (odd sides; 4:2:0 and 4:4:4 colour, the sampling of most photos and of
careful encoders, and grayscale) the file's bytes (`<name>_jpeg`, uint8) and what
`cv2.imread(path)` (IMREAD_COLOR, as the official `kp_detection` loader and test read images)
returns, turned from BGR to RGB (`<name>_rgb`, H x W x 3 uint8). The picture is smooth
gradients plus noise, so that the encoder's rounding and the decoder's IDCT both matter.
"""

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np


def picture(height: int, width: int) -> np.ndarray:
    """A BGR uint8 picture: gradients in each channel plus uniform noise (seeded)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(0)
    channels = [rows / height * 255, cols / width * 255, (rows + cols) / (height + width) * 255]
    noisy = np.stack(channels, -1) + rng.uniform(-40, 40, (height, width, 3))
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def main(out: str) -> None:
    bgr = picture(47, 61)
    samplings = {
        "yuv420": (bgr, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
        "yuv444": (bgr, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
        "gray": (cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), None),
    }
    arrays = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (image, sampling) in samplings.items():
            params = [cv2.IMWRITE_JPEG_QUALITY, 90]
            if sampling is not None:
                params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
            ok, encoded = cv2.imencode(".jpg", image, params)
            assert ok
            path = Path(folder) / f"{name}.jpg"
            path.write_bytes(encoded.tobytes())
            read = cv2.imread(str(path))  # what the official code reads
            arrays[f"{name}_jpeg"] = np.frombuffer(path.read_bytes(), np.uint8)
            arrays[f"{name}_rgb"] = np.ascontiguousarray(read[:, :, ::-1])
    arrays["cv2_version"] = np.array(cv2.__version__)
    np.savez_compressed(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
