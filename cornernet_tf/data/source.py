"""What every source gives the pipeline: a `Source` of raw items and a loader, and `DataError`."""

from __future__ import annotations

import tensorflow as tf


class DataError(ValueError):
    """A dataset cannot be used; the message names the file and the problem."""


class Source:
    """Raw items that are cheap to shuffle and skip (paths, serialised records), and how to load
    one into {image ((H, W, 3) uint8 RGB), boxes (N, 4) xyxy pixels, classes (N,) 0-based}."""

    def __init__(self, items: tf.data.Dataset, load, size: int | None, warnings=()):
        self.items, self.load, self.size, self.warnings = items, load, size, list(warnings)


def decode_image(encoded) -> tf.Tensor:
    """Encoded JPEG/PNG/... -> (H, W, 3) uint8 RGB (grayscale and RGBA converted)."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)
