"""CornerNet: stem, stacked hourglasses, corner-pool modules and heads (the official `kp`), and
the members of the family built from the same parts (CornerNet-Squeeze and CornerNet-Saccade of
CornerNet-Lite).

The architecture is the constructor's first arguments (configs/*.yaml `model:`):
    num_stacks, depth, dims, modules, stem_dim, cnv_dim, pool_dim, num_classes   as the official;
    output_stride   4: the stem is conv 7x7 stride 2 + one stride-2 Residual (Hourglass-104);
                    8: one more stride-2 Residual (CornerNet-Squeeze: 511 -> 64);
    block           "residual" (Hourglass-104) or "fire" (CornerNet-Squeeze's fire module) in the
                    hourglasses;
    upsample        "nearest" or "transposed" (CornerNet-Squeeze's 4x4 stride-2 transposed conv);
    head_kernel     3, or 1 (CornerNet-Squeeze): the first convolution of each head;
    attention       True (CornerNet-Saccade): an attention head on every hourglass level's
                    output (official `att_modules.<stack>.<level>`: conv 3x3 + ReLU, conv 1x1
                    to one logit).

Call contract (other modules and users rely on these names):
    images: float32 NHWC, already normalised as the official code does (BGR, (x/255 - mean)/std),
            each side = output_stride * 2**depth - 1 mod output_stride * 2**depth (127 mod 128 for
            Hourglass-104 and CornerNet-Squeeze).
    model(images, training=False) -> dict of the FINAL stack, maps of side (H + 1) / output_stride:
        tl_heatmap, br_heatmap (B,h,w,num_classes) logits before the sigmoid;
        tl_embedding, br_embedding (B,h,w,1);
        tl_offset, br_offset (B,h,w,2) with channel 0 = x, 1 = y;
        with attention, also attention_0 ... attention_{depth-1} (B,h_i,w_i,1): logits before the
        sigmoid, innermost level first: input stride output_stride * 2**(depth-1-i), so for
        CornerNet-Saccade (255 in) attention_0 16x16 (stride 16), attention_1 32x32 (stride 8),
        attention_2 64x64 (stride 4).
    model(images, training=..., all_stacks=True) -> the same keys with a leading stack axis
        (S,B,h,w,C), final stack last.
Only the final stack's corner modules and heads run when all_stacks is False, as in the official
test path; attention=False leaves out the attention maps and their heads (CornerNet-Saccade's
crops after the glance need detections only).

Variants are constructor arguments, kept by `get_config` (so `model.save("m.keras")` and
`keras.saving.load_model` restore them); nothing is read from a global setting:
    corner_pool   "tf" (default), "scan", "custom" or "auto" (`cornernet_tf.ops.corner_pool`);
    precision     "float32", or "bfloat16": Keras's mixed_bfloat16 policy, float32 variables and
                  bfloat16 compute; the heads' last convolution computes in float32, so the
                  outputs are float32 in both;
    with_bn       False: the BatchNorm-folded form (`cornernet_tf.optimize`), inference only;
    winograd      3x3 stride-1 convolutions by Winograd (folded form only): F(4x4, 3x3) in
                  float32, F(2x2, 3x3) in bfloat16;
    pull_weight, push_weight, offset_weight   the loss weights of the train step;
    freeze_backbone_steps   the first train steps in which only the corner modules and heads
                  learn (fine-tuning).
`cornernet_tf.optimize.variant(model, ...)` makes another variant with the same weights.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import h5py
import keras
import tensorflow as tf

from cornernet_tf.backbone import Hourglass
from cornernet_tf.config import FAMILY, Config
from cornernet_tf.files import special_file
from cornernet_tf.geometry import input_stride, output_size
from cornernet_tf.heads import HEAT_BIAS, Head, make_heads
from cornernet_tf.layers import ConvBN, ConvBNLinear, CornerModule, Residual, serializable
from cornernet_tf.losses import cornernet_loss
from cornernet_tf.ops import IMPLEMENTATIONS
from cornernet_tf.targets import draw_valid_maps, with_heatmaps

LOSS_TERMS = ("loss", "focal", "pull", "push", "offset")  # + "attention" with attention heads
# compute precision -> Keras dtype policy
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@serializable
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
        output_stride: int = 4,
        block: str = "residual",
        upsample: str = "nearest",
        head_kernel: int = 3,
        attention: bool = False,
        corner_pool: str = "tf",
        precision: str = "float32",
        with_bn: bool = True,
        winograd: bool = False,
        pull_weight: float = 0.1,
        push_weight: float = 0.1,
        offset_weight: float = 1.0,
        freeze_backbone_steps: int = 0,
        name: str = "cornernet",
        **kwargs,
    ):
        _check_variant(corner_pool, precision, with_bn, winograd)
        _check_architecture(
            output_stride=output_stride,
            block=block,
            upsample=upsample,
            head_kernel=head_kernel,
            attention=attention,
        )
        kwargs.pop("dtype", None)  # the precision decides
        super().__init__(name=name, dtype=PRECISIONS[precision], **kwargs)
        self.num_stacks, self.depth = num_stacks, depth
        self.dims, self.modules = tuple(dims), tuple(modules)
        self.stem_dim, self.cnv_dim, self.pool_dim = stem_dim, cnv_dim, pool_dim
        self.num_classes, self.corner_pool = num_classes, corner_pool
        self.output_stride, self.block, self.upsample = output_stride, block, upsample
        self.head_kernel, self.attention = head_kernel, attention
        self.precision, self.with_bn, self.winograd = precision, with_bn, winograd
        self.loss_weights = {
            "pull_weight": pull_weight,
            "push_weight": push_weight,
            "offset_weight": offset_weight,
        }
        self.freeze_backbone_steps = freeze_backbone_steps
        curr = dims[0]
        stacks = range(num_stacks)
        bn = {"with_bn": with_bn, "winograd": winograd, "dtype": self.dtype_policy}
        pools = {"implementation": corner_pool, **bn}
        steps = output_stride.bit_length() - 2  # stride-2 residuals after the 7x7 convolution
        self.pre = [ConvBN(stem_dim, 7, stride=2, **bn, name="pre.0")] + [
            Residual(curr, stride=2, **bn, name=f"pre.{i}") for i in range(1, steps + 1)
        ]
        hourglass = {"block": block, "upsample": upsample, **bn}
        self.kps = [Hourglass(depth, dims, modules, **hourglass, name=f"kps.{s}") for s in stacks]
        self.cnvs = [ConvBN(cnv_dim, 3, **bn, name=f"cnvs.{s}") for s in stacks]
        self.tl_cnvs = [
            CornerModule("tl", cnv_dim, pool_dim, **pools, name=f"tl_cnvs.{s}") for s in stacks
        ]
        self.br_cnvs = [
            CornerModule("br", cnv_dim, pool_dim, **pools, name=f"br_cnvs.{s}") for s in stacks
        ]
        heads = {"winograd": winograd, "kernel": head_kernel, "dtype": self.dtype_policy}
        self.heads = [make_heads(s, curr, num_classes, **heads) for s in stacks]
        levels = range(depth if attention else 0)
        self.att_modules = [
            [Head(curr, 1, bias=HEAT_BIAS, **heads, name=f"att_modules.{s}.{i}") for i in levels]
            for s in stacks
        ]
        between = range(num_stacks - 1)
        self.inters_ = [ConvBNLinear(curr, **bn, name=f"inters_.{s}") for s in between]
        self.cnvs_ = [ConvBNLinear(curr, **bn, name=f"cnvs_.{s}") for s in between]
        self.inters = [Residual(curr, **bn, name=f"inters.{s}") for s in between]
        self.loss_names = LOSS_TERMS + (("attention",) if attention else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}

    @property
    def stride(self) -> int:
        """Input sides must be stride - 1 modulo stride."""
        return input_stride(self.depth, self.output_stride)

    @property
    def build_side(self) -> int:
        """The input side `build` creates the variables at: the smallest valid one, or with
        Winograd, whose layers choose their algorithm by the size of the map they see, the
        smallest valid side from 511 on (the official input of Hourglass-104 and
        CornerNet-Squeeze, whose smallest maps are then 4 x 4; CornerNet-Saccade's 8 x 8 at
        its 255 crops take Winograd too, which is faster on its batches of crops: 0.25 against
        0.32 s a crop, folded float32, 2-core Zen 5)."""
        if not self.winograd:
            return self.stride - 1
        return self.stride * -(-512 // self.stride) - 1

    def build(self, input_shape=None):
        """Creates every variable (all stacks) with one forward pass of zeros at `build_side`;
        the input shape does not matter, the model takes any valid side."""
        side = self.build_side
        self.call(keras.ops.zeros((1, side, side, 3)), training=False, all_stacks=True)

    def get_build_config(self):
        return {"input_shape": [None, None, None, 3]}

    def build_from_config(self, config):
        self.build()

    def call(self, images, training=None, all_stacks=False, attention=True):
        self._check_input(images.shape)
        x = images
        for layer in self.pre:
            x = layer(x, training=training)
        outputs = []
        for s in range(self.num_stacks):
            levels = self.kps[s](x, training=training, levels=True)
            cnv = self.cnvs[s](levels[-1], training=training)
            if all_stacks or s == self.num_stacks - 1:
                outputs.append(self._heads(s, cnv, training))
                for i, head in enumerate(self.att_modules[s] if attention else ()):
                    outputs[-1][f"attention_{i}"] = head(levels[i])
            if s < self.num_stacks - 1:
                merged = self.inters_[s](x, training=training) + self.cnvs_[s](
                    cnv, training=training
                )
                x = self.inters[s](keras.ops.relu(merged), training=training)
        if all_stacks:
            return {key: keras.ops.stack([o[key] for o in outputs]) for key in outputs[0]}
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
        """The loss terms (float32) of a batch: loss (= total), focal, pull, push, offset, and
        with attention heads attention (CornerNet_Saccade_Loss).

        targets: sparse (`encode_corners`, as make_dataset gives them; the heatmaps are drawn
        here, on the device) or with their heatmaps already (`encode_targets`); for
        CornerNet-Saccade also attention_0..2 and the ignored_* boxes of the saccade sampling.
        """
        predictions = self(images, training=training, all_stacks=True)
        predictions = {key: keras.ops.cast(value, "float32") for key, value in predictions.items()}
        terms = cornernet_loss(
            predictions, self.with_heatmaps(images, targets), **self.loss_weights
        )
        return {"loss": terms["total"], **{k: terms[k] for k in self.loss_names[1:]}}

    def with_heatmaps(self, images, targets) -> dict:
        """Targets with their heatmaps, drawn (`draw_heatmaps`) if they are sparse; with the
        saccade sampling's ignored_* boxes also the tl_valid / br_valid focal-loss masks."""
        shape = images.shape[1:3]
        if None in shape:
            shape = tf.unstack(tf.shape(images)[1:3])
        size = output_size(shape, self.output_stride)
        targets = with_heatmaps(targets, size, self.num_classes)
        if "ignored_mask" in targets and "tl_valid" not in targets:
            ignored = {k[len("ignored_") :]: v for k, v in targets.items() if k[:8] == "ignored_"}
            targets = {**targets, **draw_valid_maps(ignored, size, self.num_classes)}
        return targets

    def train_step(self, data):
        images, targets = data
        terms, gradients = self._gradients(images, self.with_heatmaps(images, targets))
        if self.freeze_backbone_steps:
            gradients = self._freeze_backbone(gradients)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        return self._track(terms)

    def _loss_and_gradients(self, images, targets):
        with tf.GradientTape() as tape:
            terms = self.compute_losses(images, targets, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(terms["loss"] / replicas)
        return terms, tape.gradient(scaled, self.trainable_variables)

    def _freeze_backbone(self, gradients):
        """Zero gradients for the backbone (stem, hourglasses and what joins them) during the
        first freeze_backbone_steps steps: Adam then leaves those weights exactly as they are,
        and only the corner modules and heads learn. BatchNorm statistics still update."""
        learning = self.optimizer.iterations >= self.freeze_backbone_steps
        return [
            g * keras.ops.cast(learning, g.dtype) if not is_head(v.path) else g
            for g, v in zip(gradients, self.trainable_variables, strict=True)
        ]

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
        # Keras has no public hook for this step, hence the override of its private method.
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
            "output_stride": self.output_stride,
            "block": self.block,
            "upsample": self.upsample,
            "head_kernel": self.head_kernel,
            "attention": self.attention,
            "corner_pool": self.corner_pool,
            "precision": self.precision,
            "with_bn": self.with_bn,
            "winograd": self.winograd,
            **self.loss_weights,
            "freeze_backbone_steps": self.freeze_backbone_steps,
            "name": self.name,
        }


