"""Prediction heads: conv k x k (with bias) -> ReLU -> conv 1x1 (with bias), one per map and stack;
k = 3 (Hourglass-104) or 1 (CornerNet-Squeeze).

Official names: `tl_heats.<s>`, `br_heats.<s>` (num_classes logits, bias filled with -2.19),
`tl_tags.<s>`, `br_tags.<s>` (1 embedding), `tl_regrs.<s>`, `br_regrs.<s>` (2 offsets: x, y;
CornerNet-Lite calls them `tl_offs` / `br_offs`).
The last (1x1) convolution always computes in float32, also under a bfloat16 dtype policy, so
the logits, embeddings and offsets that the sigmoid, the loss and the decoder see are float32.
"""

from __future__ import annotations

import keras

from cornernet_tf.layers import ConvBN, serializable

HEAT_BIAS = -2.19  # sigmoid(-2.19) ~ 0.1: the official heatmap prior

# output key of the model -> official module name
HEAD_NAMES = {
    "tl_heatmap": "tl_heats",
    "br_heatmap": "br_heats",
    "tl_embedding": "tl_tags",
    "br_embedding": "br_tags",
    "tl_offset": "tl_regrs",
    "br_offset": "br_regrs",
}


@serializable
class Head(keras.layers.Layer):
    """One prediction head: (B, h, w, in) -> (B, h, w, out_dim). kernel: that of the first
    convolution. winograd: a 3x3 first convolution is a WinogradConv2D."""

    def __init__(
        self,
        mid_dim: int,
        out_dim: int,
        bias: float = 0.0,
        winograd: bool = False,
        kernel: int = 3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mid_dim, self.out_dim, self.bias, self.winograd = mid_dim, out_dim, bias, winograd
        self.kernel = kernel
        # The official `convolution(k, cnv_dim, curr_dim, with_bn=False)` then nn.Conv2d(1x1).
        self.hidden = ConvBN(
            mid_dim, kernel, with_bn=False, winograd=winograd, dtype=self.dtype_policy, name="0"
        )
        self.out = keras.layers.Conv2D(
            out_dim,
            1,
            bias_initializer=keras.initializers.Constant(bias),
            dtype="float32",
            name="1",
        )

    def call(self, x):
        return self.out(self.hidden(x))

    def get_config(self):
        return {
            **super().get_config(),
            "mid_dim": self.mid_dim,
            "out_dim": self.out_dim,
            "bias": self.bias,
            "winograd": self.winograd,
            "kernel": self.kernel,
        }


def make_heads(stack: int, mid_dim: int, num_classes: int, **kwargs) -> dict[str, Head]:
    """The six heads of one stack, keyed by the model's output names; kwargs (winograd, kernel,
    dtype) go to each Head."""
    out_dims = {"heatmap": num_classes, "embedding": 1, "offset": 2}
    heads = {}
    for key, official in HEAD_NAMES.items():
        kind = key.split("_", 1)[1]
        bias = HEAT_BIAS if kind == "heatmap" else 0.0
        heads[key] = Head(mid_dim, out_dims[kind], bias=bias, name=f"{official}.{stack}", **kwargs)
    return heads
