"""Winograd F(4x4, 3x3) convolution: a 3x3, stride 1, "same" convolution in about a quarter of the
multiplications, for float32 inference on the CPU.

    transform_kernel(kernel (3, 3, C, K)) -> (36, C, K)        U = G g G^T, once per model
    winograd_conv(x, transformed, bias, skip=None, relu=False) -> (B, H, W, K)

The output tiles are 4x4, each computed from its 6x6 input patch: V = B^T d B (the compiled
WinogradInput op), then for each of the 36 positions a matrix product over the channels
(tf.matmul: M = V U), then Y = A^T M A + bias (the compiled WinogradOutput op, which also adds a
residual's skip and applies the ReLU when asked).
Matrices of Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016), points
0, 1, -1, 2, -2. It rounds differently from a direct convolution: about 6 times the error of a
direct float32 convolution against float64 (measured 5e-5 to 9e-5 on unit-scale outputs).
Needs the compiled op library (`make ops`); no gradient: for inference only.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cornernet_tf.ops import custom

G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ]
)


def transform_kernel(kernel) -> np.ndarray:
    """A 3x3 HWIO kernel (3, 3, C, K) in the Winograd domain, (36, C, K) float32 (float64 math)."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"transform_kernel: expected a (3, 3, C, K) kernel, got {kernel.shape}")
    transformed = np.einsum("ai,ijck,bj->abck", G, kernel, G)
    return transformed.reshape(36, *kernel.shape[2:]).astype(np.float32)


def winograd_conv(x, transformed, bias, skip=None, relu: bool = False):
    """conv2d(x, kernel, 1, "SAME") + bias (+ skip), then ReLU if relu, for float32 NHWC x;
    `transformed` = transform_kernel(kernel). The additions and the ReLU are in the output op."""
    ops = custom.load()
    if ops is None:
        raise RuntimeError(f"winograd_conv needs the compiled ops: {custom.load_error()}")
    products = tf.matmul(ops.winograd_input(x), transformed)
    skips = [] if skip is None else [skip]
    return ops.winograd_output(products, bias, x, skips, relu=relu)
