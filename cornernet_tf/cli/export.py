"""Export a CornerNet as a SavedModel for TF Serving, and optionally as a TF.js graph model and
an OpenVINO IR.

    cornernet-export --config C --weights W --out exported/cornernet [--version 1] \\
        [--input-size 511] [--flip | --no-flip] [--precision float32|bfloat16] \\
        [--no-fold-batchnorm] [--tfjs exported/cornernet_tfjs] [--quantize none|float16|uint8] \\
        [--openvino exported/cornernet_openvino [--int8 IMAGES] [--int8-images 300]] \\
        [--overwrite] [key=value ...]

Writes OUT/VERSION/saved_model.pb + variables/ (the TF Serving layout) with the signatures
`serving_default` (encoded image bytes) and `serve_image` (uint8 RGB batch); see docs/deployment.md.
--input-size N gives a fixed N x N network input (the image fitted and centred); without it the
SavedModel runs the official any-size test procedure. The TF.js model is converted from a
browser variant of the SavedModel (one image per call, no loop) with a fixed input: --input-size,
else the config's data.input_size.
The network is exported with each BatchNorm folded into its convolution (--no-fold-batchnorm:
as trained) and computing in --precision (default: the config's test.precision). TF.js has no
bfloat16: with --precision bfloat16 the TF.js model is the float32 variant, and the command says so.
--openvino DIR also writes an OpenVINO IR of the image signature for one image [1, H, W, 3]
(`cornernet_tf.openvino_ir`; needs pip install ".[openvino]"), float32 weights. With --int8 IMAGES
(a folder of images like those the model will serve; needs pip install ".[int8]") its
convolutions are quantised to int8, calibrated on up to --int8-images of them; refused on a CPU
without AVX2, where OpenVINO has no int8 convolutions.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

from cornernet_tf import cli
from cornernet_tf.images import MAX_PIXELS


@cli.command
def main(argv=None) -> int:
    parser = cli.parser(__doc__, weights=True)
    parser.add_argument("--out", required=True, help="model folder, e.g. exported/cornernet")
    parser.add_argument(
        "--version",
        type=cli.at_least(1),
        default=1,
        help="version sub-folder, an integer >= 1 as TF Serving needs (default 1)",
    )
    parser.add_argument(
        "--input-size", type=cli.at_least(1), help="fixed square input side, e.g. 511"
    )
    parser.add_argument(
        "--max-pixels",
        type=cli.at_least(1),
        default=MAX_PIXELS,
        help=f"largest image (height x width) served, refused from its header before decoding "
        f"(default {MAX_PIXELS:,}: 8K, 7680x4320)",
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip test inside the graph (default: the config's test.flip)",
    )
    cli.add_inference(parser, winograd=False)
    parser.add_argument(
        "--fold-batchnorm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="merge each BatchNorm into its convolution (default on)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument("--tfjs", help="also write a TF.js graph model to this folder")
    parser.add_argument(
        "--openvino", help="also write an OpenVINO IR (model.xml, model.bin) to this folder"
    )
    parser.add_argument(
        "--int8",
        metavar="IMAGES",
        help="with --openvino: quantise the IR's convolutions to int8, calibrated on this folder's "
        "images",
    )
    parser.add_argument(
        "--int8-images",
        type=cli.at_least(1),
        default=300,
        help="calibration images read from --int8 (default 300)",
    )
    parser.add_argument(
        "--quantize",
        default="none",
        choices=["none", "float16", "uint8"],
        help="TF.js weight quantisation (default none)",
    )
    args = cli.parse(parser, argv)
    if args.openvino:
        from cornernet_tf.openvino_ir import missing_engine

        if reason := missing_engine(int8=bool(args.int8)):
            raise cli.CommandError(f"--openvino: {reason}")
    for folder, flag in ((args.openvino, "--openvino"), (args.tfjs, "--tfjs")):
        if folder:  # checked now, not after the SavedModel is written
            cli.output_folder(folder, flag, create=False)
    calibration = None
    if args.int8:
        calibration = calibration_images(args.int8, args.openvino, args.int8_images)
    target = cli.output_folder(args.out) / str(args.version)
    if target.exists() and not args.overwrite:
        raise cli.CommandError(
            f"{target} exists (TF Serving may be serving it): pick another --version "
            "or pass --overwrite"
        )
    from cornernet_tf.config import category_ids
    from cornernet_tf.export import export_saved_model
    from cornernet_tf.tfjs import TfjsError, convert_to_tfjs

    config = cli.load_config(args)
    model = cli.load_model(config, args.weights)  # folded and cast by export_saved_model
    try:
        # written beside the target, then renamed: TF Serving never sees a half-written version
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
            staged = Path(scratch) / "model"
            print(
                f"exporting the SavedModel ({config.test.precision}, BatchNorm "
                f"{'folded' if args.fold_batchnorm else 'not folded'}) to {target} ..."
            )
            export_saved_model(
                model, config, staged, input_size=args.input_size, flip=args.flip,
                fold_batchnorm=args.fold_batchnorm, max_pixels=args.max_pixels,
            )  # fmt: skip
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    except ValueError as error:
        raise cli.CommandError(str(error)) from None
    print(f"wrote {target} ({cli.folder_size(target) / 1e6:.1f} MB)")
    print(serving_help(target, Path(args.out).name))

    if args.openvino:
        from cornernet_tf.openvino_ir import OpenvinoError, export_openvino

        print(f"converting to OpenVINO IR in {args.openvino} ...")
        try:
            xml = export_openvino(
                model, config, cli.output_folder(args.openvino, "--openvino"),
                input_size=args.input_size, flip=args.flip, fold_batchnorm=args.fold_batchnorm,
                int8_images=calibration,
            )  # fmt: skip
        except OpenvinoError as error:  # the SavedModel is written: exit code 1
            print(f"error: {error}", file=sys.stderr)
            return 1
        weights = "int8 convolutions" if calibration else "float32 weights"
        print(f"wrote {xml} ({cli.folder_size(args.openvino) / 1e6:.1f} MB, {weights})")
    if args.tfjs:
        size = args.input_size or max(config.data.input_size)
        if config.test.precision != "float32":
            print("note: TF.js has no bfloat16: the TF.js model computes in float32")
            test = dataclasses.replace(config.test, precision="float32")
            config = dataclasses.replace(config, test=test)
        metadata = {
            "class_names": list(config.data.class_names),
            "category_ids": list(category_ids(config)),
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
        except (TfjsError, ValueError) as error:  # the SavedModel is written: exit code 1
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote {args.tfjs} ({cli.folder_size(args.tfjs) / 1e6:.1f} MB)")
        print(f"TF.js:       make web WEB_MODEL={args.tfjs} && make serve-web")
    return 0


def calibration_images(folder: str, openvino: str | None, limit: int) -> list[Path]:
    """The first `limit` readable images of the --int8 folder, checked (each decoded once)
    before anything is exported; unreadable files are left out and counted."""
    if not openvino:
        raise cli.CommandError("--int8 quantises the OpenVINO IR: add --openvino DIR")
    from tqdm import tqdm

    from cornernet_tf.images import ImageError, folder_files, read_image
    from cornernet_tf.openvino_ir import int8_unhelpful

    if reason := int8_unhelpful():
        raise cli.CommandError(f"--int8: {reason}")
    path = Path(folder)
    if not path.is_dir():
        raise cli.CommandError(f"--int8 {folder}: not a folder of images")
    files = folder_files(path)
    chosen, skipped = [], []
    total = min(limit, len(files))
    with tqdm(total=total, desc="checking calibration images", unit="image") as bar:
        for file in files:
            if len(chosen) == limit:
                break
            try:
                read_image(file)
            except ImageError as error:
                skipped.append(str(error))
                continue
            chosen.append(file)
            bar.update()
    if skipped:
        print(f"note: {len(skipped)} files of {folder} left out: {skipped[0]}")
    if not chosen:
        raise cli.CommandError(f"--int8 {folder}: none of its {len(files)} files is an image")
    return chosen


def serving_help(path: Path, name: str) -> str:
    """How to serve the SavedModel: the TF Serving image of this TensorFlow's version."""
    import shlex

    import tensorflow as tf

    volume = shlex.quote(f"{path.resolve().parent}:/models/{name}")  # a path may have spaces
    return (
        f"TF Serving:  docker run -p 8501:8501 -p 8500:8500 -v {volume} "
        f"-e MODEL_NAME={name} tensorflow/serving:{tf.__version__}\n"
        f"  then:      python scripts/serving_client.py --url "
        f"http://localhost:8501/v1/models/{name}:predict IMAGE.jpg"
    )


if __name__ == "__main__":
    sys.exit(main())
