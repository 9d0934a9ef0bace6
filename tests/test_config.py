"""Config loading: defaults, YAML, overrides, and errors that name the file and the key."""

import dataclasses
import os
import re
from pathlib import Path

import pytest

from cornernet_tf import ConfigError, load_config
from cornernet_tf.config import to_dict
from tests.helpers import without_waiting

ROOT = Path(__file__).parents[1]


def test_hourglass104_is_the_official_model():
    config = load_config(ROOT / "configs/hourglass104.yaml")
    assert config.model.num_stacks == 2 and config.model.depth == 5
    assert config.model.dims == (256, 256, 384, 384, 384, 512)
    assert config.model.modules == (2, 2, 2, 2, 2, 4)
    assert config.model.num_classes == 80
    assert config.data.input_size == (511, 511)
    defaults = load_config()  # the dataclass defaults are the official model too
    assert (config.model, config.test) == (defaults.model, defaults.test)
    assert len(config.data.class_names) == 80 and config.data.class_names[0] == "person"


def test_config_is_frozen():
    config = load_config(ROOT / "configs/tiny.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.num_stacks = 3


def test_overrides_as_mapping_and_cli_strings():
    path = ROOT / "configs/tiny.yaml"
    a = load_config(path, {"model.num_stacks": 2, "data.input_size": [127, 255]})
    b = load_config(path, ["model.num_stacks=2", "data.input_size=[127, 255]"])
    assert a == b
    assert a.model.num_stacks == 2 and a.data.input_size == (127, 255)
    assert to_dict(a)["data"]["input_size"] == [127, 255]


def test_int_is_accepted_for_float():
    config = load_config(None, {"data.mean_bgr": [0, 0.5, 1]})
    assert config.data.mean_bgr == (0.0, 0.5, 1.0)


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    """YAML 1.2 reads 1e-3 as a float; PyYAML's YAML 1.1 resolver reads it as a string."""
    path = tmp_path / "lr.yaml"
    path.write_text("train:\n  learning_rate: -1E+0\n")
    with pytest.raises(ConfigError, match="learning_rate must be a finite number > 0, got -1.0"):
        load_config(path)
    path.write_text("train:\n  learning_rate: 5e-4\n")
    config = load_config(path, ["test.soft_nms_sigma=5e-1", "data.mean_bgr=[1e0, 2E1, 3.5e-1]"])
    assert config.train.learning_rate == 0.0005 and config.test.soft_nms_sigma == 0.5
    assert config.data.mean_bgr == (1.0, 20.0, 0.35)
    with pytest.raises(ConfigError, match="'test.soft_nms_sigma' must be float, got 'e-1'"):
        load_config(None, ["test.soft_nms_sigma=e-1"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model.num_stack": 1}, r"tiny\.yaml: override model\.num_stack=1: unknown key 'model\."),
        ({"modle.depth": 1}, r"unknown key 'modle'"),
        ({"model.num_stacks": "two"}, r"'model\.num_stacks' must be int, got 'two'"),
        ({"model.num_stacks": True}, r"'model\.num_stacks' must be int"),
        ({"model.dims": 64}, r"'model\.dims' must be a list"),
        ({"model.dims": [64, 64]}, r"model\.dims needs depth \+ 1 = 4 entries"),
        ({"data.input_size": [256, 255]}, r"input_size side 256 does not fit.*31 mod 32"),
        ({"model.corner_pool": "cuda"}, r"corner_pool must be one of"),
        ({"model.block": "bottleneck"}, r"model\.block must be one of residual, fire, got 'b"),
        ({"model.output_stride": 16}, r"model\.output_stride must be one of 4, 8, got 16"),
        ({"model.upsample": "bilinear"}, r"model\.upsample must be one of nearest, transposed"),
        ({"model.head_kernel": 5}, r"model\.head_kernel must be one of 1, 3, got 5"),
        ({"model.block": "fire", "model.dims": [48, 63, 96, 128]}, r"even for fire blocks"),
        ({"model.output_stride": 8}, r"side 159 .*output stride 8.*valid: 63, 127, 191"),
        (["model.depth"], r"not of the form key=value"),
    ],
)
def test_errors_name_file_and_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs/tiny.yaml", overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)
    weights = tmp_path / "final.weights.h5"  # --config and --weights swapped
    weights.write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00\xff\xfe")
    with pytest.raises(ConfigError, match=r"final\.weights\.h5: not a YAML config: not UTF-8 text"):
        load_config(weights)
    utf16 = tmp_path / "windows.yaml"
    utf16.write_text("train:\n  steps: 2\n", encoding="utf-16")
    with pytest.raises(ConfigError, match=r"windows\.yaml: not a YAML config: not UTF-8 text"):
        load_config(utf16)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: the top level must be a mapping"):
        load_config(listy)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.input_size=abc"], ": override data.input_size=abc: "),
        (["train.steps=3", "model.num_stacks=two"], ": override model.num_stacks=two: "),
        ({"model.dims": [64, 64]}, ": override model.dims=[64, 64]: "),
        # a check of two fields, one from the file: the override that broke it is named
        (["model.attention=false"], ": override model.attention=false: "),
    ],
)
def test_errors_caused_by_an_override_name_it(overrides, message):
    config = "saccade" if "model.attention=false" in overrides else ROOT / "configs/tiny.yaml"
    with pytest.raises(ConfigError) as error:
        load_config(config, overrides)
    assert re.match(r"^\S+\.yaml" + re.escape(message), str(error.value)), str(error.value)


def test_errors_of_the_file_name_the_file_even_with_overrides(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  num_stacks: two\n")
    with pytest.raises(ConfigError, match=r"^\S*bad\.yaml: 'model\.num_stacks' must be int"):
        load_config(path, ["train.steps=3"])
    # an override may repair what the file alone gets wrong
    assert load_config(path, ["model.num_stacks=1"]).model.num_stacks == 1


def test_pipes_devices_and_deep_nesting_are_errors_not_waits(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    error = without_waiting(load_config, fifo)
    assert isinstance(error, ConfigError), error
    assert str(error) == f"{fifo}: not a config file but a named pipe (FIFO)"
    error = without_waiting(load_config, Path("/dev/zero"))
    assert str(error) == "/dev/zero: not a config file but a character device"
    deep = tmp_path / "deep.yaml"
    deep.write_text("model: " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match=r"deep\.yaml: not a config: .* nested too deep"):
        load_config(deep)
