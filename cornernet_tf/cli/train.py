"""Train CornerNet.

    cornernet-train --config C [--strategy default|mirrored|multiworker] [--resume]
        [--init-weights W] [--out runs/train] [--quiet] [key=value ...]

Data come from the config (data.train_annotations + data.train_images, or data.train_tfrecords;
data.val_* for the validation loss and AP); every record is checked before the first step.
--init-weights (train.init_weights) starts from other weights of the same backbone: a
.weights.h5, a .keras, a training checkpoint or a run folder; heatmap heads of another class
count start afresh. Writes to --out:
    config.yaml    the config, with the category map the run uses (data.category_ids)
    checkpoints/   every train.checkpoint_every steps, the last train.keep_checkpoints kept
    best/          the checkpoint with the best validation loss or AP (train.best_by)
    best.weights.h5, best.keras    that model, for --weights of the other commands
    logs/          TensorBoard and history.jsonl: loss terms, validation loss and AP, learning
                   rate, target and predicted corner heatmaps
    final.weights.h5, final.keras  at the end
    data_warnings.txt              what the data checks left out
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
    parser.add_argument(
        "--init-weights",
        help="start from these weights (train.init_weights): .weights.h5, .keras, checkpoint, run",
    )
    parser.add_argument("--out", default="runs/train", help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = cli.parse(parser, argv)
    if args.init_weights:
        args.overrides.append(f"train.init_weights={args.init_weights}")
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
