"""Train CornerNet.

    cornernet-train --config C [--strategy default|mirrored|multiworker] [--resume] \\
        [--init-weights W] [--out runs/train] [--min-usable 0.5] [--quiet] [key=value ...]

Data come from the config (data.train_annotations + data.train_images, or data.train_tfrecords;
data.val_* for the validation loss and AP); every record is checked and every image decoded once
before the first step. What is left out (missing or undecodable images, bad boxes, truncated
TFRecord shards) is counted and listed in data_warnings.txt; training refuses to start when
less than --min-usable (default 0.5, i.e. 50%) of the training or validation images are usable
(TFRecords: of their bytes).
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
(final.weights.h5) is refused without it. Training runs exactly train.steps steps; checkpoints
are written every train.checkpoint_every steps and at the last step.
multiworker reads the cluster from TF_CONFIG. A NaN loss or a failing input (exit code 2), a
failed checkpoint write (a full disk) or Ctrl-C (exit code 1) stops training with one line naming
the step and the last complete checkpoint; the same command then resumes.
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
    parser.add_argument(
        "--min-usable",
        type=cli.finite_fraction,
        default=0.5,
        metavar="FRACTION",
        help="the least share of the data that must be usable (default 0.5)",
    )
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
        min_usable=args.min_usable,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