def is_head(path: str) -> bool:
    """Does the variable at `path` belong to a corner module or a head (tl_*, br_*, att_*),
    rather than to the backbone?"""
    return path.split("/")[1].startswith(("tl_", "br_", "att_"))


def _check_variant(corner_pool: str, precision: str, with_bn: bool, winograd: bool) -> None:
    if corner_pool not in IMPLEMENTATIONS:
        raise ValueError(
            f"CornerNet: corner_pool must be one of {list(IMPLEMENTATIONS)}, got {corner_pool!r}"
        )
    if precision not in PRECISIONS:
        raise ValueError(
            f"CornerNet: precision must be one of {list(PRECISIONS)}, got {precision!r}"
        )
    if winograd and with_bn:
        raise ValueError(
            "CornerNet: winograd needs the folded form (with_bn=False), got with_bn=True"
        )


def _check_architecture(**arguments) -> None:
    for key, value in arguments.items():
        if value not in FAMILY[key]:
            raise ValueError(f"CornerNet: {key} must be one of {list(FAMILY[key])}, got {value!r}")


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


def build_model(config: Config, precision: str = "float32") -> CornerNet:
    """The CornerNet of `config.model`, with the loss weights of `config.train`, computing in
    `precision`, its variables created (one small forward pass)."""
    m, t = config.model, config.train
    model = CornerNet(
        num_stacks=m.num_stacks,
        depth=m.depth,
        dims=m.dims,
        modules=m.modules,
        stem_dim=m.stem_dim,
        cnv_dim=m.cnv_dim,
        pool_dim=m.pool_dim,
        num_classes=m.num_classes,
        output_stride=m.output_stride,
        block=m.block,
        upsample=m.upsample,
        head_kernel=m.head_kernel,
        attention=m.attention,
        corner_pool=m.corner_pool,
        precision=precision,
        pull_weight=t.pull_weight,
        push_weight=t.push_weight,
        offset_weight=t.offset_weight,
        freeze_backbone_steps=t.freeze_backbone,
    )
    model.build()
    return model


