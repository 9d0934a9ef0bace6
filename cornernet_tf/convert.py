"""Official PyTorch state_dict -> Keras CornerNet variables.

The Keras layers carry the official module names, so a variable's path is the official key with
"/" for "." and a Keras leaf name. This table is the whole mapping:

    Keras path (root stripped)           official key                           transform
    <module>/kernel  (k,k,in,out) HWIO   <module>.weight  (out,in,k,k) OIHW     transpose(2,3,1,0)
    <module>/bias    (out,)              <module>.bias                          -
    <bn>/gamma                           <bn>.weight                            -
    <bn>/beta                            <bn>.bias                              -
    <bn>/moving_mean                     <bn>.running_mean                      -
    <bn>/moving_variance                 <bn>.running_var                       -

e.g. `cornernet/kps.0/low2/low1.0/conv1/kernel` <- `kps.0.low2.low1.0.conv1.weight`,
`cornernet/tl_heats.1/1/bias` <- `tl_heats.1.1.bias`. The checkpoint's `module.` prefix (the
official trainer wraps the model in DummyModule) and the `num_batches_tracked` counters of newer
torch are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

LEAVES = {
    # Keras leaf: (official leaf, function from the official array to the Keras one)
    "kernel": ("weight", lambda a: np.transpose(a, (2, 3, 1, 0))),
    "bias": ("bias", lambda a: a),
    "gamma": ("weight", lambda a: a),
    "beta": ("bias", lambda a: a),
    "moving_mean": ("running_mean", lambda a: a),
    "moving_variance": ("running_var", lambda a: a),
}
PREFIX = "module."


class WeightMismatchError(ValueError):
    """The checkpoint does not fit the model; the message lists the keys by name."""


def official_key(variable_path: str) -> str:
    """The official state_dict key of a Keras variable path, e.g. 'cornernet/pre.0/conv/kernel'."""
    *modules, leaf = variable_path.split("/")[1:]
    return ".".join(modules + [LEAVES[leaf][0]])


def clean_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops the `module.` prefix and the `num_batches_tracked` counters."""
    return {
        key.removeprefix(PREFIX): value
        for key, value in state_dict.items()
        if not key.endswith("num_batches_tracked")
    }


def load_official_weights(model, state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"):
    """Assigns an official state_dict to a built CornerNet. Returns the model.

    Raises WeightMismatchError naming every missing, unexpected and mis-shaped key.
    """
    weights = clean_state_dict(state_dict)
    assignments, missing, wrong_shape = [], [], []
    for variable in model.weights:
        key = official_key(variable.path)
        if key not in weights:
            missing.append(key)
            continue
        value = LEAVES[variable.path.rsplit("/", 1)[1]][1](np.asarray(weights[key]))
        if tuple(value.shape) != tuple(variable.shape):
            wrong_shape.append(
                f"{key}: checkpoint {tuple(np.shape(weights[key]))} -> {tuple(value.shape)}, "
                f"model {tuple(variable.shape)}"
            )
            continue
        assignments.append((variable, value))
    used = {official_key(v.path) for v in model.weights}
    unexpected = sorted(set(weights) - used)
    if missing or unexpected or wrong_shape:
        raise WeightMismatchError(
            f"{source} does not fit the model ({len(model.weights)} variables, "
            f"{len(weights)} checkpoint tensors):"
            + _listing("missing from the checkpoint", missing)
            + _listing("unexpected in the checkpoint", unexpected)
            + _listing("wrong shape", wrong_shape)
        )
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    return model


def _listing(title: str, names: list[str], limit: int = 20) -> str:
    if not names:
        return ""
    shown = "\n    ".join(names[:limit])
    more = f"\n    ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"\n  {title} ({len(names)}):\n    {shown}{more}"
