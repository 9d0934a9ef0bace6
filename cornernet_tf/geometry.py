"""Input and output geometry of the hourglass family: stride, valid input sides, output size.

No TensorFlow import: config validation uses it before anything heavy is loaded.

    input_stride(depth)   4 * 2**depth: input sides must be input_stride - 1 modulo input_stride
                          (127 mod 128 for Hourglass-104, depth 5)
    output_size((h, w))   the output maps of an input (h, w): (side + 1) // 4, 511 -> 128
    input_side_problem    None for a valid side, else a sentence saying why it is not
"""

from __future__ import annotations

OUTPUT_STRIDE = 4  # the stem's two stride-2 steps: output maps are 1/4 of the input


def input_stride(depth: int) -> int:
    """Input sides of a depth-`depth` hourglass are one less than a multiple of this."""
    return OUTPUT_STRIDE * 2**depth


def output_size(input_size):
    """(h, w) of the output maps for an input of (h, w): (side + 1) // 4, 511 -> 128.

    Works on Python ints and on TensorFlow integer tensors alike."""
    return tuple((side + 1) // OUTPUT_STRIDE for side in input_size)


def input_side_problem(side: int, depth: int) -> str | None:
    """None if a depth-`depth` hourglass takes inputs `side` pixels wide, else why not."""
    stride = input_stride(depth)
    if side >= stride - 1 and (side + 1) % stride == 0:
        return None
    return (
        f"{side} does not fit a depth-{depth} hourglass: sides must be one less than a multiple "
        f"of {stride}, {stride - 1} mod {stride} (e.g. {stride - 1}, {2 * stride - 1}, "
        f"{4 * stride - 1})"
    )
