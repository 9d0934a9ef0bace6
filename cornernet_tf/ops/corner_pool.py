"""Corner pooling (CornerNet §3.4): a running max from one border, NHWC.

    top:    out[:, i] = max_{j >= i} x[:, j]   along H (the scan starts at the bottom row)
    bottom: out[:, i] = max_{j <= i} x[:, j]   along H (starts at the top row)
    left:   out[:, :, i] = max_{j >= i} x[:, :, j]   along W (starts at the right column)
    right:  out[:, :, i] = max_{j <= i} x[:, :, j]   along W (starts at the left column)

Gradient (the official one): all of out[i]'s gradient goes to its arg-max; on ties to the element
the official scan meets first, i.e. the one farthest from i, nearest the starting border. Both
implementations get that rule from `tf.maximum`'s own gradient, which sends ties to its first
argument: they always pass the element met earlier in the scan first.

Implementations, picked by `corner_pool(..., implementation=)`, else
`set_corner_pool_implementation`, else the environment variable CORNERNET_CORNER_POOL, else "tf":
    "scan": `tf.scan` reference, one step per row/column.
    "tf":   vectorised log-step doubling (ceil(log2 n) elementwise maxima); the default.
"""

from __future__ import annotations

import os

import tensorflow as tf

IMPLEMENTATIONS = ("scan", "tf")
DIRECTIONS = {
    # direction: (axis in NHWC, whether the scan starts at the far end of the axis)
    "top": (1, True),
    "bottom": (1, False),
    "left": (2, True),
    "right": (2, False),
}
ENV_VAR = "CORNERNET_CORNER_POOL"
_implementation: str | None = None


def set_corner_pool_implementation(name: str | None) -> None:
    """Sets the process-wide default implementation (None: back to the environment / "tf")."""
    if name is not None:
        _check_implementation(name, "set_corner_pool_implementation")
    global _implementation
    _implementation = name


def get_corner_pool_implementation(implementation: str | None = None) -> str:
    """The implementation a call would use: argument, global setting, environment, "tf"."""
    if implementation is not None:
        return _check_implementation(implementation, "implementation argument")
    if _implementation is not None:
        return _implementation
    if os.environ.get(ENV_VAR):
        return _check_implementation(os.environ[ENV_VAR], f"environment variable {ENV_VAR}")
    return "tf"


def corner_pool(x: tf.Tensor, direction: str, implementation: str | None = None) -> tf.Tensor:
    """Corner-pools the NHWC tensor `x` in `direction`; returns a tensor of x's shape and dtype."""
    if direction not in DIRECTIONS:
        raise ValueError(
            f"corner_pool: direction must be one of {list(DIRECTIONS)}, got {direction!r}"
        )
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4:
        raise ValueError(f"corner_pool: expected an NHWC tensor of rank 4, got shape {x.shape}")
    if not x.dtype.is_floating:
        raise TypeError(f"corner_pool: expected a floating-point tensor, got {x.dtype.name}")
    axis, from_end = DIRECTIONS[direction]
    name = get_corner_pool_implementation(implementation)
    if name == "scan":
        return _scan_pool(x, axis, from_end)
    return _doubling_pool(x, axis, from_end)


def _check_implementation(name: str, what: str) -> str:
    if name not in IMPLEMENTATIONS:
        raise ValueError(
            f"corner_pool: {what} must be one of {list(IMPLEMENTATIONS)}, got {name!r}"
        )
    return name


def _scan_pool(x: tf.Tensor, axis: int, from_end: bool) -> tf.Tensor:
    """Reference: a sequential running max over the axis, written with tf.scan."""
    perm = [axis] + [d for d in range(4) if d != axis]
    inverse = [perm.index(d) for d in range(4)]
    seq = tf.transpose(x, perm)
    # The running max comes first: on a tie the gradient stays with the element met earlier.
    out = tf.scan(lambda running, row: tf.maximum(running, row), seq, reverse=from_end)
    return tf.transpose(out, inverse)


def _doubling_pool(x: tf.Tensor, axis: int, from_end: bool) -> tf.Tensor:
    """Log-step doubling: after the step with shift d, out[i] is the max over a window of 2d."""
    size = x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]
    out = x
    shift = 1
    while _less(shift, size):
        head = _slice(out, axis, 0, size - shift)  # elements i (or i - shift)
        tail = _slice(out, axis, shift, size)  # elements i + shift
        if from_end:  # out[i] = max(out[i + d], out[i]); the farther element first
            rest = _slice(out, axis, size - shift, size)
            out = tf.concat([tf.maximum(tail, head), rest], axis)
        else:  # out[i] = max(out[i - d], out[i])
            rest = _slice(out, axis, 0, shift)
            out = tf.concat([rest, tf.maximum(head, tail)], axis)
        shift *= 2
    return out


def _less(shift: int, size) -> bool:
    if isinstance(size, int):
        return shift < size
    raise ValueError("corner_pool 'tf': the pooled axis needs a static size")


def _slice(x: tf.Tensor, axis: int, start, stop) -> tf.Tensor:
    begin = [0, 0, 0, 0]
    extent = [-1, -1, -1, -1]
    begin[axis] = start
    extent[axis] = stop - start
    return tf.slice(x, begin, extent)
