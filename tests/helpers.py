"""Shared test helpers: fixture loading and small builders."""

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


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


def run_script(name: str, *args: str) -> int:
    """Runs scripts/<name>.py's main(argv) in this process; returns its exit code."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))
