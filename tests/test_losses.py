"""cornernet_loss against the official AELoss (loss_public.npz) and small hand-computed cases."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.losses import cornernet_loss, gather_at, loss_terms
from tests.helpers import load_fixture

TERMS = ("focal", "pull", "push", "offset", "total")
RTOL = 1e-5


@pytest.fixture(scope="module")
def ref():
    return load_fixture("loss_public.npz")


@pytest.fixture(scope="module")
def predictions(ref):
    """The fixture's raw maps, (S,B,C,H,W) -> (S,B,H,W,C)."""
    names = {"heatmap": "heat", "embedding": "tag", "offset": "regr"}
    return {
        f"{corner}_{ours}": tf.constant(np.transpose(ref[f"{corner}_{theirs}"], (0, 1, 3, 4, 2)))
        for corner in ("tl", "br")
        for ours, theirs in names.items()
    }


@pytest.fixture(scope="module")
def targets(ref):
    out = {"mask": tf.constant(ref["tag_masks"].astype(bool))}
    for corner in ("tl", "br"):
        out[f"{corner}_heatmap"] = tf.constant(
            np.transpose(ref[f"{corner}_heatmaps"], (0, 2, 3, 1))
        )
        out[f"{corner}_index"] = tf.constant(ref[f"{corner}_tags"].astype(np.int32))
        out[f"{corner}_offset"] = tf.constant(ref[f"{corner}_regrs"])
    return out


def take_images(tensors, images, stacked):
    """The given images of a batch (axis 1 of the predictions, axis 0 of the targets)."""
    return {k: tf.gather(v, images, axis=1 if stacked else 0) for k, v in tensors.items()}


def tiny_case(tl_tags, br_tags, mask, h=4, w=4, classes=1):
    """One image, one stack, h x w maps; object k sits at flat index k with embeddings
    tl_tags[k], br_tags[k]; zero logits and offsets."""
    count = len(mask)
    predictions = {}
    targets = {"mask": tf.constant([mask], tf.bool)}
    for corner, tags in (("tl", tl_tags), ("br", br_tags)):
        embedding = np.zeros((1, 1, h * w, 1), np.float32)
        embedding[0, 0, :count, 0] = tags
        predictions[f"{corner}_embedding"] = tf.constant(embedding.reshape(1, 1, h, w, 1))
        predictions[f"{corner}_heatmap"] = tf.zeros((1, 1, h, w, classes))
        predictions[f"{corner}_offset"] = tf.zeros((1, 1, h, w, 2))
        targets[f"{corner}_heatmap"] = tf.zeros((1, h, w, classes))
        targets[f"{corner}_index"] = tf.constant([np.arange(count)], tf.int32)
        targets[f"{corner}_offset"] = tf.zeros((1, count, 2))
    return predictions, targets


def test_summed_terms_match_official(ref, predictions, targets):
    ours = cornernet_loss(predictions, targets)
    for term in TERMS:
        assert ours[term].dtype == tf.float32 and ours[term].shape == ()
        np.testing.assert_allclose(ours[term], ref[f"loss_{term}"], rtol=RTOL, err_msg=term)


def test_per_stack_terms_match_official(ref, predictions, targets):
    ours = cornernet_loss(predictions, targets, per_stack=True)
    np.testing.assert_allclose(ours["focal_per_stack"], ref["focal_per_stack"], rtol=RTOL)
    np.testing.assert_allclose(ours["pull_per_stack"], ref["pull_per_stack_unweighted"], rtol=RTOL)
    np.testing.assert_allclose(ours["push_per_stack"], ref["push_per_stack_unweighted"], rtol=RTOL)
    np.testing.assert_allclose(ours["offset_per_stack"], ref["offset_per_stack"], rtol=RTOL)


def test_empty_targets_match_official_nopos(ref, predictions, targets):
    empty = {key: tf.zeros_like(value) for key, value in targets.items()}
    ours = cornernet_loss(predictions, empty)
    for term in TERMS:
        np.testing.assert_allclose(ours[term], ref[f"nopos_loss_{term}"], rtol=RTOL, err_msg=term)


