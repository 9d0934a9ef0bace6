"""Variants of a built CornerNet with the same weights: BatchNorm folded into the convolutions,
bfloat16 compute, another corner-pool implementation, Winograd convolutions.

    variant(model, fold=, precision=, corner_pool=, winograd=)  -> the one way to make a variant
    fold_batchnorm(model)                       -> the same network with no BatchNorm layer
    inference_model(model, precision, fold, winograd, corner_pool)
                                                -> what Detector, evaluate and export run

Folding: a BatchNorm in inference is the affine map y = (x - mean) * g + beta with
g = gamma / sqrt(var + eps), so the convolution before it becomes kernel * g (per output
channel) with bias beta + (bias - mean) * g. The official convolutions before a BatchNorm have
no bias (bias = 0). Weight loading, conversion and training keep the unfolded model, whose
variables are the official ones.

bfloat16: the network is rebuilt with precision "bfloat16", Keras's "mixed_bfloat16" dtype policy
given to every layer (variables float32, convolutions, pools and additions in bfloat16). The
heads' last convolution computes in float32 (`cornernet_tf.heads`), so the raw outputs, the
sigmoid, the decoder and soft-NMS stay float32.

Winograd (folded): the 3x3, stride-1 convolutions on maps of 16 x 16 and more run as Winograd
(`layers.WinogradConv2D`, `cornernet_tf.ops.winograd`; compiled ops, CPU). In float32,
F(4x4, 3x3): about 2.3x faster on large maps, 4x the memory for those kernels, rounding errors
about 6 times those of a direct convolution. In bfloat16, F(2x2, 3x3): 1.2-1.6x faster on maps
of 256 channels and more, 1.8x the kernel memory, about twice the rounding error of a direct
bfloat16 convolution.
Python inference only: a SavedModel or TF.js model cannot carry the compiled ops.
"""

from __future__ import annotations

import platform
import warnings

import numpy as np
import tensorflow as tf

from cornernet_tf.cpu import cpu_flags
from cornernet_tf.layers import BN_EPSILON
from cornernet_tf.model import PRECISIONS, CornerNet
from cornernet_tf.ops import custom
from cornernet_tf.ops.winograd import tile_of, transform_kernel

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


def folded_weights(model: CornerNet) -> dict[str, np.ndarray]:
    """The variables of the folded form of `model`, {variable path: value} (float32).

    Paths are the unfolded model's, with each BatchNorm's variables gone and a bias added to the
    convolution it followed.
    """
    values = {v.path: np.asarray(v.numpy(), np.float32) for v in model.weights}
    for path in [path for path in values if path.endswith("/gamma")]:  # one per BatchNorm
        parent, name = path.rsplit("/", 2)[:2]
        prefix = f"{parent}/{name}/"
        gamma, beta, mean, variance = (
            values.pop(prefix + key) for key in ("gamma", "beta", "moving_mean", "moving_variance")
        )
        scale = gamma / np.sqrt(variance + BN_EPSILON)
        shift = beta - mean * scale
        if name == "bn2" and f"{parent}/conv_1x1/kernel" in values:
            # a fire module: bn2 follows concat(conv_1x1, conv_3x3), half the channels each
            half = len(scale) // 2
            _fold(values, f"{parent}/conv_1x1", scale[:half], shift[:half])
            _fold(values, f"{parent}/conv_3x3", scale[half:], shift[half:], depthwise=True)
        else:
            _fold(values, f"{parent}/{CONV_OF_BN[name]}", scale, shift)
    return values


def _fold(values: dict, conv: str, scale, shift, depthwise: bool = False) -> None:
    """conv's kernel and bias with y * scale + shift folded in (per output channel: the last
    axis of an HWIO kernel, the third of a depthwise (k, k, C, 1) one)."""
    kernel = values[f"{conv}/kernel"]
    bias = values.get(f"{conv}/bias", np.zeros_like(shift))
    values[f"{conv}/kernel"] = kernel * (scale[:, None] if depthwise else scale)
    values[f"{conv}/bias"] = bias * scale + shift


