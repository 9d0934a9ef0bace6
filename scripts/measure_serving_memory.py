#!/usr/bin/env python3
"""Memory and time of one request to a SavedModel's serving_default, by image size.

    python scripts/measure_serving_memory.py exported/cornernet/1 [--sizes 1024x768,3840x2160]

Method: for each size, a fresh process loads the SavedModel with stock TensorFlow (no
cornernet_tf), reads a PNG of that size (a smooth gradient, written beforehand by this script),
sends it to serving_default once and records its peak resident memory (ru_maxrss) and the time
of the call; a 64x64 request gives the fixed part (TensorFlow, the weights, the graph). Prints a
table with the memory above that fixed part per megapixel. An image over the model's
--max-pixels is refused from its header: that row shows the refusal and what it cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
data = tf.io.read_file(sys.argv[2])
start = time.perf_counter()
try:
    count = int(serve(images=tf.stack([data]))["num_detections"][0])
    result = f"{count} detections"
except tf.errors.InvalidArgumentError as error:
    result = "refused: " + error.message.split("assertion failed: [")[-1].split("]")[0][:60]
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mib": peak, "seconds": seconds, "result": result}))
"""


def write_png(width: int, height: int, path: str) -> None:
    """A PNG of a smooth gradient, written by this process (its memory is not measured)."""
    import numpy as np
    from PIL import Image

    y = np.linspace(0, 127, height, dtype=np.float32).astype(np.uint8)
    x = np.linspace(0, 127, width, dtype=np.float32).astype(np.uint8)
    Image.fromarray(np.add.outer(y, x)).convert("RGB").save(path, compress_level=1)


def measure(saved_model: str, width: int, height: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as scratch:
        image = os.path.join(scratch, "image.png")
        write_png(width, height, image)
        done = subprocess.run(
            [sys.executable, "-c", CHILD, saved_model, image],
            capture_output=True, text=True, env=env, cwd="/",
        )  # fmt: skip
    if done.returncode:
        return {"peak_mib": float("nan"), "seconds": float("nan"),
                "result": f"process failed (exit {done.returncode})"}  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    sys.path.insert(0, os.path.dirname(__file__))
    from benchmark import cpu_name  # scripts/benchmark.py

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("saved_model", help="a SavedModel version folder, e.g. exported/x/1")
    parser.add_argument("--sizes", default="1024x768,1920x1080,3840x2160,7680x4320,8000x8000")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    print(f"{args.saved_model}: one serving_default request, CPU {cpu_name()}")
    base = measure(args.saved_model, 64, 64)["peak_mib"]
    print(f"fixed part (a 64x64 request): {base:.0f} MiB peak RSS")
    print(f"{'image':>11} {'Mpx':>6} {'peak MiB':>9} {'MiB/Mpx':>8} {'seconds':>8}  result")
    for width, height in sizes:
        row = measure(args.saved_model, width, height)
        mpx = width * height / 1e6
        per_mpx = (row["peak_mib"] - base) / mpx
        print(
            f"{width:>5}x{height:<5} {mpx:>6.1f} {row['peak_mib']:>9.0f} {per_mpx:>8.0f} "
            f"{row['seconds']:>8.1f}  {row['result']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
