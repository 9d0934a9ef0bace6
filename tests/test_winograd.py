"""Winograd F(4x4, 3x3): the compiled transforms + matmul equal a direct convolution, the layers
choose it by map size, and inference_model / Detector / detect.py take it."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import ConfigError, build_model, load_config
from cornernet_tf.heads import HEAD_NAMES
from cornernet_tf.inference import Detector
from cornernet_tf.layers import WinogradConv2D
from cornernet_tf.ops import custom
from cornernet_tf.ops.winograd import transform_kernel, winograd_conv
from cornernet_tf.optimize import fold_batchnorm, inference_model
from tests.helpers import ROOT, run_script

pytestmark = pytest.mark.custom_op  # skipped, with the reason, where the ops are not built


def direct64(x, kernel, bias, skip=None, relu=False):
    """The float64 reference: conv2d(x, kernel, SAME) + bias (+ skip), ReLU."""
    y = tf.nn.conv2d(np.float64(x), np.float64(kernel), 1, "SAME").numpy() + bias
    if skip is not None:
        y = y + skip
    return np.maximum(y, 0) if relu else y


@pytest.mark.parametrize(
    "shape, filters",
    [
        ((1, 1, 1, 3), 5),
        ((1, 2, 3, 16), 16),
        ((2, 13, 6, 20), 17),
        ((1, 16, 24, 40), 33),
        ((1, 189, 192, 64), 16),  # v over 16 MB: written with non-temporal stores
        ((1, 189, 192, 72), 16),  # over 16 MB, channels not whole 16-lane groups: plain stores
    ],
)
@pytest.mark.parametrize("with_skip, relu", [(False, False), (True, True)])
def test_winograd_equals_the_direct_convolution(shape, filters, with_skip, relu):
    """Partial tiles at the borders, channel counts that are not multiples of 16, a batch of 2,
    transforms larger than the caches.
    Unit-scale outputs: the direct float32 convolution is within ~1e-5 of float64, Winograd
    within ~1e-4 (measured up to 9e-5 on 384 channels)."""
    rng = np.random.default_rng(sum(shape) + filters)
    x = rng.normal(size=shape).astype(np.float32)
    kernel = (rng.normal(size=(3, 3, shape[-1], filters)) / np.sqrt(9 * shape[-1])).astype("f4")
    bias = rng.normal(size=filters).astype(np.float32)
    skip = rng.normal(size=(*shape[:3], filters)).astype(np.float32) if with_skip else None
    y = winograd_conv(x, transform_kernel(kernel), bias, skip=skip, relu=relu).numpy()
    expected = direct64(x, kernel, bias, skip, relu)
    assert y.shape == expected.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, atol=1e-4)
    if relu:
        assert (y == 0).any() and y.min() == 0


def test_one_tile_by_hand():
    """A 1-channel 4x4 image of ones, a kernel of ones: each output counts its 3x3 neighbours
    inside the image (4 at the corners, 6 on the edges, 9 inside), plus the bias."""
    x = np.ones((1, 4, 4, 1), np.float32)
    y = winograd_conv(x, transform_kernel(np.ones((3, 3, 1, 1))), np.float32([0.5])).numpy()
    counts = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])
    np.testing.assert_allclose(y[0, :, :, 0], counts + 0.5, rtol=1e-6)


def test_bad_shapes_are_named():
    ops = custom.load()
    x = tf.zeros([1, 8, 8, 4])
    with pytest.raises(ValueError, match=r"expected a \(3, 3, C, K\) kernel"):
        transform_kernel(np.zeros((1, 1, 4, 4)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="m must be"):
        ops.winograd_output(tf.zeros([36, 3, 4]), tf.zeros([4]), x, [])
    with pytest.raises(tf.errors.InvalidArgumentError, match="skip must be"):
        ops.winograd_output(tf.zeros([36, 4, 4]), tf.zeros([4]), x, [tf.zeros([1, 8, 8, 5])])


def test_small_maps_keep_the_direct_convolution():
    """Below MIN_SIDE the 4x larger Winograd kernel costs more than it saves."""
    small, large = WinogradConv2D(8, name="small"), WinogradConv2D(8, name="large")
    small(tf.zeros([1, 8, 8, 4]))
    large(tf.zeros([1, 16, 16, 4]))
    assert not small.winograd and small.kernel.shape == (3, 3, 4, 8)
    assert large.winograd and large.kernel.shape == (36, 4, 8)
    assert small.kernel.path.endswith("/kernel") and large.kernel.path.endswith("winograd_kernel")


@pytest.fixture(scope="module")
def two_stacks():
    """The tiny config, two stacks, one more level (its innermost maps, 8 x 8 at the Winograd
    build side 511, stay direct), random BatchNorm statistics (folded biases are not zero)."""
    keras.utils.set_random_seed(0)
    deeper = {
        "model.num_stacks": 2,
        "model.depth": 4,
        "model.dims": [48, 64, 96, 128, 128],
        "model.modules": [1, 1, 1, 1, 2],
        "data.input_size": [191, 191],
    }
    model = build_model(load_config(ROOT / "configs/tiny.yaml", deeper))
    rng = np.random.default_rng(0)
    for variable in model.weights:
        name = variable.path.rsplit("/", 1)[-1]
        if name in ("beta", "moving_mean"):
            variable.assign(rng.normal(0.0, 0.2, variable.shape))
        elif name in ("gamma", "moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape))
    return model


@pytest.mark.parametrize("all_stacks", [False, True])
def test_winograd_model_equals_the_folded_one(two_stacks, all_stacks):
    folded = fold_batchnorm(two_stacks)
    fast = inference_model(two_stacks, winograd=True)
    layers = [layer for layer in fast._flatten_layers() if isinstance(layer, WinogradConv2D)]
    chosen = [layer.winograd for layer in layers]
    assert sum(chosen) >= 10 and not all(chosen)  # the smallest maps stay direct
    x = tf.random.stateless_normal([2, 127, 191, 3], seed=[1, 0])
    expected = folded(x, training=False, all_stacks=all_stacks)
    actual = fast(x, training=False, all_stacks=all_stacks)
    for key in HEAD_NAMES:
        assert actual[key].dtype == tf.float32
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-4, err_msg=key)


def test_winograd_needs_float32_folded_and_the_ops(two_stacks, monkeypatch):
    with pytest.raises(ValueError, match="winograd needs precision float32"):
        inference_model(two_stacks, "bfloat16", winograd=True)
    with pytest.raises(ValueError, match="folded BatchNorm"):
        inference_model(two_stacks, fold=False, winograd=True)
    monkeypatch.setattr(custom, "load", lambda: None)
    monkeypatch.setattr(custom, "load_error", lambda: "_custom_ops.so is not built")
    with pytest.raises(RuntimeError, match=r"run `make ops`.*not built"):
        inference_model(two_stacks, winograd=True)


def test_winograd_warns_where_a_gpu_is(two_stacks, monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    with pytest.warns(RuntimeWarning, match="transforms run on the CPU only"):
        inference_model(two_stacks, winograd=True)


def test_config_refuses_winograd_in_bfloat16():
    overrides = {"test.winograd": True, "test.precision": "bfloat16"}
    with pytest.raises(ConfigError, match="test.winograd needs test.precision float32"):
        load_config(ROOT / "configs/tiny.yaml", overrides)


def test_detector_with_winograd_finds_the_same_boxes(tiny_weights):
    config_path, weights = tiny_weights
    image = tf.cast(tf.random.stateless_uniform([120, 150, 3], [3, 4], maxval=256), tf.uint8)
    direct = Detector.from_files(config_path, weights)(image)
    fast = Detector.from_files(config_path, weights, ["test.winograd=true"])(image)
    assert len(direct["scores"]) > 0
    np.testing.assert_array_equal(fast["classes"], direct["classes"])
    np.testing.assert_allclose(fast["boxes"], direct["boxes"], atol=1e-2)
    np.testing.assert_allclose(fast["scores"], direct["scores"], atol=1e-4)


@pytest.mark.e2e
def test_detect_script_takes_winograd(tmp_path, tiny_weights, test_images):
    config, weights = tiny_weights
    args = ["--config", str(config), "--weights", str(weights), str(test_images[0])]
    args += ["--out", str(tmp_path / "out"), "--threshold", "0", "--winograd"]
    assert run_script("detect", *args) == 0
    results = json.loads((tmp_path / "out/detections.json").read_text())
    assert results[str(test_images[0])], "the seeded tiny model should detect something"


def test_winograd_on_squeeze_says_what_it_leaves_out():
    """CornerNet-Squeeze's fire modules have no Winograd form: the variant uses it where it
    applies, says how many convolutions that is, and still computes the same outputs."""
    config = load_config(
        ROOT / "configs/tiny.yaml",
        {"model.output_stride": 8, "model.block": "fire", "model.upsample": "transposed",
         "model.head_kernel": 1, "model.depth": 2, "model.dims": [48, 64, 96],
         "model.modules": [1, 1, 2]},
    )  # fmt: skip
    model = build_model(config)
    with pytest.warns(RuntimeWarning, match=r"winograd applies to \d+ of the \d+ convolutions"):
        network = inference_model(model, winograd=True)
    assert any(isinstance(layer, WinogradConv2D) for layer in network._flatten_layers())
    x = tf.random.stateless_normal([1, 127, 127, 3], seed=[1, 2])
    expected = fold_batchnorm(model)(x)
    for key, value in network(x).items():
        np.testing.assert_allclose(value, expected[key], atol=2e-3, err_msg=key)
