"""Train CornerNet.

    cornernet-train --config C [--strategy default|mirrored|multiworker] [--resume]
        [--out runs/train] [--quiet] [key=value ...]

Data come from the config (data.train_annotations + data.train_images, or data.train_tfrecords;
data.val_* for the validation loss). Writes to --out:
    checkpoints/   every train.checkpoint_every steps, the last train.keep_checkpoints kept
    best/          the checkpoint with the lowest validation loss
    logs/          TensorBoard: loss terms, learning rate, target and predicted corner heatmaps
    final.weights.h5 and config.yaml at the end
--resume continues from the last checkpoint: same step, same data order and augmentation; an
interrupted run in --out (checkpoints, no final weights) is resumed without it, and a finished one
is refused without it.
multiworker reads the cluster from TF_CONFIG. A NaN loss stops training with a message and
leaves the last good checkpoint as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cornernet_tf import cli


@cli.command
def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--strategy", choices=("default", "mirrored", "multiworker"), default="default"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--out", default="runs/train", help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = cli.parse(parser, argv)
    config = cli.load_config(args)
    from cornernet_tf.training import train

    train(
        config,
        Path(args.out),
        strategy=args.strategy,
        resume=args.resume,
        verbose=0 if args.quiet else 1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
