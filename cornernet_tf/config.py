"""Configuration: frozen dataclasses loaded from YAML, with `key=value` overrides.

No TensorFlow import here: scripts can read and check a config before the heavy imports.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cornernet_tf.files import special_file
from cornernet_tf.geometry import OUTPUT_STRIDES, input_side_problem

# The architecture arguments that make the members of the family, and the values each takes
# (Hourglass-104: 4, residual, nearest, 3, no attention; CornerNet-Squeeze: 8, fire, transposed,
# 1; CornerNet-Saccade: Hourglass-104's with attention). The model
# and its hourglass check their arguments against this table too.
FAMILY = {
    "output_stride": OUTPUT_STRIDES,
    "block": ("residual", "fire"),
    "upsample": ("nearest", "transposed"),
    "head_kernel": (1, 3),
    "attention": (False, True),
}


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the file, the key and the value."""


# the largest count or size a config may hold: counts and sizes become int32 tensor values
INT_MAX = 2**31 - 1


def check_range(
    where: str,
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    expected: str | None = None,
) -> None:
    """Raises ConfigError naming `where`, `key` and `value` unless `value` (a number, or each
    number of a non-empty list) is finite, within [low, high] (an end excluded when `low_open`
    / `high_open`) and, for an int without `high`, at most INT_MAX. `expected` replaces the
    description of the range in the message ("positive sizes")."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if items and all(_within(v, low, high, low_open, high_open) for v in items):
        return
    if expected is None:
        numbers = "a finite number " if any(isinstance(v, float) for v in items) else ""
        if low is not None and high is not None:
            span = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            span = f"{'>' if low_open else '>='} {low}"
        else:
            span = f"{'<' if high_open else '<='} {high}" if high is not None else ""
        if high is None and any(isinstance(v, int) and v > INT_MAX for v in items):
            span = f"{span} and <= {INT_MAX}" if span else f"<= {INT_MAX}"
        expected = (numbers + span).strip() or "finite"
        if isinstance(value, (list, tuple)):
            key = f"{key} entries"
    raise ConfigError(f"{where}: {key} must be {expected}, got {_listify(value)}")


def _within(v: Any, low, high, low_open: bool, high_open: bool) -> bool:
    if isinstance(v, float) and not math.isfinite(v):
        return False
    if isinstance(v, int) and high is None and v > INT_MAX:
        return False
    if low is not None and (v <= low if low_open else v < low):
        return False
    return high is None or (v < high if high_open else v <= high)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network. Defaults are the official Hourglass-104 CornerNet."""

    num_stacks: int = 2
    depth: int = 5  # hourglass levels ("n" in the official code)
    dims: tuple[int, ...] = (256, 256, 384, 384, 384, 512)  # depth + 1 widths
    modules: tuple[int, ...] = (2, 2, 2, 2, 2, 4)  # residuals per level; the last is the innermost
    stem_dim: int = 128  # output of the 7x7 stride-2 stem convolution
    cnv_dim: int = 256  # features fed to the corner modules and heads
    pool_dim: int = 128  # branch width inside the corner-pool modules
    num_classes: int = 80
    # the family: Hourglass-104 (the defaults) or CornerNet-Squeeze (8, fire, transposed, 1)
    output_stride: int = 4  # input / output maps: 4 (two stride-2 stem steps) or 8 (three)
    block: str = "residual"  # of the hourglasses: "residual" or "fire"
    upsample: str = "nearest"  # of the hourglasses: "nearest" or "transposed" (4x4 conv)
    head_kernel: int = 3  # the first convolution of each head: 3 or 1
    attention: bool = False  # attention heads on the hourglass levels (CornerNet-Saccade)
    corner_pool: str = "tf"  # "tf" | "scan" | "custom" | "auto" (`cornernet_tf.ops.corner_pool`)

    def validate(self, where: str) -> None:
        for key in ("num_stacks", "depth", "stem_dim", "cnv_dim", "pool_dim", "num_classes"):
            check_range(where, f"model.{key}", getattr(self, key), 1)
        for key in ("dims", "modules"):
            value = getattr(self, key)
            if len(value) != self.depth + 1:
                raise ConfigError(
                    f"{where}: model.{key} needs depth + 1 = {self.depth + 1} entries, "
                    f"got {len(value)}: {list(value)}"
                )
            check_range(where, f"model.{key}", value, 1)
        for key, allowed in FAMILY.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{where}: model.{key} must be one of {', '.join(map(str, allowed))}, "
                    f"got {getattr(self, key)!r}"
                )
        if self.block == "fire" and any(d % 2 for d in self.dims):
            raise ConfigError(
                f"{where}: model.dims must be even for fire blocks, got {list(self.dims)}"
            )
        if self.corner_pool not in ("tf", "scan", "custom", "auto"):
            raise ConfigError(
                f"{where}: model.corner_pool must be one of tf, scan, custom, auto, "
                f"got {self.corner_pool!r}"
            )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Network input geometry and normalisation (the official values, BGR channel order)."""

    input_size: tuple[int, int] = (511, 511)  # (height, width); each side = 127 mod 128 for depth 5
    mean_bgr: tuple[float, float, float] = (0.40789654, 0.44719302, 0.47026115)
    std_bgr: tuple[float, float, float] = (0.28863828, 0.27408164, 0.27809835)
    class_names: tuple[str, ...] = ()  # for drawing; empty: "class 0", "class 1", ...
    # The category map: the dataset's category id of each class index, ascending (index i is
    # category_ids[i]). Empty: the training annotation file's ids, or 1..num_classes for
    # TFRecords; a training run writes the map it used into its config.yaml.
    category_ids: tuple[int, ...] = ()
    max_objects: int = 128  # boxes per image that get embeddings and offsets
    gaussian_iou: float = 0.3  # heatmap bump radius parameter (official config)
    # training examples: "cornernet" (random crop of the image, CornerNet and CornerNet-Squeeze)
    # or "saccade" (a crop around one object at the scale of an attention map, with attention
    # targets: CornerNet-Saccade, `cornernet_tf.data.saccade`)
    sampling: str = "cornernet"
    # Training / validation data: COCO JSON + image folder, or a TFRecord file pattern.
    # Relative paths are relative to the working directory.
    train_annotations: str | None = None
    train_images: str | None = None
    train_tfrecords: str | None = None
    val_annotations: str | None = None
    val_images: str | None = None
    val_tfrecords: str | None = None

    def validate(self, where: str) -> None:
        if len(self.input_size) != 2:
            raise ConfigError(
                f"{where}: data.input_size must be [height, width], got {list(self.input_size)}"
            )
        check_range(where, "data.input_size", self.input_size, 1)
        check_range(where, "data.mean_bgr", self.mean_bgr)
        check_range(where, "data.std_bgr", self.std_bgr, 0, low_open=True)
        check_range(where, "data.max_objects", self.max_objects, 1)
        check_range(
            where, "data.gaussian_iou", self.gaussian_iou, 0, 1, low_open=True, high_open=True
        )
        if self.category_ids:
            check_range(where, "data.category_ids", self.category_ids, 0)
        if self.sampling not in ("cornernet", "saccade"):
            raise ConfigError(
                f"{where}: data.sampling must be cornernet or saccade, got {self.sampling!r}"
            )
        ids = list(self.category_ids)
        if ids != sorted(set(ids)):
            raise ConfigError(
                f"{where}: data.category_ids must be distinct and ascending (class index i is "
                f"the i-th id), got {ids}"
            )


@dataclasses.dataclass(frozen=True)
class TestConfig:
    """The official test procedures: CornerNet's (config/CornerNet.json and test/coco.py) and
    CornerNet-Saccade's (configs/CornerNet_Saccade.json and test/cornernet_saccade.py).

    The att_* keys are CornerNet-Saccade's; one round of attention crops only (the official
    config's): att_thresholds has one entry and att_scales is one flat list (the official nests
    one list per round).
    """

    top_k: int = 100  # corners kept per heatmap
    nms_kernel: int = 3  # max-pool NMS window on the heatmaps
    ae_threshold: float = 0.5  # max embedding distance of a pair
    num_dets: int = 1000  # pairs kept per image and scale
    no_border: bool = False  # reject pairs with a corner on the map's border (CornerNet-Lite)
    scales: tuple[float, ...] = (1.0,)  # multi-scale: 0.5, 0.75, 1, 1.25, 1.5
    flip: bool = True  # flip test: add the mirrored image's detections
    soft_nms_sigma: float = 0.5  # Gaussian soft-NMS: score *= exp(-iou^2 / sigma)
    score_threshold: float = 0.001  # soft-NMS drops boxes whose score falls below this
    merge_boxes: bool = False  # soft_nms_merge (the official multi-scale setting)
    merge_weight_exp: float = 8.0  # its weight exponent (10 in the multi-scale config)
    max_per_image: int = 100
    # "bfloat16": convolutions in bfloat16; heads' logits, decode and soft-NMS stay float32
    precision: str = "float32"
    # 3x3 convolutions by Winograd: F(4x4, 3x3) in float32, F(2x2, 3x3) in bfloat16 (the
    # compiled ops, Python inference)
    winograd: bool = False
    # "cornernet": the whole image at test.scales (flip); "saccade": CornerNet-Saccade's crops
    procedure: str = "cornernet"
    # CornerNet-Saccade: the glance crops, the whole image's longer side scaled to these sizes
    init_sizes: tuple[int, ...] = (192, 255)
    # per attention map (innermost first): a peak's crop is zoomed by this x its crop's zoom
    att_scales: tuple[float, ...] = (1.0, 2.0, 4.0)
    att_thresholds: tuple[float, ...] = (0.3,)  # attention peaks above this propose a crop
    att_max_crops: int = 30  # crops after the glance
    # object sizes (image pixels of the crop) each attention map is trained on
    att_ranges: tuple[tuple[int, int], ...] = ((96, 256), (32, 96), (0, 32))
    att_ratios: tuple[int, ...] = (16, 8, 4)  # input stride of each attention map
    att_nms_kernel: int = 3  # max-pool NMS window on the attention maps
    ref_dets: bool = True  # glance detections scoring > 0.5 propose crops too

    def validate(self, where: str) -> None:
        self._validate_saccade(where)
        check_range(
            where, "test.scales", self.scales, 0, low_open=True, expected="positive finite numbers"
        )
        # top_k x top_k corner pairs are indexed in int32
        check_range(where, "test.top_k", self.top_k, 1, 46340)
        for key in ("num_dets", "max_per_image"):
            check_range(where, f"test.{key}", getattr(self, key), 1)
        if not 1 <= self.nms_kernel <= INT_MAX or self.nms_kernel % 2 == 0:
            # the official max-pool NMS pads (kernel - 1) // 2 on each side
            raise ConfigError(
                f"{where}: test.nms_kernel must be an odd size >= 1, got {self.nms_kernel}"
            )
        check_range(where, "test.ae_threshold", self.ae_threshold, 0, low_open=True)
        check_range(where, "test.soft_nms_sigma", self.soft_nms_sigma, 0, low_open=True)
        check_range(where, "test.score_threshold", self.score_threshold, 0, 1)
        check_range(where, "test.merge_weight_exp", self.merge_weight_exp, 0)
        if self.num_dets > self.top_k**2:
            raise ConfigError(
                f"{where}: test.num_dets ({self.num_dets}) cannot exceed top_k^2 ({self.top_k**2})"
            )
        if self.precision not in ("float32", "bfloat16"):
            raise ConfigError(
                f"{where}: test.precision must be float32 or bfloat16, got {self.precision!r}"
            )

    def _validate_saccade(self, where: str) -> None:
        if self.procedure not in ("cornernet", "saccade"):
            raise ConfigError(
                f"{where}: test.procedure must be cornernet or saccade, got {self.procedure!r}"
            )
        check_range(where, "test.init_sizes", self.init_sizes, 1, expected="positive sizes")
        if len(self.att_thresholds) != 1:
            raise ConfigError(
                f"{where}: test.att_thresholds must have one entry (one round of attention crops "
                f"is supported, as the official config), got {list(self.att_thresholds)}"
            )
        check_range(
            where, "test.att_thresholds", self.att_thresholds, 0, 1, high_open=True,
            expected="in [0, 1)",
        )  # fmt: skip
        maps = len(self.att_ratios)
        for key in ("att_scales", "att_ranges"):
            if len(getattr(self, key)) != maps:
                raise ConfigError(
                    f"{where}: test.{key} needs one entry per attention map, as test.att_ratios "
                    f"({maps}), got {_listify(getattr(self, key))}"
                )
        check_range(
            where, "test.att_scales", self.att_scales, 0, low_open=True, expected="positive"
        )
        check_range(where, "test.att_ratios", self.att_ratios, 1, expected="positive strides")
        if any(not 0 <= low < high <= INT_MAX for low, high in self.att_ranges):
            raise ConfigError(
                f"{where}: test.att_ranges must be [low, high] pairs with 0 <= low < high, "
                f"got {_listify(self.att_ranges)}"
            )
        check_range(where, "test.att_max_crops", self.att_max_crops, 0)
        if not 1 <= self.att_nms_kernel <= INT_MAX or self.att_nms_kernel % 2 == 0:
            raise ConfigError(
                f"{where}: test.att_nms_kernel must be an odd size >= 1, got {self.att_nms_kernel}"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation as the official trainer: Adam, lr 2.5e-4 divided by 10 at 90% of the steps."""

    batch_size: int = 49  # global batch, split over the replicas (official: 49 over 10 GPUs)
    steps: int = 500_000
    learning_rate: float = 2.5e-4
    decay_at: float = 0.9  # fraction of `steps` where the lr is divided by 10 (450k / 500k)
    pull_weight: float = 0.1
    push_weight: float = 0.1
    offset_weight: float = 1.0
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    validation_batches: int = 20  # validation loss (and best checkpoint) at every checkpoint
    log_images_every: int = 5000  # TensorBoard images of targets and predictions; 0: never
    seed: int = 317
    precision: str = "float32"  # or "mixed_bfloat16"
    jit_compile: bool = False
    # the same weights in every run on one machine: TensorFlow's graph optimiser (Grappler),
    # whose rewrites of the step vary between processes, is off while training
    deterministic: bool = False
    # fine-tuning: start from these weights (.weights.h5, .keras, a training checkpoint or a run
    # folder); heads whose shapes differ are initialised afresh
    init_weights: str | None = None
    freeze_backbone: int = 0  # first steps in which only the corner modules and heads learn
    # COCO AP on the validation set every this many steps, at the first checkpoint on or after
    # each multiple (0: never)
    eval_every: int = 0
    eval_images: int = 500  # at most this many validation images for that AP
    best_by: str = "loss"  # what best/ keeps: "loss" (validation loss) or "ap" (COCO AP)

    def validate(self, where: str) -> None:
        for key in (
            "batch_size", "steps", "checkpoint_every", "keep_checkpoints", "validation_batches",
            "eval_images",
        ):  # fmt: skip
            check_range(where, f"train.{key}", getattr(self, key), 1)
        for key in ("eval_every", "freeze_backbone", "log_images_every"):
            check_range(where, f"train.{key}", getattr(self, key), 0)
        check_range(where, "train.learning_rate", self.learning_rate, 0, low_open=True)
        for key in ("pull_weight", "push_weight", "offset_weight"):
            check_range(where, f"train.{key}", getattr(self, key), 0)
        # numpy's seed (keras.utils.set_random_seed) takes 0 .. 2^32 - 1
        check_range(where, "train.seed", self.seed, 0, 2**32 - 1)
        if self.best_by not in ("loss", "ap"):
            raise ConfigError(f"{where}: train.best_by must be loss or ap, got {self.best_by!r}")
        if self.best_by == "ap" and not self.eval_every:
            raise ConfigError(
                f"{where}: train.best_by ap needs train.eval_every > 0 (how often AP is computed)"
            )
        check_range(where, "train.decay_at", self.decay_at, 0, 1, low_open=True)
        if self.precision not in ("float32", "mixed_bfloat16"):
            raise ConfigError(
                f"{where}: train.precision must be float32 or mixed_bfloat16, "
                f"got {self.precision!r}"
            )


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    test: TestConfig = TestConfig()
    train: TrainConfig = TrainConfig()
    source: str = "<defaults>"  # where the config came from, for messages

    def validate(self) -> None:
        self.model.validate(self.source)
        self.data.validate(self.source)
        self.test.validate(self.source)
        self.train.validate(self.source)
        for key in ("class_names", "category_ids"):
            values = getattr(self.data, key)
            if values and len(values) != self.model.num_classes:
                raise ConfigError(
                    f"{self.source}: data.{key} has {len(values)} entries for "
                    f"model.num_classes = {self.model.num_classes}: {list(values)}"
                )
        for side in self.data.input_size:
            if problem := input_side_problem(side, self.model.depth, self.model.output_stride):
                raise ConfigError(f"{self.source}: data.input_size side {problem}")
        if self.data.sampling == "saccade":
            self._check_saccade_maps("data.sampling saccade makes attention targets")
        if self.test.procedure == "saccade":
            self._check_saccade_maps("test.procedure saccade crops where attention maps point")

    def _check_saccade_maps(self, what: str) -> None:
        """CornerNet-Saccade's sampling and test procedure use attention maps at input strides
        16, 8, 4: those of a model with attention, output stride 4 and a depth-3 hourglass."""
        m = self.model
        strides = [m.output_stride * 2 ** (m.depth - 1 - i) for i in range(m.depth)]
        if not m.attention or strides != [16, 8, 4]:
            raise ConfigError(
                f"{self.source}: {what} at input strides 16, 8, 4, which needs model.attention "
                f"true, model.depth 3 and model.output_stride 4; got attention {m.attention}, "
                f"depth {m.depth}, output_stride {m.output_stride}"
            )


