"""The command-line tools, installed as `cornernet-<name>` (pyproject.toml), one module each.

Shared here, so that every command reads the same way:
    --config C      a YAML file or the name of a packaged config (`packaged_configs()`)
    key=value ...   config overrides as positional arguments (values parsed as YAML);
                    `--set key=value ...` is the same
    --weights W     a .weights.h5 file, a whole model saved as .keras, or a training run's
                    folder (its best.weights.h5, else final.weights.h5; --config then defaults
                    to its config.yaml)
    --precision, --winograd   the inference variant (commands that run the network)
Errors a user can act on (a file where a folder should be among them) end as one line,
`error: ...`, and exit code 2; Ctrl-C and a full disk as one line `error: ...` and exit code 1.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from pathlib import Path

# a config override: a dotted key (section.key), "=", a value
OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+=")


class CommandError(Exception):
    """A command cannot go on; the message says why (file, field, value) and what to do."""


def parser(
    doc: str, *, config_default: str | None = None, inputs: str | None = None, weights=False
):
    """An ArgumentParser described by the first paragraph of `doc` (the rest is the epilog),
    with --config and the positional / --set config overrides. `inputs` (a metavar, e.g.
    "IMAGE"): one or more positional inputs, among which the overrides may stand; `parse` puts
    them in `args.inputs`. Without inputs, `parse` adds the positional overrides after the
    command's own positional arguments. `weights`: the command takes --weights, and --config
    may then be left out when the weights are a training run's folder (its config.yaml)."""
    from cornernet_tf.config import packaged_configs

    summary, _, details = doc.strip().partition("\n\n")
    result = argparse.ArgumentParser(
        description=summary,
        epilog=details or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default = f"; default {config_default}" if config_default else ""
    if weights:
        default = "; default: the config.yaml of --weights when that is a training run's folder"
    result.add_argument(
        "--config",
        required=config_default is None and not weights,
        default=config_default,
        help=f"a YAML config file or a packaged config name ({', '.join(packaged_configs())})"
        f"{default}",
    )
    if weights:
        result.add_argument(
            "--weights",
            required=True,
            help="trained weights: a .weights.h5 file, a .keras model or a training run's folder",
        )
    if inputs:
        help = f"{inputs.lower()}s, and config overrides key=value among them"
        result.add_argument("inputs", nargs="+", metavar=inputs, help=help)
        result.set_defaults(overrides=[])
    result.add_argument(
        "--set",
        dest="set_overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="key=value",
        help="config overrides (the same as the positional ones)",
    )
    return result


def add_inference(parser: argparse.ArgumentParser, winograd: bool = True) -> None:
    """--precision (and --winograd): the network's inference variant."""
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        help="network compute precision (default: the config's test.precision, float32)",
    )
    if winograd:
        parser.add_argument(
            "--winograd",
            action="store_true",
            help="3x3 convolutions by Winograd, F(4x4, 3x3) in float32, F(2x2, 3x3) in "
            "bfloat16: faster on large models (needs the compiled ops, make ops)",
        )


def parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parses `argv`; `args.overrides` then holds every override: positional, --set, and those
    that --precision / --winograd stand for; `args.inputs` the other positional inputs."""
    if parser.get_default("overrides") is None:  # after the command's own positional arguments
        help = "config overrides, e.g. test.flip=false"
        parser.add_argument("overrides", nargs="*", metavar="key=value", help=help)
    args = parser.parse_intermixed_args(argv)
    if args.config is None:  # only commands with --weights leave it out
        run_config = Path(args.weights) / "config.yaml"
        if not run_config.is_file():
            parser.error(
                f"--config is required: --weights {args.weights} is not a training run's folder "
                "with a config.yaml"
            )
        args.config = str(run_config)
    overrides = list(getattr(args, "overrides", []))
    if hasattr(args, "inputs"):
        found, args.inputs = split_overrides(args.inputs)
        overrides += found
        if not args.inputs:
            parser.error("no input given, only config overrides")
    overrides += args.set_overrides
    for item in overrides:
        if "=" not in item:
            parser.error(f"{item!r} is not a config override of the form key=value")
    if getattr(args, "precision", None):
        overrides.append(f"test.precision={args.precision}")
    if getattr(args, "winograd", False):
        overrides.append("test.winograd=true")
    args.overrides = overrides
    return args


def split_overrides(items) -> tuple[list[str], list[str]]:
    """Positional arguments -> (config overrides `section.key=value`, everything else)."""
    overrides = [item for item in items if OVERRIDE.match(item)]
    return overrides, [item for item in items if not OVERRIDE.match(item)]


def at_least(minimum: int, maximum: int = 2**63 - 1):
    """An argparse type: an integer in [minimum, maximum] (argparse names the flag and the
    value); the default maximum is int64's, what TensorFlow and TF Serving hold."""

    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is more than {maximum}")
        return value

    integer.__name__ = f"integer >= {minimum}"
    return integer


def finite_fraction(text: str) -> float:
    """An argparse type: a number in [0, 1] (a score threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text} is not a number between 0 and 1")
    return value


def load_config(args):
    """The config of --config with the overrides (ConfigError names the file, key and value)."""
    from cornernet_tf.config import load_config

    return load_config(args.config, args.overrides)


def load_model(config, weights):
    """`cornernet_tf.model.load_trained`, with a CommandError naming the file when the weights
    cannot be read or do not fit the config's model."""
    from cornernet_tf.model import WeightsError, load_trained

    try:
        return load_trained(config, weights)
    except WeightsError as error:
        raise CommandError(str(error)) from None
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandError(
            f"{weights}: cannot load these weights into the model of {config.source}: {reason}"
        ) from None


