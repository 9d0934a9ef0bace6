"""Shared test helpers: fixture loading and small builders."""

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def load_fixture(name: str):
    """Loads tests/data/<name> (an .npz of the official reference) as a dict of arrays."""
    with np.load(DATA / name) as data:
        return {key: data[key] for key in data.files}


ROOT = Path(__file__).parents[1]
