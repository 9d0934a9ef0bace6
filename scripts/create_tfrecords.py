#!/usr/bin/env python3
"""Convert a COCO-format dataset to sharded TFRecords of tf.train.Example.

    python scripts/create_tfrecords.py --annotations ANN.json --images DIR --out PREFIX [--shards 8]

Writes PREFIX-00000-of-00008.tfrecord ...; each example has the usual object-detection keys:
image/encoded (the file's bytes, unchanged), image/height, image/width, image/filename,
image/source_id, image/object/bbox/{xmin,ymin,xmax,ymax} (normalised to [0, 1]),
image/object/class/label (the annotation file's category ids, as the TF Object Detection API
writes them) and image/object/class/text. Train with data.train_tfrecords='PREFIX-*.tfrecord'
and data.category_ids set to the file's ids (not needed when they are 1..num_classes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True, help="output prefix, e.g. data/train")
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args(argv)
    if args.shards < 1:
        print("error: --shards must be >= 1", file=sys.stderr)
        return 2
    from cornernet_tf.files import FolderError, output_folder

    if args.out.endswith(("/", "\\")) or Path(args.out).is_dir():
        print(
            f"error: --out {args.out} is a folder; give a prefix of the shard files, such as "
            f"{Path(args.out) / 'train'} (for {Path(args.out) / 'train'}-00000-of-"
            f"{args.shards:05d}.tfrecord, ...)",
            file=sys.stderr,
        )
        return 2
    try:
        output_folder(Path(args.out).parent, "--out", create=False)
    except FolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import numpy as np
    import tensorflow as tf
    from PIL import Image
    from tqdm import tqdm

    from cornernet_tf.data import AnnotationError, DataError, read_coco

    try:
        coco = read_coco(args.annotations, args.images)
    except (AnnotationError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in coco.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    records, ids, names = coco.records, np.array(coco.category_ids), coco.class_names
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    paths = [f"{args.out}-{k:05d}-of-{args.shards:05d}.tfrecord" for k in range(args.shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    skipped = []
    numbered = zip(coco.image_ids, records, strict=True)
    for n, (image_id, (path, boxes, classes)) in enumerate(
        tqdm(numbered, total=len(records), desc="writing", unit="image")
    ):
        try:
            with Image.open(path) as image:
                width, height = image.size
        except OSError as error:
            skipped.append(f"{path}: not a readable image ({error})")
            continue
        feature = {
            "image/encoded": _bytes(Path(path).read_bytes()),
            "image/height": _ints([height]),
            "image/width": _ints([width]),
            "image/filename": _bytes(Path(path).name.encode()),
            "image/source_id": _bytes(str(image_id).encode()),
            "image/object/bbox/xmin": _floats(boxes[:, 0] / width),
            "image/object/bbox/ymin": _floats(boxes[:, 1] / height),
            "image/object/bbox/xmax": _floats(boxes[:, 2] / width),
            "image/object/bbox/ymax": _floats(boxes[:, 3] / height),
            "image/object/class/label": _ints(ids[classes]),
            "image/object/class/text": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[names[int(c)].encode() for c in classes])
            ),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[n % args.shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    print(
        f"wrote {len(records) - len(skipped)} examples to "
        f"{args.out}-*-of-{args.shards:05d}.tfrecord"
    )
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    return 0


def _bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _floats(values):
    import tensorflow as tf

    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _ints(values):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


if __name__ == "__main__":
    sys.exit(main())
