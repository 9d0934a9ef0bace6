"""Inference forms of a CornerNet: BatchNorm folded into the convolutions, bfloat16 compute.

    fold_batchnorm(model)                       -> the same network with no BatchNorm layer
    inference_model(model, precision, fold, winograd)  -> what Detector, evaluate and export run

Folding: a BatchNorm in inference is the affine map y = (x - mean) * g + beta with
g = gamma / sqrt(var + eps), so the convolution before it becomes kernel * g (per output
channel) with bias beta + (bias - mean) * g. The official convolutions before a BatchNorm have
no bias (bias = 0). Weight loading, conversion and training keep the unfolded model, whose
variables are the official ones.

bfloat16: the network is rebuilt under Keras's "mixed_bfloat16" dtype policy (variables float32,
convolutions, pools and additions in bfloat16). The heads' last convolution computes in float32
(`cornernet_tf.heads`), so the raw outputs, the sigmoid, the decoder and soft-NMS stay float32.

Winograd (float32, folded): the 3x3, stride-1 convolutions on maps of 16 x 16 and more run as
Winograd F(4x4, 3x3) (`layers.WinogradConv2D`, `cornernet_tf.ops.winograd`; compiled ops, CPU):
about 2.3x faster on large maps, 4x the memory for those kernels, and rounding errors about 6
times those of a direct convolution.
Python inference only: a SavedModel or TF.js model cannot carry the compiled ops.
"""

from __future__ import annotations

import contextlib
import platform
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cornernet_tf.layers import BN_EPSILON, winograd_convolutions
from cornernet_tf.model import CornerNet
from cornernet_tf.ops import custom
from cornernet_tf.ops.winograd import transform_kernel

PRECISIONS = ("float32", "bfloat16")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
# a BatchNorm's official name -> that of the convolution it follows, in the same parent layer
# ("1" -> "0": inters_.<s> and cnvs_.<s>, a Sequential of the two)
CONV_OF_BN = {
    "bn": "conv",
    "bn1": "conv1",
    "bn2": "conv2",
    "p_bn1": "p_conv1",
    "skip.1": "skip.0",
    "1": "0",
}
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS, else a ValueError naming both."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
    return precision


def folded_weights(model: CornerNet) -> dict[str, np.ndarray]:
    """The variables of the folded form of `model`, {variable path: value} (float32).

    Paths are the unfolded model's, with each BatchNorm's variables gone and a bias added to the
    convolution it followed.
    """
    values = {v.path: np.asarray(v.numpy(), np.float32) for v in model.weights}
    for path in [path for path in values if path.endswith("/gamma")]:  # one per BatchNorm
        parent, name = path.rsplit("/", 2)[:2]
        conv = f"{parent}/{CONV_OF_BN[name]}"
        prefix = f"{parent}/{name}/"
        gamma, beta, mean, variance = (
            values.pop(prefix + key) for key in ("gamma", "beta", "moving_mean", "moving_variance")
        )
        scale = gamma / np.sqrt(variance + BN_EPSILON)
        bias = values.get(f"{conv}/bias", np.zeros_like(mean))
        values[f"{conv}/kernel"] = values[f"{conv}/kernel"] * scale  # HWIO: per output channel
        values[f"{conv}/bias"] = beta + (bias - mean) * scale
    return values


def fold_batchnorm(model: CornerNet) -> CornerNet:
    """A new float32 CornerNet equal to `model` in inference, each BatchNorm merged into the
    convolution before it: same call contract and outputs (to float32 rounding), fewer variables,
    no BatchNormalization layer. For inference only: the copy cannot be trained like the model."""
    return _rebuild(model, folded_weights(model), "float32", with_bn=False)


