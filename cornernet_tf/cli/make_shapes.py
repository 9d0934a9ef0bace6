"""Write a synthetic COCO dataset of shapes (`cornernet_tf.shapes`).

    cornernet-make-shapes --out DIR [--train 400] [--val 100] [--size 255] [--seed 0]
        [--classes shapes|signs]

--classes shapes: circle, square, triangle, star (category ids 1-4, the demo); signs: hexagon,
cross, arrow (category ids 3, 5, 8, for fine-tuning the demo's model).
Writes DIR/train/000000.png ..., DIR/train.json, DIR/val/000000.png ..., DIR/val.json; the same
arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cornernet_tf import cli


@cli.command
def main(argv=None) -> int:
    from cornernet_tf import shapes

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--train", type=int, default=400, help="training images (default 400)")
    parser.add_argument("--val", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--size", type=int, default=255, help="image side in pixels (default 255)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--classes", default="shapes", help="class set: shapes (default) or signs")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    problem = shapes.check_arguments(args.train, args.val, args.size, args.seed, args.classes)
    if problem:
        raise cli.CommandError(f"--{problem}")
    out = Path(args.out)
    try:
        shapes.write_dataset(out, args.train, args.val, args.size, args.seed, args.classes)
    except OSError as error:
        reason = error.strerror or error
        raise cli.CommandError(f"--out {out}: cannot write there ({reason})") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
