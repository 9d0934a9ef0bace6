"""TFRecords of tf.train.Example with the usual object-detection keys."""

from __future__ import annotations

import tensorflow as tf

from cornernet_tf.data.source import DataError, Source, decode_image

TFRECORD_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}


def tfrecord_source(pattern: str) -> Source:
    """TFRecords of tf.train.Example: image/encoded, image/object/bbox/{xmin,ymin,xmax,ymax}
    normalised to [0, 1], image/object/class/label 1-based (TF's object-detection convention)."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError(f"{pattern}: no TFRecord file matches")

    def load(record):
        ex = tf.io.parse_single_example(record, TFRECORD_FEATURES)
        image = decode_image(ex["image/encoded"])
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        coords = [
            tf.sparse.to_dense(ex[f"image/object/bbox/{k}"])
            for k in ("xmin", "ymin", "xmax", "ymax")
        ]
        boxes = tf.stack(coords, axis=-1) * tf.stack([shape[1], shape[0], shape[1], shape[0]])
        classes = tf.cast(tf.sparse.to_dense(ex["image/object/class/label"]), tf.int32) - 1
        return {"image": image, "boxes": boxes, "classes": classes}

    items = tf.data.TFRecordDataset(files)
    return Source(items, load, None)
