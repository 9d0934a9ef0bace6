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

One exception to the kernel transform: a depthwise kernel (CornerNet-Squeeze's fire modules,
official (C, 1, 3, 3)) becomes (3, 3, C, 1) by transpose(2, 3, 0, 1). A transposed
convolution's (Squeeze's `up2`, official (in, out, 4, 4)) takes the usual transpose(2, 3, 1, 0)
to Keras's (4, 4, out, in).

CornerNet-Lite checkpoints (CornerNet_Squeeze_500000.pkl) name the same modules differently; their
keys are renamed first (`LITE_NAMES`): `hg.pre` -> `pre`, `hg.hgs` -> `kps`, `hg.cnvs` -> `cnvs`,
`hg.inters(_)` -> `inters(_)`, `hg.cnvs_` -> `cnvs_`, `tl_modules` -> `tl_cnvs`, `br_modules` ->
`br_cnvs`, `tl_offs` -> `tl_regrs`, `br_offs` -> `br_regrs`.
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
# CornerNet-Lite's module names -> this model's (those of CornerNet), applied to key prefixes
LITE_NAMES = (
    ("hg.hgs.", "kps."),
    ("hg.", ""),
    ("tl_modules.", "tl_cnvs."),
    ("br_modules.", "br_cnvs."),
    ("tl_offs.", "tl_regrs."),
    ("br_offs.", "br_regrs."),
)


class WeightMismatchError(ValueError):
    """The checkpoint does not fit the model; the message lists the keys by name."""


def official_key(variable_path: str) -> str:
    """The official state_dict key of a Keras variable path, e.g. 'cornernet/pre.0/conv/kernel'."""
    *modules, leaf = variable_path.split("/")[1:]
    return ".".join(modules + [LEAVES[leaf][0]])


def clean_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops the `module.` prefix and the `num_batches_tracked` counters, and renames
    CornerNet-Lite's keys to CornerNet's (`LITE_NAMES`)."""
    return {
        lite_to_cornernet(key.removeprefix(PREFIX)): value
        for key, value in state_dict.items()
        if not key.endswith("num_batches_tracked")
    }


def lite_to_cornernet(key: str) -> str:
    """A CornerNet-Lite state_dict key under CornerNet's name, e.g. `hg.hgs.0.up2.weight` ->
    `kps.0.up2.weight`; other keys unchanged."""
    for lite, name in LITE_NAMES:
        if key.startswith(lite):
            return name + key[len(lite) :]
    return key


def to_keras(leaf: str, array: np.ndarray, shape) -> np.ndarray:
    """The official array of a variable whose Keras leaf is `leaf`, in the layout of the Keras
    variable of `shape` (a depthwise kernel when the official (C, 1, k, k) needs it)."""
    array = np.asarray(array)
    if leaf == "kernel" and array.ndim == 4 and array.shape[1] == 1 and tuple(shape)[-1] == 1:
        return np.transpose(array, (2, 3, 0, 1))  # depthwise (C, 1, k, k) -> (k, k, C, 1)
    return LEAVES[leaf][1](array)


def load_official_weights(model, state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"):
    """Assigns an official state_dict to a built CornerNet. Returns the model.

    Raises WeightMismatchError naming every missing, unexpected and mis-shaped key.
    """
    weights = clean_state_dict(state_dict)
    assignments, missing, wrong_shape, first = [], [], [], None
    for variable in model.weights:
        key = official_key(variable.path)
        if key not in weights:
            missing.append(key)
            first = first or f"{key}: not in the checkpoint, model {tuple(variable.shape)}"
            continue
        value = to_keras(variable.path.rsplit("/", 1)[1], weights[key], variable.shape)
        if tuple(value.shape) != tuple(variable.shape):
            wrong_shape.append(
                f"{key}: checkpoint {tuple(np.shape(weights[key]))} -> {tuple(value.shape)}, "
                f"model {tuple(variable.shape)}"
            )
            first = first or wrong_shape[-1]
            continue
        assignments.append((variable, value))
    used = {official_key(v.path) for v in model.weights}
    unexpected = sorted(set(weights) - used)
    if missing or unexpected or wrong_shape:
        first = first or f"{unexpected[0]}: in the checkpoint, not in the model"
        lite = any(key.removeprefix(PREFIX).startswith("hg.") for key in state_dict)
        kind = "CornerNet-Lite (hg.*)" if lite else "CornerNet"
        raise WeightMismatchError(
            f"{source} does not fit the model ({len(model.weights)} variables, "
            f"{len(weights)} checkpoint tensors; the checkpoint's keys are {kind}'s): "
            f"first mismatch {first}"
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
