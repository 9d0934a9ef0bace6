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
More than `max_objects` boxes (default 128): the first `max_objects` are used, on the heatmaps
too (the official code raises IndexError there).
Arithmetic is float64, as in the official numpy code.

Two parts: `encode_corners` (per example, in the input pipeline: indices, offsets, classes and
radii of the K = max_objects objects) and `draw_heatmaps` (per batch, in the train step: the
dense heatmaps). `encode_targets` does both for one example.
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


def gaussian_bumps(dx, dy, radius) -> tf.Tensor:
    """The official gaussian2D values at integer offsets (dx, dy) from the centre, float64:
    exp(-(dx^2 + dy^2) / (2 sigma^2)), sigma = (2r + 1) / 6, 0 outside the (2r + 1)^2 window and
    below float64 eps. Arguments broadcast against each other."""
    dx, dy = tf.cast(dx, tf.float64), tf.cast(dy, tf.float64)
    r = tf.cast(radius, tf.float64)
    sigma = (2 * r + 1) / 6
    bump = tf.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
    inside = (tf.abs(dx) <= r) & (tf.abs(dy) <= r) & (bump >= EPS64)
    return tf.where(inside, bump, tf.zeros_like(bump))


def encode_corners(
    boxes,
    classes,
    *,
    input_size,
    output_size,
    max_objects: int = 128,
    gaussian_iou: float = 0.3,
) -> dict[str, tf.Tensor]:
    """The sparse targets of one example: what the input pipeline carries (a few kB).

    boxes: (N, 4) [x1, y1, x2, y2] in input pixels; classes: (N,) 0-based.
    input_size, output_size: (height, width).
    Returns, with K = max_objects rows (the first K kept boxes; zero rows after them):
        tl_index, br_index (K,) int32 flat y * w + x on the output map;
        tl_offset, br_offset (K, 2) float32 (x, y);
        classes (K,) int32; radius (K,) int32 gaussian radius on the output map;
        mask (K,) bool.
    `draw_heatmaps` turns a batch of them into the dense heatmaps.
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
    x1, y1, x2, y2, classes = (
        tf.boolean_mask(t, keep)[:max_objects] for t in (x1, y1, x2, y2, classes)
    )

    width_ratio, height_ratio = out_w / in_w, out_h / in_h
    box_w = tf.math.ceil((x2 - x1) * width_ratio)
    box_h = tf.math.ceil((y2 - y1) * height_ratio)
    radius = tf.maximum(tf.cast(gaussian_radius(box_h, box_w, gaussian_iou), tf.int32), 0)
    targets = {"classes": _pad(classes, max_objects), "radius": _pad(radius, max_objects)}
    for corner, (x, y) in {"tl": (x1, y1), "br": (x2, y2)}.items():
        fx, fy = x * width_ratio, y * height_ratio
        ix, iy = tf.floor(fx), tf.floor(fy)  # int() of non-negative numbers
        index = tf.cast(iy, tf.int32) * out_w + tf.cast(ix, tf.int32)
        offset = tf.cast(tf.stack([fx - ix, fy - iy], axis=-1), tf.float32)
        targets[f"{corner}_index"] = _pad(index, max_objects)
        targets[f"{corner}_offset"] = _pad(offset, max_objects)
    targets["mask"] = tf.range(max_objects) < tf.shape(classes)[0]
    return targets


def draw_heatmaps(targets: dict, output_size, num_classes: int) -> dict[str, tf.Tensor]:
    """tl_heatmap, br_heatmap (B, h, w, num_classes) float32 from a batch of `encode_corners`.

    One gaussian bump per valid object and corner, merged per class by elementwise max: the
    official draw_gaussian. Only the cells of each bump's window are computed (float64, as the
    official code) and scattered with a max into zero maps; each bump is cast to float32 before
    the max, which gives the same values as casting the max (the cast is monotonic).
    Runs in the train step, on the accelerator: the dense maps (2 x 80 x 128 x 128 floats per
    image at 511) never pass through the input pipeline.
    """
    out_h, out_w = output_size
    mask = tf.not_equal(tf.cast(targets["mask"], tf.float32), 0.0)
    valid = tf.where(mask)  # (V, 2): image, object
    batch = tf.shape(mask, out_type=tf.int64)[0]
    radius = tf.cast(tf.gather_nd(targets["radius"], valid), tf.int64)
    classes = tf.cast(tf.gather_nd(targets["classes"], valid), tf.int64)
    reach = tf.reduce_max(tf.concat([radius, [0]], 0))  # the largest window, (2R + 1)^2
    steps = tf.range(-reach, reach + 1)
    dy, dx = steps[None, :, None], steps[None, None, :]
    bumps = gaussian_bumps(dx, dy, radius[:, None, None])  # (V, 2R + 1, 2R + 1)
    shape = tf.stack([batch, out_h, out_w, num_classes])
    heatmaps = {}
    for corner in ("tl", "br"):
        index = tf.cast(tf.gather_nd(targets[f"{corner}_index"], valid), tf.int64)
        cx, cy = index[:, None, None] % out_w, index[:, None, None] // out_w
        inside = (cx + dx >= 0) & (cx + dx < out_w) & (cy + dy >= 0) & (cy + dy < out_h)
        where = tf.where((bumps > 0) & inside)  # (U, 3): object, window row, window column
        obj = where[:, 0]
        indices = tf.stack(
            [
                tf.gather(valid[:, 0], obj),
                tf.gather(cy[:, 0, 0], obj) + where[:, 1] - reach,
                tf.gather(cx[:, 0, 0], obj) + where[:, 2] - reach,
                tf.gather(classes, obj),
            ],
            axis=1,
        )
        values = tf.cast(tf.gather_nd(bumps, where), tf.float32)
        heatmaps[f"{corner}_heatmap"] = tf.tensor_scatter_nd_max(
            tf.zeros(shape, tf.float32), indices, values
        )
    return heatmaps


def draw_valid_maps(ignored: dict, output_size, num_classes: int) -> dict[str, tf.Tensor]:
    """tl_valid, br_valid (B, h, w, num_classes) float32 from a batch of `encode_corners` of the
    boxes a CornerNet-Saccade sample ignores: 0 wherever one of their corners' bumps is > 0,
    1 elsewhere (the official tl_valids / br_valids, which mask the focal loss)."""
    heatmaps = draw_heatmaps(ignored, output_size, num_classes)
    return {
        f"{corner}_valid": tf.cast(tf.equal(heatmaps[f"{corner}_heatmap"], 0.0), tf.float32)
        for corner in ("tl", "br")
    }


def with_heatmaps(targets: dict, output_size, num_classes: int) -> dict[str, tf.Tensor]:
    """A batch of targets with its heatmaps drawn (unchanged if it has them already)."""
    if "tl_heatmap" in targets:
        return targets
    return {**targets, **draw_heatmaps(targets, output_size, num_classes)}


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
    """The full targets of one example: `encode_corners` plus its heatmaps
    tl_heatmap, br_heatmap (h, w, num_classes) float32."""
    corners = encode_corners(
        boxes,
        classes,
        input_size=input_size,
        output_size=output_size,
        max_objects=max_objects,
        gaussian_iou=gaussian_iou,
    )
    heatmaps = draw_heatmaps({k: v[None] for k, v in corners.items()}, output_size, num_classes)
    return {**corners, **{k: v[0] for k, v in heatmaps.items()}}


def _pad(values: tf.Tensor, length: int) -> tf.Tensor:
    """Pads axis 0 with zeros to `length` (values has at most `length` rows)."""
    missing = length - tf.shape(values)[0]
    padding = [[0, missing]] + [[0, 0]] * (values.shape.rank - 1)
    return tf.ensure_shape(tf.pad(values, padding), [length] + values.shape[1:].as_list())