def variant(
    model: CornerNet,
    *,
    fold: bool = False,
    precision: str | None = None,
    corner_pool: str | None = None,
    winograd: bool | None = None,
) -> CornerNet:
    """`model` with other variants and the same weights: BatchNorm folded (fold; an already
    folded model stays folded), computing in `precision`, with another `corner_pool`
    implementation, its 3x3 convolutions by Winograd (folded only). None keeps the
    model's own setting. Returns `model` itself when nothing changes, else a new, built copy;
    `model` is not modified. The copy keeps every other constructor argument (`get_config`)."""
    config = model.get_config()
    changes = {
        "with_bn": model.with_bn and not fold,
        "precision": model.precision if precision is None else precision,
        "corner_pool": model.corner_pool if corner_pool is None else corner_pool,
        "winograd": model.winograd if winograd is None else winograd,
    }
    if all(config[key] == value for key, value in changes.items()):
        return model
    if model.winograd and changes["winograd"] and changes["precision"] != model.precision:
        raise ValueError(
            f"variant: this Winograd model's kernels are transformed for {model.precision}; "
            f"make the {changes['precision']} Winograd variant from the model it was made from"
        )
    copy = CornerNet(**{**config, **changes})
    copy.build()
    if model.with_bn and not copy.with_bn:
        weights = folded_weights(model)
    else:
        weights = {v.path: v.numpy() for v in model.weights}
    _assign(copy, weights)
    return copy


def fold_batchnorm(model: CornerNet) -> CornerNet:
    """A new float32 CornerNet equal to `model` in inference, each BatchNorm merged into the
    convolution before it: same call contract and outputs (to float32 rounding), fewer variables,
    no BatchNormalization layer. For inference only: the copy cannot be trained like the model."""
    return variant(model, fold=True, precision="float32")


def inference_model(
    model: CornerNet,
    precision: str = "float32",
    fold: bool = True,
    winograd: bool = False,
    corner_pool: str | None = None,
) -> CornerNet:
    """`model` as it should run for inference: BatchNorm folded (fold), computing in `precision`
    ("float32" or "bfloat16"), its 3x3 convolutions by Winograd (winograd: fold only; F(4x4,
    3x3) in float32, F(2x2, 3x3) in bfloat16), with the `corner_pool` implementation (None: the
    model's). Returns `model` itself when nothing changes, else a copy (`variant`); `model` is
    not modified."""
    check_precision(precision)
    if winograd:
        _check_winograd(fold)
    if precision == "bfloat16":
        warn_if_bfloat16_is_emulated()
    network = variant(
        model, fold=fold, precision=precision, corner_pool=corner_pool, winograd=winograd
    )
    if winograd and (note := winograd_coverage(network)):
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    return network


def winograd_coverage(network: CornerNet) -> str | None:
    """None when Winograd covers the convolutions it was meant for, else what it leaves out:
    CornerNet-Squeeze's fire modules (1x1 and depthwise 3x3 convolutions, most of its
    hourglasses' work) have no Winograd form and stay direct."""
    if network.block != "fire":
        return None
    kernels = [v.path for v in network.weights if v.path.endswith("kernel")]
    winograd = sum(path.endswith("/winograd_kernel") for path in kernels)
    return (
        f"winograd applies to {winograd} of the {len(kernels)} convolutions of this "
        "CornerNet-Squeeze (the 3x3 stride-1 ones of the stem, the joins, the corner modules): "
        "its fire modules' 1x1 and depthwise 3x3 convolutions have no Winograd form and run "
        "direct"
    )


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS, else a ValueError naming both."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
    return precision


def _check_winograd(fold: bool) -> None:
    if not fold:
        raise ValueError("winograd needs folded BatchNorm, got fold False")
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


def _assign(copy: CornerNet, weights: dict) -> None:
    """Fills `copy`'s variables from `weights` by path (a WinogradConv2D's winograd_kernel from
    the kernel of the convolution it replaces, for the tile its shape gives)."""
    weights = dict(weights)
    suffix = "/winograd_kernel"
    for variable in [v for v in copy.weights if v.path.endswith(suffix)]:
        kernel = weights.pop(variable.path[: -len(suffix)] + "/kernel", None)
        if kernel is not None:
            weights[variable.path] = transform_kernel(kernel, tile_of(variable))
    missing = [v.path for v in copy.weights if v.path not in weights]
    if missing:
        raise ValueError(f"variant: no value for {len(missing)} variables: {missing[:3]}")
    for variable in copy.weights:
        variable.assign(weights[variable.path])


def has_native_bfloat16(flags: set[str]) -> bool:
    """Whether CPU flags (`cornernet_tf.cpu.cpu_flags`) include a bfloat16 instruction set
    (AVX-512 BF16 or AMX-BF16)."""
    return bool(flags & set(NATIVE_BF16_FLAGS))


def bfloat16_slowness() -> str | None:
    """Why bfloat16 would be slow here, or None: on an x86 Linux CPU (no GPU) without native
    bfloat16 instructions TensorFlow emulates them, several times slower than float32."""
    if tf.config.list_physical_devices("GPU"):
        return None
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    flags = cpu_flags()
    if flags is None or has_native_bfloat16(flags):
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
