"""Image normalisation as the official code does it: RGB uint8 -> BGR, x / 255, (x - mean) / std."""

from __future__ import annotations

import tensorflow as tf

from cornernet_tf.config import DataConfig


def normalize_image(images_rgb, data: DataConfig) -> tf.Tensor:
    """(..., H, W, 3) RGB values in [0, 255] -> float32 BGR network input, same shape."""
    bgr = tf.reverse(tf.cast(images_rgb, tf.float32), axis=[-1]) / 255.0
    return (bgr - tf.constant(data.mean_bgr)) / tf.constant(data.std_bgr)
