"""Detect objects in images and draw them.

    cornernet-detect --config C --weights W IMAGE... --out DIR [--threshold 0.3] \
        [--precision float32|bfloat16] [--winograd] [key=value ...]

Writes DIR/<image name>.png with boxes, class names and scores drawn, and DIR/detections.json
({image path: [{"box": [x1, y1, x2, y2], "score", "class", "category_id", "name"}, ...]}, pixels
of the image upright: the EXIF orientation of photos is applied). Pictures never overwrite each
other: when inputs share a name (a.jpg and a.png, d1/x.png and d2/x.png) the later ones are
numbered (a-2.png), and the command lists them. An image given twice is read once.
Files that cannot be read (missing, not a JPEG/PNG/GIF/BMP, corrupt, more than 33.2 Mpx) are
skipped and listed at the end (exit code 1); the others are still detected.
"""

from __future__ import annotations

import json
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
    images = list(dict.fromkeys(args.inputs))  # an image given twice is read once
    from tqdm import tqdm

    from cornernet_tf.config import category_ids
    from cornernet_tf.images import ImageError, read_image
    from cornernet_tf.inference import Detector
    from cornernet_tf.visualize import class_name, draw_detections

    config = cli.load_config(args)
    detector = Detector(cli.load_model(config, args.weights), config)
    names = config.data.class_names
    ids = category_ids(config)
    out = cli.output_folder(args.out)
    pictures = picture_names(images)
    results, skipped = {}, []
    for path, picture_name in tqdm(
        list(zip(images, pictures, strict=True)), desc="detecting", unit="image"
    ):
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
                "category_id": int(ids[int(cls)]),
                "name": class_name(names, int(cls)),
            }
            for box, score, cls in zip(
                dets["boxes"][keep], dets["scores"][keep], dets["classes"][keep], strict=True
            )
        ]
        picture = draw_detections(
            image, dets["boxes"], dets["scores"], dets["classes"], names, args.threshold
        )
        picture.save(out / picture_name)
    (out / "detections.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {len(results)} picture(s) and {out / 'detections.json'}")
    renamed = [
        f"{name} <- {path}"
        for path, name in zip(images, pictures, strict=True)
        if name != f"{Path(path).stem}.png" and str(path) in results
    ]
    if renamed:
        print("numbered because their names clash: " + ", ".join(renamed))
    cli.print_skipped(skipped, "file(s)")
    return 1 if skipped else 0


def picture_names(paths) -> list[str]:
    """The picture file name of each input: `<stem>.png`, numbered `<stem>-2.png`, ... when an
    earlier input already has that name (names compared case-insensitively)."""
    taken, names = set(), []
    for path in paths:
        stem, number = Path(path).stem, 1
        name = f"{stem}.png"
        while name.lower() in taken:
            number += 1
            name = f"{stem}-{number}.png"
        taken.add(name.lower())
        names.append(name)
    return names


if __name__ == "__main__":
    sys.exit(main())