def category_ids(config: Config) -> tuple[int, ...]:
    """The dataset category id of each class index: data.category_ids, or 1..num_classes (the
    TF Object Detection API convention) when the config has no map."""
    return config.data.category_ids or tuple(range(1, config.model.num_classes + 1))


PACKAGED = Path(__file__).with_name("configs")


def packaged_configs() -> list[str]:
    """The names of the configs that ship with the package (configs/*.yaml)."""
    return sorted(p.stem for p in PACKAGED.glob("*.yaml"))


def resolve_config(path: str | Path) -> Path:
    """`path` if such a file exists, else the packaged config of that name ("tiny",
    "hourglass104", with or without .yaml), else `path` (reading it then says what is wrong)."""
    path = Path(path)
    if path.exists() or path.parent != Path("."):
        return path
    packaged = PACKAGED / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    return packaged if packaged.is_file() else path


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Config:
    """Reads a YAML config (or the defaults when `path` is None) and applies overrides.

    `path`: a YAML file, or the name of a config that ships with the package (`PACKAGED`:
    "tiny", "hourglass104"). `overrides` is a mapping `{"model.num_stacks": 1}` or a list of CLI
    strings `"model.num_stacks=1"` (values parsed as YAML). Returns a validated, frozen `Config`.
    """
    path = resolve_config(path) if path is not None else None
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        if kind := special_file(path):
            raise ConfigError(f"{source}: not a config file but {kind}")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"{source}: not a YAML config: not UTF-8 text (byte {error.start} is "
                f"{error.object[error.start]:#04x})"
            ) from None
        except OSError as error:
            known = ", ".join(packaged_configs())
            raise ConfigError(
                f"{source}: cannot read config file ({error.strerror}); a packaged config is "
                f"named by one of: {known}"
            ) from None
        try:
            raw = yaml.load(text, Loader=YamlLoader) or {}
        except (yaml.YAMLError, ValueError) as error:  # ValueError: an int of > 4300 digits
            raise ConfigError(f"{source}: not valid YAML: {yaml_problem(error)}") from None
        except RecursionError:
            raise ConfigError(
                f"{source}: not a config: lists or mappings nested too deep"
            ) from None
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{source}: the top level must be a mapping, got {type(raw).__name__}"
            )
    overrides = _parse_overrides(overrides, source)
    try:
        return _checked(_overridden(raw, overrides, source), source)
    except ConfigError as error:
        raise _blame_override(error, raw, overrides, source) from None


