"""The hourglass module (the official recursive `kp_module`), NHWC.

One level with widths (curr, next) and m residuals:
    up1  = m x Residual(curr)                   at full resolution
    low1 = Residual(next, stride 2) + (m-1) x Residual(next)     (no max-pool: CornerNet strides)
    low2 = the next level, or, at the bottom, modules[-1] x Residual(next)
    low3 = (m-1) x Residual(next) + Residual(curr)
    out  = up1 + nearest_upsample_x2(low3)      (no ReLU)

Hourglass-104 (CornerNet): depth 5, dims 256,256,384,384,384,512, modules 2,2,2,2,2,4
(configs/hourglass104.yaml); configs/tiny.yaml is a small one for tests and the demo.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from cornernet_tf.layers import Block, Residual, serializable


@serializable
class Hourglass(Block):
    """One hourglass level and, recursively, those below it: (B, h, w, dims[0]) in and out."""

    def __init__(
        self,
        depth: int,
        dims: Sequence[int],
        modules: Sequence[int],
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(dims) != depth + 1 or len(modules) != depth + 1:
            raise ValueError(
                f"Hourglass: depth {depth} needs {depth + 1} dims and modules, "
                f"got dims={list(dims)} modules={list(modules)}"
            )
        self.depth, self.dims, self.modules = depth, tuple(dims), tuple(modules)
        curr, nxt, m = dims[0], dims[1], modules[0]
        variants = self.variants

        def residual(filters, name, stride=1):
            return Residual(filters, stride=stride, **variants, name=name)

        self.up1 = [residual(curr, f"up1.{i}") for i in range(m)]
        self.low1 = [residual(nxt, "low1.0", stride=2)] + [
            residual(nxt, f"low1.{i}") for i in range(1, m)
        ]
        if depth > 1:
            self.low2 = Hourglass(depth - 1, dims[1:], modules[1:], **variants, name="low2")
        else:
            self.low2 = [residual(nxt, f"low2.{i}") for i in range(modules[1])]
        self.low3 = [residual(nxt, f"low3.{i}") for i in range(m - 1)] + [
            residual(curr, f"low3.{m - 1}")
        ]
        self.up2 = keras.layers.UpSampling2D(
            2, interpolation="nearest", dtype=self.dtype_policy, name="up2"
        )

    def call(self, x, training=None):
        up1 = _run(self.up1, x, training)
        low = _run(self.low1, x, training)
        if isinstance(self.low2, Hourglass):
            low = self.low2(low, training=training)
        else:
            low = _run(self.low2, low, training)
        low = _run(self.low3, low, training)
        return up1 + self.up2(low)

    def get_config(self):
        return {
            **super().get_config(),
            "depth": self.depth,
            "dims": list(self.dims),
            "modules": list(self.modules),
        }


def _run(layers, x, training):
    for layer in layers:
        x = layer(x, training=training)
    return x
