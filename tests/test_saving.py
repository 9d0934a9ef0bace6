"""Keras-native saving: model.save("m.keras") and keras.saving.load_model in a fresh process give
the same outputs, for the tiny model and its folded variant; the variants and loss weights are
constructor arguments that get_config keeps; the commands take .keras files."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import CornerNet, build_model, load_config, variant
from cornernet_tf.heads import HEAD_NAMES
from tests.helpers import ROOT, run_script

LOAD = """
import sys, numpy as np, keras
import cornernet_tf  # registers the package's Keras classes
model = keras.saving.load_model(sys.argv[1])
outputs = model(np.load(sys.argv[2]), training=False, all_stacks=True)
np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in outputs.items()},
         config=repr(model.get_config()), policy=model.dtype_policy.name)
"""


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(5)
    config = load_config(ROOT / "configs/tiny.yaml", ["train.pull_weight=0.25"])
    model = build_model(config)
    rng = np.random.default_rng(5)  # non-trivial BatchNorm statistics, so folding changes values
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0.0, 0.2, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return model


@pytest.mark.e2e
@pytest.mark.parametrize("form", ["plain", "folded"])
def test_saved_model_loads_in_a_fresh_process_with_identical_outputs(tiny, form, tmp_path):
    model = tiny if form == "plain" else variant(tiny, fold=True)
    path = tmp_path / f"{form}.keras"
    model.save(path)
    images = tf.random.stateless_normal([2, 159, 127, 3], seed=[5, 1]).numpy()
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(path), str(tmp_path / "images.npy"), str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = np.load(tmp_path / "o.npz")
    expected = model(images, training=False, all_stacks=True)
    for key in HEAD_NAMES:
        np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)
    assert str(loaded["config"]) == repr(model.get_config())
    assert str(loaded["policy"]) == "float32"


def test_get_config_keeps_the_variants_and_the_loss_weights(tiny):
    config = tiny.get_config()
    assert config["pull_weight"] == 0.25 and tiny.loss_weights["pull_weight"] == 0.25
    assert {k: config[k] for k in ("corner_pool", "precision", "with_bn", "winograd")} == {
        "corner_pool": "tf",
        "precision": "float32",
        "with_bn": True,
        "winograd": False,
    }
    copy = CornerNet.from_config(config)
    assert copy.get_config() == config


def test_a_variant_changes_nothing_global(tiny):
    """bfloat16 is the model's own dtype policy: building one leaves Keras's global policy, and
    every other model, as they were."""
    half = variant(tiny, precision="bfloat16", corner_pool="scan")
    assert keras.config.dtype_policy().name == "float32"
    assert half.dtype_policy.name == "mixed_bfloat16" and half.precision == "bfloat16"
    assert half.pre[0].conv.compute_dtype == "bfloat16"
    assert half.heads[-1]["tl_heatmap"].out.compute_dtype == "float32"
    assert half.tl_cnvs[0].pool1.implementation == "scan"
    assert tiny.pre[0].conv.compute_dtype == "float32" and tiny.corner_pool == "tf"
    assert variant(tiny) is tiny  # nothing to change
    again = build_model(load_config(ROOT / "configs/tiny.yaml"))
    assert again.pre[0].conv.compute_dtype == "float32"


def test_bad_variants_are_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        CornerNet(num_stacks=1, depth=1, dims=(8, 8), modules=(1, 1), precision="float16")
    with pytest.raises(ValueError, match="corner_pool must be one of"):
        CornerNet(num_stacks=1, depth=1, dims=(8, 8), modules=(1, 1), corner_pool="fast")
    with pytest.raises(ValueError, match="winograd needs the folded form"):
        CornerNet(num_stacks=1, depth=1, dims=(8, 8), modules=(1, 1), winograd=True)


@pytest.mark.e2e
def test_detect_takes_a_keras_file(tiny_weights, test_images, tmp_path):
    config, weights = tiny_weights
    model = build_model(load_config(config))
    model.load_weights(str(weights))
    model.save(tmp_path / "tiny.keras")
    outputs = {}
    for name, path in (("h5", weights), ("keras", tmp_path / "tiny.keras")):
        args = ["--config", str(config), "--weights", str(path), str(test_images[0])]
        assert run_script("detect", *args, "--out", str(tmp_path / name), "--threshold", "0") == 0
        outputs[name] = json.loads((tmp_path / name / "detections.json").read_text())
    assert outputs["keras"] == outputs["h5"] and outputs["h5"][str(test_images[0])]


def test_a_keras_file_of_another_architecture_is_refused(tiny_weights, tmp_path, capsys):
    config, _ = tiny_weights
    other = build_model(load_config(config, ["model.num_classes=3", "data.class_names=[a,b,c]"]))
    other.save(tmp_path / "other.keras")
    args = ["--config", str(config), "--weights", str(tmp_path / "other.keras"), "x.png"]
    assert run_script("detect", *args, "--out", str(tmp_path / "out")) == 2
    error = capsys.readouterr().err
    assert "other.keras" in error and "model.num_classes is 3" in error and "says 4" in error
