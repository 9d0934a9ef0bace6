"""Input and output geometry of the hourglass family: stride, valid input sides, output size.

No TensorFlow import: config validation uses it before anything heavy is loaded.

The stem divides the input by the output stride (4 for Hourglass-104, 8 for CornerNet-Squeeze),
each hourglass level by 2 more:
    input_stride(depth, output_stride)   output_stride * 2**depth: input sides must be
                          input_stride - 1 modulo input_stride (127 mod 128 for Hourglass-104,
                          depth 5, and for CornerNet-Squeeze, depth 4, output stride 8)
    output_size((h, w), output_stride)   the output maps of an input (h, w): (side + 1) //
                          output_stride, 511 -> 128 (stride 4) or 64 (stride 8)
    input_side_problem    None for a valid side, else a sentence saying why it is not
"""

from __future__ import annotations

OUTPUT_STRIDE = 4  # Hourglass-104's stem: two stride-2 steps, output maps 1/4 of the input
OUTPUT_STRIDES = (4, 8)  # the stems of the family: 2 or 3 stride-2 steps


def input_stride(depth: int, output_stride: int = OUTPUT_STRIDE) -> int:
    """Input sides of a depth-`depth` hourglass are one less than a multiple of this."""
    return output_stride * 2**depth


def output_size(input_size, output_stride: int = OUTPUT_STRIDE):
    """(h, w) of the output maps for an input of (h, w): (side + 1) // output_stride.

    Works on Python ints and on TensorFlow integer tensors alike."""
    return tuple((side + 1) // output_stride for side in input_size)


def valid_sides(depth: int, output_stride: int = OUTPUT_STRIDE, count: int = 4) -> list[int]:
    """The `count` smallest input sides a depth-`depth` hourglass takes."""
    stride = input_stride(depth, output_stride)
    return [k * stride - 1 for k in range(1, count + 1)]


def input_side_problem(side: int, depth: int, output_stride: int = OUTPUT_STRIDE) -> str | None:
    """None if a depth-`depth` hourglass with this output stride takes inputs `side` pixels
    wide, else why not."""
    stride = input_stride(depth, output_stride)
    if side >= stride - 1 and (side + 1) % stride == 0:
        return None
    sides = ", ".join(str(s) for s in valid_sides(depth, output_stride))
    return (
        f"{side} does not fit a depth-{depth} hourglass with output stride {output_stride}: "
        f"sides must be one less than a multiple of {stride}, {stride - 1} mod {stride} "
        f"(valid: {sides}, ...)"
    )
