"""Input pipeline: a source -> decoded examples -> official augmentation -> targets -> batches.

Sources yield dicts: `image` ((H, W, 3) uint8 RGB, decoded once), `boxes` (N, 4)
[x1, y1, x2, y2] in image pixels, `classes` (N,) 0-based:
    coco_source(annotations.json, image_dir)   COCO JSON (pycocotools) + image folder
    tfrecord_source(file pattern)              tf.train.Example with the usual detection keys
`make_dataset(source, config, batch_size=, training=)` turns a source into batches.
`without_undecodable(source)` decodes every image once and leaves out those that do not decode;
`require_usable(source, role)` refuses a source of which less than MIN_USABLE (50%) is usable.
"""

from cornernet_tf.data.augment import (
    BORDER,
    EIGEN_VALUES,
    EIGEN_VECTORS,
    GRAY_RGB,
    RANDOM_SCALES,
    color_jitter,
    crop_around,
    flip_boxes,
    full_image_crop,
    lighting,
    network_input,
    random_crop,
    resize,
)
from cornernet_tf.data.coco import AnnotationError, coco_source, load_annotations, read_coco
from cornernet_tf.data.pipeline import float_mask, make_dataset, prepare_example
from cornernet_tf.data.source import (
    MIN_USABLE,
    DataError,
    Source,
    decode_image,
    require_usable,
    without_undecodable,
)
from cornernet_tf.data.tfrecord import TFRECORD_FEATURES, tfrecord_source

__all__ = [
    "BORDER",
    "EIGEN_VALUES",
    "EIGEN_VECTORS",
    "GRAY_RGB",
    "MIN_USABLE",
    "RANDOM_SCALES",
    "TFRECORD_FEATURES",
    "AnnotationError",
    "DataError",
    "Source",
    "coco_source",
    "color_jitter",
    "crop_around",
    "decode_image",
    "flip_boxes",
    "float_mask",
    "full_image_crop",
    "lighting",
    "load_annotations",
    "make_dataset",
    "network_input",
    "prepare_example",
    "random_crop",
    "read_coco",
    "require_usable",
    "resize",
    "tfrecord_source",
    "without_undecodable",
]
