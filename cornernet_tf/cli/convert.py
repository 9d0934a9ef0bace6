"""Convert an official CornerNet checkpoint to Keras weights.

    cornernet-convert CornerNet_500000.pkl cornernet.weights.h5 [--config hourglass104] \\
        [key=value ...]

Reads the legacy torch.save pickle of the official trainer (or the zip format of newer torch, or
an .npz of the same keys) without importing torch: only tensors and dicts are rebuilt and any
other pickled global is refused. The output (.weights.h5, or a whole model with .keras) loads with
`model.load_weights(path)` (resp. `keras.saving.load_model(path)`) and with --weights.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from cornernet_tf import cli


@cli.command
def main(argv=None) -> int:
    parser = cli.parser(__doc__, config_default="hourglass104")
    parser.add_argument("checkpoint", help="official .pkl / torch .pt / .npz state_dict")
    parser.add_argument("output", help="where to write the Keras weights (*.weights.h5 or *.keras)")
    args = cli.parse(parser, argv)
    if not args.output.endswith((".weights.h5", ".keras")):
        raise cli.CommandError(f"{args.output}: the output name must end in .weights.h5 or .keras")
    check_output(Path(args.output))
    from cornernet_tf import build_model
    from cornernet_tf.checkpoint import read_checkpoint
    from cornernet_tf.convert import load_official_weights

    config = cli.load_config(args)
    start = time.perf_counter()
    state_dict = read_checkpoint(args.checkpoint)
    seconds = time.perf_counter() - start
    print(f"read {len(state_dict)} tensors from {args.checkpoint} ({seconds:.1f} s)")
    model = build_model(config)
    load_official_weights(model, state_dict, source=args.checkpoint)
    try:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        if args.output.endswith(".keras"):
            model.save(args.output)
        else:
            model.save_weights(args.output)
    except OSError as error:
        reason = error.strerror or str(error).splitlines()[0]
        raise cli.CommandError(f"{args.output}: cannot write the weights ({reason})") from None
    count = sum(math.prod(v.shape) for v in model.trainable_weights)
    print(f"wrote {args.output}: {len(model.weights)} variables, {count:,} trainable parameters")
    return 0


def check_output(output: Path) -> None:
    """Raise CommandError, before the slow work, when `output` cannot be written: it is a folder,
    or a parent of it is a file."""
    if output.is_dir():
        raise cli.CommandError(f"{output}: is a folder; name the weights file to write")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise cli.CommandError(f"{output}: cannot write here, {parent} is a file")
            break


if __name__ == "__main__":
    sys.exit(main())
