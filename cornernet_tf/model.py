"""CornerNet: stem, stacked hourglasses, corner-pool modules and heads (the official `kp`).

Call contract (other modules and users rely on these names):
    images: float32 NHWC, already normalised as the official code does (BGR, (x/255 - mean)/std),
            each side = 4 * 2**depth - 1 mod 4 * 2**depth (127 mod 128 for Hourglass-104).
    model(images, training=False) -> dict of the FINAL stack, maps of side (H + 1) / 4:
        tl_heatmap, br_heatmap (B,h,w,num_classes) logits before the sigmoid;
        tl_embedding, br_embedding (B,h,w,1);
        tl_offset, br_offset (B,h,w,2) with channel 0 = x, 1 = y.
    model(images, training=..., all_stacks=True) -> the same keys with a leading stack axis
        (S,B,h,w,C), final stack last.
Only the final stack's corner modules and heads run when all_stacks is False, as in the official
test path. The outputs are float32 whatever the dtype policy the model was built under (the
heads' last convolution computes in float32). with_bn=False builds the BatchNorm-folded form
(`cornernet_tf.optimize.fold_batchnorm`), for inference only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf

from cornernet_tf.backbone import Hourglass
from cornernet_tf.config import Config
from cornernet_tf.heads import HEAD_NAMES, make_heads
from cornernet_tf.layers import ConvBN, ConvBNLinear, CornerModule, Residual
from cornernet_tf.losses import cornernet_loss
from cornernet_tf.targets import output_size, with_heatmaps

LOSS_TERMS = ("loss", "focal", "pull", "push", "offset")


class CornerNet(keras.Model):
    def __init__(
        self,
        num_stacks: int = 2,
        depth: int = 5,
        dims: Sequence[int] = (256, 256, 384, 384, 384, 512),
        modules: Sequence[int] = (2, 2, 2, 2, 2, 4),
        stem_dim: int = 128,
        cnv_dim: int = 256,
        pool_dim: int = 128,
        num_classes: int = 80,
        corner_pool: str | None = None,
        with_bn: bool = True,
        name: str = "cornernet",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.num_stacks, self.depth = num_stacks, depth
        self.dims, self.modules = tuple(dims), tuple(modules)
        self.stem_dim, self.cnv_dim, self.pool_dim = stem_dim, cnv_dim, pool_dim
        self.num_classes, self.corner_pool = num_classes, corner_pool
        self.with_bn = with_bn
        curr = dims[0]
        stacks = range(num_stacks)
        bn = {"with_bn": with_bn}
        self.pre = [
            ConvBN(stem_dim, 7, stride=2, **bn, name="pre.0"),
            Residual(curr, stride=2, **bn, name="pre.1"),
        ]
        self.kps = [Hourglass(depth, dims, modules, **bn, name=f"kps.{s}") for s in stacks]
        self.cnvs = [ConvBN(cnv_dim, 3, **bn, name=f"cnvs.{s}") for s in stacks]
        self.tl_cnvs = [
            CornerModule("tl", cnv_dim, pool_dim, corner_pool, **bn, name=f"tl_cnvs.{s}")
            for s in stacks
        ]
        self.br_cnvs = [
            CornerModule("br", cnv_dim, pool_dim, corner_pool, **bn, name=f"br_cnvs.{s}")
            for s in stacks
        ]
        self.heads = [make_heads(s, curr, num_classes) for s in stacks]
        between = range(num_stacks - 1)
        self.inters_ = [ConvBNLinear(curr, **bn, name=f"inters_.{s}") for s in between]
        self.cnvs_ = [ConvBNLinear(curr, **bn, name=f"cnvs_.{s}") for s in between]
        self.inters = [Residual(curr, **bn, name=f"inters.{s}") for s in between]
        self.loss_weights = {"pull_weight": 0.1, "push_weight": 0.1, "offset_weight": 1.0}
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_TERMS}

    @property
    def stride(self) -> int:
        """Input sides must be stride - 1 modulo stride."""
        return 4 * 2**self.depth

    def call(self, images, training=None, all_stacks=False):
        self._check_input(images.shape)
        x = images
        for layer in self.pre:
            x = layer(x, training=training)
        outputs = []
        for s in range(self.num_stacks):
            cnv = self.cnvs[s](self.kps[s](x, training=training), training=training)
            if all_stacks or s == self.num_stacks - 1:
                outputs.append(self._heads(s, cnv, training))
            if s < self.num_stacks - 1:
                merged = self.inters_[s](x, training=training) + self.cnvs_[s](
                    cnv, training=training
                )
                x = self.inters[s](keras.ops.relu(merged), training=training)
        if all_stacks:
            return {key: keras.ops.stack([o[key] for o in outputs]) for key in HEAD_NAMES}
        return outputs[-1]

    # ------------------------------------------------------------------------------ training
    # Each replica computes the loss of its own part of the batch (num_pos, N and the offset
    # count are per replica), as each GPU does in the official DataParallel training; gradients
    # are summed over replicas, so dividing by the replica count gives the mean of the
    # per-replica losses, the official `loss.mean()` over GPUs. The logged terms are Keras
    # metrics, which are aggregated over replicas: global values, not one replica's.

    def compile(self, optimizer="rmsprop", *args, jit_compile="auto", **kwargs):
        """keras compile; with jit_compile (Keras resolves "auto": XLA where a GPU is), XLA
        compiles the network, loss and gradients of the train step, not the whole step: drawing
        the heatmaps has data-dependent shapes, which XLA cannot take."""
        super().compile(optimizer, *args, jit_compile=jit_compile, **kwargs)
        self.xla_gradients = bool(self.jit_compile)
        self.jit_compile = False
        self._gradients = self._loss_and_gradients
        if self.xla_gradients:
            self._gradients = tf.function(self._loss_and_gradients, jit_compile=True)

    def compute_losses(self, images, targets, training: bool) -> dict:
        """The loss terms (float32) of a batch: loss (= total), focal, pull, push, offset.

        targets: sparse (`encode_corners`, as make_dataset gives them; the heatmaps are drawn
        here, on the device) or with their heatmaps already (`encode_targets`).
        """
        predictions = self(images, training=training, all_stacks=True)
        predictions = {key: keras.ops.cast(value, "float32") for key, value in predictions.items()}
        terms = cornernet_loss(
            predictions, self.with_heatmaps(images, targets), **self.loss_weights
        )
        return {"loss": terms["total"], **{k: terms[k] for k in LOSS_TERMS[1:]}}

    def with_heatmaps(self, images, targets) -> dict:
        """Targets with their heatmaps, drawn (`draw_heatmaps`) if they are sparse."""
        shape = images.shape[1:3]
        if None in shape:
            shape = tf.unstack(tf.shape(images)[1:3])
        return with_heatmaps(targets, output_size(shape), self.num_classes)

    def train_step(self, data):
        images, targets = data
        terms, gradients = self._gradients(images, self.with_heatmaps(images, targets))
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        return self._track(terms)

    def _loss_and_gradients(self, images, targets):
        with tf.GradientTape() as tape:
            terms = self.compute_losses(images, targets, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(terms["loss"] / replicas)
        return terms, tape.gradient(scaled, self.trainable_variables)

    def test_step(self, data):
        images, targets = data
        return self._track(self.compute_losses(images, targets, training=False))

    def _track(self, terms: dict) -> dict:
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces multi-worker outputs with a mean over axis 0, which a scalar lacks.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras averages a first batch over the replicas to build the model symbolically; with
        # MultiWorkerMirroredStrategy that reduction fails on eager per-replica values. The model
        # and its optimizer are built before fit (build_model, train), so there is nothing to do.
        if self.built and (self.optimizer is None or self.optimizer.built):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _heads(self, s: int, cnv, training):
        corners = {
            "tl": self.tl_cnvs[s](cnv, training=training),
            "br": self.br_cnvs[s](cnv, training=training),
        }
        return {key: head(corners[key[:2]]) for key, head in self.heads[s].items()}

    def _check_input(self, shape) -> None:
        if len(shape) != 4 or (shape[-1] is not None and shape[-1] != 3):
            raise ValueError(
                f"CornerNet: expected images of shape (B, H, W, 3), got {tuple(shape)}"
            )
        for axis, side in (("height", shape[1]), ("width", shape[2])):
            if side is not None and (side + 1) % self.stride:
                raise ValueError(
                    f"CornerNet: input {axis} {side} is not {self.stride - 1} mod {self.stride}; "
                    f"valid sides are {self.stride - 1}, {2 * self.stride - 1}, "
                    f"{4 * self.stride - 1}, ... (pad the image, as the official test does)"
                )

    def get_config(self):
        return {
            "num_stacks": self.num_stacks,
            "depth": self.depth,
            "dims": list(self.dims),
            "modules": list(self.modules),
            "stem_dim": self.stem_dim,
            "cnv_dim": self.cnv_dim,
            "pool_dim": self.pool_dim,
            "num_classes": self.num_classes,
            "corner_pool": self.corner_pool,
            "with_bn": self.with_bn,
            "name": self.name,
        }


def parameter_table(model: CornerNet) -> list[tuple[str, int, int]]:
    """(part, trainable parameters, BN moving statistics) per top-level official module, in order.

    Parts are the official names: pre, kps.0, cnvs.0, tl_cnvs.0, tl_heats.0, ..., inters.0.
    """
    table: dict[str, list[int]] = {}
    for variable in model.weights:
        part = variable.path.split("/")[1]
        if part.startswith("pre."):
            part = "pre"
        row = table.setdefault(part, [0, 0])
        row[0 if variable.trainable else 1] += math.prod(variable.shape)
    return [(part, trainable, moving) for part, (trainable, moving) in table.items()]


def build_model(config: Config) -> CornerNet:
    """Builds the CornerNet of `config.model` and creates its variables (one small forward pass)."""
    m = config.model
    model = CornerNet(
        num_stacks=m.num_stacks,
        depth=m.depth,
        dims=m.dims,
        modules=m.modules,
        stem_dim=m.stem_dim,
        cnv_dim=m.cnv_dim,
        pool_dim=m.pool_dim,
        num_classes=m.num_classes,
        corner_pool=m.corner_pool,
    )
    t = config.train
    model.loss_weights = {
        "pull_weight": t.pull_weight,
        "push_weight": t.push_weight,
        "offset_weight": t.offset_weight,
    }
    side = model.stride - 1
    model(keras.ops.zeros((1, side, side, 3)), training=False, all_stacks=True)
    return model
