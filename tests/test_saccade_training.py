"""CornerNet-Saccade training: the loss against the official CornerNet_Saccade_Loss
(saccade_loss_public.npz, made by tests/data/make_saccade_loss_fixture.py) and the saccade
sampling (cornernet_tf.data.saccade) on hand-computed cases."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.losses import attention_loss, cornernet_loss, loss_terms
from tests.helpers import load_fixture

TERMS = ("focal", "attention", "pull", "push", "offset", "total")
RTOL = 1e-5  # as the CornerNet loss parity test


@pytest.fixture(scope="module")
def ref():
    return load_fixture("saccade_loss_public.npz")


def nhwc(array):
    """(..., C, H, W) -> (..., H, W, C)."""
    return tf.constant(np.moveaxis(array, -3, -1))


@pytest.fixture(scope="module")
def predictions(ref):
    names = {"heatmap": "heat", "embedding": "tag", "offset": "off"}
    out = {
        f"{corner}_{ours}": nhwc(ref[f"{corner}_{theirs}"])
        for corner in ("tl", "br")
        for ours, theirs in names.items()
    }
    out.update({f"attention_{i}": nhwc(ref[f"att_{i}"]) for i in range(3)})
    return out


@pytest.fixture(scope="module")
def targets(ref):
    out = {"mask": tf.constant(ref["tag_masks"].astype(bool))}
    for corner in ("tl", "br"):
        out[f"{corner}_heatmap"] = nhwc(ref[f"{corner}_heatmaps"])
        out[f"{corner}_valid"] = nhwc(ref[f"{corner}_valids"])
        out[f"{corner}_index"] = tf.constant(ref[f"{corner}_tags"].astype(np.int32))
        out[f"{corner}_offset"] = tf.constant(ref[f"{corner}_regrs"])
    out.update({f"attention_{i}": nhwc(ref[f"att_targets_{i}"]) for i in range(3)})
    return out


def empty_targets(targets):
    """No objects: zero heatmaps, masks and attention targets, nothing ignored."""
    out = {key: tf.zeros_like(value) for key, value in targets.items()}
    out.update({f"{c}_valid": tf.ones_like(targets[f"{c}_valid"]) for c in ("tl", "br")})
    return out


def test_fixture_targets_are_binary_with_positives_on_every_map(ref):
    for i, side in enumerate((16, 32, 64)):
        target = ref[f"att_targets_{i}"]
        assert target.shape == (2, 1, side, side)
        assert set(np.unique(target)) == {0.0, 1.0}


def test_every_term_matches_official(ref, predictions, targets):
    ours = cornernet_loss(predictions, targets)
    assert set(ours) == set(TERMS)
    for term in TERMS:
        assert ours[term].dtype == tf.float32 and ours[term].shape == ()
        np.testing.assert_allclose(ours[term], ref[f"loss_{term}"], rtol=RTOL, err_msg=term)


def test_per_stack_terms_match_official(ref, predictions, targets):
    ours = cornernet_loss(predictions, targets, per_stack=True)
    for term, theirs in (
        ("focal", "focal_per_stack"),
        ("attention", "attention_per_stack"),
        ("pull", "pull_per_stack_unweighted"),
        ("push", "push_per_stack_unweighted"),
        ("offset", "offset_per_stack"),
    ):
        np.testing.assert_allclose(ours[f"{term}_per_stack"], ref[theirs], rtol=RTOL, err_msg=term)


def test_targets_without_objects_match_official(ref, predictions, targets):
    ours = cornernet_loss(predictions, empty_targets(targets))
    for term in TERMS:
        np.testing.assert_allclose(ours[term], ref[f"nopos_loss_{term}"], rtol=RTOL, err_msg=term)


def test_runs_inside_tf_function(ref, predictions, targets):
    ours = tf.function(cornernet_loss)(predictions, targets)
    for term in TERMS:
        np.testing.assert_allclose(ours[term], ref[f"loss_{term}"], rtol=RTOL, err_msg=term)


def test_last_stack_alone_is_one_stack(ref, predictions, targets):
    # (B,h,w,C) maps are one stack: the per-stack terms of the last stack.
    last = {key: value[-1] for key, value in predictions.items()}
    ours = loss_terms(last, targets)
    np.testing.assert_allclose(ours["attention"], ref["attention_per_stack"][-1:], rtol=RTOL)
    np.testing.assert_allclose(ours["focal"], ref["focal_per_stack"][-1:], rtol=RTOL)


def test_without_attention_maps_the_cornernet_loss_is_unchanged(predictions, targets):
    plain = {k: v for k, v in predictions.items() if not k.startswith("attention")}
    ours = cornernet_loss(plain, targets)
    assert "attention" not in ours
    summed = ours["focal"] + ours["pull"] + ours["push"] + ours["offset"]
    np.testing.assert_allclose(ours["total"], summed / 3, rtol=1e-6)


def test_valid_maps_of_ones_change_nothing(predictions, targets):
    plain = {k: v for k, v in targets.items() if not k.endswith("_valid")}
    ones = {**plain, "tl_valid": tf.ones_like(targets["tl_valid"])}
    np.testing.assert_allclose(
        loss_terms(predictions, ones)["focal"], loss_terms(predictions, plain)["focal"], rtol=1e-6
    )


def test_valid_maps_mask_the_ignored_objects(predictions, targets):
    plain = {k: v for k, v in targets.items() if not k.endswith("_valid")}
    masked = loss_terms(predictions, targets)["focal"].numpy()
    unmasked = loss_terms(predictions, plain)["focal"].numpy()
    assert np.all(masked < unmasked)  # the ignored cells' negative terms are left out


def test_attention_maps_without_attention_targets_raise(predictions, targets):
    plain = {k: v for k, v in targets.items() if not k.startswith("attention")}
    with pytest.raises(ValueError, match="attention_0, attention_1, attention_2"):
        cornernet_loss(predictions, plain)


def test_attention_focal_by_hand():
    # One stack, one image, a 2 x 2 map, logits 0 (p = 0.5) and one positive cell:
    # -(log(0.5) * 0.25 + 3 * log(0.5) * 0.25) / 1; a map without positives is not divided.
    logits = [tf.zeros((1, 1, 2, 2, 1)), tf.zeros((1, 1, 1, 1, 1))]
    gt = [tf.constant([[[[1.0], [0.0]], [[0.0], [0.0]]]]), tf.zeros((1, 1, 1, 1))]
    ours = attention_loss(logits, gt)
    log_half = np.log(0.5)
    np.testing.assert_allclose(ours, [[-4 * log_half * 0.25, -log_half * 0.25]], rtol=1e-6)


def test_attention_gradients_are_finite(predictions, targets):
    keys = [f"attention_{i}" for i in range(3)]
    watched = {k: predictions[k] * 20.0 for k in keys}  # far outside the clip range
    with tf.GradientTape() as tape:
        tape.watch(watched)
        total = cornernet_loss({**predictions, **watched}, targets)["total"]
    for key, grad in tape.gradient(total, watched).items():
        assert grad is not None, key
        assert np.all(np.isfinite(grad.numpy())), key