# the constructor arguments that make the architecture (the rest are variants and loss weights)
ARCHITECTURE = (
    "num_stacks",
    "depth",
    "dims",
    "modules",
    "stem_dim",
    "cnv_dim",
    "pool_dim",
    "output_stride",
    "block",
    "upsample",
    "head_kernel",
    "attention",
)
# the weights a training run writes, in the order a run folder given as weights is read
RUN_WEIGHTS = ("best.weights.h5", "final.weights.h5")


class WeightsError(ValueError):
    """Weights that cannot be read or do not fit the model; the message names the file."""


# what reading a damaged .keras or .weights.h5 raises (h5py, zipfile, Keras's deserialisation)
DAMAGED = (OSError, RuntimeError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


def damaged(path, error: Exception) -> WeightsError:
    """The WeightsError for a weights file that passed the format check but does not load."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return WeightsError(
        f"{path}: cannot load these weights (damaged, or not saved by Keras): {reason}"
    )


def read_keras(path) -> keras.Model:
    """The model saved whole in the .keras file `path`, not compiled; WeightsError naming the
    file when it does not load."""
    try:
        return keras.saving.load_model(str(path), compile=False)
    except (ValueError, *DAMAGED) as error:
        raise damaged(path, error) from None


def resolve_weights(path) -> str:
    """`path`, or for a training run's folder its best weights, else its final weights.
    Raises WeightsError naming the folder when it holds neither."""
    folder = Path(path)
    if not folder.is_dir():
        return str(path)
    for name in RUN_WEIGHTS:
        if (folder / name).is_file():
            return str(folder / name)
    raise WeightsError(
        f"{folder}: a folder without {' or '.join(RUN_WEIGHTS)}: a training run writes "
        "best.weights.h5 when it first validates and final.weights.h5 when it ends (its "
        "checkpoints/ are for --resume and --init-weights)"
    )


def load_trained(config: Config, weights) -> CornerNet:
    """A trained CornerNet from `weights`: a `.weights.h5` file (loaded into `build_model(config)`)
    or a whole model saved as `.keras`, whose architecture and class count must then be those of
    `config.model`, or a training run's folder (`resolve_weights`). Raises WeightsError naming
    the file when it is missing or does not fit."""
    path = resolve_weights(weights)
    if not Path(path).is_file():
        kind = special_file(path)
        raise WeightsError(
            f"{path}: not a weights file but {kind}" if kind else f"{path}: no such file"
        )
    check_weights_file(path)
    if path.endswith(".keras"):
        model = read_keras(path)
        if not isinstance(model, CornerNet):
            raise WeightsError(f"{path}: holds a {type(model).__name__}, not a CornerNet")
        saved = model.get_config()
        for key in (*ARCHITECTURE, "num_classes"):
            expected = getattr(config.model, key)
            expected = list(expected) if isinstance(expected, tuple) else expected
            if saved[key] != expected:
                raise WeightsError(
                    f"{path}: model.{key} is {saved[key]}, but {config.source} says {expected}"
                )
        return model
    if not path.endswith(".weights.h5"):
        raise WeightsError(f"{path}: weights must be a .weights.h5 or a .keras file")
    model = build_model(config)
    try:
        model.load_weights(path)
    except ValueError as error:
        raise WeightsError(weights_mismatch(path, model, config, error)) from None
    except DAMAGED as error:
        raise damaged(path, error) from None
    return model


def check_weights_file(path: str) -> None:
    """WeightsError when a .keras file is not a zip archive or a .weights.h5 not an HDF5 file
    (truncated, damaged or of another kind), before Keras reads it."""
    readable = {".keras": zipfile.is_zipfile, ".weights.h5": h5py.is_hdf5}
    for suffix, is_kind in readable.items():
        if str(path).endswith(suffix) and not is_kind(path):
            kind = "a zip archive" if suffix == ".keras" else "an HDF5 file"
            raise WeightsError(
                f"{path}: not a {suffix} file (it is not {kind}): truncated, damaged or of "
                "another kind"
            )


def weights_mismatch(path: str, model, config: Config, error: ValueError) -> str:
    """A readable sentence for Keras's error on weights that do not fit the model: the counts
    of arrays in the file and in the model, and Keras's first specific complaint."""
    try:
        with h5py.File(path, "r") as file:
            arrays = []
            file.visititems(
                lambda name, item: arrays.append(name) if hasattr(item, "shape") else None
            )
        held = f"the file holds {len(arrays)} weight arrays, "
    except OSError:
        held = ""
    paragraphs = [p.strip() for p in str(error).split("\n\n") if p.strip()]
    detail = paragraphs[1] if str(error).startswith("A total of") and len(paragraphs) > 1 else ""
    detail = detail or (paragraphs[0].splitlines()[0] if paragraphs else type(error).__name__)
    return (
        f"{path}: these weights are not those of the model of {config.source} ({held}the model "
        f"has {len(model.weights)}; e.g. {detail[:300]}): give the --config the weights were "
        "trained with, or the training run's folder as --weights"
    )
