"""Keras layers of the CornerNet family: ConvBN, Residual, Fire (CornerNet-Squeeze), CornerPool
and the corner-pool module.

Every sub-layer carries the name of the official PyTorch module it mirrors, so a variable's
Keras path is the official state_dict key with "/" for "." (see `cornernet_tf.convert`).
All tensors are NHWC; BatchNorm uses PyTorch's epsilon 1e-5 and momentum 0.1 (Keras 0.9).

The variants of a layer are constructor arguments, passed down to its sub-layers and returned
by `get_config`:
    with_bn=False   the BatchNorm-folded form used for inference (`cornernet_tf.optimize`): each
                    convolution that a BatchNorm followed has a bias instead, and no BatchNorm;
    winograd=True   the 3x3, stride-1 convolutions are `WinogradConv2D` (Winograd F(4x4, 3x3),
                    float32 inference on the CPU; folded form only);
    dtype           Keras's dtype policy ("float32", "mixed_bfloat16"), given to every sub-layer.
All layers are registered Keras serializables (package "cornernet_tf").
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cornernet_tf.ops import DIRECTIONS, corner_pool
from cornernet_tf.ops.winograd import TILES, winograd_conv

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
serializable = keras.saving.register_keras_serializable(package="cornernet_tf")


@serializable
class BatchNorm(keras.layers.BatchNormalization):
    """Keras BatchNormalization whose inference path is TF's fused kernel.

    Same variables, training behaviour and results (to float32 rounding); in inference TF's graph
    optimiser can then fold it into the preceding convolution (_FusedConv2D), which the
    elementwise form of keras.ops.batch_normalization prevents. FusedBatchNormV3 is reached
    through tf.raw_ops: TensorFlow 2 has no other public name for it.
    """

    def call(self, inputs, training=None, mask=None):
        if (training and self.trainable) or inputs.dtype != tf.float32 or self.axis not in (-1, 3):
            return super().call(inputs, training=training, mask=mask)
        outputs = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=tf.convert_to_tensor(self.gamma),
            offset=tf.convert_to_tensor(self.beta),
            mean=tf.convert_to_tensor(self.moving_mean),
            variance=tf.convert_to_tensor(self.moving_variance),
            epsilon=self.epsilon,
            is_training=False,
        )
        return outputs[0]


def batch_norm(name: str, with_bn: bool = True, dtype=None) -> BatchNorm | None:
    """The official BatchNorm2d, or None in the folded form (with_bn=False)."""
    if not with_bn:
        return None
    return BatchNorm(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, dtype=dtype, name=name)


def normalize(bn: BatchNorm | None, x, training):
    """bn(x), or x when the BatchNorm was folded away (bn is None)."""
    return x if bn is None else bn(x, training=training)


@serializable
class SymmetricConv2D(keras.layers.Conv2D):
    """Conv2D with the official symmetric zero padding (k - 1) // 2 on every side.

    Keras "same" pads (0, 1) for stride 2 on even inputs, unlike PyTorch; this pads explicitly and
    runs "valid". For stride 1 and odd k, "same" is already symmetric and is used as it is.
    """

    def __init__(self, filters, kernel_size, strides=1, **kwargs):
        kwargs.pop("padding", None)
        super().__init__(filters, kernel_size, strides=strides, padding="valid", **kwargs)
        self.pad = (self.kernel_size[0] - 1) // 2

    def call(self, x):
        if self.pad:
            p = self.pad
            x = keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        return super().call(x)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        grow = 2 * self.pad
        return super().compute_output_shape(
            (b, None if h is None else h + grow, None if w is None else w + grow, input_shape[-1])
        )


@serializable
class WinogradConv2D(keras.layers.Layer):
    """A 3x3, stride-1, zero-padded Conv2D with bias, computed by Winograd
    (`cornernet_tf.ops.winograd`: F(4x4, 3x3) when it computes in float32, F(2x2, 3x3) in
    bfloat16) when the map it is built on has sides of at least MIN_SIDES[tile]; on smaller
    maps, where reading the larger kernel costs more than it saves, a direct convolution
    (measured: F(4x4, 3x3) gains from 16 x 16 on, F(2x2, 3x3) in bfloat16 already on 4 x 4
    maps, docs/performance.md). For inference only (no gradient).

    Variables, in the compute dtype: `winograd_kernel` ((m + 2)^2, C, filters) for tile m, or
    `kernel` (3, 3, C, filters), and `bias`;
    `cornernet_tf.optimize.variant` fills them from a Conv2D's kernel and bias. call() can add a
    residual's skip and apply the ReLU in the same op.
    """

    MIN_SIDES = {4: 16, 2: 4}  # per tile

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        tile = TILES[self.compute_dtype]
        sides = [side for side in input_shape[1:3] if side is not None]
        self.winograd = min(sides, default=self.MIN_SIDES[tile]) >= self.MIN_SIDES[tile]
        channels = input_shape[-1]
        if self.winograd:
            shape, name = ((tile + 2) ** 2, channels, self.filters), "winograd_kernel"
        else:
            shape, name = (3, 3, channels, self.filters), "kernel"
        # in the dtype it computes in, so that no call casts them (in bfloat16 the kernels
        # of Hourglass-104 are 0.6 GB; their cast took 7% of its time)
        weight = {"initializer": "zeros", "trainable": False, "dtype": self.compute_dtype}
        self.kernel = self.add_weight(shape=shape, name=name, **weight)
        self.bias = self.add_weight(shape=(self.filters,), name="bias", **weight)

    def call(self, x, skip=None, relu: bool = False):
        if self.winograd:
            return winograd_conv(x, self.kernel, self.bias, skip=skip, relu=relu)
        y = tf.nn.bias_add(tf.nn.conv2d(x, self.kernel, 1, "SAME"), self.bias)
        if skip is not None:
            y = y + skip
        return tf.nn.relu(y) if relu else y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def conv_bn(conv, bn, x, training, skip=None, relu: bool = False):
    """bn(conv(x)) (+ skip), then ReLU if relu: one op when conv is a WinogradConv2D (bn folded)."""
    if isinstance(conv, WinogradConv2D) and bn is None:
        return conv(x, skip=skip, relu=relu)
    y = normalize(bn, conv(x), training)
    if skip is not None:
        y = y + skip
    return keras.ops.relu(y) if relu else y


def conv2d(
    filters: int,
    kernel: int,
    *,
    stride: int = 1,
    use_bias: bool,
    name: str,
    winograd: bool = False,
    dtype=None,
):
    """A k x k convolution padded like the official code: symmetric (k - 1) // 2; a
    WinogradConv2D for 3x3, stride 1 when `winograd`."""
    if winograd and stride == 1 and kernel == 3:
        return WinogradConv2D(filters, dtype=dtype, name=name)
    if stride == 1:
        return keras.layers.Conv2D(
            filters, kernel, padding="same", use_bias=use_bias, dtype=dtype, name=name
        )
    return SymmetricConv2D(
        filters, kernel, strides=stride, use_bias=use_bias, dtype=dtype, name=name
    )


class Block(keras.layers.Layer):
    """A layer with the two structural variants, `with_bn` and `winograd`, that it passes to its
    sub-layers together with its own dtype policy (`self.variants`)."""

    def __init__(self, with_bn: bool = True, winograd: bool = False, **kwargs):
        super().__init__(**kwargs)
        if winograd and with_bn:
            raise ValueError(f"{self.name}: winograd needs the folded form (with_bn=False)")
        self.with_bn, self.winograd = with_bn, winograd

    @property
    def variants(self) -> dict:
        """Keyword arguments that give a sub-layer this layer's variants and dtype policy."""
        return {"with_bn": self.with_bn, "winograd": self.winograd, "dtype": self.dtype_policy}

    def conv2d(self, filters: int, kernel: int, name: str, stride: int = 1):
        """A convolution followed by a BatchNorm (biased when that BatchNorm is folded)."""
        return conv2d(
            filters,
            kernel,
            stride=stride,
            use_bias=not self.with_bn,
            name=name,
            winograd=self.winograd,
            dtype=self.dtype_policy,
        )

    def batch_norm(self, name: str) -> BatchNorm | None:
        return batch_norm(name, self.with_bn, self.dtype_policy)

    def get_config(self):
        return {**super().get_config(), "with_bn": self.with_bn, "winograd": self.winograd}


