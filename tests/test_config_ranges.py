"""Every numeric config value is range-checked when the config is loaded: a bad value is a
ConfigError naming the file, the field and the value, never a silently wrong run."""

import re

import pytest

from cornernet_tf import ConfigError, load_config
from cornernet_tf.config import PACKAGED

ROOT = __import__("pathlib").Path(__file__).parents[1]
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("model.num_stacks", 0, "0"),
        ("model.depth", -1, "-1"),
        ("model.stem_dim", 0, "0"),
        ("model.cnv_dim", -8, "-8"),
        ("model.pool_dim", 0, "0"),
        ("model.num_classes", 0, "0"),
        ("model.num_classes", 2**40, str(2**40)),
        ("data.input_size", [0, 127], "[0, 127]"),
        ("data.mean_bgr", [0.4, NAN, 0.4], "[0.4, nan, 0.4]"),
        ("data.std_bgr", [0.3, 0.0, 0.3], "[0.3, 0.0, 0.3]"),
        ("data.std_bgr", [0.3, INF, 0.3], "[0.3, inf, 0.3]"),
        ("data.max_objects", 0, "0"),
        ("data.gaussian_iou", 0, "0.0"),
        ("data.gaussian_iou", 1, "1.0"),
        ("data.gaussian_iou", NAN, "nan"),
        ("data.category_ids", [-1, 2, 3, 4], "[-1, 2, 3, 4]"),
        ("test.top_k", 0, "0"),
        ("test.top_k", 46341, "46341"),  # its square overflows int32
        ("test.nms_kernel", 0, "0"),
        ("test.nms_kernel", 4, "4"),
        ("test.ae_threshold", 0, "0.0"),
        ("test.ae_threshold", -0.5, "-0.5"),
        ("test.ae_threshold", NAN, "nan"),
        ("test.ae_threshold", INF, "inf"),
        ("test.num_dets", 0, "0"),
        ("test.scales", [1.0, NAN], "[1.0, nan]"),
        ("test.scales", [1.0, -0.5], "[1.0, -0.5]"),
        ("test.scales", [INF], "[inf]"),
        ("test.soft_nms_sigma", 0, "0.0"),
        ("test.soft_nms_sigma", NAN, "nan"),
        ("test.score_threshold", -0.1, "-0.1"),
        ("test.score_threshold", 1.5, "1.5"),
        ("test.score_threshold", NAN, "nan"),
        ("test.merge_weight_exp", -1, "-1.0"),
        ("test.merge_weight_exp", INF, "inf"),
        ("test.max_per_image", 0, "0"),
        ("test.init_sizes", [192, -1], "[192, -1]"),
        ("test.att_scales", [1.0, NAN, 4.0], "[1.0, nan, 4.0]"),
        ("test.att_scales", [1.0, INF, 4.0], "[1.0, inf, 4.0]"),
        ("test.att_thresholds", [NAN], "[nan]"),
        ("test.att_max_crops", -1, "-1"),
        ("test.att_nms_kernel", 0, "0"),
        ("train.batch_size", 0, "0"),
        ("train.batch_size", 2**40, str(2**40)),
        ("train.steps", 0, "0"),
        ("train.learning_rate", -1, "-1.0"),
        ("train.learning_rate", 0, "0.0"),
        ("train.learning_rate", NAN, "nan"),
        ("train.learning_rate", INF, "inf"),
        ("train.decay_at", 0, "0.0"),
        ("train.decay_at", NAN, "nan"),
        ("train.pull_weight", -0.1, "-0.1"),
        ("train.push_weight", NAN, "nan"),
        ("train.offset_weight", INF, "inf"),
        ("train.checkpoint_every", 0, "0"),
        ("train.keep_checkpoints", 0, "0"),
        ("train.validation_batches", 0, "0"),
        ("train.log_images_every", -1, "-1"),
        ("train.seed", -1, "-1"),
        ("train.seed", 2**32, str(2**32)),
        ("train.freeze_backbone", -1, "-1"),
        ("train.eval_every", -5, "-5"),
        ("train.eval_images", 0, "0"),
    ],
)
def test_out_of_range_values_are_refused_naming_field_and_value(key, value, shown):
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs/tiny.yaml", {key: value})
    message = str(info.value)
    assert message.startswith(str(ROOT / "configs/tiny.yaml") + ": "), message
    assert key in message, message
    assert re.search(r"got .*" + re.escape(shown), message), message
    assert "\n" not in message


@pytest.mark.parametrize(
    "override, shown",
    [
        ("train.learning_rate=.nan", "nan"),
        ("test.ae_threshold=.nan", "nan"),
        ("test.ae_threshold=-.inf", "-inf"),
        ("train.learning_rate=1.0e+400", "inf"),  # YAML reads this as inf
    ],
)
def test_yaml_nan_and_inf_from_the_command_line_are_refused(override, shown):
    with pytest.raises(ConfigError, match=re.escape(override.split("=")[0]) + r".*got " + shown):
        load_config(ROOT / "configs/tiny.yaml", [override])


def test_a_huge_integer_for_a_float_field_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'train\.learning_rate' is too large for a float"):
        load_config(None, {"train.learning_rate": 10**400})


def test_values_on_the_edge_of_their_range_are_accepted():
    config = load_config(
        ROOT / "configs/tiny.yaml",
        {
            "test.score_threshold": 0,
            "test.ae_threshold": 1e-6,
            "test.merge_weight_exp": 0,
            "train.pull_weight": 0,
            "train.decay_at": 1,
            "train.log_images_every": 0,
            "train.seed": 0,
            "test.att_max_crops": 0,
            "data.mean_bgr": [-1, 0, 2],
        },
    )
    assert config.test.score_threshold == 0.0 and config.train.decay_at == 1.0


@pytest.mark.parametrize(
    "path",
    sorted(PACKAGED.glob("*.yaml")) + sorted((ROOT / "configs").glob("*.yaml")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_shipped_config_still_loads(path):
    load_config(path)


def test_invalid_yaml_is_one_line_with_its_place(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "bad.yaml")
    assert str(error.value) == (
        f"{tmp_path / 'bad.yaml'}: not valid YAML: expected ',' or ']', but got '<stream end>' "
        "at line 2, column 1"
    )
