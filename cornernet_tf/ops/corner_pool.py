"""Corner pooling (CornerNet §3.4): a running max from one border, NHWC.

    top:    out[:, i] = max_{j >= i} x[:, j]   along H (the scan starts at the bottom row)
    bottom: out[:, i] = max_{j <= i} x[:, j]   along H (starts at the top row)
    left:   out[:, :, i] = max_{j >= i} x[:, :, j]   along W (starts at the right column)
    right:  out[:, :, i] = max_{j <= i} x[:, :, j]   along W (starts at the left column)

Gradient (the official one): all of out[i]'s gradient goes to its arg-max; on ties to the element
the official scan meets first, i.e. the one farthest from i, nearest the starting border. The two
pure-TF implementations get that rule from `tf.maximum`'s own gradient, which sends ties to its
first argument: they always pass the running max (the elements met earlier in the scan) first.
The compiled op implements it directly (a strict > moves the arg-max).

Implementations, picked by `corner_pool(..., implementation=)` (a model records its choice as the
`corner_pool` argument of `CornerNet`; there is no process-wide setting):
    "scan": `tf.scan` reference, one step per row/column.
    "tf":   the same scan unrolled into one elementwise max per row/column, each vectorised over
            the batch, the other spatial axis and the channels; the default. In graph mode it is
            about as fast as the scan, in eager mode far faster, and it has no while loop. When
            the pooled axis's size is unknown at tracing (the any-size SavedModel and OpenVINO
            IR) it takes the running max in ceil(log2 n) doubling steps (a while loop of 7 steps
            for 128 rows instead of 128: OpenVINO runs a loop step by step).
    "custom": the compiled op (custom_ops/corner_pool, `make ops`: multithreaded C++ CPU kernel,
            CUDA kernel when built with nvcc; float32, float16, bfloat16); when it is not built
            or was built for another TensorFlow, "tf" with a single warning.
    "auto": "custom" when the compiled op is loaded, else "tf", silently.
SavedModel and TF.js export always use a "tf" variant of the model (`cornernet_tf.variant`).
"""

from __future__ import annotations

import warnings

import tensorflow as tf

from cornernet_tf.ops import custom

IMPLEMENTATIONS = ("scan", "tf", "custom", "auto")
DIRECTIONS = {
    # direction: (axis in NHWC, whether the scan starts at the far end of the axis)
    "top": (1, True),
    "bottom": (1, False),
    "left": (2, True),
    "right": (2, False),
}


def corner_pool(x: tf.Tensor, direction: str, implementation: str = "tf") -> tf.Tensor:
    """Corner-pools the NHWC tensor `x` in `direction` with `implementation` (one of
    IMPLEMENTATIONS); returns a tensor of x's shape and dtype."""
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
    name = check_implementation(implementation)
    if name in ("custom", "auto") and x.dtype in custom.DTYPES:
        ops = custom.load()
        if ops is not None:
            return ops.corner_pool(x, direction=direction)
        if name == "custom":
            _warn_once(
                f"corner_pool: the compiled op is unavailable, using 'tf': {custom.load_error()}"
            )
    if name == "scan":
        return _scan_pool(x, axis, from_end)
    return _unrolled_pool(x, axis, from_end)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def check_implementation(name: str) -> str:
    """`name` if it is one of IMPLEMENTATIONS, else a ValueError naming them."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(
            f"corner_pool: implementation must be one of {list(IMPLEMENTATIONS)}, got {name!r}"
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


def _unrolled_pool(x: tf.Tensor, axis: int, from_end: bool) -> tf.Tensor:
    """One elementwise max per row (or column), each over the whole batch, width and channels.

    No while loop, so it runs as plain ops in eager mode, under XLA and in TF.js. Needs the size
    of the pooled axis to be static; with a dynamic one it takes `_doubling_pool`.
    """
    if x.shape[axis] is None:
        return _doubling_pool(x, axis, from_end)
    rows = tf.unstack(x, axis=axis)
    if from_end:
        rows.reverse()
    out = [rows[0]]
    for row in rows[1:]:
        # The running max comes first: on a tie the gradient stays with the element met earlier.
        out.append(tf.maximum(out[-1], row))
    if from_end:
        out.reverse()
    return tf.stack(out, axis=axis)


def _doubling_pool(x: tf.Tensor, axis: int, from_end: bool) -> tf.Tensor:
    """The running max in doubling steps, for an axis whose size is known only at run time:
    after the step with shift s each element holds the max of the 2s elements ending at it, so
    ceil(log2 n) steps cover the axis. The element s before comes first in each maximum (the
    first s elements are compared with themselves): on a tie the gradient goes to it, and so,
    step by step, to the element the scan meets first."""
    if from_end:
        x = tf.reverse(x, [axis])
    size = tf.shape(x)[axis]
    on_axis = tf.one_hot(axis, 4, on_value=True, off_value=False)

    def first(tensor, count):  # the first `count` entries along the axis
        return tf.slice(tensor, [0] * 4, tf.where(on_axis, count, -1))

    def step(shift, running):
        shift = tf.minimum(shift, size)
        earlier = tf.concat([first(running, shift), first(running, size - shift)], axis)
        earlier.set_shape(running.shape)  # the slices lose static sizes, e.g. a batch of 1
        return shift * 2, tf.maximum(earlier, running)

    _, out = tf.while_loop(lambda shift, _: shift < size, step, [tf.constant(1), x])
    return tf.reverse(out, [axis]) if from_end else out
