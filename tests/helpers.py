"""Shared test helpers: fixture loading and small builders."""

import json
import pickle
import struct
from pathlib import Path
from zlib import crc32

import numpy as np

DATA = Path(__file__).parent / "data"
# our output keys -> the names of the official fixtures' arrays
OFFICIAL_NAMES = {
    "tl_heatmap": "tl_heat",
    "br_heatmap": "br_heat",
    "tl_embedding": "tl_tag",
    "br_embedding": "br_tag",
    "tl_offset": "tl_regr",
    "br_offset": "br_regr",
}


def load_fixture(name: str):
    """Loads tests/data/<name> (an .npz of the official reference) as a dict of arrays."""
    with np.load(DATA / name) as data:
        return {key: data[key] for key in data.files}


ROOT = Path(__file__).parents[1]


def make_weights_module():
    """The reference `make_weights.py` (numpy only), imported from tests/data."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_weights", DATA / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_manifest(model):
    """[key, torch shape, dtype] for every variable of a built CornerNet, as the official layout."""
    from cornernet_tf.convert import official_key

    manifest = []
    for variable in model.weights:
        shape = list(variable.shape)
        if len(shape) == 4:  # HWIO -> OIHW
            shape = [shape[3], shape[2], shape[0], shape[1]]
        manifest.append([official_key(variable.path), shape, "float32"])
    return manifest


# scripts/<name>.py -> the command module it runs (scripts/ holds shims of the commands)
COMMANDS = {
    "train": "train",
    "detect": "detect",
    "evaluate": "evaluate",
    "export": "export",
    "convert_weights": "convert",
    "demo": "demo",
    "make_shapes": "make_shapes",
}


def run_script(name: str, *args: str) -> int:
    """Runs the command `name` (cornernet_tf.cli) or scripts/<name>.py's main(argv) in this
    process; returns its exit code."""
    import importlib
    import importlib.util

    if name in COMMANDS:
        module = importlib.import_module(f"cornernet_tf.cli.{COMMANDS[name]}")
        return module.main(list(args))

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))


def perfect_logits(targets, count, batch=1):
    """Network outputs that make the boxes of `targets` (encode_targets) certain: heatmap logits
    +12 at the peaks and -12 elsewhere, the target offsets, embedding 3 * k for box k."""
    import tensorflow as tf

    out = {}
    for corner in ("tl", "br"):
        heat = targets[f"{corner}_heatmap"].numpy()
        h, w, _ = heat.shape
        logit = np.where(heat == 1, 12.0, -12.0).astype(np.float32)
        offset = np.zeros((h * w, 2), np.float32)
        embedding = np.zeros((h * w, 1), np.float32)
        index = targets[f"{corner}_index"].numpy()[:count]
        offset[index] = targets[f"{corner}_offset"].numpy()[:count]
        embedding[index, 0] = np.arange(count) * 3.0
        out[f"{corner}_heatmap"] = np.repeat(logit[None], batch, 0)
        out[f"{corner}_offset"] = np.repeat(offset.reshape(1, h, w, 2), batch, 0)
        out[f"{corner}_embedding"] = np.repeat(embedding.reshape(1, h, w, 1), batch, 0)
    return {k: tf.constant(v) for k, v in out.items()}


def make_lite_weights_module():
    """The reference `make_lite_weights.py` (numpy only; imports make_weights.py beside it)."""
    import importlib.util
    import sys

    sys.path.insert(0, str(DATA))
    try:
        spec = importlib.util.spec_from_file_location(
            "make_lite_weights", DATA / "make_lite_weights.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DATA))
    return module


def official_lite_weights(kind: str, seed: int) -> dict[str, np.ndarray]:
    """A CornerNet-Lite state_dict as the official code names and shapes it
    (tests/data/<kind>_manifest.json: squeeze, saccade, micro_squeeze, micro_saccade), with the
    seeded values of make_lite_weights.py; seed 0 of a full model is checked against the value
    recorded when the parity fixtures were made."""
    module = make_lite_weights_module()
    manifest = json.loads((DATA / f"{kind}_manifest.json").read_text())
    weights = module.make_lite_weights(manifest, seed)
    if seed == 0 and kind in module.SEED0_CHECK:
        key, index, expected = module.SEED0_CHECK[kind]
        np.testing.assert_allclose(weights[key][index], expected, rtol=1e-6)
    return weights


def convert_lite(weights, config: str, folder):
    """An official CornerNet-Lite state_dict (keys without `module.`) written as a checkpoint,
    converted by cornernet-convert --config `config` and loaded into a fresh model: the path a
    user takes with CornerNet_Squeeze_500000.pkl or CornerNet_Saccade_500000.pkl."""
    from cornernet_tf import build_model, load_config

    checkpoint, output = folder / f"{config}.npz", folder / f"{config}.weights.h5"
    np.savez(checkpoint, **{"module." + k: v for k, v in weights.items()})
    assert run_script("convert_weights", str(checkpoint), str(output), "--config", config) == 0
    checkpoint.unlink()
    model = build_model(load_config(config))
    model.load_weights(str(output))
    return model


def official_parts(weights) -> dict[str, int]:
    """Trainable parameters per official top-level module (pre, kps.0, tl_heats.1, ...) of a
    CornerNet-Lite state_dict, under this model's names."""
    from cornernet_tf.convert import lite_to_cornernet

    parts = {}
    for key, value in weights.items():
        if "running_" in key or key.endswith("num_batches_tracked"):
            continue
        part = lite_to_cornernet(key).split(".")
        part = "pre" if part[0] == "pre" else ".".join(part[:2])
        parts[part] = parts.get(part, 0) + value.size
    return parts


def png_header(width, height) -> bytes:
    """The signature and IHDR chunk of a PNG of width x height, no pixels."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", crc32(ihdr))


def gif_header(width, height) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)


def bmp_header(width, height) -> bytes:
    """A BMP file and info header (BITMAPINFOHEADER); a negative height: top-down rows."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def pickle_value(value: object) -> bytes:
    """Pickle opcodes that push a plain value (no PROTO / STOP): pieces of crafted checkpoints."""
    return pickle.dumps(value, protocol=2)[2:-1]


def pickle_call(module: str, name: str, *args: bytes) -> bytes:
    """Pickle opcodes that call module.name(*args) (GLOBAL, MARK, args, TUPLE, REDUCE)."""
    return f"c{module}\n{name}\n".encode() + b"(" + b"".join(args) + b"tR"


def without_waiting(function, *args, seconds: float = 30):
    """What `function(*args)` returns, or the exception it raises. It runs in a thread, so that
    a read that would wait on a named pipe fails the test instead of hanging it (the writer end
    of the pipes among `args` is then opened and closed, which ends the read)."""
    import os
    import threading

    outcome = []

    def call():
        try:
            outcome.append(function(*args))
        except BaseException as error:  # noqa: BLE001 (handed to the test)
            outcome.append(error)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for path in map(Path, (a for a in args if isinstance(a, str | Path))):
            if path.is_fifo():
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        raise AssertionError(f"{function.__name__}{args} was still waiting after {seconds} s")
    return outcome[0]