def test_runs_inside_tf_function(ref, predictions, targets):
    ours = tf.function(cornernet_loss)(predictions, targets)
    for term in TERMS:
        np.testing.assert_allclose(ours[term], ref[f"loss_{term}"], rtol=RTOL, err_msg=term)


def test_batch_of_one_embedding_terms_add_up_to_the_batch(ref, predictions, targets):
    # Pull and push are normalised per image and summed over images, so the two single-image
    # losses add up to the batch's. (The official code cannot run a batch of one.)
    singles = [
        cornernet_loss(take_images(predictions, [i], True), take_images(targets, [i], False))
        for i in range(2)
    ]
    for single in singles:
        assert all(np.isfinite(single[term].numpy()) for term in TERMS)
    for term in ("pull", "push"):
        total = singles[0][term] + singles[1][term]
        np.testing.assert_allclose(total, ref[f"loss_{term}"], rtol=RTOL, err_msg=term)


def test_gather_at_picks_flat_indices():
    maps = tf.reshape(tf.range(2 * 3 * 4 * 5 * 2, dtype=tf.float32), (2, 3, 4, 5, 2))
    index = tf.constant([[0, 7], [19, 3], [6, 6]], tf.int32)  # y * 5 + x
    ours = gather_at(maps, index)
    expected = np.reshape(maps.numpy(), (2, 3, 20, 2))[:, np.arange(3)[:, None], index.numpy()]
    assert ours.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(ours, expected)


def test_push_of_single_object_is_the_official_constant():
    # One object: relu(1 - 0) = 1, minus 1 / (1 + 1e-4), divided by (1 * 0 + 1e-4). In float32
    # the cancellation gives 1.000166 rather than the exact 0.99990001.
    predictions, targets = tiny_case([0.3], [0.7], [True])
    terms = loss_terms(predictions, targets)
    one, eps = np.float32(1.0), np.float32(1e-4)
    expected = (one - one / (one + eps)) / eps
    np.testing.assert_allclose(terms["push"], [expected], rtol=1e-6)
    np.testing.assert_allclose(terms["push"], [1.000166], rtol=1e-6)
    # pull: e = 0.5, (0.2^2 + 0.2^2) / (1 + 1e-4)
    np.testing.assert_allclose(terms["pull"], [0.08 / 1.0001], rtol=RTOL)


def test_pull_and_push_of_two_objects_by_hand():
    # tl tags (0.2, 1.0), br tags (0.4, 1.4): means e = (0.3, 1.2).
    # pull = (0.1^2 + 0.1^2 + 0.2^2 + 0.2^2) / (2 + 1e-4) = 0.1 / 2.0001
    # push: pairs (j, k) incl. j == k: relu(1 - |e_j - e_k|) = 1, 0.1, 0.1, 1, so
    #       (2.2 - 4 / 2.0001) / (2 * 1 + 1e-4) ~ 0.10005 (the paper's mean over j != k is 0.1).
    # A third, masked-out object must not count.
    predictions, targets = tiny_case([0.2, 1.0, 5.0], [0.4, 1.4, -3.0], [True, True, False])
    terms = loss_terms(predictions, targets)
    np.testing.assert_allclose(terms["pull"], [0.1 / 2.0001], rtol=RTOL)
    np.testing.assert_allclose(terms["push"], [(2.2 - 4 / 2.0001) / 2.0001], rtol=RTOL)


def test_image_without_objects_adds_no_embedding_or_offset_loss():
    predictions, targets = tiny_case([0.2, 1.0], [0.4, 1.4], [False, False])
    out = cornernet_loss(predictions, targets)
    for term in ("pull", "push", "offset"):
        assert out[term].numpy() == 0.0, term


