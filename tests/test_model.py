"""The Keras CornerNet on the tiny config: call contract, padding, shapes, save/load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import build_model, load_config
from cornernet_tf.heads import HEAD_NAMES
from cornernet_tf.layers import BN_EPSILON, Residual, SymmetricConv2D
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def two_stacks():
    return build_model(load_config(ROOT / "configs/tiny.yaml", {"model.num_stacks": 2}))


def images(batch, height, width, seed=0):
    return tf.random.stateless_normal([batch, height, width, 3], seed=[seed, 0])


def test_final_stack_contract_on_non_square_input(two_stacks):
    out = two_stacks(images(2, 127, 255), training=False)
    assert set(out) == set(HEAD_NAMES)
    assert out["tl_heatmap"].shape == (2, 32, 64, 4)
    assert out["br_heatmap"].shape == (2, 32, 64, 4)
    assert out["tl_embedding"].shape == out["br_embedding"].shape == (2, 32, 64, 1)
    assert out["tl_offset"].shape == out["br_offset"].shape == (2, 32, 64, 2)
    assert all(v.dtype == tf.float32 for v in out.values())


def test_all_stacks_puts_the_final_stack_last(two_stacks):
    x = images(1, 127, 127, seed=1)
    final = two_stacks(x, training=False)
    stacked = two_stacks(x, training=False, all_stacks=True)
    for key in HEAD_NAMES:
        assert stacked[key].shape == (2,) + tuple(final[key].shape)
        np.testing.assert_allclose(stacked[key][-1], final[key], atol=1e-6)
        assert not np.allclose(stacked[key][0], stacked[key][-1])


def test_fresh_heatmap_heads_start_at_the_official_prior(two_stacks):
    for s in range(2):
        bias = two_stacks.heads[s]["tl_heatmap"].out.bias.numpy()
        np.testing.assert_allclose(bias, -2.19)
        np.testing.assert_allclose(two_stacks.heads[s]["br_offset"].out.bias.numpy(), 0.0)


def test_bad_input_sizes_name_the_valid_ones(two_stacks):
    with pytest.raises(
        ValueError, match=r"input width 128 is not 31 mod 32; valid sides are 31, 63"
    ):
        two_stacks(images(1, 127, 128))
    with pytest.raises(ValueError, match=r"shape \(B, H, W, 3\)"):
        two_stacks(tf.zeros([1, 127, 127, 4]))


def test_strided_conv_pads_symmetrically_like_pytorch():
    # 4x4 ones, 3x3 ones kernel, stride 2, pad 1 on every side: windows cover 2x2, 2x3, 3x2, 3x3.
    conv = SymmetricConv2D(1, 3, strides=2, use_bias=False, kernel_initializer="ones")
    out = conv(tf.ones([1, 4, 4, 1]))[0, :, :, 0].numpy()
    np.testing.assert_array_equal(out, [[4, 6], [6, 9]])
    same = keras.layers.Conv2D(
        1, 3, strides=2, padding="same", use_bias=False, kernel_initializer="ones"
    )
    assert same(tf.ones([1, 4, 4, 1]))[0, 0, 0, 0] == 9  # Keras "same" would be wrong here


def test_residual_has_a_projection_skip_only_when_needed():
    same = Residual(8)
    same(tf.zeros([1, 8, 8, 8]))
    assert same.skip is None and len(same.weights) == 10
    wider = Residual(16)
    wider(tf.zeros([1, 8, 8, 8]))
    assert wider.skip is not None and len(wider.weights) == 15
    strided = Residual(8, stride=2)
    assert strided(tf.zeros([1, 8, 8, 8])).shape == (1, 4, 4, 8)
    assert strided.bn1.epsilon == BN_EPSILON == 1e-5 and strided.bn1.momentum == 0.9


def test_weights_round_trip_through_h5(two_stacks, tmp_path):
    path = str(tmp_path / "tiny.weights.h5")
    two_stacks.save_weights(path)
    other = build_model(load_config(ROOT / "configs/tiny.yaml", {"model.num_stacks": 2}))
    other.load_weights(path)
    x = images(1, 127, 127, seed=2)
    a, b = two_stacks(x, training=False), other(x, training=False)
    for key in HEAD_NAMES:
        np.testing.assert_array_equal(a[key], b[key])


def test_training_mode_uses_batch_statistics(two_stacks):
    x = images(2, 63, 63, seed=3)
    a = two_stacks(x, training=False)["tl_heatmap"]
    b = two_stacks(x, training=True)["tl_heatmap"]
    assert not np.allclose(a, b)


def test_get_config_rebuilds_the_same_architecture(two_stacks):
    clone = type(two_stacks).from_config(two_stacks.get_config())
    clone(images(1, 63, 63), all_stacks=True)
    assert [v.path for v in clone.weights] == [v.path for v in two_stacks.weights]