def _checked(raw: dict, source: str) -> Config:
    config = dataclasses.replace(_build(Config, raw, source, prefix=""), source=source)
    config.validate()
    return config


def _overridden(raw: dict, overrides: list, source: str) -> dict:
    raw = copy.deepcopy(raw)
    for key, value, _ in overrides:
        _set_dotted(raw, key, value, source)
    return raw


def _blame_override(error: ConfigError, raw: dict, overrides: list, source: str) -> ConfigError:
    """`error` of the config with all overrides, told as the fault of the first override after
    which the config fails with the same message (unless the file alone fails so too)."""
    prefix = f"{source}: "
    message = str(error).removeprefix(prefix)
    for count in range(len(overrides) + 1):
        try:
            _checked(_overridden(raw, overrides[:count], source), source)
        except ConfigError as partial:
            if str(partial).removeprefix(prefix) == message:
                if count == 0:
                    return error
                return ConfigError(f"{prefix}override {overrides[count - 1][2]}: {message}")
    return error


def to_dict(config: Config) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists; `source` is left out)."""
    data = dataclasses.asdict(config)
    data.pop("source")
    return _listify(data)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value


def _parse_overrides(overrides, source: str) -> list[tuple[str, Any, str]]:
    """(dotted key, value, how the override reads in messages) for each override, in order."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [(key, value, f"{key}={_listify(value)!r:.200}") for key, value in overrides.items()]
    parsed = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: override {item!r} is not of the form key=value")
        try:
            value = yaml.load(text, Loader=YamlLoader)
        except (yaml.YAMLError, ValueError, RecursionError):
            raise ConfigError(
                f"{source}: override {item!r:.200}: value is not valid YAML"
            ) from None
        parsed.append((key.strip(), value, f"{item:.200}"))
    return parsed