def detection_settings(args, config, **more) -> dict:
    """What decides the detections of a command (`cornernet_tf.detection_log.DetectionLog`): the
    package version, the config with its overrides, the weights file (path, size, modification
    time: read before the weights are, so a file replaced meanwhile is not taken for the one
    loaded), and `more`. Weights that cannot be found get no stamp: `load_model` names why."""
    from cornernet_tf import __version__
    from cornernet_tf.config import to_dict
    from cornernet_tf.detection_log import file_stamp
    from cornernet_tf.model import WeightsError, resolve_weights

    try:
        weights = file_stamp(resolve_weights(args.weights))
    except (OSError, WeightsError):
        weights = None
    return {"version": __version__, "config": to_dict(config), "weights": weights, **more}


def resume_log(out: Path, settings: dict):
    """The `DetectionLog` of the --out folder `out`, saying on stderr when one of other settings
    is replaced."""
    from cornernet_tf.detection_log import LOG_NAME, DetectionLog

    path = out / LOG_NAME
    if path.exists() and not path.is_file():
        raise CommandError(f"{path} is in the way: it is where the detections so far are kept")
    log = DetectionLog(path, settings)
    if log.replaced == ["all"]:
        print(f"warning: {log.path} is not a log of detections: starting afresh", file=sys.stderr)
    elif log.replaced:
        changed = dict.fromkeys(
            key.replace(".", " ", 1) if key.startswith("config.") else key.split(".")[0]
            for key in log.replaced
        )
        print(f"warning: {log.path} holds detections made with other settings "
              f"({', '.join(changed)}): starting afresh", file=sys.stderr)  # fmt: skip
    return log


def detect_images(detector, log, jobs, total: int, desc: str, on_image=None) -> None:
    """Runs `detector` on the images of `jobs` ((key, path) pairs: those of the command's
    `total` images that `log` has not done) and records each in the log under its key: its size
    and detections, or why it was left out (the ImageError of `read_image`, or a test scale that
    makes too large a network input of it: `Detector.input_problem`). `on_image(key, image,
    detections)` runs before the record is written (detect draws the picture there). Says how
    many images were done before; Ctrl-C ends saying where it stopped and how to go on."""
    from tqdm import tqdm

    from cornernet_tf.images import ImageError, read_image

    if len(jobs) < total:
        print(f"resuming: {total - len(jobs)} of {total} images done before ({log.path})")
    finished = total - len(jobs)
    with log:
        try:
            for key, path in tqdm(jobs, desc=desc, unit="image", initial=finished, total=total):
                try:
                    image = read_image(path)
                except ImageError as error:  # found only by decoding: this image is left out
                    log.add(key, error=str(error))
                else:
                    if problem := detector.input_problem(image):  # a scale too large for it
                        log.add(key, error=f"{path}: {problem}")
                    else:
                        detections = detector(image)
                        if on_image is not None:
                            on_image(key, image, detections)
                        log.add(key, image.shape[1::-1], detections)
                finished += 1
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"after {finished} of {total} images; the same command resumes from {log.path}"
            ) from None


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions whose message is meant for the user (no traceback)."""
    from cornernet_tf.checkpoint import CheckpointError
    from cornernet_tf.config import ConfigError
    from cornernet_tf.convert import WeightMismatchError
    from cornernet_tf.data import AnnotationError, DataError
    from cornernet_tf.files import FolderError
    from cornernet_tf.images import ImageError
    from cornernet_tf.tfjs import TfjsError
    from cornernet_tf.training import TrainingError

    return (
        CommandError,
        CheckpointError,
        ConfigError,
        WeightMismatchError,
        AnnotationError,
        DataError,
        FolderError,
        ImageError,
        TfjsError,
        TrainingError,
    )


def command(main):
    """Wraps a command's main(argv) -> int so that it always ends in one line: user errors print
    `error: ...` and return 2 (or their `exit_code`); a file-system failure (disk full, no
    permission) `error: ...` naming the path, and Ctrl-C `error: interrupted`, both return 1.
    Temporary files are cleaned by the `with` blocks the exception leaves."""

    @functools.wraps(main)
    def run(argv=None) -> int:
        try:
            return main(argv)
        except KeyboardInterrupt as error:  # its message, if any, says where it stopped
            detail = f" {error}" if str(error) else ""
            print(f"\nerror: interrupted (Ctrl-C){detail}", file=sys.stderr)
            return 1
        except Exception as error:
            if isinstance(error, user_errors()):
                print(f"error: {error}", file=sys.stderr)
                return getattr(error, "exit_code", 2)
            failure = file_system_failure(error)
            if failure:
                print(f"error: {failure}", file=sys.stderr)
                return 1
            raise

    return run


def file_system_failure(error: Exception) -> str | None:
    """A sentence for an OSError or a TensorFlow write error (disk full, no permission), None
    for other exceptions."""
    from cornernet_tf.files import is_disk_full, reason

    kinds = (OSError,)
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        kinds += (tf.errors.PermissionDeniedError,)
    if not (isinstance(error, kinds) or is_disk_full(error)):
        return None
    text = reason(error)  # names the file of an OSError
    return f"{text}; free space and run again" if is_disk_full(error) else text


def output_folder(path, flag: str = "--out", create: bool = True) -> Path:
    """`cornernet_tf.files.output_folder`: `path` as a folder to write into (FolderError)."""
    from cornernet_tf.files import output_folder

    return output_folder(path, flag, create)


def print_skipped(skipped: list[str], what: str) -> None:
    """Lists the inputs a command left out, one reason a line, on stderr."""
    if skipped:
        print(f"skipped {len(skipped)} {what}:", file=sys.stderr)
        for line in skipped:
            print(f"  {line}", file=sys.stderr)


def folder_size(path) -> int:
    """Bytes of all files under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
