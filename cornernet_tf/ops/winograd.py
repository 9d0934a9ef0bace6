"""Winograd convolution: a 3x3, stride 1, "same" convolution in fewer multiplications, for
inference on the CPU: F(4x4, 3x3) in float32, F(2x2, 3x3) in bfloat16.

    TILES[dtype] -> m, the output tile side for that compute dtype
    tile_of(transformed) -> m, read from a transformed kernel's (m+2)^2 positions
    transform_kernel(kernel (3, 3, C, K), tile=4) -> ((m+2)^2, C, K)   U = G g G^T, once per model
    winograd_conv(x, transformed, bias, skip=None, relu=False) -> (B, H, W, K)

The output tiles are m x m, each computed from its (m+2) x (m+2) input patch: V = B^T d B (the
compiled WinogradInput op), then for each of the (m+2)^2 positions a matrix product over the
channels (tf.matmul: M = V U, in x's dtype), then Y = A^T M A + bias (the compiled WinogradOutput
op, which also adds a residual's skip and applies the ReLU when asked). The transforms compute in
float32 for both dtypes.
Matrices of Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): F(4x4, 3x3)
with points 0, 1, -1, 2, -2 (36 products per 16 outputs, a quarter of a direct convolution's;
about 6 times the error of a direct float32 convolution against float64, measured 5e-5 to 9e-5
on unit-scale outputs); F(2x2, 3x3) with points 0, 1, -1 (16 products per 4 outputs, 0.44 of
direct; its transforms only add, so in bfloat16 its error is about twice a direct bfloat16
convolution's, where F(4x4, 3x3) would have 9 times).
Needs the compiled op library (`make ops`); no gradient: for inference only.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cornernet_tf.ops import custom

# the output tile side m per compute dtype
TILES = {"float32": 4, "bfloat16": 2}
# G of F(m x m, 3x3), (m + 2, 3), per m
G = {
    4: np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ]
    ),
    2: np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]]),
}


def transform_kernel(kernel, tile: int = 4) -> np.ndarray:
    """A 3x3 HWIO kernel (3, 3, C, K) in the domain of F(tile x tile, 3x3): ((tile + 2)^2, C, K)
    float32 (float64 math)."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.shape[:2] != (3, 3) or kernel.ndim != 4:
        raise ValueError(f"transform_kernel: expected a (3, 3, C, K) kernel, got {kernel.shape}")
    if tile not in G:
        raise ValueError(f"transform_kernel: tile must be one of {sorted(G)}, got {tile!r}")
    transformed = np.einsum("ai,ijck,bj->abck", G[tile], kernel, G[tile])
    return transformed.reshape((tile + 2) ** 2, *kernel.shape[2:]).astype(np.float32)


def tile_of(transformed) -> int:
    """The tile side m of a transformed kernel ((m + 2)^2, C, K): 4 for 36 positions, 2 for 16."""
    tile = {(m + 2) ** 2: m for m in G}.get(transformed.shape[0])
    if tile is None:
        raise ValueError(
            f"winograd_conv: a transformed kernel is (36 or 16, C, K), got {transformed.shape}"
        )
    return tile


def winograd_conv(x, transformed, bias, skip=None, relu: bool = False):
    """conv2d(x, kernel, 1, "SAME") + bias (+ skip), then ReLU if relu, for NHWC x (float32 or
    bfloat16, the dtype of every operand); `transformed` = transform_kernel(kernel, tile), whose
    first dimension, 36 or 16, gives the tile. The additions and the ReLU are in the output op."""
    ops = custom.load()
    if ops is None:
        raise RuntimeError(f"winograd_conv needs the compiled ops: {custom.load_error()}")
    tile = tile_of(transformed)
    products = tf.matmul(ops.winograd_input(x, tile=tile), transformed)
    skips = [] if skip is None else [skip]
    return ops.winograd_output(products, bias, x, skips, tile=tile, relu=relu)
