#!/usr/bin/env python3
"""Export a CornerNet as a SavedModel for TF Serving, and optionally as a TF.js graph model.

    python scripts/export.py --config C --weights W --out exported/cornernet [--version 1] \
        [--input-size 511] [--flip | --no-flip] [--precision float32|bfloat16] \
        [--no-fold-batchnorm] [--tfjs exported/cornernet_tfjs] [--quantize none|float16|uint8] \
        [key=value ...]

Writes OUT/VERSION/saved_model.pb + variables/ (the TF Serving layout) with the signatures
`serving_default` (encoded image bytes) and `serve_image` (uint8 RGB batch); see the README.
--input-size N gives a fixed N x N network input (the image fitted and centred); without it the
SavedModel runs the official any-size test procedure. The TF.js model is converted from a
browser variant of the SavedModel (one image per call, no loop) with a fixed input: --input-size,
else the config's data.input_size.
The network is exported with each BatchNorm folded into its convolution (--no-fold-batchnorm:
as trained) and computing in --precision (default: the config's test.precision). TF.js has no
bfloat16: with --precision bfloat16 the TF.js model is the float32 variant, and the script says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights", required=True, help="a .weights.h5 file")
    parser.add_argument("--out", required=True, help="model folder, e.g. exported/cornernet")
    parser.add_argument("--version", type=int, default=1, help="version sub-folder (default 1)")
    parser.add_argument("--input-size", type=int, help="fixed square input side, e.g. 511")
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip test inside the graph (default: the config's test.flip)",
    )
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        help="network compute precision (default: the config's test.precision, float32)",
    )
    parser.add_argument(
        "--fold-batchnorm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="merge each BatchNorm into its convolution (default on)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument("--tfjs", help="also write a TF.js graph model to this folder")
    parser.add_argument(
        "--quantize",
        default="none",
        choices=["none", "float16", "uint8"],
        help="TF.js weight quantisation (default none)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser.parse_intermixed_args(argv)


def serving_help(path: Path, name: str) -> str:
    base = path.resolve().parent
    return (
        f"TF Serving:  docker run -p 8501:8501 -p 8500:8500 -v {base}:/models/{name} "
        f"-e MODEL_NAME={name} tensorflow/serving\n"
        f"  then:      python scripts/serving_client.py --url "
        f"http://localhost:8501/v1/models/{name}:predict IMAGE.jpg"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    from cornernet_tf import ConfigError, build_model, load_config
    from cornernet_tf.export import export_saved_model
    from cornernet_tf.tfjs import TfjsError, convert_to_tfjs

    target = Path(args.out) / str(args.version)
    if target.exists() and not args.overwrite:
        print(
            f"error: {target} exists (TF Serving may be serving it): pick another --version "
            f"or pass --overwrite",
            file=sys.stderr,
        )
        return 2
    overrides = list(args.overrides)
    if args.precision:
        overrides.append(f"test.precision={args.precision}")
    try:
        config = load_config(args.config, overrides)
        model = build_model(config)  # folded and cast by export_saved_model
        model.load_weights(str(args.weights))
    except (ConfigError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        # written beside the target, then renamed: TF Serving never sees a half-written version
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
            staged = Path(scratch) / "model"
            print(
                f"exporting the SavedModel ({config.test.precision}, BatchNorm "
                f"{'folded' if args.fold_batchnorm else 'not folded'}) to {target} ..."
            )
            export_saved_model(
                model, config, staged, input_size=args.input_size, flip=args.flip,
                fold_batchnorm=args.fold_batchnorm,
            )  # fmt: skip
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {target} ({folder_size(target) / 1e6:.1f} MB)")
    print(serving_help(target, Path(args.out).name))

    if args.tfjs:
        size = args.input_size or max(config.data.input_size)
        if config.test.precision != "float32":
            print("note: TF.js has no bfloat16: the TF.js model computes in float32")
            test = dataclasses.replace(config.test, precision="float32")
            config = dataclasses.replace(config, test=test)
        metadata = {
            "class_names": list(config.data.class_names),
            "input_size": size,
            "flip": config.test.flip if args.flip is None else args.flip,
            "quantize": args.quantize,
            "weights": str(args.weights),
        }
        try:
            with tempfile.TemporaryDirectory(prefix="cornernet-tfjs-") as scratch:
                source = export_saved_model(
                    model, config, Path(scratch) / "browser", input_size=size, flip=args.flip,
                    browser=True, fold_batchnorm=args.fold_batchnorm,
                )  # fmt: skip
                print(f"converting to TF.js ({size}x{size} input) in {args.tfjs} ...")
                convert_to_tfjs(source, args.tfjs, quantize=args.quantize, metadata=metadata)
        except (TfjsError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote {args.tfjs} ({folder_size(Path(args.tfjs)) / 1e6:.1f} MB)")
        print(f"TF.js:       make web WEB_MODEL={args.tfjs} && make serve-web")
    return 0


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


if __name__ == "__main__":
    sys.exit(main())
