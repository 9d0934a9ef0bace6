#!/usr/bin/env python3
"""Train CornerNet.

    python scripts/train.py --config C [--strategy default|mirrored|multiworker] [--resume]
        [--out runs/train] [key=value ...]

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

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--strategy", choices=("default", "mirrored", "multiworker"), default="default"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--out", default="runs/train", help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from cornernet_tf import ConfigError, load_config
    from cornernet_tf.data import DataError
    from cornernet_tf.evaluate import AnnotationError
    from cornernet_tf.training import TrainingError, train

    try:
        config = load_config(args.config, args.overrides)
        train(
            config,
            Path(args.out),
            strategy=args.strategy,
            resume=args.resume,
            verbose=0 if args.quiet else 1,
        )
    except (ConfigError, DataError, AnnotationError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
