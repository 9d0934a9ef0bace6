"""Boxes -> training targets, as the official `kp_detection` (sample/coco.py) builds them.

For one example, in TensorFlow ops without a Python loop over boxes (usable inside tf.data):
    1. boxes are clipped to the input (x to [0, W_in - 1], y to [0, H_in - 1]); a box whose clipped
       width or height is <= 0 is dropped;
    2. corners are scaled by out / in per axis (128 / 511, not 1 / 4): fx = x * ratio; the integer
       corner is int(fx), the offset fx - int(fx), the index int(fy) * out_w + int(fx);
    3. each corner gets a gaussian bump on its class's heatmap: radius from `gaussian_radius` of the
       box's size on the output map (ceil'd, gaussian_iou 0.3; the corrected formula), sigma =
       (2r + 1) / 6, values below float64 eps dropped, peak exactly 1, overlapping bumps of a
       class merged by elementwise max.
More than `max_objects` boxes: every box is drawn on the heatmaps, the first `max_objects` get
embedding indices, offsets and the mask (the official code raises IndexError there).
Arithmetic is float64, as in the official numpy code; each bump is cast to float32 before the
per-class max, which gives the same values as casting the max (the cast is monotonic).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

EPS64 = float(np.finfo(np.float64).eps)


def gaussian_radius(height, width, min_overlap: float = 0.3) -> tf.Tensor:
    """The official (corrected, 2019) radius: the min of three quadratic roots; float64."""
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 - tf.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 - tf.sqrt(b2**2 - 16 * c2)) / 8
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + tf.sqrt(b3**2 - 4 * a3 * c3)) / (2 * a3)
    return tf.minimum(tf.minimum(r1, r2), r3)


def draw_gaussians(shape, xs, ys, radii) -> tf.Tensor:
    """The elementwise max of the official gaussian bumps at integer (xs, ys) with `radii`.

    Returns (N, height, width) float64: bump n alone on the map n (0 outside its window).
    """
    height, width = shape[0], shape[1]
    xs, ys = tf.cast(xs, tf.float64), tf.cast(ys, tf.float64)
    radii = tf.cast(radii, tf.float64)
    dx = tf.range(tf.cast(width, tf.float64))[None, None, :] - xs[:, None, None]
    dy = tf.range(tf.cast(height, tf.float64))[None, :, None] - ys[:, None, None]
    r = radii[:, None, None]
    sigma = (2 * r + 1) / 6
    bump = tf.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
    inside = (tf.abs(dx) <= r) & (tf.abs(dy) <= r) & (bump >= EPS64)
    return tf.where(inside, bump, tf.zeros_like(bump))


def encode_targets(
    boxes,
    classes,
    *,
    input_size,
    output_size,
    num_classes: int,
    max_objects: int = 128,
    gaussian_iou: float = 0.3,
) -> dict[str, tf.Tensor]:
    """Targets of one example.

    boxes: (N, 4) [x1, y1, x2, y2] in input pixels; classes: (N,) 0-based.
    input_size, output_size: (height, width).
    Returns tl_heatmap, br_heatmap (h, w, num_classes) float32; tl_index, br_index (K,) int32
    flat y * w + x; tl_offset, br_offset (K, 2) float32 (x, y); mask (K,) bool; K = max_objects.
    """
    in_h, in_w = input_size
    out_h, out_w = output_size
    boxes = tf.reshape(tf.cast(boxes, tf.float64), [-1, 4])
    classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
    x1 = tf.clip_by_value(boxes[:, 0], 0.0, in_w - 1.0)
    y1 = tf.clip_by_value(boxes[:, 1], 0.0, in_h - 1.0)
    x2 = tf.clip_by_value(boxes[:, 2], 0.0, in_w - 1.0)
    y2 = tf.clip_by_value(boxes[:, 3], 0.0, in_h - 1.0)
    keep = (x2 - x1 > 0) & (y2 - y1 > 0)
    x1, y1, x2, y2, classes = (tf.boolean_mask(t, keep) for t in (x1, y1, x2, y2, classes))

    width_ratio, height_ratio = out_w / in_w, out_h / in_h
    corners = {
        "tl": (x1 * width_ratio, y1 * height_ratio),
        "br": (x2 * width_ratio, y2 * height_ratio),
    }
    box_w = tf.math.ceil((x2 - x1) * width_ratio)
    box_h = tf.math.ceil((y2 - y1) * height_ratio)
    radii = tf.maximum(tf.cast(gaussian_radius(box_h, box_w, gaussian_iou), tf.int32), 0)

    count = tf.shape(classes)[0]
    kept = tf.minimum(count, max_objects)
    targets = {}
    for corner, (fx, fy) in corners.items():
        ix, iy = tf.floor(fx), tf.floor(fy)  # int() of non-negative numbers
        # cast before the max: the same values (the cast is monotonic), half the bytes to move
        bumps = tf.cast(draw_gaussians((out_h, out_w), ix, iy, radii), tf.float32)
        per_class = tf.math.unsorted_segment_max(bumps, classes, num_segments=num_classes)
        heatmap = tf.maximum(per_class, 0.0)  # classes without boxes come back as -inf
        targets[f"{corner}_heatmap"] = tf.transpose(heatmap, [1, 2, 0])
        index = tf.cast(iy, tf.int32) * out_w + tf.cast(ix, tf.int32)
        offset = tf.cast(tf.stack([fx - ix, fy - iy], axis=-1), tf.float32)
        targets[f"{corner}_index"] = _pad(index[:max_objects], max_objects)
        targets[f"{corner}_offset"] = _pad(offset[:max_objects], max_objects)
    targets["mask"] = tf.range(max_objects) < kept
    return targets


def _pad(values: tf.Tensor, length: int) -> tf.Tensor:
    """Pads axis 0 with zeros to `length` (values has at most `length` rows)."""
    missing = length - tf.shape(values)[0]
    padding = [[0, missing]] + [[0, 0]] * (values.shape.rank - 1)
    return tf.ensure_shape(tf.pad(values, padding), [length] + values.shape[1:].as_list())
