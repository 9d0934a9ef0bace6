"""Inference forms: BatchNorm folding equals the unfolded model, bfloat16 stays close to float32
with float32 outputs, the precision setting is checked, and the scripts take --precision."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import ConfigError, build_model, load_config
from cornernet_tf.cpu import flags_in
from cornernet_tf.heads import HEAD_NAMES
from cornernet_tf.inference import Detector
from cornernet_tf.optimize import (
    bfloat16_slowness,
    fold_batchnorm,
    has_native_bfloat16,
    inference_model,
)
from tests.helpers import ROOT, run_script

# bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 0.002 per operation); over the
# tiny network's ~20 layers the raw outputs (of magnitude ~1-4) move by up to ~0.03 (measured
# 0.028 on these inputs): 0.1 leaves room and still fails if anything ran in float16 or was lost.
BFLOAT16_ATOL = 0.1


@pytest.fixture(scope="module")
def two_stacks():
    """The tiny config with two stacks (so inters_ / cnvs_ are folded too) and random,
    non-trivial BatchNorm statistics: folding them is then far from the identity."""
    keras.utils.set_random_seed(0)
    model = build_model(load_config(ROOT / "configs/tiny.yaml", {"model.num_stacks": 2}))
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0.0, 0.2, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    return model


@pytest.fixture(scope="module")
def folded(two_stacks):
    return fold_batchnorm(two_stacks)


def images(seed=1):
    return tf.random.stateless_normal([2, 127, 159, 3], seed=[seed, 0])


@pytest.mark.parametrize("all_stacks", [False, True])
def test_folded_model_equals_the_unfolded_one(two_stacks, folded, all_stacks):
    x = images()
    expected = two_stacks(x, training=False, all_stacks=all_stacks)
    actual = folded(x, training=False, all_stacks=all_stacks)
    for key in HEAD_NAMES:
        assert actual[key].shape == expected[key].shape
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-4, err_msg=key)


def batchnorms(model):
    layers = model._flatten_layers()
    return [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_folded_model_has_no_batchnorm_and_fewer_weights(two_stacks, folded):
    assert not batchnorms(folded) and len(batchnorms(two_stacks)) > 50
    assert len(folded.weights) < len(two_stacks.weights)
    count = sum(int(np.prod(v.shape)) for v in folded.weights)
    assert count < sum(int(np.prod(v.shape)) for v in two_stacks.weights)
    assert not folded.with_bn and two_stacks.with_bn
    assert inference_model(folded, "float32", fold=True) is folded  # nothing left to fold


def test_folded_stem_by_hand(two_stacks, folded):
    """The stem's conv + BN: kernel * gamma / sqrt(var + eps), bias beta - mean * that scale."""
    conv, bn = two_stacks.pre[0].conv, two_stacks.pre[0].bn
    gamma, beta, mean, variance = (
        v.numpy() for v in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
    )
    scale = gamma / np.sqrt(variance + 1e-5)
    kernel = conv.kernel.numpy()
    for out in range(kernel.shape[-1]):
        np.testing.assert_allclose(
            folded.pre[0].conv.kernel[..., out], kernel[..., out] * scale[out], rtol=1e-6
        )
    np.testing.assert_allclose(folded.pre[0].conv.bias, beta - mean * scale, rtol=1e-6, atol=1e-7)


def test_bfloat16_model_is_close_and_returns_float32(two_stacks):
    half = inference_model(two_stacks, "bfloat16")
    assert half.pre[0].conv.compute_dtype == "bfloat16"
    assert half.heads[-1]["tl_heatmap"].out.compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    x = images()
    expected = two_stacks(x, training=False)
    actual = half(x, training=False)
    for key in HEAD_NAMES:
        assert actual[key].dtype == tf.float32, key
        difference = np.abs(actual[key] - expected[key]).max()
        assert 0 < difference < BFLOAT16_ATOL, (key, difference)


