"""The hourglass module (the official recursive `kp_module` / `hg_module`), NHWC.

One level with widths (curr, next) and m blocks (Residual, or Fire for CornerNet-Squeeze):
    up1  = m x Block(curr)                      at full resolution
    low1 = Block(next, stride 2) + (m-1) x Block(next)     (no max-pool: CornerNet strides)
    low2 = the next level, or, at the bottom, modules[-1] x Block(next)
    low3 = (m-1) x Block(next) + Block(curr)
    out  = up1 + up2(low3)                      (no ReLU)
up2 doubles the size: nearest neighbour (Hourglass-104), or CornerNet-Squeeze's
`ConvTranspose2d(curr, curr, 4, stride 2, padding 1)` with bias, which is Keras's
`Conv2DTranspose(curr, 4, strides 2, "same")`.

The official `saccade_module` is the same module that also hands out every level's output
(`call(x, levels=True)`), for CornerNet-Saccade's attention heads.

Hourglass-104 (CornerNet): depth 5, dims 256,256,384,384,384,512, modules 2,2,2,2,2,4
(configs/hourglass104.yaml); CornerNet-Squeeze: depth 4, dims 256,256,384,384,512, modules
2,2,2,2,4, fire blocks, transposed upsampling (configs/squeeze.yaml); CornerNet-Saccade: depth 3,
dims 256,384,384,512, modules 1,1,1,1 (configs/saccade.yaml); configs/tiny.yaml is a small one
for tests and the demo.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from cornernet_tf.config import FAMILY
from cornernet_tf.layers import Block, Fire, Residual, serializable

BLOCKS = {"residual": Residual, "fire": Fire}  # config.FAMILY["block"] -> the layer


@serializable
class Hourglass(Block):
    """One hourglass level and, recursively, those below it: (B, h, w, dims[0]) in and out."""

    def __init__(
        self,
        depth: int,
        dims: Sequence[int],
        modules: Sequence[int],
        block: str = "residual",
        upsample: str = "nearest",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for key, value in (("block", block), ("upsample", upsample)):
            if value not in FAMILY[key]:
                raise ValueError(
                    f"Hourglass: {key} must be one of {list(FAMILY[key])}, got {value!r}"
                )
        if len(dims) != depth + 1 or len(modules) != depth + 1:
            raise ValueError(
                f"Hourglass: depth {depth} needs {depth + 1} dims and modules, "
                f"got dims={list(dims)} modules={list(modules)}"
            )
        self.depth, self.dims, self.modules = depth, tuple(dims), tuple(modules)
        self.block, self.upsample = block, upsample
        curr, nxt, m = dims[0], dims[1], modules[0]
        variants = self.variants
        kind = BLOCKS[block]

        def residual(filters, name, stride=1):
            return kind(filters, stride=stride, **variants, name=name)

        self.up1 = [residual(curr, f"up1.{i}") for i in range(m)]
        self.low1 = [residual(nxt, "low1.0", stride=2)] + [
            residual(nxt, f"low1.{i}") for i in range(1, m)
        ]
        if depth > 1:
            self.low2 = Hourglass(
                depth - 1, dims[1:], modules[1:], block, upsample, **variants, name="low2"
            )
        else:
            self.low2 = [residual(nxt, f"low2.{i}") for i in range(modules[1])]
        self.low3 = [residual(nxt, f"low3.{i}") for i in range(m - 1)] + [
            residual(curr, f"low3.{m - 1}")
        ]
        if upsample == "nearest":
            self.up2 = keras.layers.UpSampling2D(
                2, interpolation="nearest", dtype=self.dtype_policy, name="up2"
            )
        else:
            self.up2 = keras.layers.Conv2DTranspose(
                curr, 4, strides=2, padding="same", dtype=self.dtype_policy, name="up2"
            )

    def call(self, x, training=None, levels=False):
        """The output (B, h, w, dims[0]); with levels, the output of every level, innermost
        first, this one's last (CornerNet-Saccade's attention heads read them all)."""
        up1 = _run(self.up1, x, training)
        low = _run(self.low1, x, training)
        inner = []
        if isinstance(self.low2, Hourglass):
            inner = self.low2(low, training=training, levels=True)
            low = inner[-1]
        else:
            low = _run(self.low2, low, training)
        low = _run(self.low3, low, training)
        out = up1 + self.up2(low)
        return [*inner, out] if levels else out

    def get_config(self):
        return {
            **super().get_config(),
            "depth": self.depth,
            "dims": list(self.dims),
            "modules": list(self.modules),
            "block": self.block,
            "upsample": self.upsample,
        }


def _run(layers, x, training):
    for layer in layers:
        x = layer(x, training=training)
    return x
