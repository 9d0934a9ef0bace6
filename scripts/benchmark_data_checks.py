#!/usr/bin/env python3
"""Start-up cost of the data checks: how long `coco_source` and `tfrecord_source` take to read
and check N images (a COCO JSON with 3 boxes per image over N PNG files; the same as N TFRecord
records in 8 shards) before the first training step, every image decoded once as training
checks them.

    python scripts/benchmark_data_checks.py [--images 10000] [--folder /tmp/cornernet-checks]

Prints a table (seconds, and microseconds per image). The files are written once and reused.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def write_data(folder: Path, count: int) -> None:
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    if (folder / "train.json").exists():
        return
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    images, annotations = [], []
    writers = [tf.io.TFRecordWriter(str(folder / f"train-{k}.tfrecord")) for k in range(8)]
    for i in range(count):
        name = f"{i:06d}.jpg"
        (folder / "images" / name).write_bytes(data)
        images.append({"id": i + 1, "file_name": name, "width": 320, "height": 240})
        for k in range(3):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i + 1, "category_id": k + 1,
                 "bbox": [10 + 40 * k, 20, 30, 40], "iscrowd": 0}
            )  # fmt: skip
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
            "image/source_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"%d" % i])),
            "image/object/class/label": tf.train.Feature(
                int64_list=tf.train.Int64List(value=[1, 2, 3])
            ),
        }
        for key, values in (("xmin", [0.1, 0.2, 0.3]), ("ymin", [0.1] * 3),
                            ("xmax", [0.15, 0.25, 0.35]), ("ymax", [0.3] * 3)):  # fmt: skip
            feature[f"image/object/bbox/{key}"] = tf.train.Feature(
                float_list=tf.train.FloatList(value=values)
            )
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[i % 8].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    categories = [{"id": k + 1, "name": f"c{k}"} for k in range(3)]
    (folder / "train.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )


def main(argv=None) -> int:
    from benchmark import cpu_name  # scripts/benchmark.py

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--folder", default="/tmp/cornernet-checks")
    args = parser.parse_args(argv)
    folder = Path(args.folder) / str(args.images)
    write_data(folder, args.images)
    from cornernet_tf.data import coco_source, tfrecord_source
    from cornernet_tf.data.source import without_undecodable

    rows = []
    for name, make in (
        (
            "COCO JSON + files",  # as cornernet_tf.training.sources checks them
            lambda: without_undecodable(coco_source(folder / "train.json", folder / "images")),
        ),
        ("TFRecords, 8 shards", lambda: tfrecord_source(str(folder / "*.tfrecord"), (1, 2, 3))),
    ):
        start = time.perf_counter()
        source = make()
        seconds = time.perf_counter() - start
        rows.append((name, source.size, seconds))
    print(f"data checks before the first step, CPU {cpu_name()}")
    print(f"{'source':<22} {'images':>8} {'seconds':>8} {'us/image':>9}")
    for name, size, seconds in rows:
        print(f"{name:<22} {size:>8} {seconds:>8.2f} {1e6 * seconds / size:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