def test_bfloat16_runs_with_the_compiled_corner_pool():
    """(The model above uses the default pure-TF pools.)"""
    config = load_config(ROOT / "configs/tiny.yaml", {"model.corner_pool": "custom"})
    keras.utils.set_random_seed(0)
    model = build_model(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "custom" falls back to "tf" where the op is not built
        out = inference_model(model, "bfloat16")(images(2), training=False)
    expected = model(images(2), training=False)
    np.testing.assert_allclose(out["br_heatmap"], expected["br_heatmap"], atol=BFLOAT16_ATOL)


def test_detector_in_bfloat16_finds_the_same_boxes(tiny_weights):
    config_path, weights = tiny_weights
    image = tf.cast(tf.random.stateless_uniform([120, 150, 3], [3, 4], maxval=256), tf.uint8)
    full = Detector.from_files(config_path, weights)(image)
    half = Detector.from_files(config_path, weights, ["test.precision=bfloat16"])(image)
    assert len(full["scores"]) > 0
    assert half["scores"].dtype == np.float32 and half["boxes"].dtype == np.float32
    # the strongest detections survive bfloat16 with nearly the same box and score
    best = zip(full["boxes"][:5], full["scores"][:5], full["classes"][:5], strict=True)
    for box, score, cls in best:
        same = (half["classes"] == cls) & (np.abs(half["boxes"] - box).max(1) < 2.0)
        assert same.any(), (box, score)
        assert np.abs(half["scores"][same] - score).min() < 0.02


def test_bad_precision_names_the_file_key_and_value(two_stacks):
    message = r"configs/tiny\.yaml: override test\.precision=half: test\.precision must be "
    message += "float32 or bfloat16, got 'half'"
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs/tiny.yaml", ["test.precision=half"])
    with pytest.raises(ValueError, match="precision must be float32 or bfloat16, got 'float16'"):
        inference_model(two_stacks, "float16")


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse2 avx2 avx512f avx512_vnni {extra}
bogomips\t: 4000.00
"""


def test_native_bfloat16_is_read_from_the_cpu_flags():
    assert has_native_bfloat16(flags_in(CPUINFO.format(extra="avx512_bf16")))
    assert has_native_bfloat16(flags_in(CPUINFO.format(extra="amx_tile amx_bf16")))
    assert not has_native_bfloat16(flags_in(CPUINFO.format(extra="avx512_fp16")))
    assert flags_in("model name\t: avx512_bf16 in a name, not a flag\n") == set()
    assert flags_in(CPUINFO.format(extra="")) == {
        "fpu",
        "vme",
        "sse2",
        "avx2",
        "avx512f",
        "avx512_vnni",
    }


def test_cpu_flags_are_unknown_without_proc_cpuinfo(monkeypatch, tmp_path):
    import cornernet_tf.cpu as cpu

    monkeypatch.setattr(cpu, "CPUINFO", tmp_path / "absent")
    assert cpu.cpu_flags() is None
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra="avx512_bf16"))
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo)
    assert "avx512_bf16" in cpu.cpu_flags()


def test_slowness_warning_says_why(monkeypatch):
    import cornernet_tf.optimize as optimize

    monkeypatch.setattr(optimize, "cpu_flags", lambda: flags_in(CPUINFO.format(extra="")))
    monkeypatch.setattr(optimize.platform, "system", lambda: "Linux")
    monkeypatch.setattr(optimize.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(optimize.tf.config, "list_physical_devices", lambda kind: [])
    reason = bfloat16_slowness()
    assert "will be slow" in reason and "no native bfloat16 instructions" in reason
    monkeypatch.setattr(optimize, "_warned", False)
    with pytest.warns(RuntimeWarning, match="bfloat16 will be slow"):
        optimize.warn_if_bfloat16_is_emulated()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimize.warn_if_bfloat16_is_emulated()  # once only


@pytest.mark.e2e
def test_detect_script_takes_precision(tmp_path, tiny_weights, test_images, capsys):
    config, weights = tiny_weights
    args = ["--config", str(config), "--weights", str(weights), str(test_images[0])]
    args += ["--out", str(tmp_path / "out"), "--threshold", "0"]
    assert run_script("detect", *args, "--precision", "bfloat16") == 0
    results = json.loads((tmp_path / "out/detections.json").read_text())
    assert results[str(test_images[0])], "the seeded tiny model should detect something"
    with pytest.raises(SystemExit):
        run_script("detect", *args, "--precision", "float16")
    assert "invalid choice: 'float16'" in capsys.readouterr().err
