#!/usr/bin/env python3
"""Detect objects in images and draw them.

    python scripts/detect.py --config C --weights W IMAGE... --out DIR [--threshold 0.3] \
        [--precision float32|bfloat16] [--winograd]

Writes DIR/<image name>.png with boxes, class names and scores drawn, and DIR/detections.json
({image path: [{"box": [x1, y1, x2, y2], "score", "class", "name"}, ...]}, pixels of the image).
Files that cannot be read are skipped and listed at the end (exit code 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights", required=True, help="a .weights.h5 file")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--threshold", type=float, default=0.3, help="min score drawn and listed")
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        help="network compute precision (default: the config's test.precision, float32)",
    )
    parser.add_argument(
        "--winograd",
        action="store_true",
        help="3x3 convolutions by Winograd F(4x4, 3x3): faster on large models, float32 only",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="key=value", help="config overrides"
    )
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from cornernet_tf import ConfigError
    from cornernet_tf.images import ImageError, read_image
    from cornernet_tf.inference import Detector
    from cornernet_tf.visualize import class_name, draw_detections

    overrides = list(args.set)
    if args.precision:
        overrides.append(f"test.precision={args.precision}")
    if args.winograd:
        overrides.append("test.winograd=true")
    try:
        detector = Detector.from_files(args.config, args.weights, overrides)
    except (ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    names = detector.config.data.class_names
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, skipped = {}, []
    for path in tqdm(args.images, desc="detecting", unit="image"):
        try:
            image = read_image(path)
        except ImageError as error:
            skipped.append(str(error))
            continue
        dets = detector(image)
        keep = dets["scores"] >= args.threshold
        results[str(path)] = [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "class": int(cls),
                "name": class_name(names, int(cls)),
            }
            for box, score, cls in zip(
                dets["boxes"][keep], dets["scores"][keep], dets["classes"][keep], strict=True
            )
        ]
        picture = draw_detections(
            image, dets["boxes"], dets["scores"], dets["classes"], names, args.threshold
        )
        picture.save(out / f"{Path(path).stem}.png")
    (out / "detections.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {len(results)} picture(s) and {out / 'detections.json'}")
    if skipped:
        print(f"skipped {len(skipped)} file(s):", file=sys.stderr)
        for line in skipped:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
