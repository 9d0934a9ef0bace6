"""COCO box AP of a CornerNet on an annotated image folder, with the official test procedure.

    cornernet-evaluate --config C --weights W --annotations ANN.json --images DIR \
        [--flip | --no-flip] [--scales 0.5,1,1.5] [--precision float32|bfloat16] [--winograd] \
        [--limit N] [--out DIR] [key=value ...]

Prints the 12 COCO numbers and a per-class AP table; writes DIR/detections.json (COCO results
format, category ids by the config's map data.category_ids, else the annotation file's ids in
ascending order) and DIR/precision_recall.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cornernet_tf import cli


@cli.command
def main(argv=None) -> int:
    parser = cli.parser(__doc__, weights=True)
    parser.add_argument("--annotations", required=True, help="COCO-format JSON")
    parser.add_argument("--images", required=True, help="folder of the images named in it")
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip test (default: the config's test.flip, on officially)",
    )
    parser.add_argument("--scales", help="comma-separated test scales, e.g. 0.5,0.75,1,1.25,1.5")
    cli.add_inference(parser)
    parser.add_argument("--limit", type=int, help="evaluate the first N images only")
    parser.add_argument("--out", default="runs/evaluate", help="output folder")
    args = cli.parse(parser, argv)
    if args.flip is not None:
        args.overrides.append(f"test.flip={str(args.flip).lower()}")
    if args.scales:
        args.overrides.append(f"test.scales=[{args.scales}]")
    from tqdm import tqdm

    from cornernet_tf.evaluate import STAT_NAMES, CocoEvaluator
    from cornernet_tf.images import ImageError, read_image
    from cornernet_tf.inference import Detector
    from cornernet_tf.visualize import plot_precision_recall

    config = cli.load_config(args)
    evaluator = CocoEvaluator(args.annotations, config.data.category_ids)
    for warning in evaluator.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    classes = config.model.num_classes
    if classes != len(evaluator.category_ids):
        raise cli.CommandError(
            f"the model has {classes} classes, {args.annotations} has "
            f"{len(evaluator.category_ids)} categories (set data.category_ids to the ids the "
            "model's classes stand for)"
        )
    detector = Detector(cli.load_model(config, args.weights), config)

    images = sorted(evaluator.coco.imgs.values(), key=lambda info: info["id"])[: args.limit]
    skipped = []
    for info in tqdm(images, desc="evaluating", unit="image"):
        try:
            image = read_image(Path(args.images) / info["file_name"])
        except ImageError as error:
            skipped.append(str(error))
            continue
        dets = detector(image)
        evaluator.update(info["id"], dets["boxes"], dets["scores"], dets["classes"])

    result = evaluator.result()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    evaluator.write_results(out / "detections.json")
    test = config.test
    print(
        f"\nCOCO bbox on {len(evaluator.image_ids)} images (scales {list(test.scales)}, "
        f"flip {'on' if test.flip else 'off'}, precision {test.precision}"
        + (", Winograd)" if test.winograd else ")")
    )
    for name in STAT_NAMES:
        print(f"  {name:<6} {result[name]:.4f}")
    print(f"\n  {'class':<20} {'AP':>6}")
    for name, ap in result["per_class"].items():
        print(f"  {name:<20} {ap:>6.3f}")
    if evaluator.coco_eval is not None:
        plot_precision_recall(
            evaluator.precision_recall(),
            out / "precision_recall.png",
            title=f"AP {result['AP']:.3f}, AP50 {result['AP50']:.3f}",
        )
    print(f"\nwrote {out / 'detections.json'} and {out / 'precision_recall.png'}")
    cli.print_skipped(skipped, "image(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
