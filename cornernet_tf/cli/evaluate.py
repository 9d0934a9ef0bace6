"""COCO box AP of a CornerNet on an annotated image folder, with the official test procedure.

    cornernet-evaluate --config C --weights W --annotations ANN.json --images DIR \\
        [--flip | --no-flip] [--scales 0.5,1,1.5] [--precision float32|bfloat16] [--winograd] \\
        [--limit N] [--out DIR] [key=value ...]

Prints the 12 COCO numbers and a per-class AP table; writes DIR/detections.json (COCO results
format, category ids by the config's map data.category_ids, else the annotation file's ids in
ascending order), DIR/precision_recall.png and DIR/examples.png (the first six scored images:
detections scoring 0.3 or more over the ground truth, in white).

Each image's detections go to DIR/detections.partial.jsonl as soon as it is done: after Ctrl-C,
a crash or a killed job, the same command resumes with the images not yet done (when the
config, weights file, annotation file and image folder are the same; else it starts afresh and
says what differs) and gives the same results as a run in one go. The log is removed once the
results are written.

Checked before the network runs: an annotation file that cannot be scored as it is (not JSON,
a missing list, an entry without id or file_name, a repeated image / annotation / category id)
is an error naming the file, the entry and the field; so is an image folder holding none of
its images. Images that are missing or do not decode are left out and counted, and so are
annotations with a bad box or one wholly outside its image (DIR/data_warnings.txt lists them):
only the rest is scored, and the summary line says how many images that is.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cornernet_tf import cli

SHOWN = 3  # file names a message lists before "..."
EXAMPLES, EXAMPLE_THRESHOLD = 6, 0.3  # DIR/examples.png: images, lowest score drawn


def first(names: list[str]) -> str:
    """The first SHOWN names, comma-separated, "..." when there are more."""
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


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
    parser.add_argument(
        "--limit", type=cli.at_least(1), help="evaluate the first N images only (N >= 1)"
    )
    parser.add_argument("--out", default="runs/evaluate", help="output folder")
    args = cli.parse(parser, argv)
    if args.flip is not None:
        args.overrides.append(f"test.flip={str(args.flip).lower()}")
    if args.scales:
        args.overrides.append(f"test.scales=[{args.scales}]")
    image_dir, out = Path(args.images), Path(args.out)
    if not image_dir.is_dir():
        raise cli.CommandError(f"--images {image_dir}: no such folder")
    cli.output_folder(out, create=False)  # before the slow work
    from cornernet_tf.data.coco import image_problem
    from cornernet_tf.detection_log import file_stamp
    from cornernet_tf.evaluate import STAT_NAMES, CocoEvaluator
    from cornernet_tf.inference import Detector
    from cornernet_tf.visualize import plot_precision_recall

    config = cli.load_config(args)
    evaluator = CocoEvaluator(args.annotations, config.data.category_ids)
    for line in evaluator.left_out_summary():  # before any error below, which they may explain
        print(f"warning: {line}", file=sys.stderr)
    if set(evaluator.category_ids).isdisjoint(evaluator.coco.cats):
        found = first([repr(c) for c in sorted(evaluator.coco.cats, key=repr)])
        raise cli.CommandError(
            f"none of the model's category ids {list(evaluator.category_ids)} is a category id of "
            f"{args.annotations} ({found}): every AP would be 0 (set data.category_ids to the "
            "ids the model's classes stand for)"
        )
    classes = config.model.num_classes
    if classes != len(evaluator.category_ids):
        raise cli.CommandError(
            f"the model has {classes} classes, {args.annotations} has "
            f"{len(evaluator.category_ids)} categories (set data.category_ids to the ids the "
            "model's classes stand for)"
        )
    selected = sorted(evaluator.coco.imgs.values(), key=lambda info: info["id"])[: args.limit]
    images, unreadable = [], []
    for info in selected:  # a header check: a wrong folder is found before the network runs
        if image_problem(image_dir / info["file_name"]):
            unreadable.append(info["file_name"])
        else:
            images.append(info)
    if not images:
        raise cli.CommandError(
            f"none of the {len(selected)} images named in {args.annotations} is a readable image "
            f"in {image_dir} (missing or not an image: {first(unreadable)}): is --images the "
            "folder of these images?"
        )
    if not any(
        not ann.get("iscrowd", 0) for info in images for ann in evaluator.coco.imgToAnns[info["id"]]
    ):
        raise cli.CommandError(
            f"{args.annotations}: none of the {len(images)} images to score has a ground-truth "
            "box (after the checks above): COCO AP is undefined"
        )
    cli.output_folder(out)
    if evaluator.warnings:
        (out / "data_warnings.txt").write_text("".join(w + "\n" for w in evaluator.warnings))
        print(f"warning: all {len(evaluator.warnings)} warnings in {out / 'data_warnings.txt'}",
              file=sys.stderr)  # fmt: skip
    for warning in evaluator.warnings[sum(evaluator.left_out.values()) :]:  # about the map
        print(f"warning: {warning}", file=sys.stderr)
    if unreadable:
        print(
            f"warning: {len(unreadable)} of {len(selected)} images named in {args.annotations} "
            f"are missing or not images in {image_dir} ({first(unreadable)}): they are left out "
            f"and not scored; scoring the other {len(images)}",
            file=sys.stderr,
        )
    stamp = {"annotations": file_stamp(args.annotations), "images": str(image_dir.resolve())}
    settings = cli.detection_settings(args, config, **stamp)
    detector = Detector(cli.load_model(config, args.weights), config)
    log = cli.resume_log(out, settings)
    jobs = [(i["id"], image_dir / i["file_name"]) for i in images if not log.done(i["id"])]
    cli.detect_images(detector, log, jobs, len(images), "evaluating")

    skipped, resized = [], []
    for info in images:  # in id order, resumed or not: the same results file
        record = log.records[info["id"]]
        if "error" in record:
            skipped.append(record["error"])
            continue
        width, height = record["size"]
        if (info.get("width"), info.get("height")) not in ((None, None), (width, height)):
            resized.append(f"{info['file_name']} {width}x{height}, annotated "
                           f"{info.get('width')}x{info.get('height')}")  # fmt: skip
        evaluator.update(info["id"], record["boxes"], record["scores"], record["classes"])
    cli.print_skipped(skipped, "image(s) that could not be decoded (not scored)")
    if resized:
        print(
            f"warning: {len(resized)} image(s) differ in size from the width/height in "
            f"{args.annotations} ({first(resized)}): their boxes may not match the pixels; "
            "they are scored as they are",
            file=sys.stderr,
        )
    if not evaluator.image_ids:
        raise cli.CommandError(
            f"none of the {len(images)} images in {image_dir} could be decoded: nothing scored"
        )

    result = evaluator.result()
    scored, total = len(evaluator.image_ids), len(evaluator.coco.imgs)
    left = len(selected) - scored
    test = config.test
    print(
        f"\nCOCO bbox on {scored} images ("
        + (f"{left} of {len(selected)} left out, unreadable; " if left else "")
        + (f"the first {len(selected)} of {total}; " if len(selected) < total else "")
        + f"scales {list(test.scales)}, flip {'on' if test.flip else 'off'}, "
        f"precision {test.precision}" + (", Winograd)" if test.winograd else ")")
    )
    for name in STAT_NAMES:
        print(f"  {name:<6} {result[name]:.4f}")
    print(f"\n  {'class':<20} {'AP':>6}")
    for name, ap in result["per_class"].items():
        print(f"  {name:<20} {ap:>6.3f}")
    values = [result[name] for name in STAT_NAMES] + list(result["per_class"].values())
    if any(value == -1 for value in values) or any(math.isnan(value) for value in values):
        print("\n  -1 or nan: no ground-truth box of that size or class among the scored images")
    if not evaluator.results:
        print(f"warning: no detections on the {scored} scored images", file=sys.stderr)
    detections, plot = out / "detections.json", out / "precision_recall.png"
    written = [detections, plot]
    try:
        evaluator.write_results(detections)
        title = f"AP {result['AP']:.3f}, AP50 {result['AP50']:.3f}"
        plot_precision_recall(evaluator.precision_recall(), plot, title=title)
        scored_images = [info for info in images if log.done(info["id"])]
        picture = example_sheet(evaluator, scored_images, log.records, image_dir, config)
        if picture is not None:
            picture.save(out / "examples.png")
            written.append(out / "examples.png")
    except OSError as error:
        raise cli.CommandError(
            f"cannot write the results to {error.filename or out} ({error.strerror})"
        ) from None
    log.remove()
    print(f"\nwrote {', '.join(map(str, written[:-1]))} and {written[-1]}")
    return 0


def example_sheet(evaluator, images: list[dict], records: dict, image_dir: Path, config):
    """The first EXAMPLES scored images side by side: detections scoring >= EXAMPLE_THRESHOLD in
    their class colours over the ground truth (thin white boxes). Images that no longer read
    (changed since they were detected) are left out."""
    from cornernet_tf.images import ImageError, read_image
    from cornernet_tf.visualize import draw_detections, sheet

    pictures = []
    for info in images:
        if len(pictures) == EXAMPLES:
            break
        try:
            image = read_image(image_dir / info["file_name"])
        except ImageError:
            continue
        record = records[info["id"]]
        annotations = evaluator.coco.imgToAnns[info["id"]]
        boxes = [ann["bbox"] for ann in annotations if not ann.get("iscrowd", 0)]
        pictures.append(
            draw_detections(
                image,
                record["boxes"],
                record["scores"],
                record["classes"],
                config.data.class_names or evaluator.class_names,
                threshold=EXAMPLE_THRESHOLD,
                ground_truth=[[x, y, x + w, y + h] for x, y, w, h in boxes],
            )
        )
    return sheet(pictures) if pictures else None


if __name__ == "__main__":
    sys.exit(main())
