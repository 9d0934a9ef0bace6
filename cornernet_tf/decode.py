"""Heatmaps -> boxes: the official `_decode` (kp_utils.py), in graph ops.

    1. sigmoid; NMS by a kernel x kernel max-pool, keeping every position equal to its window max
       (plateaus keep all their maxima);
    2. the top k corners of each image over classes x positions, in the official (C, H, W) flat
       order, equal scores lower index first (tf.math.top_k's order; torch's is not fixed);
    3. corners moved by their offsets (channel 0 = x, 1 = y);
    4. all k x k (tl, br) pairs, scored (tl_score + br_score) / 2, and rejected (score -1) when the
       classes differ, the embeddings are farther apart than ae_threshold, or br is left of or
       above tl (strict comparisons, after the offsets);
    5. the num_dets best pairs.
no_border (CornerNet-Lite's `_decode`, used by CornerNet-Saccade's test): pairs whose tl corner
lies on row 0 or column 0, or whose br corner on the last row or column (integer positions,
before the offsets), are rejected too.
Boxes are in output-map pixels; classes are 0-based (the tl corner's class).
"""

from __future__ import annotations

import tensorflow as tf


def decode(
    outputs: dict,
    *,
    k: int = 100,
    kernel: int = 3,
    ae_threshold: float = 0.5,
    num_dets: int = 1000,
    no_border: bool = False,
) -> dict[str, tf.Tensor]:
    """Decodes the final-stack dict of CornerNet (NHWC logits) into detections.

    Returns a dict, each sorted by score (descending), rejected pairs scoring -1:
        boxes (B, num_dets, 4) float32 [x1, y1, x2, y2] in output-map pixels;
        scores, tl_scores, br_scores (B, num_dets) float32; classes (B, num_dets) int32, 0-based.
    """
    tl = _top_corners(
        outputs["tl_heatmap"], outputs["tl_offset"], outputs["tl_embedding"], k, kernel
    )
    br = _top_corners(
        outputs["br_heatmap"], outputs["br_offset"], outputs["br_embedding"], k, kernel
    )
    batch = tf.shape(tl["scores"])[0]

    def pair(a, b):  # (B, k) x (B, k) -> (B, k, k): tl i along axis 1, br j along axis 2
        return a[:, :, None], b[:, None, :]

    tl_x, br_x = pair(tl["xs"], br["xs"])
    tl_y, br_y = pair(tl["ys"], br["ys"])
    tl_s, br_s = pair(tl["scores"], br["scores"])
    tl_c, br_c = pair(tl["classes"], br["classes"])
    tl_e, br_e = pair(tl["embeddings"], br["embeddings"])
    scores = (tl_s + br_s) / 2
    rejected = (tl_c != br_c) | (tf.abs(tl_e - br_e) > ae_threshold) | (br_x < tl_x) | (br_y < tl_y)
    if no_border:
        shape = tf.shape(outputs["br_heatmap"])
        tl_edge = (tl["rows"] == 0) | (tl["columns"] == 0)
        br_edge = (br["rows"] == shape[1] - 1) | (br["columns"] == shape[2] - 1)
        tl_edge, br_edge = pair(tl_edge, br_edge)
        rejected = rejected | tl_edge | br_edge
    scores = tf.where(rejected, tf.constant(-1.0, scores.dtype), scores)
    shape = tf.stack([batch, k * k])
    best, pairs = tf.math.top_k(tf.reshape(scores, shape), k=num_dets)
    tl_index, br_index = pairs // k, pairs % k

    boxes = tf.stack(
        [
            gather_rows(tl["xs"], tl_index),
            gather_rows(tl["ys"], tl_index),
            gather_rows(br["xs"], br_index),
            gather_rows(br["ys"], br_index),
        ],
        axis=-1,
    )
    return {
        "boxes": boxes,
        "scores": best,
        "tl_scores": gather_rows(tl["scores"], tl_index),
        "br_scores": gather_rows(br["scores"], br_index),
        "classes": gather_rows(tl["classes"], tl_index),
    }


def gather_rows(values, index) -> tf.Tensor:
    """values (B, N, ...) at index (B, K) -> (B, K, ...): tf.gather(..., batch_dims=1) as one
    flat gather, because TF.js's WASM backend (4.22) gets batch_dims=1 wrong."""
    shape = tf.shape(values)
    flat = tf.reshape(values, tf.concat([[-1], shape[2:]], 0))
    return tf.gather(flat, index + tf.range(shape[0])[:, None] * shape[1])


def _top_corners(heatmap, offset, embedding, k: int, kernel: int) -> dict[str, tf.Tensor]:
    """The k best corners of each image after max-pool NMS; positions moved by their offsets."""
    heat = tf.sigmoid(tf.cast(heatmap, tf.float32))
    if kernel > 1:
        window_max = tf.nn.max_pool2d(heat, kernel, strides=1, padding="SAME")
        heat = tf.where(window_max == heat, heat, tf.zeros_like(heat))
    shape = tf.shape(heat)
    batch, height, width, classes = shape[0], shape[1], shape[2], shape[3]
    # Flatten in the official (C, H, W) order so that ties rank as in the official code.
    flat = tf.reshape(tf.transpose(heat, [0, 3, 1, 2]), tf.stack([batch, classes * height * width]))
    scores, index = tf.math.top_k(flat, k=k)
    area = height * width
    cls, position = index // area, index % area
    ys, xs = position // width, position % width
    offset = tf.reshape(tf.cast(offset, tf.float32), tf.stack([batch, area, 2]))
    offset = gather_rows(offset, position)
    embedding = tf.reshape(tf.cast(embedding, tf.float32), tf.stack([batch, area]))
    return {
        "scores": scores,
        "classes": tf.cast(cls, tf.int32),
        "xs": tf.cast(xs, tf.float32) + offset[..., 0],
        "ys": tf.cast(ys, tf.float32) + offset[..., 1],
        "embeddings": gather_rows(embedding, position),
        "index": position,
        "rows": ys,
        "columns": xs,
    }