@serializable
class ConvBN(Block):
    """The official `convolution`: conv k x k (bias only without BN) -> BN -> ReLU."""

    def __init__(self, filters: int, kernel: int = 3, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel, self.stride = filters, kernel, stride
        self.conv = self.conv2d(filters, kernel, "conv", stride=stride)
        self.bn = self.batch_norm("bn")

    def call(self, x, training=None):
        return conv_bn(self.conv, self.bn, x, training, relu=True)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel": self.kernel,
            "stride": self.stride,
        }


@serializable
class Residual(Block):
    """The official `residual`: relu(bn2(conv2(relu(bn1(conv1(x))))) + skip(x)), both convs 3x3.

    The skip is a 1x1 conv + BN when the stride or the width changes, else the identity.
    """

    def __init__(self, filters: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.stride = filters, stride
        self.conv1 = self.conv2d(filters, 3, "conv1", stride=stride)
        self.bn1 = self.batch_norm("bn1")
        self.conv2 = self.conv2d(filters, 3, "conv2")
        self.bn2 = self.batch_norm("bn2")
        self.skip = None

    def build(self, input_shape):
        if self.stride != 1 or input_shape[-1] != self.filters:
            self.skip = [
                keras.layers.Conv2D(
                    self.filters,
                    1,
                    strides=self.stride,
                    use_bias=not self.with_bn,
                    dtype=self.dtype_policy,
                    name="skip.0",
                ),
                self.batch_norm("skip.1"),
            ]

    def call(self, x, training=None):
        y = conv_bn(self.conv1, self.bn1, x, training, relu=True)
        if self.skip is not None:
            x = normalize(self.skip[1], self.skip[0](x), training)
        return conv_bn(self.conv2, self.bn2, y, training, skip=x, relu=True)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


@serializable
class Fire(Block):
    """The official CornerNet-Squeeze `fire_module` (squeeze ratio 2):
    relu(bn2(concat(conv_1x1(s), conv_3x3(s))) (+ x)) with s = bn1(conv1(x)), no ReLU after bn1.

    conv1 squeezes to filters / 2 channels (1x1); conv_1x1 (1x1) and conv_3x3 (depthwise 3x3,
    padded 1 on every side) expand to filters / 2 each, both with the stride. The identity skip
    exists only for stride 1 and an unchanged width.
    """

    def __init__(self, filters: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        if filters % 2:
            raise ValueError(f"{self.name}: a fire module needs an even width, got {filters}")
        self.filters, self.stride = filters, stride
        half, bias = filters // 2, not self.with_bn
        self.conv1 = self.conv2d(half, 1, "conv1")
        self.bn1 = self.batch_norm("bn1")
        self.conv_1x1 = keras.layers.Conv2D(
            half, 1, strides=stride, use_bias=bias, dtype=self.dtype_policy, name="conv_1x1"
        )
        # stride 2: explicit symmetric padding (Keras "same" would pad (0, 1) on even inputs)
        self.conv_3x3 = keras.layers.DepthwiseConv2D(
            3,
            strides=stride,
            padding="same" if stride == 1 else "valid",
            use_bias=bias,
            dtype=self.dtype_policy,
            name="conv_3x3",
        )
        self.bn2 = self.batch_norm("bn2")
        self.skip = False

    def build(self, input_shape):
        self.skip = self.stride == 1 and input_shape[-1] == self.filters

    def call(self, x, training=None):
        squeezed = normalize(self.bn1, self.conv1(x), training)
        padded = squeezed
        if self.stride != 1:
            padded = keras.ops.pad(squeezed, [[0, 0], [1, 1], [1, 1], [0, 0]])
        expanded = keras.ops.concatenate([self.conv_1x1(squeezed), self.conv_3x3(padded)], -1)
        y = normalize(self.bn2, expanded, training)
        return keras.ops.relu(y + x if self.skip else y)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


@serializable
class ConvBNLinear(Block):
    """1x1 conv (no bias) -> BN, no ReLU: the official `inters_` / `cnvs_` (Sequential "0", "1")."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = self.conv2d(filters, 1, "0")
        self.bn = self.batch_norm("1")

    def call(self, x, training=None):
        return normalize(self.bn, self.conv(x), training)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@serializable
class CornerPool(keras.layers.Layer):
    """`cornernet_tf.ops.corner_pool` as a layer (direction: top, bottom, left or right)."""

    def __init__(self, direction: str, implementation: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if direction not in DIRECTIONS:
            raise ValueError(
                f"CornerPool: direction must be one of {list(DIRECTIONS)}, got {direction!r}"
            )
        self.direction, self.implementation = direction, implementation

    def call(self, x):
        return corner_pool(x, self.direction, implementation=self.implementation)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "direction": self.direction,
            "implementation": self.implementation,
        }


@serializable
class CornerModule(Block):
    """The official corner-pool module (`tl_cnvs` / `br_cnvs`).

    p = pool1(p1_conv1(x)) + pool2(p2_conv1(x))
    out = conv2(relu(p_bn1(p_conv1(p)) + bn1(conv1(x))))
    corner "tl" pools top + left, "br" pools bottom + right.
    """

    POOLS = {"tl": ("top", "left"), "br": ("bottom", "right")}

    def __init__(
        self, corner: str, dim: int, pool_dim: int = 128, implementation: str = "tf", **kwargs
    ):
        super().__init__(**kwargs)
        if corner not in self.POOLS:
            raise ValueError(f"CornerModule: corner must be 'tl' or 'br', got {corner!r}")
        self.corner, self.dim, self.pool_dim = corner, dim, pool_dim
        self.implementation = implementation
        first, second = self.POOLS[corner]
        variants = self.variants
        pool = {"implementation": implementation, "dtype": self.dtype_policy}
        self.p1_conv1 = ConvBN(pool_dim, 3, **variants, name="p1_conv1")
        self.p2_conv1 = ConvBN(pool_dim, 3, **variants, name="p2_conv1")
        self.pool1 = CornerPool(first, **pool, name=f"{first}_pool")
        self.pool2 = CornerPool(second, **pool, name=f"{second}_pool")
        self.p_conv1 = self.conv2d(dim, 3, "p_conv1")
        self.p_bn1 = self.batch_norm("p_bn1")
        self.conv1 = self.conv2d(dim, 1, "conv1")
        self.bn1 = self.batch_norm("bn1")
        self.conv2 = ConvBN(dim, 3, **variants, name="conv2")

    def call(self, x, training=None):
        pooled = self.pool1(self.p1_conv1(x, training=training)) + self.pool2(
            self.p2_conv1(x, training=training)
        )
        skip = normalize(self.bn1, self.conv1(x), training)
        merged = conv_bn(self.p_conv1, self.p_bn1, pooled, training, skip=skip, relu=True)
        return self.conv2(merged, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "corner": self.corner,
            "dim": self.dim,
            "pool_dim": self.pool_dim,
            "implementation": self.implementation,
        }
