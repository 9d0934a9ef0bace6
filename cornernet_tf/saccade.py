"""CornerNet-Saccade's test procedure (CornerNet-Lite `test/cornernet_saccade.py`), in graph ops.

For one RGB image of any size, in one `tf.function` trace (every count is a tensor):
    stage 0, the glance: the whole image, its longer side scaled to each of test.init_sizes
        (192, 255), centred in a crop x crop (255 x 255) input; the network gives detections
        and three attention maps;
    where to look next: the attention maps' peaks (att_nms_kernel max-pool NMS, sigmoid >
        att_threshold), zoomed by att_scale x the crop's zoom, and (ref_dets) the centre of every
        stage-0 detection scoring > 0.5, zoomed by its size; merged by `location_nms`;
    stage 1, the saccades: the first att_max_crops of those locations, best first; around each,
        a square of crop / zoom image pixels scaled into a crop x crop input; detections only;
    the detections of both stages in image pixels, per-class soft-NMS (the official Cython
        `soft_nms`: `class_soft_nms`), the best max_per_image.
One round of saccades, as the official configs/CornerNet_Saccade.json (att_thresholds [0.3]).

Layouts:
    images and crops NHWC; crops are normalised BGR network inputs, (x / 255 - mean) / std;
    locations (N, 4) [y, x, zoom, score]: y, x the centre in image pixels, zoom crop pixels per
        image pixel (the official "scale"); the first three columns are what a crop needs;
    crop geometry (N, 10) int32 [y0, y1, x0, x1, out_y0, out_y1, out_x0, out_x1, side, side]:
        the source window [y0, y1) x [x0, x1) of the image, where its resize lands in the crop,
        and the side of the square of image pixels the crop covers;
    crop offsets (N, 2) float32 [y, x]: the image pixel at the crop's corner, centre - side // 2;
    detections (N, 8) [x1, y1, x2, y2, score, tl_score, br_score, class]: the official `_decode`
        layout, class a 0-based float; output-map pixels from the network, image pixels after
        `rescale_detections` and `remap_detections`;
    attention maps (N, h, w, 1) sigmoid, innermost (stride 16) first.
Numbers as the official numpy code computes them: the attention peaks' positions and the
location NMS in float64; detections in float32; stage-0 locations float32, later ones float64
(a crop's side is crop / zoom in the locations' own precision, as numpy 2 does it); crops
resized in float64 (the official `interpolate` on a float64 image) and stored in float32.

Differences from the official code: a crop window that lies outside the image (a location far
outside it) gives a crop of zeros where the official code fails; the final selection keeps
exactly max_per_image detections where the official keeps every one scoring at least the
max_per_image-th score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from cornernet_tf.config import Config, DataConfig, TestConfig
from cornernet_tf.decode import decode
from cornernet_tf.geometry import output_size

GLANCE_SCORE = 0.3  # stage-0 detections kept (the official get_locs)
REFERENCE_SCORE = 0.5  # stage-0 detections that propose a location (get_ref_locs)
# get_ref_locs: objects larger than 96, larger than 32, or smaller, are zoomed so that their
# longer side becomes 192, 64 or 24 crop pixels
REFERENCE_SIZES = ((96.0, 192.0), (32.0, 64.0), (0.0, 24.0))
LOCATION_NMS_DISTANCE = 16  # crop pixels (location_nms(thresh=16))
MAX_ZOOM = 4.0  # attention peaks of crops zoomed more than 2, or zooming past 4, are ignored
SOFT_NMS_METHODS = {"nms": 0, "linear": 1, "gaussian": 2}  # the official `method` numbers

# network(crops, attention=True) -> (detections, attention maps); attention=False: the saccades,
# which need detections only (the official no_att), the maps may be left out
Network = Callable[..., tuple[tf.Tensor, Sequence[tf.Tensor]]]


# --- where to look -------------------------------------------------------------------------


def initial_locations(height, width, init_sizes: Sequence[int]) -> tf.Tensor:
    """The glance: (S, 3) float32 [y, x, zoom], the image centre (h // 2, w // 2) once for each
    size in `init_sizes`, zoomed so that the longer side becomes that many crop pixels."""
    longer = tf.cast(tf.maximum(height, width), tf.float64)
    zoom = tf.cast(tf.constant(init_sizes, tf.float64) / longer, tf.float32)
    centre = tf.cast(tf.stack([height // 2, width // 2]), tf.float32)
    return tf.concat([tf.tile(centre[None], [len(init_sizes), 1]), zoom[:, None]], axis=1)


def _centres_and_sides(locations, crop_size: int):
    """Integer crop centres (y, x) and sides int(crop_size / zoom), truncated as the official."""
    zoom = locations[:, 2]
    centre_y = tf.cast(locations[:, 0], tf.int32)
    centre_x = tf.cast(locations[:, 1], tf.int32)
    side = tf.cast(tf.constant(crop_size, zoom.dtype) / zoom, tf.int32)
    return centre_y, centre_x, side


def crop_geometry(locations, height, width, crop_size: int = 255) -> tf.Tensor:
    """(N, 10) int32 [y0, y1, x0, x1, out_y0, out_y1, out_x0, out_x1, side, side] of the crops at
    `locations` (N, >=3) [y, x, zoom] (the official `crop_image_gpu`): the side x side square of
    image pixels around the centre, clipped to the image, lands at the same place of a
    crop_size x crop_size crop scaled by crop_size / side (distances to the centre truncated)."""
    centre_y, centre_x, side = _centres_and_sides(locations, crop_size)
    half = side // 2
    y0, y1 = tf.maximum(centre_y - half, 0), tf.minimum(centre_y + half, height)
    x0, x1 = tf.maximum(centre_x - half, 0), tf.minimum(centre_x + half, width)
    scale = crop_size / tf.cast(side, tf.float64)
    middle = crop_size // 2

    def scaled(distance):
        return tf.cast(tf.cast(distance, tf.float64) * scale, tf.int32)

    columns = [
        y0,
        y1,
        x0,
        x1,
        middle - scaled(centre_y - y0),
        middle + scaled(y1 - centre_y),
        middle - scaled(centre_x - x0),
        middle + scaled(x1 - centre_x),
        side,
        side,
    ]
    return tf.stack(columns, axis=1)


def crop_offsets(locations, crop_size: int = 255) -> tf.Tensor:
    """(N, 2) float32 [y, x]: the image pixel at the top-left corner of each crop's square,
    centre - side // 2 (may be negative); image = crop position / zoom + offset."""
    centre_y, centre_x, side = _centres_and_sides(locations, crop_size)
    half = side // 2
    return tf.cast(tf.stack([centre_y - half, centre_x - half], axis=1), tf.float32)


# --- crops ---------------------------------------------------------------------------------


def unit_bgr(image) -> tf.Tensor:
    """RGB (H, W, 3) values in [0, 255] -> (H, W, 3) float64 BGR in [0, 1], as the official
    `image / 255.` of a cv2 image (uint8: looked up, exactly that quotient; a graph would
    multiply by 1 / 255 instead, one double unit off for 24 of the 256 levels)."""
    bgr = tf.reverse(image, axis=[-1])
    if bgr.dtype == tf.uint8:
        levels = tf.constant([level / 255 for level in range(256)], tf.float64)
        return tf.gather(levels, tf.cast(bgr, tf.int32))
    return tf.cast(bgr, tf.float64) / 255.0


def _resize_taps(src_start, src_end, out_start, out_end, crop_size: int):
    """One axis of torch's bilinear resize (align_corners=False) of every crop's source window
    into its output window: for each of the crop_size crop pixels (N, crop_size) the two source
    pixels (int32 image indices), the weight of the second (float64) and whether it is inside."""
    src_len, out_len = src_end - src_start, out_end - out_start
    dst = tf.range(crop_size)[None, :] - out_start[:, None]
    inside = (dst >= 0) & (dst < out_len[:, None]) & (src_len[:, None] > 0)
    ratio = tf.cast(src_len, tf.float64) / tf.cast(tf.maximum(out_len, 1), tf.float64)
    source = tf.maximum(ratio[:, None] * (tf.cast(dst, tf.float64) + 0.5) - 0.5, 0.0)
    low = tf.minimum(tf.cast(source, tf.int32), tf.maximum(src_len - 1, 0)[:, None])
    weight = source - tf.cast(low, tf.float64)
    step = tf.cast(low < src_len[:, None] - 1, tf.int32)
    return src_start[:, None] + low, src_start[:, None] + low + step, weight, inside


def resize_into_crops(image, geometry, crop_size: int = 255) -> tf.Tensor:
    """image (H, W, C) float64, geometry (N, 10) -> (N, crop_size, crop_size, C) float64: each
    source window resized bilinearly (torch `interpolate(mode='bilinear')`, half-pixel centres)
    into its output window of a zero crop."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    g = tf.unstack(geometry, num=10, axis=1)
    top, bottom, dy, inside_y = _resize_taps(g[0], g[1], g[4], g[5], crop_size)
    left, right, dx, inside_x = _resize_taps(g[2], g[3], g[6], g[7], crop_size)
    top, bottom = tf.clip_by_value(top, 0, height - 1), tf.clip_by_value(bottom, 0, height - 1)
    left, right = tf.clip_by_value(left, 0, width - 1), tf.clip_by_value(right, 0, width - 1)
    flat = tf.reshape(image, [height * width, -1])

    def pixels(rows, columns):  # (N, crop, crop, C)
        return tf.gather(flat, rows[:, :, None] * width + columns[:, None, :])

    dy, dx = dy[:, :, None, None], dx[:, None, :, None]
    upper = (1.0 - dx) * pixels(top, left) + dx * pixels(top, right)
    lower = (1.0 - dx) * pixels(bottom, left) + dx * pixels(bottom, right)
    resized = (1.0 - dy) * upper + dy * lower
    inside = (inside_y[:, :, None] & inside_x[:, None, :])[..., None]
    return tf.where(inside, resized, tf.zeros_like(resized))


def divide_float32(numerator, divisor) -> tf.Tensor:
    """numerator / divisor as a float32 division (both float32 values), computed in float64.

    In a tf.function, Grappler's constant folding turns a division by a constant into a
    multiplication by its reciprocal, which is off by one float32 unit in about a fifth of the
    results; in float64 the reciprocal's error vanishes in the rounding to float32.
    """
    quotient = tf.cast(numerator, tf.float64) / tf.cast(divisor, tf.float64)
    return tf.cast(quotient, tf.float32)


def normalize_crops(crops, data: DataConfig) -> tf.Tensor:
    """BGR crops in [0, 1] -> float32 network inputs (x - mean) / std (the official float32)."""
    centred = tf.cast(crops, tf.float32) - tf.constant(data.mean_bgr, tf.float32)
    return divide_float32(centred, tf.constant(data.std_bgr, tf.float32))


def crop_images(image_bgr, locations, data: DataConfig, crop_size: int = 255) -> dict:
    """The official `prepare_images` + normalisation: image_bgr (H, W, 3) float64 in [0, 1]
    (`unit_bgr`), locations (N, >=3) [y, x, zoom] -> dict of crops (N, crop, crop, 3) float32
    network inputs, geometry (N, 10) int32 and offsets (N, 2) float32."""
    shape = tf.shape(image_bgr)
    geometry = crop_geometry(locations, shape[0], shape[1], crop_size)
    crops = normalize_crops(resize_into_crops(image_bgr, geometry, crop_size), data)
    return {"crops": crops, "geometry": geometry, "offsets": crop_offsets(locations, crop_size)}


# --- attention -----------------------------------------------------------------------------


def attention_nms(attentions: Sequence[tf.Tensor], kernel: int = 3) -> list[tf.Tensor]:
    """Keeps the local maxima of each (N, h, w, 1) attention map (equal to the max of their
    kernel x kernel window); every other position becomes 0 (the official `att_nms`)."""
    kept = []
    for attention in attentions:
        window_max = tf.nn.max_pool2d(attention, kernel, strides=1, padding="SAME")
        kept.append(tf.where(attention == window_max, attention, tf.zeros_like(attention)))
    return kept


def decode_attention(
    attentions: Sequence[tf.Tensor],
    zooms,
    offsets,
    height,
    width,
    *,
    att_scales: Sequence[float],
    att_ratios: Sequence[int],
    threshold: float,
    ignore_same: bool = False,
) -> tf.Tensor:
    """Locations (M, 4) float64 [y, x, zoom, score] of the attention peaks (the official
    `decode_atts`).

    attentions: per map (N, h, w, 1) after `attention_nms`; zooms (N,) float32 and offsets
    (N, 2) [y, x] of the N crops. Every position scoring > threshold of map i, at
    position * att_ratios[i] / zoom + offset inside the image, proposes zoom x att_scales[i];
    crops zoomed more than 2, proposals zoomed more than 4 and (ignore_same) att_scales[i] <= 1
    propose nothing. Ordered by crop, then map, then row-major position.
    """
    zooms = tf.cast(zooms, tf.float32)
    parts, keys = [], []
    maps = zip(attentions, att_ratios, att_scales, strict=True)
    for level, (attention, ratio, scale) in enumerate(maps):
        scores = attention[..., 0]
        where = tf.where(scores > threshold)  # (M, 3) [crop, row, column], row-major
        crop = tf.cast(where[:, 0], tf.int32)
        zoom = tf.gather(zooms, crop)
        offset = tf.cast(tf.gather(offsets, crop), tf.float64)
        y = tf.cast(where[:, 1] * ratio, tf.float64) / tf.cast(zoom, tf.float64) + offset[:, 0]
        x = tf.cast(where[:, 2] * ratio, tf.float64) / tf.cast(zoom, tf.float64) + offset[:, 1]
        next_zoom = tf.constant(scale, tf.float32) * zoom
        keep = (y >= 0) & (y < tf.cast(height, tf.float64))
        keep &= (x >= 0) & (x < tf.cast(width, tf.float64))
        keep &= (zoom <= 2.0) & (next_zoom <= MAX_ZOOM) & (not (ignore_same and scale <= 1))
        score = tf.cast(tf.gather_nd(scores, where), tf.float64)
        rows = tf.stack([y, x, tf.cast(next_zoom, tf.float64), score], axis=1)
        parts.append(tf.boolean_mask(rows, keep))
        keys.append(tf.boolean_mask(crop * len(att_ratios) + level, keep))
    order = tf.argsort(tf.concat(keys, 0), stable=True)
    return tf.gather(tf.concat(parts, 0), order)


# --- detections ----------------------------------------------------------------------------


def rescale_detections(detections, ratio: float) -> tf.Tensor:
    """detections (..., 8) in output-map pixels -> crop pixels: x1, y1, x2, y2 divided by
    `ratio` = output / input side (64 / 255), in float32 as the official `rescale_dets_`."""
    boxes = divide_float32(detections[..., :4], tf.constant(ratio, tf.float32))
    return tf.concat([boxes, detections[..., 4:]], axis=-1)


def remap_detections(detections, zooms, offsets) -> tf.Tensor:
    """detections (N, K, 8) float32 in crop pixels of N crops -> image pixels: / zoom (N,)
    (float32 or float64: the division is rounded once to float32), + offset (N, 2) [y, x]."""
    zooms = tf.cast(zooms, tf.float64)[:, None, None]
    scaled = tf.cast(tf.cast(detections[..., :4], tf.float64) / zooms, tf.float32)
    shift = tf.gather(tf.cast(offsets, tf.float32), [1, 0, 1, 0], axis=1)[:, None, :]
    return tf.concat([scaled + shift, detections[..., 4:]], axis=-1)


def reference_locations(detections) -> tf.Tensor:
    """Locations (R, 4) float32 [y, x, zoom, 1] of the detections (M, 8) in image pixels scoring
    > 0.5 (the official `get_ref_locs`): their box centres, zoomed so that the longer side of
    the box becomes 192 (longer than 96), 64 (longer than 32) or 24 crop pixels."""
    boxes = tf.boolean_mask(detections, detections[:, 4] > REFERENCE_SCORE)
    x1, y1, x2, y2 = tf.unstack(boxes[:, :4], axis=1)
    longer = tf.maximum(x2 - x1, y2 - y1)
    target = tf.fill(tf.shape(longer), REFERENCE_SIZES[-1][1])
    for bound, size in reversed(REFERENCE_SIZES[:-1]):
        target = tf.where(longer > bound, size, target)
    ones = tf.ones_like(longer)
    return tf.stack([(y1 + y2) / 2, (x1 + x2) / 2, target / longer, ones], axis=1)


def location_nms(locations, distance: float = LOCATION_NMS_DISTANCE) -> tf.Tensor:
    """Greedy NMS of locations (M, 4) [y, x, zoom, score] (the official `location_nms`).

    Best score first (equal scores: the later row first, as numpy's argsort(...)[::-1]); a kept
    location removes every other one closer than distance / its zoom along y or x (the smaller
    of the two distances) whose zoom is within [0.8, 1.2] of its own. Returns the kept rows
    (K, 4), best first, in the input's dtype.
    """
    locations = tf.gather(locations, tf.reverse(tf.argsort(locations[:, 3], stable=True), [0]))
    ys, xs, zooms = locations[:, 0], locations[:, 1], locations[:, 2]
    near = (
        tf.minimum(tf.abs(ys[:, None] - ys[None, :]), tf.abs(xs[:, None] - xs[None, :]))
        <= (distance / zooms)[:, None]
    )
    ratio = zooms[:, None] / zooms[None, :]
    covers = near & (ratio <= 1.2) & (ratio >= 0.8)  # row i removes column j
    count = tf.shape(locations)[0]
    index = tf.range(count)

    def step(alive, kept):
        first = tf.reduce_min(tf.where(alive, index, count))
        kept = kept | (index == first)
        return alive & ~covers[first] & (index != first), kept

    _, kept = tf.while_loop(
        lambda alive, kept: tf.reduce_any(alive),
        step,
        (tf.ones([count], tf.bool), tf.zeros([count], tf.bool)),
    )
    return tf.boolean_mask(locations, kept)


# --- soft-NMS ------------------------------------------------------------------------------


def _side(low, high) -> tf.Tensor:
    """high - low + 1 in float64 from float32 coordinates, as the compiled official code: the
    float32 difference plus a double 1.0."""
    return tf.cast(high - low, tf.float64) + 1.0


def official_iou(top, boxes) -> tuple[tf.Tensor, tf.Tensor]:
    """IoU of `top` with `boxes` (broadcast (..., 4) float32 [x1, y1, x2, y2], sides + 1 pixel)
    and whether they overlap (intersection sides > 0), rounded exactly as the compiled official
    `soft_nms`: the box area and the union rounded to float32 from double, the intersection
    iw x ih and the IoU in float32. Returns iou float32, overlap bool."""
    tx1, ty1, tx2, ty2 = tf.unstack(top, axis=-1)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    area = tf.cast(_side(x1, x2) * _side(y1, y2), tf.float32)
    iw = tf.minimum(tx2, x2) - tf.maximum(tx1, x1) + 1
    ih = tf.minimum(ty2, y2) - tf.maximum(ty1, y1) + 1
    inter = iw * ih
    union = _side(tx1, tx2) * _side(ty1, ty2) + tf.cast(area, tf.float64)
    union = tf.cast(union - tf.cast(inter, tf.float64), tf.float32)
    return inter / union, (iw > 0) & (ih > 0)


def _decay(iou, method: int, sigma: float, overlap: float) -> tf.Tensor:
    """The official weight of a box overlapping a kept box by `iou` (float32)."""
    if method == 2:  # exp in double precision of a float32 argument, as the Cython
        return tf.cast(tf.exp(tf.cast(divide_float32(-(iou * iou), sigma), tf.float64)), tf.float32)
    if method == 1:
        return tf.where(iou > overlap, 1.0 - iou, 1.0)
    return tf.where(iou > overlap, 0.0, 1.0)


def _class_grid(classes):
    """Detections by class: (C, L) int32 indices, each class's in input order, -1 padded, and
    the (C,) count of each class; C = max class + 1."""
    num_classes = tf.reduce_max(tf.concat([classes, [-1]], 0)) + 1
    counts = tf.math.bincount(classes, minlength=num_classes, maxlength=num_classes)
    by_class = tf.argsort(classes, stable=True)
    sorted_classes = tf.gather(classes, by_class)
    starts = tf.cumsum(counts, exclusive=True)
    slots = tf.range(tf.size(classes)) - tf.gather(starts, sorted_classes)
    width = tf.reduce_max(tf.concat([counts, [0]], 0))
    grid = tf.scatter_nd(
        tf.stack([sorted_classes, slots], 1), by_class + 1, tf.stack([num_classes, width])
    )
    return grid - 1, counts


def _soft_nms_round(i, grid, scores, counts, boxes, decay, threshold):
    """Step i of the official Cython `soft_nms`, for every class at once.

    grid (C, L) detection indices, scores (C, L), counts (C,): each class's array as the Cython
    holds it. The best box at or after position i (the first of equal ones) swaps with
    position i; the boxes after it that overlap it (+1 pixel areas) are decayed; those now
    below `threshold` are removed, each replaced by the last box of the array as the Cython
    does it (so the remaining order, which breaks later ties, is the official one).
    """
    width = tf.shape(grid)[1]
    pos = tf.range(width)[None, :]
    ends = counts[:, None]
    active = i < ends  # (C, 1)
    live = (pos >= i) & (pos < ends)
    best = tf.reduce_max(tf.where(live, scores, -float("inf")), axis=1, keepdims=True)
    first = tf.reduce_min(tf.where(live & (scores == best), pos, width), axis=1, keepdims=True)
    first = tf.where(active, first, i)
    swap = tf.where(pos == i, first, tf.where(pos == first, i, pos))
    grid, scores = tf.gather(grid, swap, batch_dims=1), tf.gather(scores, swap, batch_dims=1)

    grid_boxes = tf.gather(boxes, tf.maximum(grid, 0))
    iou, overlap = official_iou(grid_boxes[:, i][:, None], grid_boxes)
    rest = (pos > i) & (pos < ends)
    overlap &= rest
    scores = tf.where(overlap, decay(iou) * scores, scores)
    dropped = overlap & (scores < threshold)

    kept = rest & ~dropped
    new_ends = i + 1 + tf.reduce_sum(tf.cast(kept, tf.int32), axis=1, keepdims=True)
    holes = dropped & (pos < new_ends)
    movers = kept & (pos >= new_ends)  # fill the holes, the last one the first hole
    hole_slots = tf.sort(tf.where(holes, pos, width + pos), axis=1)
    mover_rank = tf.cumsum(tf.cast(movers, tf.int32), axis=1, exclusive=True, reverse=True)
    target = tf.where(dropped | (pos >= ends), width + pos, pos)
    target = tf.where(movers, tf.gather(hole_slots, mover_rank, batch_dims=1), target)
    move = tf.argsort(target, axis=1, stable=True)
    grid, scores = tf.gather(grid, move, batch_dims=1), tf.gather(scores, move, batch_dims=1)
    counts = tf.where(active[:, 0], new_ends[:, 0], counts)
    grid = tf.where(pos < counts[:, None], grid, -1)
    return grid, scores, counts


def class_soft_nms(
    boxes,
    scores,
    classes,
    *,
    method: int = 2,
    sigma: float = 0.5,
    overlap: float = 0.3,
    threshold: float = 0.001,
) -> dict[str, tf.Tensor]:
    """Per-class soft-NMS exactly as the official Cython `soft_nms` run on each class's rows.

    boxes (M, 4) float32 [x1, y1, x2, y2] (IoU with +1 pixel areas), scores (M,) float32,
    classes (M,) int32 0-based. method 2: score *= exp(-iou^2 / sigma); 1: *= 1 - iou where
    iou > overlap; 0: removed where iou > overlap. A box is removed when an overlapping better
    box takes its score below `threshold` (a box that overlaps nothing keeps any score).
    Returns index (K,) int32 of the kept detections, class by class, each class in the
    official's order (best first, as it selected them); scores (K,) their decayed scores;
    counts (C,) int32 kept per class 0 .. max class.
    """
    grid, counts = _class_grid(classes)
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    grid_scores = tf.where(grid >= 0, tf.gather(scores, tf.maximum(grid, 0)), 0.0)
    sigma, overlap = tf.constant(sigma, tf.float32), tf.constant(overlap, tf.float32)
    threshold = tf.constant(threshold, tf.float32)

    def decay(iou):
        return _decay(iou, method, sigma, overlap)

    def step(i, grid, grid_scores, counts):
        grid, grid_scores, counts = _soft_nms_round(
            i, grid, grid_scores, counts, boxes, decay, threshold
        )
        return i + 1, grid, grid_scores, counts

    _, grid, grid_scores, counts = tf.while_loop(
        lambda i, grid, s, counts: i < tf.reduce_max(tf.concat([counts, [0]], 0)),
        step,
        (tf.constant(0), grid, grid_scores, counts),
    )
    kept = grid >= 0
    return {
        "index": tf.boolean_mask(grid, kept),
        "scores": tf.boolean_mask(grid_scores, kept),
        "counts": counts,
    }


# --- the procedure -------------------------------------------------------------------------


def crop_side(config: Config) -> int:
    """The side of the square network input (data.input_size, 255 for CornerNet-Saccade)."""
    height, width = config.data.input_size
    if height != width:
        raise ValueError(
            f"{config.source}: CornerNet-Saccade's crops are square, but data.input_size is "
            f"{list(config.data.input_size)}"
        )
    return height


def look(network: Network, image_bgr, locations, config: Config, attention: bool = True) -> dict:
    """Crops the image at `locations` (N, >=3) [y, x, zoom] and runs the network on them.

    Returns crops, geometry, offsets (`crop_images`), the raw detections (N, num_dets, 8) in
    output-map pixels, detections (N, num_dets, 8) in image pixels and (attention) the
    attention maps after `attention_nms`. Without attention (the saccades), no locations run
    no network (the official stops there), giving (0, num_dets, 8) detections.
    """
    side = crop_side(config)
    crops = crop_images(image_bgr, locations, config.data, side)
    if attention:
        raw, maps = network(crops["crops"])
        maps = {"attentions": attention_nms(maps, config.test.att_nms_kernel)}
    else:
        raw = tf.cond(
            tf.shape(locations)[0] > 0,
            lambda: tf.cast(network(crops["crops"], attention=False)[0], tf.float32),
            lambda: tf.zeros([0, config.test.num_dets, 8]),
        )
        maps = {}
    ratio = output_size((side, side), config.model.output_stride)[0] / side
    detections = remap_detections(rescale_detections(raw, ratio), locations[:, 2], crops["offsets"])
    return {**crops, "raw": raw, "detections": detections, **maps}


def next_locations(glance: dict, detections, locations, height, width, test: TestConfig) -> dict:
    """Where stage 1 looks, from the glance (`look`), its detections (M, 8) in image pixels
    scoring > 0.3 and its locations (S, 3).

    Returns att_locations (A, 4) float64, the attention peaks (`decode_attention`);
    ref_locations (R, 4) float32, `reference_locations` of the detections (test.ref_dets, else
    empty); next_locations (K, 4) float64, both through `location_nms` (test.ref_dets, else the
    attention peaks as they are).
    """
    peaks = decode_attention(
        glance["attentions"],
        locations[:, 2],
        glance["offsets"],
        height,
        width,
        att_scales=test.att_scales,
        att_ratios=test.att_ratios,
        threshold=test.att_thresholds[0],
    )
    if not test.ref_dets:
        empty = tf.zeros([0, 4], tf.float32)
        return {"att_locations": peaks, "ref_locations": empty, "next_locations": peaks}
    references = reference_locations(detections)
    proposals = tf.concat([peaks, tf.cast(references, tf.float64)], 0)
    return {
        "att_locations": peaks,
        "ref_locations": references,
        "next_locations": location_nms(proposals),
    }


def saccade_stages(network: Network, image, config: Config) -> dict[str, tf.Tensor]:
    """CornerNet-Saccade's test procedure on one RGB image (H, W, 3) in [0, 255], with every
    intermediate result (keys named after the official variables, `s0_` the glance, `s1_` the
    saccades).

    network(crops (N, side, side, 3) float32, attention=True) -> (detections (N, num_dets, 8) in
    output-map pixels, attention maps [(N, h_i, w_i, 1) sigmoid] innermost first), e.g.
    `saccade_network`; the saccades call it with attention=False and use the detections only.
    """
    test = config.test
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    image_bgr = unit_bgr(image)

    s0_locations = initial_locations(height, width, test.init_sizes)
    glance = look(network, image_bgr, s0_locations, config)
    s0_dets = tf.reshape(glance["detections"], [-1, 8])
    s0_dets = tf.boolean_mask(s0_dets, s0_dets[:, 4] > GLANCE_SCORE)
    proposed = next_locations(glance, s0_dets, s0_locations, height, width, test)

    s1_locations = proposed["next_locations"][: test.att_max_crops]
    saccades = look(network, image_bgr, s1_locations, config, attention=False)
    s1_dets = tf.reshape(saccades["detections"], [-1, 8])
    s1_dets = tf.boolean_mask(s1_dets, s1_dets[:, 4] > -1)

    detections = tf.concat([s0_dets, s1_dets], 0)
    kept = class_soft_nms(
        detections[:, :4],
        detections[:, 4],
        tf.cast(detections[:, 7], tf.int32),
        method=SOFT_NMS_METHODS["gaussian"],
        sigma=test.soft_nms_sigma,
        threshold=test.score_threshold,
    )
    stages = {f"s0_{key}": value for key, value in glance.items()}
    stages |= {f"s1_{key}": value for key, value in saccades.items()}
    return stages | {
        **{f"s0_{key}": value for key, value in proposed.items()},
        "s0_locations": s0_locations,
        "s0_dets": s0_dets,
        "s1_locations": s1_locations,
        "s1_dets": s1_dets,
        "detections": detections,
        "soft_nms_index": kept["index"],
        "soft_nms_scores": kept["scores"],
        "soft_nms_counts": kept["counts"],
        **best_detections(detections, kept, test.max_per_image),
    }


def best_detections(detections, kept: dict, max_per_image: int) -> dict[str, tf.Tensor]:
    """The best max_per_image of the soft-NMS survivors: boxes (K, 4) [x1, y1, x2, y2] image
    pixels, scores (K,) decayed, classes (K,) int32 0-based, sorted by score."""
    count = tf.minimum(tf.size(kept["scores"]), max_per_image)
    best = tf.math.top_k(kept["scores"], k=count).indices
    index = tf.gather(kept["index"], best)
    return {
        "boxes": tf.gather(detections[:, :4], index),
        "scores": tf.gather(kept["scores"], best),
        "classes": tf.cast(tf.gather(detections[:, 7], index), tf.int32),
    }


def saccade_detect(network: Network, image, config: Config) -> dict[str, tf.Tensor]:
    """CornerNet-Saccade's test procedure on one RGB image (H, W, 3) in [0, 255].

    Returns boxes (K, 4) [x1, y1, x2, y2] in image pixels, scores (K,), classes (K,) int32
    0-based, K <= config.test.max_per_image, sorted by score.
    """
    stages = saccade_stages(network, image, config)
    return {key: stages[key] for key in ("boxes", "scores", "classes")}


def saccade_network(model, test: TestConfig) -> Network:
    """A CornerNet with attention heads (model.attention) as the `network` of `saccade_detect`:
    crops (N, side, side, 3) -> (detections (N, num_dets, 8) [x1, y1, x2, y2, score, tl_score,
    br_score, class] in output-map pixels, the final stack's `decode` with the test settings
    (the official CornerNet-Saccade's have no_border); [attention_0, attention_1, ...] sigmoid maps
    (N, h_i, w_i, 1), innermost first; none with attention=False, where the model leaves out its
    attention heads)."""

    def network(crops, attention=True):
        outputs = model(crops, training=False, attention=attention)
        outputs = {key: tf.cast(value, tf.float32) for key, value in outputs.items()}
        dets = decode(
            outputs,
            k=test.top_k,
            kernel=test.nms_kernel,
            ae_threshold=test.ae_threshold,
            num_dets=test.num_dets,
            no_border=test.no_border,
        )
        columns = [dets[key][..., None] for key in ("scores", "tl_scores", "br_scores")]
        classes = tf.cast(dets["classes"], tf.float32)[..., None]
        detections = tf.concat([dets["boxes"], *columns, classes], axis=-1)
        maps = sorted((key for key in outputs if key.startswith("attention_")), key=_level)
        return detections, [tf.sigmoid(outputs[key]) for key in maps]

    return network


def _level(key: str) -> int:
    """attention_<i> -> i."""
    return int(key.rsplit("_", 1)[1])
