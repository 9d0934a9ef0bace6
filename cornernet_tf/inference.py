"""The official test procedure (test/coco.py `kp_detection`), in TensorFlow graph ops.

For one RGB image of any size, for each scale s:
    1. resize to (int(h*s), int(w*s)), pad with black to `side | (stride - 1)` (| 127 for
       Hourglass-104) with the image centred, normalise (BGR, mean/std);
    2. run the network on [image, mirrored image] (flip test) and `decode` both;
    3. map the mirrored detections back x1, x2 = out_w - x2, out_w - x1;
    4. map to image pixels: / (out/in ratio), minus the padding, clipped to [0, int(w*s)]
       (resp. h), / s.
Then, all scales together: drop rejected pairs (score -1), per-class Gaussian soft-NMS
(score *= exp(-iou^2 / sigma), IoU with the +1 pixel convention, boxes below the threshold
dropped), or the `soft_nms_merge` variant of the multi-scale config, and keep the best
`max_per_image`.

Deliberate differences from the official code (see the README):
  * its soft-NMS ignores the `keep` list it computes, so boxes it discarded stay in the array as
    stale copies of other boxes with old scores and can reach the top 100; here they are dropped;
  * it keeps every box scoring >= the 100th score (more than 100 on ties); here exactly 100;
  * its soft_nms_merge swaps and overwrites only columns 0-4 of a row, so a merged box is
    weighted by the corner scores of whichever box sat at that row before; here each box keeps
    its own corner scores;
  * the resize is TF's bilinear resize instead of cv2's (1-level differences on some pixels).
"""

from __future__ import annotations

import tensorflow as tf

from cornernet_tf.config import Config
from cornernet_tf.decode import decode
from cornernet_tf.geometry import OUTPUT_STRIDE, input_side_problem, input_stride, output_size
from cornernet_tf.images import MAX_PIXELS, ImageError
from cornernet_tf.optimize import inference_model
from cornernet_tf.preprocess import normalize_image
from cornernet_tf.saccade import saccade_detect, saccade_network


