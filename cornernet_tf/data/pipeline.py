"""Source -> official augmentation -> sparse targets -> batches, all tf.data with TensorFlow ops
(parallel map, no Python on the hot path). Randomness is keyed by (seed, example index), so a
pipeline is deterministic whatever the parallelism and can be resumed at any position. Boxes are
clipped and degenerate ones dropped by `encode_corners`; the train step draws the heatmaps.
"""

from __future__ import annotations

import tensorflow as tf

from cornernet_tf.config import Config
from cornernet_tf.data.augment import (
    GRAY_RGB,
    color_jitter,
    flip_boxes,
    full_image_crop,
    lighting,
    network_input,
    random_crop,
    resize,
)
from cornernet_tf.data.saccade import saccade_sample
from cornernet_tf.data.source import Source
from cornernet_tf.geometry import output_size
from cornernet_tf.targets import encode_corners


def prepare_example(example, seed, config: Config, training: bool):
    """One decoded source example -> (normalised BGR image (H, W, 3), sparse targets dict of
    `encode_corners`; `draw_heatmaps` makes the heatmaps in the train step).

    Crop and flip run on the uint8 source pixels and colour, lighting and normalisation in one
    affine map, which is the official sequence of steps with fewer passes over the image: the
    bilinear resize commutes with the mirror and the colour steps are affine maps.
    """
    data = config.data
    input_size = tuple(data.input_size)
    if data.sampling == "saccade":
        return saccade_example(example, seed, config)
    image = example["image"]
    boxes = tf.cast(example["boxes"], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    if training:
        image, boxes = random_crop(image, boxes, input_size, seeds[0])
        flipped = tf.random.stateless_uniform([], seeds[1]) > 0.5
        image = tf.cond(flipped, lambda: tf.reverse(image, [1]), lambda: image)
    else:
        image, boxes = full_image_crop(image, boxes)
    image, boxes = resize(image, boxes, input_size)
    if training:
        boxes = tf.cond(flipped, lambda: flip_boxes(boxes, input_size[1]), lambda: boxes)
        gray_mean = tf.tensordot(tf.reduce_mean(image, [0, 1]), tf.constant(GRAY_RGB), 1) / 255.0
        scale, gray_weight, offset = color_jitter(seeds[2], gray_mean)
        image = network_input(image, data, scale, gray_weight, offset + lighting(seeds[3]))
    else:
        image = network_input(image, data)
    image = tf.ensure_shape(image, [*input_size, 3])
    return image, _corners(boxes, example["classes"], config)


def saccade_example(example, seed, config: Config):
    """CornerNet-Saccade's training example (`data.saccade.saccade_sample`, for training and
    validation alike, as the official sampler): a 255 x 255 crop around one object at a scale
    that puts it in the size range of an attention map. The targets are `encode_corners` of the
    boxes it keeps, the same for the boxes it ignores under `ignored_` (the train step turns them
    into the tl_valid / br_valid masks of the focal loss), and attention_0..2 (h/r, w/r, 1)."""
    sample = saccade_sample(
        example["image"],
        example["boxes"],
        example["classes"],
        seed,
        config.data,
        input_size=tuple(config.data.input_size),
    )
    boxes, classes, ignore = sample["boxes"], sample["classes"], sample["ignore"]
    targets = _corners(tf.boolean_mask(boxes, ~ignore), tf.boolean_mask(classes, ~ignore), config)
    ignored = _corners(tf.boolean_mask(boxes, ignore), tf.boolean_mask(classes, ignore), config)
    targets.update({f"ignored_{key}": value for key, value in ignored.items()})
    targets.update({key: value for key, value in sample.items() if key.startswith("attention_")})
    return sample["image"], targets


def _corners(boxes, classes, config: Config) -> dict:
    input_size = tuple(config.data.input_size)
    return encode_corners(
        boxes,
        classes,
        input_size=input_size,
        output_size=output_size(input_size, config.model.output_stride),
        max_objects=config.data.max_objects,
        gaussian_iou=config.data.gaussian_iou,
    )


def make_dataset(
    source: Source,
    config: Config,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    start: int = 0,
) -> tf.data.Dataset:
    """Batches of (images (B, H, W, 3) float32 normalised BGR, sparse targets of `encode_corners`;
    mask as float32). The model's train step draws the heatmaps (`draw_heatmaps`).

    training: shuffled (reshuffled every epoch, deterministic for a seed), augmented, repeated
    forever, partial batches dropped; `start` skips that many examples (to resume). Otherwise:
    in order, full-image crop, no augmentation, one pass, the last batch may be smaller.
    Example k's random augmentation depends only on (seed, k). An example that fails to load
    raises (tf.errors.OpError) when its batch is read: nothing is skipped silently.
    """
    items = source.items
    if training:
        items = items.shuffle(
            source.shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        ).repeat()
    items = items.enumerate().skip(start)

    def prepare(index, item):
        key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), index)
        return prepare_example(source.load(item), key, config, training)

    # No ignore_errors: the sources' checks decoded every image, so an error here (a file changed
    # or vanished since) stops training with a message instead of silently dropping images (or
    # looping forever when none is left).
    ds = items.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training).map(float_mask)
    return ds.prefetch(tf.data.AUTOTUNE)


def float_mask(images, targets):
    """The masks as float32 0/1: Keras averages a first batch over replicas when it builds a model
    under a distribution strategy, which fails on bool tensors. The loss accepts either."""
    masks = [key for key in ("mask", "ignored_mask") if key in targets]
    return images, {**targets, **{key: tf.cast(targets[key], tf.float32) for key in masks}}
