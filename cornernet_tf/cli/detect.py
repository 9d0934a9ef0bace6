"""Detect objects in images and draw them.

    cornernet-detect --config C --weights W IMAGE|FOLDER... --out DIR [--threshold 0.3] \\
        [--precision float32|bfloat16] [--winograd] [key=value ...]

A FOLDER stands for the JPEG, PNG, GIF and BMP files in it (by their first bytes, sorted by name,
not its subfolders); its other files are left out with a note. --out cannot be an input folder.

Writes DIR/<image name>.png with boxes, class names and scores drawn, and DIR/detections.json
({image path: [{"box": [x1, y1, x2, y2], "score", "class", "category_id", "name"}, ...]}, pixels
of the image upright: the EXIF orientation of photos is applied). Pictures never overwrite each
other: when inputs share a name (a.jpg and a.png, d1/x.png and d2/x.png) the later ones are
numbered (a-2.png), and the command lists them. An image given twice is read once.
Files that cannot be read (missing, not a JPEG/PNG/GIF/BMP, corrupt, more than 33.2 Mpx) are
skipped and listed at the end (exit code 1); the others are still detected.

Each image's detections go to DIR/detections.partial.jsonl as its picture is written: after
Ctrl-C, a crash or a killed job, the same command resumes with the images not yet done (same
config, weights file and threshold; else it starts afresh and says what differs). The log is
removed once detections.json is written.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cornernet_tf import cli


@cli.command
def main(argv=None) -> int:
    parser = cli.parser(__doc__, inputs="IMAGE", weights=True)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--threshold",
        type=cli.finite_fraction,
        default=0.3,
        help="min score drawn and listed, between 0 and 1 (default 0.3)",
    )
    cli.add_inference(parser)
    args = cli.parse(parser, argv)
    import numpy as np

    from cornernet_tf.config import category_ids
    from cornernet_tf.images import images_in

    out = Path(args.out)
    images, not_found = [], []
    for item in args.inputs:  # a folder stands for the images in it
        if not Path(item).is_dir():
            images.append(item)
            continue
        if Path(item).resolve() == out.resolve():
            raise cli.CommandError(
                f"--out {args.out} is also an input folder: its pictures would become inputs"
            )
        found, others = images_in(item)
        if others:
            print(f"note: {len(others)} file(s) of {item} are not images, left out "
                  f"(first: {others[0].name})")  # fmt: skip
        if not found:
            not_found.append(f"{item}: a folder without JPEG, PNG, GIF or BMP files")
        images += [str(path) for path in found]
    given = {}  # absolute path -> the path as given: an image given twice is read once
    for path in images:
        given.setdefault(os.path.abspath(path), path)
    from cornernet_tf.visualize import class_name, draw_detections, picture_paths

    try:
        pictures = dict(zip(given, picture_paths(out, given.values()), strict=True))
    except ValueError as error:
        raise cli.CommandError(f"--out {args.out}: {error}") from None
    from cornernet_tf.inference import Detector

    config = cli.load_config(args)
    settings = cli.detection_settings(args, config, threshold=args.threshold)
    detector = Detector(cli.load_model(config, args.weights), config)
    names = config.data.class_names
    ids = category_ids(config)
    cli.output_folder(out)
    log = cli.resume_log(out, settings)  # keyed by absolute path: the same from any folder

    def draw(full, image, dets) -> None:
        picture = draw_detections(
            image, dets["boxes"], dets["scores"], dets["classes"], names, args.threshold
        )
        picture.save(pictures[full])

    jobs = [
        (full, path)
        for full, path in given.items()
        if not (log.done(full) and pictures[full].is_file())
    ]
    cli.detect_images(detector, log, jobs, len(given), "detecting", on_image=draw)

    results, skipped = {}, list(not_found)
    for full, path in given.items():
        record = log.records[full]
        if "error" in record:
            skipped.append(record["error"])
            continue
        scores = np.asarray(record["scores"], np.float32)
        keep = scores >= args.threshold
        results[path] = [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "class": int(cls),
                "category_id": int(ids[int(cls)]),
                "name": class_name(names, int(cls)),
            }
            for box, score, cls in zip(
                np.asarray(record["boxes"], np.float32).reshape(-1, 4)[keep],
                scores[keep],
                np.asarray(record["classes"], np.int64)[keep],
                strict=True,
            )
        ]
    (out / "detections.json").write_text(json.dumps(results, indent=1))
    log.remove()
    print(f"wrote {len(results)} picture(s) and {out / 'detections.json'}")
    renamed = [
        f"{picture.name} <- {given[full]}"
        for full, picture in pictures.items()
        if picture.name != f"{Path(given[full]).stem}.png" and given[full] in results
    ]
    if renamed:
        print("numbered because their names clash: " + ", ".join(renamed))
    cli.print_skipped(skipped, "file(s)")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