def _set_dotted(raw: dict, key: str, value: Any, source: str) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: override {key}: '{part}' is not a section")
    node[leaf] = value


def _build(cls, raw: Any, source: str, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.')}' must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(prefix + name for name in fields)
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (known keys: {known})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, source, f"{prefix}{name}.")
        else:
            values[name] = _coerce(kind, value, source, prefix + name)
    return cls(**values)


def _coerce(kind, value: Any, source: str, key: str):
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(t for t in options if t is not type(None))
        origin = typing.get_origin(kind)
    if origin is tuple:
        item_kinds = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        if item_kinds[-1] is not Ellipsis and len(value) != len(item_kinds):
            raise ConfigError(
                f"{source}: '{key}' must have {len(item_kinds)} entries, got {list(value)}"
            )
        item_kind = item_kinds[0]
        return tuple(_coerce(item_kind, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(
                f"{source}: '{key}' is too large for a float, got an integer of "
                f"{value.bit_length()} bits"
            ) from None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            f"{source}: '{key}' must be {kind.__name__}, got {value!r} ({type(value).__name__})"
        )
    return value


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1), also reading a float written without a dot, as YAML 1.2
    does: 1e-3, 5E+2 (YAML 1.1 reads them as strings)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_problem(error: Exception) -> str:
    """A YAML error in one line: what is wrong and where (line and column, 1-based)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"
