"""Winograd F(4x4, 3x3) in float32 and F(2x2, 3x3) in bfloat16: the compiled transforms + matmul
equal a direct convolution, the layers choose it by map size and dtype, and inference_model /
Detector / detect.py take it."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import build_model, load_config
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


def bfloat16(values):
    return tf.cast(np.asarray(values, np.float32), tf.bfloat16)


@pytest.mark.parametrize(
    "shape, filters",
    [
        ((1, 1, 1, 3), 5),
        ((2, 13, 6, 20), 17),  # odd sides: partial tiles; channels not whole 32-lane groups
        ((1, 16, 24, 64), 96),
        ((1, 190, 190, 64), 64),  # v of 18 MB: non-temporal stores
    ],
)
@pytest.mark.parametrize("with_skip, relu", [(False, False), (True, True)])
def test_bfloat16_winograd_is_as_close_as_the_direct_convolution(shape, filters, with_skip, relu):
    """F(2x2, 3x3) on bfloat16 operands (transforms in float32, matmul in bfloat16) against the
    float64 convolution of the same bfloat16 input: within 3 times the error of TF's direct
    bfloat16 convolution (measured 1.9-2.0 times on 256 channels), relative RMS under 1%."""
    rng = np.random.default_rng(sum(shape) + filters)
    x = bfloat16(rng.normal(size=shape))
    kernel = rng.normal(size=(3, 3, shape[-1], filters)) / np.sqrt(9 * shape[-1])
    bias = rng.normal(size=filters)
    skip = bfloat16(rng.normal(size=(*shape[:3], filters))) if with_skip else None
    transformed = transform_kernel(kernel, tile=2)
    assert transformed.shape == (16, shape[-1], filters)
    y = winograd_conv(x, bfloat16(transformed), bfloat16(bias), skip=skip, relu=relu)
    assert y.dtype == tf.bfloat16 and y.shape == (*shape[:3], filters)
    as64 = lambda t: None if t is None else tf.cast(t, tf.float64).numpy()  # noqa: E731
    bias16 = as64(bfloat16(bias))
    expected = direct64(as64(x), kernel, bias16, as64(skip), relu)
    direct = tf.nn.conv2d(x, bfloat16(kernel), 1, "SAME") + bfloat16(bias16)
    if skip is not None:
        direct = direct + skip
    direct = tf.nn.relu(direct) if relu else direct

    def rms(actual):
        error = np.sqrt(np.mean((as64(actual) - expected) ** 2))
        return error / np.sqrt(np.mean(expected**2))

    assert rms(y) < 0.01
    assert rms(y) < 3 * max(rms(direct), 1e-3), (rms(y), rms(direct))
    if relu:
        assert (as64(y) == 0).any() and as64(y).min() == 0


@pytest.mark.parametrize("dtype, tile", [(tf.float32, 4), (tf.bfloat16, 2)])
def test_one_tile_by_hand(dtype, tile):
    """A 1-channel 4x4 image of ones, a kernel of ones: each output counts its 3x3 neighbours
    inside the image (4 at the corners, 6 on the edges, 9 inside), plus the bias. Every
    intermediate value is exact in bfloat16 too."""
    x = tf.ones((1, 4, 4, 1), dtype)
    kernel = tf.cast(transform_kernel(np.ones((3, 3, 1, 1)), tile), dtype)
    y = winograd_conv(x, kernel, tf.constant([0.5], dtype))
    counts = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])
    np.testing.assert_array_equal(tf.cast(y, tf.float32)[0, :, :, 0], counts + 0.5)


def test_bfloat16_nan_stays_nan():
    """The float32 -> bfloat16 rounding of the transforms has no NaN test (the op's comment says
    why none is needed): a NaN pixel makes NaNs where a direct convolution has them (its 3x3
    neighbourhood), never infinities, and the same numbers elsewhere."""
    x = np.ones((1, 8, 8, 32), np.float32)
    x[0, 3, 4, 5] = np.nan
    kernel = np.ones((3, 3, 32, 32)) / 9
    transformed = bfloat16(transform_kernel(kernel, tile=2))
    y = tf.cast(winograd_conv(bfloat16(x), transformed, bfloat16(np.zeros(32))), tf.float32)
    expected = direct64(x, kernel, 0.0)
    assert np.isnan(expected).sum() == 9 * 32
    np.testing.assert_allclose(y, expected, rtol=1e-2)  # NaNs where expected has them


def test_bad_shapes_are_named():
    ops = custom.load()
    x = tf.zeros([1, 8, 8, 4])
    with pytest.raises(ValueError, match=r"expected a \(3, 3, C, K\) kernel"):
        transform_kernel(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"tile must be one of \[2, 4\], got 3"):
        transform_kernel(np.zeros((3, 3, 4, 4)), tile=3)
    with pytest.raises(ValueError, match=r"a transformed kernel is \(36 or 16, C, K\)"):
        winograd_conv(x, tf.zeros([25, 4, 4]), tf.zeros([4]))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="tile must be 2 or 4"):
        ops.winograd_input(x, tile=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="m must be"):
        ops.winograd_output(tf.zeros([36, 3, 4]), tf.zeros([4]), x, [])
    with pytest.raises(tf.errors.InvalidArgumentError, match="skip must be"):
        ops.winograd_output(tf.zeros([36, 4, 4]), tf.zeros([4]), x, [tf.zeros([1, 8, 8, 5])])


def test_small_maps_keep_the_direct_convolution():
    """Below MIN_SIDES the larger Winograd kernel costs more than it saves; the tile follows the
    compute dtype (F(4x4, 3x3) in float32: 36 positions from 16 x 16 maps on, F(2x2, 3x3) in
    bfloat16: 16 positions from 4 x 4 on)."""
    small, large = WinogradConv2D(8, name="small"), WinogradConv2D(8, name="large")
    small(tf.zeros([1, 8, 8, 4]))
    large(tf.zeros([1, 16, 16, 4]))
    assert not small.winograd and small.kernel.shape == (3, 3, 4, 8)
    assert large.winograd and large.kernel.shape == (36, 4, 8)
    assert small.kernel.path.endswith("/kernel") and large.kernel.path.endswith("winograd_kernel")
    mixed = WinogradConv2D(8, dtype="mixed_bfloat16", name="mixed")
    y = mixed(tf.zeros([1, 4, 6, 4]))
    assert mixed.winograd and mixed.kernel.shape == (16, 4, 8) and y.dtype == tf.bfloat16
    tiny = WinogradConv2D(8, dtype="mixed_bfloat16", name="tiny")
    tiny(tf.zeros([1, 3, 8, 4]))
    assert not tiny.winograd and tiny.kernel.shape == (3, 3, 4, 8)


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


def test_bfloat16_winograd_model_is_as_close_to_float32_as_the_direct_one(two_stacks):
    """The whole network in bfloat16: with Winograd F(2x2, 3x3) its outputs stay within about
    twice the bfloat16 network's distance from the float32 one."""
    folded = fold_batchnorm(two_stacks)
    direct = inference_model(two_stacks, "bfloat16")
    fast = inference_model(two_stacks, "bfloat16", winograd=True)
    layers = [layer for layer in fast._flatten_layers() if isinstance(layer, WinogradConv2D)]
    assert sum(layer.winograd for layer in layers) >= 10
    assert all(layer.kernel.shape[0] == 16 for layer in layers if layer.winograd)
    x = tf.random.stateless_normal([1, 127, 191, 3], seed=[1, 0])
    expected = folded(x, training=False)
    for key, value in fast(x, training=False).items():
        assert value.dtype == tf.float32
        reference = direct(x, training=False)[key]
        error = np.sqrt(np.mean((value - expected[key]) ** 2))
        direct_error = np.sqrt(np.mean((reference - expected[key]) ** 2))
        assert error < 3 * direct_error, (key, error, direct_error)


