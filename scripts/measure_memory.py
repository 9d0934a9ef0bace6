#!/usr/bin/env python3
"""Training memory per image of a CornerNet config, measured on this machine.

    python scripts/measure_memory.py [--config hourglass104] [--batches 1,2] \\
        [--precisions float32,mixed_bfloat16]

Method: for each precision and batch size, a fresh process builds the model, compiles it with
Adam and runs three train steps on random images with one box each; the peak resident memory
(ru_maxrss) of that process is recorded. Memory per image is the difference between the two
batch sizes divided by their difference (what one more image costs); the fixed part (weights,
Adam state, TensorFlow) is what remains at batch 0. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import keras, numpy as np, tensorflow as tf
from cornernet_tf import build_model, load_config
from cornernet_tf.data import float_mask
from cornernet_tf.geometry import output_size
from cornernet_tf.targets import encode_corners

config_name, batch, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = load_config(config_name, {"train.precision": precision})
side = config.data.input_size
model = build_model(config, {"float32": "float32", "mixed_bfloat16": "bfloat16"}[precision])
model.compile(optimizer=keras.optimizers.Adam(1e-4))
targets = encode_corners(
    tf.constant([[40.0, 50.0, 200.0, 220.0]]), tf.constant([0]), input_size=side,
    output_size=output_size(side), max_objects=config.data.max_objects,
)
images = tf.random.normal([batch, *side, 3])
batched = {k: tf.stack([v] * batch) for k, v in targets.items()}
data = tf.data.Dataset.from_tensors(float_mask(images, batched)).repeat()
model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(config: str, batch: int, precision: str) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, config, str(batch), precision],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"error: the measuring process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def main(argv=None) -> int:
    from benchmark import cpu_name  # scripts/benchmark.py

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="hourglass104")
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    args = parser.parse_args(argv)
    low, high = (int(b) for b in args.batches.split(","))
    print(f"{args.config}, training, CPU {cpu_name()}")
    print(f"{'precision':<16} {'batch ' + str(low):>10} {'batch ' + str(high):>10} "
          f"{'per image':>10} {'fixed':>10}   (peak RSS, MiB)")  # fmt: skip
    for precision in args.precisions.split(","):
        a, b = measure(args.config, low, precision), measure(args.config, high, precision)
        per_image = (b - a) / (high - low)
        print(
            f"{precision:<16} {a:>10.0f} {b:>10.0f} {per_image:>10.0f} {a - low * per_image:>10.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
