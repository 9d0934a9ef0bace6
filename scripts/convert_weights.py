#!/usr/bin/env python3
"""Convert the official CornerNet checkpoint to Keras weights.

    python scripts/convert_weights.py CornerNet_500000.pkl cornernet.weights.h5 \
        [--config configs/hourglass104.yaml]

Reads the legacy torch.save pickle of the official trainer (or the zip format of newer torch, or
an .npz of the same keys) without importing torch: only tensors and dicts are rebuilt and any
other pickled global is refused. The output loads with `model.load_weights(path)`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="official .pkl / torch .pt / .npz state_dict")
    parser.add_argument("output", help="where to write the Keras weights (*.weights.h5)")
    parser.add_argument("--config", default=str(ROOT / "configs/hourglass104.yaml"))
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser.parse_intermixed_args(argv)


def convert(checkpoint: str, output: str, config_path: str, overrides=()) -> None:
    from cornernet_tf import build_model, load_config
    from cornernet_tf.checkpoint import read_checkpoint
    from cornernet_tf.convert import load_official_weights

    config = load_config(config_path, overrides)
    start = time.perf_counter()
    state_dict = read_checkpoint(checkpoint)
    print(f"read {len(state_dict)} tensors from {checkpoint} ({time.perf_counter() - start:.1f} s)")
    model = build_model(config)
    load_official_weights(model, state_dict, source=checkpoint)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(output)
    count = sum(math.prod(v.shape) for v in model.trainable_weights)
    print(f"wrote {output}: {len(model.weights)} variables, {count:,} trainable parameters")


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.output.endswith(".weights.h5"):
        print(f"error: {args.output}: the output name must end in .weights.h5", file=sys.stderr)
        return 2
    from cornernet_tf import ConfigError
    from cornernet_tf.checkpoint import CheckpointError
    from cornernet_tf.convert import WeightMismatchError

    try:
        convert(args.checkpoint, args.output, args.config, args.overrides)
    except (CheckpointError, ConfigError, WeightMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