def test_a_winograd_model_does_not_change_its_precision(two_stacks):
    """Its kernels are transformed for its tile (36 or 16 positions): the other precision is made
    from the model it came from, and saying so beats a shape mismatch deep in Keras."""
    fast = inference_model(two_stacks, winograd=True)
    with pytest.raises(ValueError, match="transformed for float32; make the bfloat16 Winograd"):
        inference_model(fast, "bfloat16", winograd=True)
    assert inference_model(two_stacks, "bfloat16", winograd=True).precision == "bfloat16"


def test_winograd_needs_folded_and_the_ops(two_stacks, monkeypatch):
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


def test_detector_with_winograd_finds_the_same_boxes(tiny_weights):
    config_path, weights = tiny_weights
    image = tf.cast(tf.random.stateless_uniform([120, 150, 3], [3, 4], maxval=256), tf.uint8)
    direct = Detector.from_files(config_path, weights)(image)
    fast = Detector.from_files(config_path, weights, ["test.winograd=true"])(image)
    assert len(direct["scores"]) > 0
    np.testing.assert_array_equal(fast["classes"], direct["classes"])
    np.testing.assert_allclose(fast["boxes"], direct["boxes"], atol=1e-2)
    np.testing.assert_allclose(fast["scores"], direct["scores"], atol=1e-4)


def test_detector_with_bfloat16_winograd_finds_the_boxes_of_bfloat16(tiny_weights):
    """test.winograd with test.precision bfloat16 (F(2x2, 3x3)): the same classes, boxes and
    scores as the direct bfloat16 Detector, within bfloat16's rounding."""
    config_path, weights = tiny_weights
    image = tf.cast(tf.random.stateless_uniform([120, 150, 3], [3, 4], maxval=256), tf.uint8)
    bf16 = ["test.precision=bfloat16"]
    direct = Detector.from_files(config_path, weights, bf16)(image)
    fast = Detector.from_files(config_path, weights, [*bf16, "test.winograd=true"])(image)
    top = np.argsort(-direct["scores"])[:5]
    assert len(top) > 0
    best = {tuple(np.round(box)) for box in fast["boxes"][np.argsort(-fast["scores"])[:10]]}
    for i in top:
        assert any(np.abs(np.array(box) - direct["boxes"][i]).max() <= 2 for box in best)


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
