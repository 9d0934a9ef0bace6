"""The official CornerNet-Saccade sampling (CornerNet-Lite, sample/cornernet_saccade.py) for one
image, in TensorFlow ops usable inside `tf.data` `map`. Randomness is stateless: every function
that draws takes its seed.

For an image (H, W, 3) uint8 RGB and its boxes [x1, y1, x2, y2] in image pixels:
    1. the boxes are clipped to the image (x to [0, W - 1], y to [0, H - 1]) and those of zero
       width or height dropped;
    2. `reference_scale`: one box, uniform over the boxes, is the reference; with m the longer side
       of it, the image is scaled by s / m with s a uniform integer in 96..254 if m > 96, in 32..96
       if 32 < m <= 96, else in 16..32, so the reference lands in the size band of its attention
       map. Without boxes (or, with rand_full_crop, with probability 0.3) there is no reference
       and the scale is uniform over 0.5, 0.6, ..., 1.1;
    3. the image is resized to (int(H s), int(W s)) (bilinear, half-pixel centres: cv2's
       INTER_LINEAR), the boxes multiplied by s;
    4. `crop_center`: the centre of the 255 x 255 crop, per axis: the image's centre if the scaled
       side is <= 255; else, with probability 0.5 (rand_center) a uniform integer within
       [c - d1, c + d2] (c the reference's centre, d1, d2 uniform in 0..14, clipped to the
       image), otherwise a window (left edge uniform) that holds the reference, or anywhere in
       the image without a reference;
    5. `resized_window`: the crop, zero outside the scaled image, (crop_image: rows and columns
       c - 127 .. c + 126, so the last row and column of a 255 crop are always zero); boxes
       shifted by c - 127 and clipped to the part of the crop that shows the image, those of
       zero width or height dropped;
    6. flip with probability 0.5: the crop mirrored, x1', x2' = 254 - x2, 254 - x1;
    7. `attention_targets`: for every kept box, 1 at the cell (int(cx / r), int(cy / r)) of each
       attention map (ratio r = 16, 8, 4: 16, 32, 64 cells) whose size range
       ([96, 256], [32, 96], [0, 32], both ends included) holds the box's longer side;
    8. a box is ignored (its corners are masked out of the focal loss rather than drawn on the
       heatmaps) when the crop keeps half or less of its area (area after / before the crop, both
       scaled) or its longer side in whole pixels, max(int(y2) - int(y1), int(x2) - int(x1)), is
       under min_scale (16);
    9. colour: brightness, contrast and saturation in random order, PCA lighting and
       normalisation, as `augment.network_input` (BGR).

Where it differs from the official code: the random stream (the distributions are the same); the
resized pixels stay float32 (cv2 rounds them to uint8 with fixed-point weights, half a grey level
at most); a scaled side under one pixel becomes one (cv2.resize fails there). The official
CornerNet_Saccade.json sets `rand_full_crop`, a key its dataset class does not know and drops, so
its sampling runs with `rand_crop` False: always a reference when the image has a box, as
rand_full_crop=False here; rand_full_crop=True is the official rand_crop=True.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cornernet_tf.data.augment import (
    GRAY_RGB,
    color_jitter,
    flip_boxes,
    lighting,
    network_input,
)

INPUT_SIZE = (255, 255)
ATTENTION_RATIOS = (16, 8, 4)  # input pixels per cell of attention_0, _1, _2
ATTENTION_RANGES = ((96, 256), (32, 96), (0, 32))  # longer box side, both ends included
# (the reference's longer side is above, the scaled side drawn from lowest..highest)
REFERENCE_SIZES = ((96, 96, 254), (32, 32, 96), (0, 16, 32))
FULL_IMAGE_SCALES = tuple(np.arange(0.5, 1.1, 0.1))  # 0.5 ... 1.1, as the official arange
FULL_CROP_PROBABILITY = 0.3
CENTER_JITTER = 15  # the centred crop's centre is within c - 14 .. c + 14
MIN_SCALE = 16


def attention_sizes(input_size=INPUT_SIZE, ratios=ATTENTION_RATIOS) -> tuple[tuple[int, int], ...]:
    """(h, w) of each attention map: (side + 1) // ratio, 16, 32, 64 for 255."""
    return tuple(tuple((side + 1) // ratio for side in input_size) for ratio in ratios)


def clip_boxes(boxes, border) -> tuple[tf.Tensor, tf.Tensor]:
    """The official clip_detections: x to [x0, x1 - 1], y to [y0, y1 - 1] with border
    (y0, y1, x0, x1). Returns (clipped boxes (N, 4), keep (N,) bool: positive width and height)."""
    boxes = tf.convert_to_tensor(boxes)
    border = tf.cast(border, boxes.dtype)
    y0, y1, x0, x1 = border[0], border[1], border[2], border[3]
    xs = tf.clip_by_value(tf.gather(boxes, [0, 2], axis=1), x0, x1 - 1)
    ys = tf.clip_by_value(tf.gather(boxes, [1, 3], axis=1), y0, y1 - 1)
    clipped = tf.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)
    keep = (xs[:, 1] - xs[:, 0] > 0) & (ys[:, 1] - ys[:, 0] > 0)
    return clipped, keep


def reference_scale(
    boxes,
    seed,
    *,
    rand_full_crop: bool = False,
    scales=FULL_IMAGE_SCALES,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The official ref_scale: (scale float64 scalar, reference index int32 scalar, -1 for none).

    boxes (N, 4) float32, clipped to the image. With a reference box of longer side m the scale
    is s / m, s uniform over the integers of the band of m (REFERENCE_SIZES); without boxes, or
    with rand_full_crop with probability 0.3, it is uniform over `scales` and the index is -1.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    count = tf.shape(boxes)[0]
    full = tf.equal(count, 0)
    if rand_full_crop:
        full = full | (tf.random.stateless_uniform([], seeds[0]) > 1.0 - FULL_CROP_PROBABILITY)
    index = tf.random.stateless_uniform([], seeds[1], 0, tf.maximum(count, 1), tf.int32)
    # a spare row so that the gather also works without boxes (its result is not used then)
    box = tf.gather(tf.concat([boxes, [[0.0, 0.0, 1.0, 1.0]]], 0), index)
    longer = tf.maximum(box[3] - box[1], box[2] - box[0])
    lowest, highest = tf.constant(REFERENCE_SIZES[-1][1]), tf.constant(REFERENCE_SIZES[-1][2])
    for above, low, high in reversed(REFERENCE_SIZES[:-1]):
        lowest = tf.where(longer > above, low, lowest)
        highest = tf.where(longer > above, high, highest)
    size = tf.random.stateless_uniform([], seeds[2], lowest, highest + 1, tf.int32)
    object_scale = tf.cast(size, tf.float64) / tf.cast(longer, tf.float64)
    pick = tf.random.stateless_uniform([], seeds[3], 0, len(scales), tf.int32)
    full_scale = tf.gather(tf.constant(scales, tf.float64), pick)
    return tf.where(full, full_scale, object_scale), tf.where(full, -1, index)


def scaled_size(image_size, scale) -> tf.Tensor:
    """(int(H s), int(W s)) int32, at least 1 pixel, as the official cv2.resize target."""
    size = tf.cast(image_size, tf.float64) * tf.cast(scale, tf.float64)
    return tf.maximum(tf.cast(tf.floor(size), tf.int32), 1)


def crop_center(
    image_size,
    box,
    has_reference,
    seed,
    *,
    input_size=INPUT_SIZE,
    rand_center: bool = True,
) -> tf.Tensor:
    """The official crop_image_dets centre: (cy, cx) int32 in the pixels of the scaled image.

    image_size (H, W) of the scaled image; box (4,) the scaled reference box (ignored when
    has_reference is False). Per axis of side L and crop side n: L // 2 if L <= n; else, when
    centred (probability 0.5 with rand_center, one draw for both axes, only with a reference), a
    uniform integer in [max(c - d1, 0), min(c + d2, L - 1)] with c = floor((lo + hi) / 2) and
    d1, d2 uniform in 0..14; otherwise p + n // 2 with p uniform in
    [int(max(hi - n, 0)), int(min(L - n, lo))] (a window holding the box), or in [0, L - n]
    without a reference.
    """
    seeds = tf.random.experimental.stateless_split(seed, 9)
    box = tf.cast(box, tf.float32)
    has_reference = tf.cast(has_reference, tf.bool)
    centred = has_reference
    centred &= tf.constant(rand_center) & (tf.random.stateless_uniform([], seeds[0]) > 0.5)
    image_size = tf.cast(image_size, tf.int32)

    def axis(extent, size, lo, hi, keys):
        extent_f = tf.cast(extent, tf.float32)
        low = tf.where(has_reference, tf.cast(tf.maximum(hi - size, 0.0), tf.int32), 0)
        high = tf.where(
            has_reference, tf.cast(tf.minimum(extent_f - size, lo), tf.int32), extent - size
        )
        window = _uniform_int(keys[0], low, high) + size // 2
        middle = tf.floor((lo + hi) / 2)
        below = tf.cast(_uniform_int(keys[1], 0, CENTER_JITTER - 1), tf.float32)
        above = tf.cast(_uniform_int(keys[2], 0, CENTER_JITTER - 1), tf.float32)
        low = tf.cast(tf.maximum(middle - below, 0.0), tf.int32)
        high = tf.cast(tf.minimum(middle + above, extent_f - 1), tf.int32)
        near = _uniform_int(keys[3], low, high)
        chosen = tf.where(centred, near, window)
        return tf.where(extent <= size, extent // 2, chosen)

    cy = axis(image_size[0], input_size[0], box[1], box[3], seeds[1:5])
    cx = axis(image_size[1], input_size[1], box[0], box[2], seeds[5:9])
    return tf.stack([cy, cx])


def _uniform_int(seed, low, high) -> tf.Tensor:
    """A uniform int32 in [low, high], both included (high < low gives low)."""
    low = tf.cast(low, tf.int32)
    high = tf.maximum(tf.cast(high, tf.int32), low)
    return tf.random.stateless_uniform([], seed, low, high + 1, tf.int32)


def crop_border(image_size, center, input_size=INPUT_SIZE) -> tf.Tensor:
    """The official crop_image border: (y0, y1, x0, x1) float32, the part of the crop centred at
    `center` (cy, cx) that shows the image of size (H, W), in crop pixels."""
    image_size = tf.cast(image_size, tf.int32)
    center = tf.cast(center, tf.int32)
    edges = []
    for extent, c, size in zip(tf.unstack(image_size), tf.unstack(center), input_size, strict=True):
        half = size // 2
        first, last = tf.maximum(0, c - half), tf.minimum(c + half, extent)
        edges += [half - (c - first), half + (last - c)]
    return tf.cast(tf.stack(edges), tf.float32)


def resized_window(image, image_size, center, input_size=INPUT_SIZE) -> tf.Tensor:
    """The crop of the official scale-then-crop: the image resized to `image_size` (H', W')
    (bilinear, half-pixel centres, edge pixels repeated: cv2.resize's INTER_LINEAR and
    tf.image.resize's bilinear), then the `input_size` window centred at `center` (cy, cx) of the
    resized image, zero where the window leaves it (crop_image). Returns float32 (h, w, 3).

    Only the window's pixels are interpolated, so a large scale costs no more than a small one.
    """
    image = tf.cast(image, tf.float32)
    source = tf.shape(image)[:2]
    image_size = tf.cast(image_size, tf.int32)
    center = tf.cast(center, tf.int32)
    for axis in (0, 1):
        size = input_size[axis]
        pixel = center[axis] - size // 2 + tf.range(size)  # pixels of the resized image
        inside = (pixel >= 0) & (pixel < image_size[axis]) & (pixel < center[axis] + size // 2)
        extent = tf.cast(source[axis], tf.float64)
        step = extent / tf.cast(image_size[axis], tf.float64)
        position = (tf.cast(pixel, tf.float64) + 0.5) * step - 0.5
        position = tf.clip_by_value(position, 0.0, extent - 1.0)
        first = tf.floor(position)
        weight = tf.cast(position - first, tf.float32)
        first = tf.cast(first, tf.int32)
        second = tf.minimum(first + 1, source[axis] - 1)
        weight = tf.reshape(weight, [-1, 1, 1] if axis == 0 else [1, -1, 1])
        image = (1.0 - weight) * tf.gather(image, first, axis=axis) + weight * tf.gather(
            image, second, axis=axis
        )
        keep = tf.reshape(tf.cast(inside, tf.float32), [-1, 1, 1] if axis == 0 else [1, -1, 1])
        image = image * keep
    return tf.ensure_shape(image, [*input_size, 3])


def attention_targets(
    boxes,
    input_size=INPUT_SIZE,
    ratios=ATTENTION_RATIOS,
    ranges=ATTENTION_RANGES,
) -> list[tf.Tensor]:
    """The official create_attention_mask: one (h, w, 1) float32 map in {0, 1} per ratio.

    boxes (N, 4) float32 in input pixels. A box whose longer side is within ranges[i] (both ends
    included, so a side of exactly 96 or 32 marks two maps) sets the cell
    (int(cx / ratios[i]), int(cy / ratios[i])) of map i, (cx, cy) its centre.
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    longer = tf.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    maps = []
    for (h, w), ratio, (low, high) in zip(
        attention_sizes(input_size, ratios), ratios, ranges, strict=True
    ):
        on = (longer >= low) & (longer <= high)
        x = tf.clip_by_value(tf.cast(cx / ratio, tf.int32), 0, w - 1)
        y = tf.clip_by_value(tf.cast(cy / ratio, tf.int32), 0, h - 1)
        cells = tf.boolean_mask(tf.stack([y, x], axis=1), on)
        ones = tf.ones(tf.shape(cells)[:1], tf.float32)
        maps.append(tf.tensor_scatter_nd_max(tf.zeros([h, w, 1]), cells, ones[:, None]))
    return maps


def ignored_boxes(boxes, originals, min_scale: int = MIN_SCALE) -> tf.Tensor:
    """(N,) bool: the boxes the official sampling leaves off the heatmaps and masks out of the
    focal loss: area / the area of `originals` (the same boxes before the crop) <= 0.5, or
    max(int(y2) - int(y1), int(x2) - int(x1)) < min_scale. Boxes in input pixels, >= 0."""
    boxes = tf.cast(boxes, tf.float32)
    originals = tf.cast(originals, tf.float32)

    def area(b):
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    whole = tf.floor(boxes)
    longer = tf.maximum(whole[:, 3] - whole[:, 1], whole[:, 2] - whole[:, 0])
    return ~((area(boxes) / area(originals) > 0.5) & (longer >= min_scale))


def saccade_boxes(
    boxes,
    image_size,
    scale,
    center,
    flipped,
    *,
    input_size=INPUT_SIZE,
    min_scale: int = MIN_SCALE,
) -> dict[str, tf.Tensor]:
    """The official box geometry of one sample, for given random choices.

    boxes (N, 4) float32 in the pixels of the image (H, W) = image_size; scale (the image is
    resized to `scaled_size`), center (cy, cx) of the crop in the scaled image, flipped: the
    choices of `reference_scale`, `crop_center` and the flip. Boxes are clipped to the image,
    scaled, shifted into the crop, clipped to its image part and mirrored. Returns boxes (M, 4)
    float32 in input pixels, index (M,) int32 (their rows in `boxes`), ignore (M,) bool
    (`ignored_boxes`).
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    image_size = tf.cast(image_size, tf.int32)
    limits = tf.cast(image_size, tf.float32)
    index = tf.range(tf.shape(boxes)[0])
    clipped, keep = clip_boxes(boxes, tf.stack([0.0, limits[0], 0.0, limits[1]]))
    boxes, originals, index = (tf.boolean_mask(t, keep) for t in (clipped, boxes, index))
    scale = tf.cast(scale, tf.float64)
    boxes, originals = (
        tf.cast(tf.cast(b, tf.float64) * scale, tf.float32) for b in (boxes, originals)
    )
    size = scaled_size(image_size, scale)
    center = tf.cast(center, tf.int32)
    shift = tf.cast(center - [d // 2 for d in input_size], tf.float32)
    boxes = boxes - tf.stack([shift[1], shift[0], shift[1], shift[0]])
    boxes, keep = clip_boxes(boxes, crop_border(size, center, input_size))
    boxes, originals, index = (tf.boolean_mask(t, keep) for t in (boxes, originals, index))
    flipped = tf.cast(flipped, tf.bool)
    boxes = tf.cond(flipped, lambda: flip_boxes(boxes, input_size[1]), lambda: boxes)
    return {"boxes": boxes, "index": index, "ignore": ignored_boxes(boxes, originals, min_scale)}


def saccade_sample(
    image,
    boxes,
    classes,
    seed,
    data,
    *,
    input_size=INPUT_SIZE,
    rand_full_crop: bool = False,
    rand_center: bool = True,
    min_scale: int = MIN_SCALE,
) -> dict[str, tf.Tensor]:
    """One training example of the official CornerNet-Saccade sampling.

    image (H, W, 3) uint8 RGB; boxes (N, 4) float32 [x1, y1, x2, y2] in image pixels; classes
    (N,) int (0-based); seed (2,) int; data: normalisation (`mean_bgr`, `std_bgr`, as
    `augment.network_input`). Returns:
        image (h, w, 3) float32, the network input (BGR, normalised);
        boxes (M, 4) float32 in input pixels, the boxes that are still in the crop;
        classes (M,) int32;
        ignore (M,) bool, True for the boxes the official code masks out of the focal loss
            instead of drawing them (cut by the crop or smaller than min_scale);
        attention_0, attention_1, attention_2 (h / r, w / r, 1) float32 in {0, 1}, r = 16, 8, 4.
    `encode_corners` of the boxes that are not ignored gives the corner targets.
    """
    seeds = tf.random.experimental.stateless_split(seed, 5)
    image_size = tf.shape(image)[:2]
    limits = tf.cast(image_size, tf.float32)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
    clipped, keep = clip_boxes(boxes, tf.stack([0.0, limits[0], 0.0, limits[1]]))
    clipped = tf.boolean_mask(clipped, keep)

    scale, reference = reference_scale(clipped, seeds[0], rand_full_crop=rand_full_crop)
    size = scaled_size(image_size, scale)
    box = tf.gather(tf.concat([clipped, tf.zeros([1, 4])], 0), tf.maximum(reference, 0))
    box = tf.cast(tf.cast(box, tf.float64) * scale, tf.float32)
    center = crop_center(
        size, box, reference >= 0, seeds[1], input_size=input_size, rand_center=rand_center
    )
    flipped = tf.random.stateless_uniform([], seeds[2]) > 0.5
    placed = saccade_boxes(
        boxes, image_size, scale, center, flipped, input_size=input_size, min_scale=min_scale
    )

    crop = resized_window(image, size, center, input_size)
    crop = tf.cond(flipped, lambda: tf.reverse(crop, [1]), lambda: crop)
    gray_mean = tf.tensordot(tf.reduce_mean(crop, [0, 1]), tf.constant(GRAY_RGB), 1) / 255.0
    jitter_scale, gray_weight, offset = color_jitter(seeds[3], gray_mean)
    crop = network_input(crop, data, jitter_scale, gray_weight, offset + lighting(seeds[4]))
    out = {
        "image": tf.ensure_shape(crop, [*input_size, 3]),
        "boxes": placed["boxes"],
        "classes": tf.gather(classes, placed["index"]),
        "ignore": placed["ignore"],
    }
    for i, attention in enumerate(attention_targets(placed["boxes"], input_size)):
        out[f"attention_{i}"] = attention
    return out