def inference_model(
    model: CornerNet, precision: str = "float32", fold: bool = True, winograd: bool = False
) -> CornerNet:
    """`model` as it should run for inference: BatchNorm folded (fold), computing in `precision`
    ("float32" or "bfloat16"), its 3x3 convolutions by Winograd F(4x4, 3x3) (winograd: float32
    and fold only). Returns `model` itself when nothing changes, else a copy; `model` is not
    modified."""
    check_precision(precision)
    if winograd:
        _check_winograd(precision, fold)
    if precision == "bfloat16":
        warn_if_bfloat16_is_emulated()
    fold = fold and model.with_bn
    if precision == "float32" and not fold and not winograd and model.compute_dtype == "float32":
        return model
    if fold:
        weights = folded_weights(model)
    else:
        weights = {v.path: v.numpy() for v in model.weights}
    with_bn = model.with_bn and not fold
    return _rebuild(model, weights, precision, with_bn=with_bn, winograd=winograd)


def _check_winograd(precision: str, fold: bool) -> None:
    if precision != "float32" or not fold:
        raise ValueError(
            f"winograd needs precision float32 and folded BatchNorm, got precision {precision!r}, "
            f"fold {fold}"
        )
    if custom.load() is None:
        raise RuntimeError(
            f"winograd needs the compiled ops (run `make ops`): {custom.load_error()}"
        )
    if tf.config.list_physical_devices("GPU"):
        warnings.warn(
            "winograd: its transforms run on the CPU only; with a GPU leave it off (cuDNN picks "
            "its own convolution algorithms)",
            RuntimeWarning,
            stacklevel=3,
        )


def _rebuild(
    model: CornerNet, weights: dict, precision: str, with_bn: bool, winograd: bool = False
) -> CornerNet:
    """A CornerNet like `model`, built under `precision`'s dtype policy, with `weights` by path
    (a WinogradConv2D's winograd_kernel from the kernel of the convolution it replaces)."""
    config = {**model.get_config(), "with_bn": with_bn}
    convolutions = winograd_convolutions() if winograd else contextlib.nullcontext()
    with _dtype_policy(_POLICIES[precision]), convolutions:
        copy = CornerNet(**config)
        # Winograd layers choose their algorithm by the map they are built on: build them at
        # 4 strides (511 for Hourglass-104), where the smallest maps are 4 x 4
        side = copy.stride * (4 if winograd else 1) - 1
        copy(tf.zeros((1, side, side, 3)), training=False, all_stacks=True)
    suffix = "/winograd_kernel"
    for path in [v.path for v in copy.weights if v.path.endswith(suffix)]:
        kernel = weights.pop(path[: -len(suffix)] + "/kernel", None)
        if kernel is not None:
            weights[path] = transform_kernel(kernel)
    missing = [v.path for v in copy.weights if v.path not in weights]
    if missing:
        raise ValueError(f"inference_model: no value for {len(missing)} variables: {missing[:3]}")
    for variable in copy.weights:
        variable.assign(weights[variable.path])
    return copy


@contextlib.contextmanager
def _dtype_policy(name: str):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def has_native_bfloat16(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo text lists a bfloat16 instruction set (AVX-512 BF16 or AMX-BF16)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and set(value.split()) & set(NATIVE_BF16_FLAGS):
            return True
    return False


def bfloat16_slowness() -> str | None:
    """Why bfloat16 would be slow here, or None: on an x86 Linux CPU (no GPU) without native
    bfloat16 instructions TensorFlow emulates them, several times slower than float32."""
    if tf.config.list_physical_devices("GPU"):
        return None
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    if has_native_bfloat16(cpuinfo):
        return None
    return (
        "precision bfloat16 will be slow on this machine: its CPU has no native bfloat16 "
        "instructions (no avx512_bf16 or amx_bf16 flag in /proc/cpuinfo), so TensorFlow emulates "
        "them in float32 with conversions; use precision float32 here"
    )


_warned = False


def warn_if_bfloat16_is_emulated() -> None:
    """Warns once per process when `bfloat16_slowness` finds a reason."""
    global _warned
    if not _warned and (reason := bfloat16_slowness()):
        _warned = True
        warnings.warn(reason, RuntimeWarning, stacklevel=3)