def scale_geometry(
    height,
    width,
    scale,
    stride: int = 128,
    input_size: int | None = None,
    output_stride: int = OUTPUT_STRIDE,
) -> dict[str, tf.Tensor]:
    """Sizes and offsets of the official test-time resize and pad of one scale (int32, float32).

    input_size=None: the official `new_size | (stride - 1)` input; an int N (N + 1 a multiple of
    the stride): every image is resized by `scale` and centred in an N x N input instead.
    output_stride: input / output maps of the network (4, or 8 for CornerNet-Squeeze).
    """
    # At least one pixel (the official code fails on images that a scale shrinks to nothing).
    new_h = tf.maximum(tf.cast(tf.floor(tf.cast(height, tf.float64) * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.floor(tf.cast(width, tf.float64) * scale), tf.int32), 1)
    if input_size is None:
        inp_h = tf.bitwise.bitwise_or(new_h, stride - 1)
        inp_w = tf.bitwise.bitwise_or(new_w, stride - 1)
    else:
        inp_h = inp_w = tf.constant(input_size, tf.int32)
    out_h, out_w = output_size((inp_h, inp_w), output_stride)
    return {
        "new_size": tf.stack([new_h, new_w]),
        "input_size": tf.stack([inp_h, inp_w]),
        "output_size": tf.stack([out_h, out_w]),
        # top, left padding of the centred image (the official crop_image border)
        "padding": tf.stack([inp_h // 2 - new_h // 2, inp_w // 2 - new_w // 2]),
        # out / in per axis (float32, as the official ratios array)
        "ratio": tf.cast(tf.stack([out_h / inp_h, out_w / inp_w]), tf.float32),
    }


def fit_scale(height, width, input_size: int) -> tf.Tensor:
    """The scale (float64) that fits an image's longer side into `input_size` pixels."""
    longer = tf.cast(tf.maximum(height, width), tf.float64)
    # a hair above N / longer, so that floor(longer * scale) is N and not N - 1
    return (input_size + 1e-6) / longer


def check_input_size(input_size: int, depth: int, output_stride: int = OUTPUT_STRIDE) -> int:
    """`input_size` if a depth-`depth` hourglass takes it (N + 1 a multiple of the stride) and
    N x N is at most MAX_PIXELS, else a ValueError listing the valid sizes or the limit."""
    if problem := input_side_problem(input_size, depth, output_stride):
        raise ValueError(f"input size {problem}")
    if input_size * input_size > MAX_PIXELS:
        raise ValueError(
            f"input size {input_size}: {input_size}x{input_size} = {input_size**2:,} pixels, more "
            f"than the limit of {MAX_PIXELS:,} (that of the images read)"
        )
    return input_size


def network_input_problem(height: int, width: int, config: Config, input_size=None) -> str | None:
    """Why the test procedure would not run a `height` x `width` image, or None: a scale of
    test.scales that makes a network input of more than MAX_PIXELS pixels (the limit of the
    images read; such a network would run for minutes and take tens of GiB)."""
    if config.test.procedure == "saccade" or input_size is not None:
        return None
    scale = max(config.test.scales)
    side_h, side_w = int(height * scale), int(width * scale)
    if side_h * side_w <= MAX_PIXELS:
        return None
    return (
        f"{width}x{height} at test.scales {scale:g} is resized to {side_w}x{side_h} = "
        f"{side_h * side_w:,} pixels, more than the limit of {MAX_PIXELS:,} for a network "
        "input: lower test.scales"
    )


def prepare_input(image, geometry: dict, data) -> tf.Tensor:
    """RGB (H, W, 3) image -> (inp_h, inp_w, 3) normalised BGR network input of one scale."""
    image = tf.cast(image, tf.float32)
    if image.shape.rank != 3:
        raise ValueError(f"prepare_input: expected one (H, W, 3) image, got shape {image.shape}")
    resized = tf.image.resize(image, geometry["new_size"], method="bilinear")
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)  # cv2 returns uint8
    pad = geometry["padding"]
    extra = geometry["input_size"] - geometry["new_size"] - pad
    padded = tf.pad(resized, [[pad[0], extra[0]], [pad[1], extra[1]], [0, 0]])  # black borders
    return normalize_image(padded, data)


def detect_image(
    model, image, config: Config, input_size: int | None = None
) -> dict[str, tf.Tensor]:
    """Runs the official test procedure on one RGB image (H, W, 3), uint8 or float in [0, 255].

    input_size=None: each scale of config.test.scales at the official `| (stride - 1)` size;
    an int N: one scale, the image's longer side fitted to N and centred in an N x N input (a
    fixed-size graph, as for serving and the browser).

    Returns boxes (M, 4) [x1, y1, x2, y2] in image pixels, scores (M,), classes (M,) int32
    0-based, M <= config.test.max_per_image, sorted by score.

    With test.procedure "saccade" (CornerNet-Saccade), its procedure (`saccade.saccade_detect`)
    instead: 255 x 255 crops of any image, so input_size must be None or the crop side.
    """
    test = config.test
    if test.procedure == "saccade":
        side = config.data.input_size[0]
        if input_size not in (None, side):
            raise ValueError(
                f"the saccade test procedure feeds the network {side} x {side} crops of any "
                f"image; a fixed input size ({input_size}) does not apply: leave it unset"
            )
        return saccade_detect(saccade_network(model, test), image, config)
    shape = tf.shape(image)
    depth, output_stride = config.model.depth, config.model.output_stride
    stride = input_stride(depth, output_stride)
    if input_size is None:
        scales = test.scales
    else:
        check_input_size(input_size, depth, output_stride)
        if len(test.scales) > 1:
            raise ValueError(
                f"a fixed input size ({input_size}) runs one scale, but test.scales is "
                f"{list(test.scales)}: set test.scales=[1]"
            )
        scales = [fit_scale(shape[0], shape[1], input_size)]
    parts = []
    for scale in scales:
        geometry = scale_geometry(shape[0], shape[1], scale, stride, input_size, output_stride)
        inputs = prepare_input(image, geometry, config.data)[None]
        if input_size is not None:
            inputs.set_shape([1, input_size, input_size, 3])  # static: for the unrolled pools
        if test.flip:
            inputs = tf.concat([inputs, tf.reverse(inputs, axis=[2])], axis=0)
        # float32 from a CornerNet in either precision; cast for any other model: decode and
        # soft-NMS always run in float32
        outputs = model(inputs, training=False)
        dets = decode(
            {key: tf.cast(value, tf.float32) for key, value in outputs.items()},
            k=test.top_k,
            kernel=test.nms_kernel,
            ae_threshold=test.ae_threshold,
            num_dets=test.num_dets,
            no_border=test.no_border,
        )
        x1, y1, x2, y2 = tf.unstack(dets["boxes"], axis=-1)
        if test.flip:
            out_w = tf.cast(geometry["output_size"][1], tf.float32)
            x1, x2 = tf.concat([x1[:1], out_w - x2[1:]], 0), tf.concat([x2[:1], out_w - x1[1:]], 0)
        ratio, pad = geometry["ratio"], tf.cast(geometry["padding"], tf.float32)
        size = tf.cast(geometry["new_size"], tf.float32)

        boxes = tf.stack([x1, y1, x2, y2], -1)  # x, y, x, y
        ratio, pad, size = (tf.gather(v, [1, 0, 1, 0]) for v in (ratio, pad, size))
        boxes = tf.clip_by_value(boxes / ratio - pad, 0.0, size) / tf.cast(scale, tf.float32)
        parts.append(
            {
                "boxes": tf.reshape(boxes, [-1, 4]),
                **{
                    key: tf.reshape(dets[key], [-1])
                    for key in ("scores", "tl_scores", "br_scores", "classes")
                },
            }
        )
    merged = {key: tf.concat([p[key] for p in parts], 0) for key in parts[0]}
    valid = merged["scores"] > -1
    merged = {key: tf.boolean_mask(value, valid) for key, value in merged.items()}
    if test.merge_boxes:
        kept = soft_nms_merge(
            merged,
            sigma=test.soft_nms_sigma,
            threshold=test.score_threshold,
            weight_exp=test.merge_weight_exp,
        )
    else:
        kept = soft_nms(merged, sigma=test.soft_nms_sigma, threshold=test.score_threshold)
    count = tf.minimum(tf.shape(kept["scores"])[0], test.max_per_image)
    best = tf.math.top_k(kept["scores"], k=count).indices
    return {key: tf.gather(kept[key], best) for key in ("boxes", "scores", "classes")}


def _separated(boxes, classes):
    """Boxes with +1 on x2, y2 (the official IoU convention) and shifted apart by class, so that
    boxes of different classes never overlap: one NMS call then acts per class."""
    largest = tf.reduce_max(tf.concat([tf.reshape(tf.abs(boxes), [-1]), [0.0]], 0))
    shift = tf.cast(classes, boxes.dtype)[:, None] * (largest + 2.0)
    return boxes + shift + tf.constant([0.0, 0.0, 1.0, 1.0])


def soft_nms(dets: dict, *, sigma: float = 0.5, threshold: float = 0.001) -> dict[str, tf.Tensor]:
    """Per-class Gaussian soft-NMS (the official method 2) with TF's NonMaxSuppressionV5.

    dets: boxes (N, 4) [x1, y1, x2, y2], scores (N,), classes (N,), and any other (N,) keys.
    Returns the kept detections, sorted by their decayed scores, which replace `scores`.
    """
    boxes = _separated(dets["boxes"], dets["classes"])
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    # TF decays by exp(-0.5 / sigma_tf * iou^2): sigma_tf = sigma / 2 gives exp(-iou^2 / sigma).
    index, scores = tf.image.non_max_suppression_with_scores(
        tf.stack([y1, x1, y2, x2], -1),
        dets["scores"],
        max_output_size=tf.shape(x1)[0],
        iou_threshold=1.0,
        score_threshold=threshold,
        soft_nms_sigma=sigma / 2,
    )
    kept = {key: tf.gather(value, index) for key, value in dets.items()}
    kept["scores"] = scores
    return kept


def soft_nms_merge(
    dets: dict, *, sigma: float = 0.5, threshold: float = 0.001, weight_exp: float = 8.0
) -> dict[str, tf.Tensor]:
    """The official `soft_nms_merge` (Gaussian): soft-NMS that also replaces each kept box by the
    average of the boxes it overlaps, weighted by their corner scores x (1 - decay)^weight_exp.

    Same input and output as `soft_nms`; needs tl_scores and br_scores.
    """
    separated = _separated(dets["boxes"], dets["classes"])
    boxes, scores = dets["boxes"], dets["scores"]
    tl, br = dets["tl_scores"], dets["br_scores"]
    count = tf.shape(scores)[0]
    area = (separated[:, 2] - separated[:, 0]) * (separated[:, 3] - separated[:, 1])

    def step(i, active, scores, out_index, out_boxes, out_scores):
        pick = tf.argmax(tf.where(active, scores, -float("inf")), output_type=tf.int32)
        top = separated[pick]
        iw = tf.minimum(top[2], separated[:, 2]) - tf.maximum(top[0], separated[:, 0])
        ih = tf.minimum(top[3], separated[:, 3]) - tf.maximum(top[1], separated[:, 1])
        others = active & (tf.range(count) != pick)
        overlap = others & (iw > 0) & (ih > 0)
        iou = iw * ih / (area[pick] + area - iw * ih)
        decay = tf.where(overlap, tf.exp(-(iou * iou) / sigma), 1.0)
        weight = tf.where(overlap, (1.0 - decay) ** weight_exp, 0.0)
        weight = tf.tensor_scatter_nd_update(weight, [[pick]], [1.0])  # the picked box itself
        corner = tf.stack([tl, tl, br, br], -1) * weight[:, None]
        merged = tf.reduce_sum(boxes * corner, 0) / tf.reduce_sum(corner, 0)
        out_index = out_index.write(i, pick)
        out_boxes = out_boxes.write(i, merged)
        out_scores = out_scores.write(i, scores[pick])
        scores = scores * decay
        active = others & ~(overlap & (scores < threshold))
        return i + 1, active, scores, out_index, out_boxes, out_scores

    def arrays(dtype):
        return tf.TensorArray(dtype, size=0, dynamic_size=True)

    _, _, _, index, merged, kept_scores = tf.while_loop(
        lambda i, active, *_: tf.reduce_any(active),
        step,
        (
            0,
            tf.ones([count], tf.bool),
            scores,
            arrays(tf.int32),
            arrays(tf.float32),
            arrays(tf.float32),
        ),
    )
    index = index.stack()
    kept = {key: tf.gather(value, index) for key, value in dets.items()}
    kept["boxes"] = tf.reshape(merged.stack(), [-1, 4])
    kept["scores"] = kept_scores.stack()
    return kept


class Detector:
    """A CornerNet and the test procedure, traced once for RGB uint8 images of any size.

    `model` (kept as `self.model`) is run as `self.network`: its BatchNorm folded into the
    convolutions, computing in config.test.precision, its 3x3 convolutions by Winograd if
    config.test.winograd (`cornernet_tf.optimize`).
    """

    def __init__(self, model, config: Config, input_size: int | None = None):
        self.model, self.config, self.input_size = model, config, input_size
        test = config.test
        self.network = inference_model(model, test.precision, winograd=test.winograd)
        spec = tf.TensorSpec([None, None, 3], tf.uint8)
        self._detect = tf.function(
            lambda image: detect_image(self.network, image, config, input_size),
            input_signature=[spec],
        )

    @classmethod
    def from_files(cls, config_path, weights=None, overrides=None, input_size=None) -> Detector:
        """Loads a config (a path or a packaged name, with overrides) and the model with
        `weights` (`.weights.h5` or `.keras`, see `load_trained`; None: random weights)."""
        from cornernet_tf.config import load_config
        from cornernet_tf.model import build_model, load_trained

        config = load_config(config_path, overrides)
        model = load_trained(config, weights) if weights else build_model(config)
        return cls(model, config, input_size)

    def input_problem(self, image) -> str | None:
        """Why this detector would not run `image` (H, W, 3), or None (`network_input_problem`)."""
        height, width = image.shape[:2]
        return network_input_problem(height, width, self.config, self.input_size)

    def __call__(self, image) -> dict:
        """(H, W, 3) uint8 RGB -> numpy boxes (M, 4) [x1, y1, x2, y2], scores (M,), classes (M,).
        ImageError for an image that `input_problem` refuses."""
        image = tf.constant(image, tf.uint8)
        if problem := self.input_problem(image):
            raise ImageError(problem)
        return {key: value.numpy() for key, value in self._detect(image).items()}
