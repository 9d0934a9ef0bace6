#!/usr/bin/env python3
"""The main job on the embedded default (`make demo`).

For now: build CornerNet from a config, print its parameter table, run one forward pass on a
synthetic image, then the official test procedure (flip test, decode, soft-NMS) on it, and draw
the detections to runs/demo/detections.png. Training and export join as they land.

    python scripts/demo.py [--config configs/hourglass104.yaml] [--weights W.weights.h5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def synthetic_image(height: int, width: int, seed: int = 0):
    """A grey RGB uint8 image with a few filled rectangles and discs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 110, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(4):
        colour = rng.integers(0, 256, 3)
        x1, y1 = rng.integers(0, width * 3 // 4), rng.integers(0, height * 3 // 4)
        w, h = rng.integers(width // 8, width // 3), rng.integers(height // 8, height // 3)
        if rng.random() < 0.5:
            image[y1 : y1 + h, x1 : x1 + w] = colour
        else:
            cy, cx, r = y1 + h // 2, x1 + w // 2, min(w, h) // 2
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
    return image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs/hourglass104.yaml"))
    parser.add_argument("--weights", help="a .weights.h5 file (default: random initial weights)")
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)

    from cornernet_tf import ConfigError, build_model, load_config
    from cornernet_tf.inference import Detector
    from cornernet_tf.model import parameter_table
    from cornernet_tf.preprocess import normalize_image
    from cornernet_tf.visualize import draw_detections

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    model = build_model(config)
    print(f"built CornerNet from {config.source} in {time.perf_counter() - start:.1f} s")
    if args.weights:
        model.load_weights(args.weights)
        print(f"loaded {args.weights}")

    print(f"\n{'part':<12} {'parameters':>13} {'BN statistics':>14}")
    rows = parameter_table(model)
    for part, trainable, moving in rows:
        print(f"{part:<12} {trainable:>13,} {moving:>14,}")
    total, moving = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':<12} {total:>13,} {moving:>14,}\n")

    height, width = config.data.input_size
    image = synthetic_image(height, width)
    images = normalize_image(image[None], config.data)
    start = time.perf_counter()
    outputs = model(images, training=False)
    seconds = time.perf_counter() - start
    print(f"forward pass, 1 x {height} x {width} (final stack): {seconds:.2f} s")
    for key, value in outputs.items():
        print(
            f"  {key:<13} {str(tuple(value.shape)):<20} range [{float(value.numpy().min()):+.3f}, "
            f"{float(value.numpy().max()):+.3f}]"
        )

    start = time.perf_counter()
    dets = Detector(model, config)(image)
    seconds = time.perf_counter() - start
    flip = "flip test, " if config.test.flip else ""
    print(
        f"\ntest procedure ({flip}scales {list(config.test.scales)}, decode, soft-NMS): "
        f"{seconds:.2f} s incl. tracing, {len(dets['scores'])} detections"
    )
    for box, score, cls in list(zip(dets["boxes"], dets["scores"], dets["classes"], strict=True))[
        :5
    ]:
        corners = ", ".join(f"{v:.1f}" for v in box)
        print(f"  class {int(cls):>2}  score {score:.3f}  box [{corners}]")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    picture = draw_detections(
        image,
        dets["boxes"],
        dets["scores"],
        dets["classes"],
        config.data.class_names,
        threshold=0.3,
    )
    picture.save(out / "detections.png")
    print(
        f"drew the detections scoring >= 0.3 on {out / 'detections.png'}"
        + ("" if args.weights else " (random weights: expect nothing meaningful)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
