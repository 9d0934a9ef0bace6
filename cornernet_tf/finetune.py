"""Fine-tuning: start a model from the weights of another CornerNet with the same backbone.

`init_weights(model, path, config_source)` loads every variable of `path` whose shape fits and
leaves the heatmap heads as initialised (bias -2.19, the official prior) when the class count
differs. `path`: a `.weights.h5`, a `.keras` model, a training checkpoint (a `ckpt-N` prefix or a
`checkpoints/` folder) or a run folder (its best, else final, weights, else its last checkpoint).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from cornernet_tf.model import (
    ARCHITECTURE,
    RUN_WEIGHTS,
    CornerNet,
    check_weights_file,
    read_keras,
    resolve_weights,
)

# the layers whose shapes depend on the class count: the only ones initialised afresh
CLASS_LAYERS = ("tl_heats.", "br_heats.")


def init_weights(model: CornerNet, path, config_source: str) -> list[str]:
    """Loads `path` into `model` where shapes agree; returns the layers left as initialised
    (their names and why). Raises ValueError naming `path` and `config_source` when anything
    but the heatmap heads does not fit (another backbone)."""
    path = source_file(path)
    initial = {v.path: v.numpy() for v in model.weights}
    if str(path).endswith(".keras"):
        values = _from_keras(path, model, config_source)
    elif str(path).endswith(".weights.h5"):
        values = _from_weights_file(path, model, config_source)
    else:
        values = _from_checkpoint(path, model)
    fresh, misfits = {}, []
    for variable in model.weights:
        value = values.get(variable.path)
        if value is not None and tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
            continue
        variable.assign(initial[variable.path])
        layer = "/".join(variable.path.split("/")[1:-1])
        found = "absent or of another shape" if value is None else f"shape {tuple(value.shape)}"
        if layer.startswith(CLASS_LAYERS):
            fresh.setdefault(layer, f"{found} in the file, {tuple(variable.shape)} here")
        else:
            misfits.append(f"{variable.path} ({found} in the file, {tuple(variable.shape)} here)")
    if misfits:
        raise ValueError(
            f"{path} does not hold weights of the backbone of {config_source}: "
            f"{len(misfits)} variables do not fit, e.g. {misfits[0]}"
        )
    return [f"{layer}: {why}" for layer, why in fresh.items()]


def source_file(path) -> Path:
    """The file (or checkpoint prefix) `path` stands for; run folders and checkpoint folders
    are resolved. Raises ValueError naming `path` when there is nothing to load."""
    path = Path(path)
    if path.is_dir():
        try:
            return Path(resolve_weights(path))
        except ValueError:
            latest = tf.train.latest_checkpoint(str(path))
            latest = latest or tf.train.latest_checkpoint(str(path / "checkpoints"))
            if latest:
                return Path(latest)
        raise ValueError(
            f"{path}: a folder without {' or '.join(RUN_WEIGHTS)} or a training checkpoint"
        )
    if path.is_file():
        check_weights_file(path)
        return path
    if Path(f"{path}.index").exists():
        return path
    raise ValueError(f"{path}: no such file")


def _from_keras(path: Path, model: CornerNet, config_source: str) -> dict:
    source = read_keras(path)
    if not isinstance(source, CornerNet):
        raise ValueError(f"{path}: holds a {type(source).__name__}, not a CornerNet")
    saved, own = source.get_config(), model.get_config()
    for key in ARCHITECTURE:
        if saved[key] != own[key]:
            raise ValueError(
                f"{path} has another backbone than {config_source}: model.{key} is "
                f"{saved[key]} there, {own[key]} here"
            )
    top = len(source.name) + 1
    return {f"{model.name}/{v.path[top:]}": v.numpy() for v in source.weights}


def _from_weights_file(path: Path, model: CornerNet, config_source: str) -> dict:
    """Loads with Keras, skipping the layers whose shapes differ; those keep the NaN they were
    filled with before, which is how they are told apart."""
    for variable in model.weights:
        variable.assign(np.full(variable.shape, np.nan, variable.dtype))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(path), skip_mismatch=True)
    except Exception as error:  # noqa: BLE001  (Keras's errors for another structure)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} does not hold weights of the model of {config_source}: {reason}"
        ) from None
    values = {}
    for variable in model.weights:
        value = variable.numpy()
        if not np.isnan(value).any():
            values[variable.path] = value
    return values


def _from_checkpoint(prefix: Path, model: CornerNet) -> dict:
    """A training checkpoint (`cornernet_tf.training.make_checkpoint`): variables by path."""
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(f"{prefix}: not a readable training checkpoint ({error})") from None
    shapes = reader.get_variable_to_shape_map()
    values = {}
    for variable in model.weights:
        name = variable.path.replace("/", ".").replace(".", "..")  # TF escapes "." as ".."
        key = f"model_variables/{name}/.ATTRIBUTES/VARIABLE_VALUE"
        if key in shapes:
            values[variable.path] = reader.get_tensor(key)
    return values