def test_focal_and_offset_of_a_tiny_case_by_hand():
    # 1 class, 2x2 map, zero logits (p = 0.5 everywhere): gt = [[1, 0.5], [0, 1]] has 2 positives.
    # pos: 2 * log(0.5) * 0.25; neg: log(0.5) * 0.25 * ((1 - 0.5)^4 + 1^4).
    # offset: prediction 0 vs targets (0.5, 0.25) and (2.0, 0.0) -> smooth-L1
    #   0.5 * 0.25 + 0.5 * 0.0625 + (2.0 - 0.5) + 0 = 1.65625, / (2 + 1e-4).
    predictions, targets = tiny_case([0.0, 0.0], [0.0, 0.0], [True, True], h=2, w=2)
    gt = tf.constant([[[[1.0], [0.5]], [[0.0], [1.0]]]])
    targets.update(tl_heatmap=gt, br_heatmap=gt, tl_offset=tf.constant([[[0.5, 0.25], [2.0, 0]]]))
    terms = loss_terms(predictions, targets)
    log_half = np.log(0.5)
    focal = -(2 * log_half * 0.25 + log_half * 0.25 * (0.5**4 + 1.0)) / 2
    np.testing.assert_allclose(terms["focal"], [[focal, focal]], rtol=RTOL)
    np.testing.assert_allclose(terms["offset"], [[1.65625 / 2.0001, 0.0]], rtol=RTOL)


def test_weights_and_total():
    predictions, targets = tiny_case([0.2, 1.0], [0.4, 1.4], [True, True])
    targets["tl_offset"] = tf.constant([[[0.5, 0.25], [0.1, 0.0]]])
    terms = loss_terms(predictions, targets)
    out = cornernet_loss(predictions, targets, pull_weight=0.5, push_weight=2.0, offset_weight=3.0)
    np.testing.assert_allclose(out["pull"], 0.5 * terms["pull"][0], rtol=1e-6)
    np.testing.assert_allclose(out["push"], 2.0 * terms["push"][0], rtol=1e-6)
    np.testing.assert_allclose(out["offset"], 3.0 * np.sum(terms["offset"]), rtol=1e-6)
    summed = out["focal"] + out["pull"] + out["push"] + out["offset"]
    np.testing.assert_allclose(out["total"], summed, rtol=1e-6)  # one stack


@pytest.mark.parametrize("objects", [0, 1, 2])
def test_gradients_are_finite(objects):
    # Tied embeddings (|e_j - e_k| = 0), logits far outside the clip range, and images with 0, 1
    # and 2 objects, for a batch of two images and two stacks.
    rng = np.random.default_rng(0)
    h = w = 4
    predictions = {}
    targets = {"mask": tf.constant([[k < objects for k in range(3)], [False] * 3])}
    for corner in ("tl", "br"):
        heat = rng.normal(size=(2, 2, h, w, 3)).astype(np.float32) * 20
        embedding = np.full((2, 2, h, w, 1), 0.5, np.float32)
        predictions[f"{corner}_heatmap"] = tf.constant(heat)
        predictions[f"{corner}_embedding"] = tf.constant(embedding)
        predictions[f"{corner}_offset"] = tf.constant(rng.normal(size=(2, 2, h, w, 2)), tf.float32)
        gt = np.zeros((2, h, w, 3), np.float32)
        gt[0, 1, 1, 0], gt[0, 1, 2, 0] = 1.0, 0.5
        targets[f"{corner}_heatmap"] = tf.constant(gt)
        targets[f"{corner}_index"] = tf.constant([[5, 5, 0], [0, 0, 0]], tf.int32)
        targets[f"{corner}_offset"] = tf.constant(rng.uniform(size=(2, 3, 2)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(predictions)
        total = cornernet_loss(predictions, targets)["total"]
    grads = tape.gradient(total, predictions)
    assert np.isfinite(total.numpy())
    for key, grad in grads.items():
        assert grad is not None, key
        assert np.all(np.isfinite(grad.numpy())), key


def test_gradients_are_finite_for_empty_targets(predictions, targets):
    # The num_pos == 0 branch of the focal loss, and no objects for pull, push and offset.
    empty = {key: tf.zeros_like(value) for key, value in targets.items()}
    with tf.GradientTape() as tape:
        tape.watch(predictions)
        total = cornernet_loss(predictions, empty)["total"]
    for key, grad in tape.gradient(total, predictions).items():
        assert grad is not None, key
        assert np.all(np.isfinite(grad.numpy())), key


def test_push_of_single_object_has_zero_gradient():
    predictions, targets = tiny_case([0.3], [0.7], [True])
    embeddings = [predictions["tl_embedding"], predictions["br_embedding"]]
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        push = loss_terms(predictions, targets)["push"]
    for grad in tape.gradient(push, embeddings):
        np.testing.assert_array_equal(grad, 0.0)
