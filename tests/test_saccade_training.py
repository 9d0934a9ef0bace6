"""CornerNet-Saccade training: the loss against the official CornerNet_Saccade_Loss
(saccade_loss_public.npz, made by tests/data/make_saccade_loss_fixture.py) and the saccade
sampling (cornernet_tf.data.saccade) on hand-computed cases."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.config import DataConfig
from cornernet_tf.data.augment import crop_around
from cornernet_tf.data.saccade import (
    attention_targets,
    crop_border,
    crop_center,
    reference_scale,
    resized_window,
    saccade_boxes,
    saccade_sample,
)
from cornernet_tf.losses import attention_loss, cornernet_loss, loss_terms
from cornernet_tf.targets import draw_heatmaps, draw_valid_maps, encode_corners
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


# ---------------------------------------------------------------------------------------------
# Sampling: saccade_sampling_public.npz (tests/data/make_saccade_sampling_fixture.py) holds the
# official box geometry for given random choices and samples of the official random draws.

DATA = DataConfig()
DRAWS = 20000


@pytest.fixture(scope="module")
def sampling():
    return load_fixture("saccade_sampling_public.npz")


def draws(fn, count=DRAWS):
    """fn(seed) for `count` seeds, batched: tf.data runs the small graph in parallel."""
    seeds = tf.data.Dataset.range(count).map(lambda i: tf.stack([i, tf.constant(11, tf.int64)]))
    return next(iter(seeds.map(fn, num_parallel_calls=2).batch(count)))


def coarse_distance(ours, theirs, edges):
    """Total variation distance of two samples' histograms over `edges`."""
    p = np.histogram(ours, edges)[0] / len(ours)
    q = np.histogram(theirs, edges)[0] / len(theirs)
    return 0.5 * np.abs(p - q).sum()


def test_box_geometry_matches_official(sampling):
    for k in range(len(sampling["counts"])):
        n, m = sampling["counts"][k], sampling["out_counts"][k]
        ours = saccade_boxes(
            sampling["boxes"][k, :n],
            sampling["image_size"][k],
            sampling["scale"][k],
            sampling["center"][k],
            sampling["flipped"][k],
        )
        np.testing.assert_array_equal(ours["index"], sampling["out_index"][k, :m], err_msg=k)
        np.testing.assert_allclose(
            ours["boxes"], sampling["out_boxes"][k, :m], atol=1e-4, err_msg=str(k)
        )
        np.testing.assert_array_equal(ours["ignore"], sampling["out_ignore"][k, :m], err_msg=k)
        for i, attention in enumerate(attention_targets(ours["boxes"])):
            np.testing.assert_array_equal(
                attention[..., 0], sampling[f"attention_{i}"][k], err_msg=f"{k} {i}"
            )


@pytest.mark.parametrize(("side", "low", "high"), [(200, 96, 254), (60, 32, 96), (10, 16, 32)])
def test_reference_size_is_distributed_as_official(sampling, side, low, high):
    box = tf.constant([[0.0, 0.0, side, side / 2]])
    scale, index = draws(lambda seed: reference_scale(box, seed))
    assert np.all(index.numpy() == 0)
    ours = np.round(scale.numpy() * side).astype(int)
    theirs = sampling[f"size_{side}"]
    assert (ours.min(), ours.max()) == (theirs.min(), theirs.max()) == (low, high)
    assert coarse_distance(ours, theirs, np.linspace(low, high + 1, 9)) < 0.03


def test_full_image_crop_probability_and_scales(sampling):
    box = tf.constant([[0.0, 0.0, 50.0, 50.0]])
    scale, index = draws(lambda seed: reference_scale(box, seed, rand_full_crop=True))
    full = index.numpy() < 0
    assert abs(full.mean() - 0.3) < 0.015 and abs(sampling["full_fraction"] - 0.3) < 0.015
    np.testing.assert_allclose(np.unique(scale.numpy()[full]), np.arange(0.5, 1.1, 0.1))
    assert np.all(reference_scale(tf.zeros([0, 4]), tf.constant([1, 2]))[1] == -1)


@pytest.mark.parametrize(
    ("name", "image_size", "has_reference"),
    [
        ("center_box", (600, 800), True),
        ("center_none", (600, 800), False),
        ("center_narrow", (200, 800), True),
    ],
)
def test_crop_center_is_distributed_as_official(sampling, name, image_size, has_reference):
    box = tf.constant([300.0, 200.0, 420.0, 260.0])
    ours = draws(lambda seed: crop_center(image_size, box, has_reference, seed)).numpy()
    theirs = sampling[name]
    for axis in (0, 1):
        assert ours[:, axis].min() == theirs[:, axis].min(), (name, axis)
        assert ours[:, axis].max() == theirs[:, axis].max(), (name, axis)
        edges = np.arange(theirs[:, axis].min(), theirs[:, axis].max() + 11, 10)
        assert coarse_distance(ours[:, axis], theirs[:, axis], edges) < 0.04, (name, axis)


def test_centre_draws_by_hand():
    # A 600 x 800 image, box x 300..420, y 200..260: the window's left edge is uniform in
    # [max(420 - 255, 0), min(800 - 255, 300)] = [165, 300], so cx - 127 is; the centred crop
    # has cx in [360 - 14, 360 + 14]. An image side <= 255 gives its centre.
    box = tf.constant([300.0, 200.0, 420.0, 260.0])
    ours = draws(lambda seed: crop_center((600, 800), box, True, seed), 4000).numpy()
    cx = ours[:, 1]
    near = np.abs(cx - 360) <= 14
    assert np.all((cx >= 165 + 127) & (cx <= 300 + 127) | near)
    assert 0.5 < near.mean() < 0.6  # half centred, plus the windows that fall near 360
    small = draws(lambda seed: crop_center((200, 255), box, True, seed), 100).numpy()
    assert np.all(small == [100, 127])


def test_attention_targets_by_hand():
    boxes = tf.constant(
        [
            [80.0, 45.0, 180.0, 95.0],  # 100 x 50, centre (130, 70): map 0, cell (4, 8)
            [80.0, 50.0, 120.0, 70.0],  # 40 x 20, centre (100, 60): map 1, cell (7, 12)
            [28.0, 196.0, 38.0, 206.0],  # 10 x 10, centre (33, 201): map 2, cell (50, 8)
            [0.0, 0.0, 96.0, 10.0],  # exactly 96, centre (48, 5): maps 0 (0, 3) and 1 (0, 6)
            [200.0, 200.0, 232.0, 220.0],  # exactly 32, centre (216, 210): maps 1 and 2
        ]
    )
    maps = [m.numpy()[..., 0] for m in attention_targets(boxes)]
    assert [m.shape for m in maps] == [(16, 16), (32, 32), (64, 64)]
    expected = [
        {(4, 8), (0, 3)},
        {(7, 12), (0, 6), (26, 27)},
        {(50, 8), (52, 54)},
    ]
    for attention, cells in zip(maps, expected, strict=True):
        assert set(zip(*np.nonzero(attention), strict=True)) == cells
        assert set(np.unique(attention)) == {0.0, 1.0}


def test_crop_of_boxes_by_hand():
    # A 300 x 400 image scaled by 0.5 is 150 x 200, smaller than the crop: centre (75, 100),
    # shift (100 - 127, 75 - 127) = (-27, -52); the image shows in rows 52..201, columns 27..226.
    boxes = tf.constant(
        [
            [100.0, 50.0, 200.0, 150.0],  # -> [50, 25, 100, 75] -> [77, 77, 127, 127]
            [-40.0, 100.0, 60.0, 180.0],  # clipped to x 0 -> [27, 102, 57, 142]; 60% left
            # clipped to the image's [380, 280, 399, 299] -> [190, 140, 199.5, 149.5] ->
            # [217, 192, 226.5, 201.5], clipped to the crop's x <= 226, y <= 201: 81 of the
            # 20 x 25 scaled pixels left, ignored
            [380.0, 280.0, 420.0, 330.0],
            [500.0, 10.0, 600.0, 40.0],  # outside the image: dropped
        ]
    )
    ours = saccade_boxes(boxes, (300, 400), 0.5, (75, 100), False)
    np.testing.assert_allclose(
        ours["boxes"],
        [[77, 77, 127, 127], [27, 102, 57, 142], [217, 192, 226, 201]],
    )
    np.testing.assert_array_equal(ours["index"], [0, 1, 2])
    np.testing.assert_array_equal(ours["ignore"], [False, False, True])
    np.testing.assert_array_equal(crop_border((150, 200), (75, 100)), [52, 202, 27, 227])
    flipped = saccade_boxes(boxes, (300, 400), 0.5, (75, 100), True)
    np.testing.assert_allclose(flipped["boxes"][0], [127, 77, 177, 127])  # x' = 254 - x

    # A 1000 x 1000 image at scale 1, crop centred at (500, 500): pixels 373 .. 626; a box at
    # 600 .. 700 is clipped to column and row 253 (the border's x1 - 1), 6.8% of it left.
    big = saccade_boxes(
        tf.constant([[600.0, 600.0, 700.0, 700.0]]), (1000, 1000), 1.0, (500, 500), False
    )
    np.testing.assert_allclose(big["boxes"], [[227, 227, 253, 253]])
    np.testing.assert_array_equal(big["ignore"], [True])


@pytest.mark.parametrize(
    ("size", "center"), [((80, 120), (40, 60)), ((20, 31), (10, 15)), ((700, 400), (500, 130))]
)
def test_resized_window_is_resize_then_crop(size, center):
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (37, 53, 3)), tf.uint8)
    ours = resized_window(image, size, center)
    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    expected, _ = crop_around(resized, tf.zeros([0, 4]), tf.constant(center), (255, 255))
    np.testing.assert_allclose(ours, expected, atol=1e-3)
    assert np.all(ours.numpy()[254] == 0) and np.all(ours.numpy()[:, 254] == 0)


def test_sample_is_deterministic_and_runs_in_tf_data():
    image = tf.constant(np.random.default_rng(2).integers(0, 256, (300, 420, 3)), tf.uint8)
    boxes = tf.constant([[20.0, 30.0, 220.0, 130.0], [300.0, 100.0, 340.0, 160.0]])
    classes = tf.constant([3, 7])
    first = saccade_sample(image, boxes, classes, tf.constant([5, 6]), DATA)
    again = saccade_sample(image, boxes, classes, tf.constant([5, 6]), DATA)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    dataset = tf.data.Dataset.from_tensors((image, boxes, classes)).map(
        lambda i, b, c: saccade_sample(i, b, c, tf.constant([5, 6]), DATA)
    )
    graph = next(iter(dataset))
    for key in first:
        np.testing.assert_allclose(graph[key], first[key], atol=1e-5, err_msg=key)
    other = saccade_sample(image, boxes, classes, tf.constant([5, 7]), DATA)
    assert not np.array_equal(other["image"], first["image"])
    assert first["image"].shape == (255, 255, 3) and first["image"].dtype == tf.float32
    assert [first[f"attention_{i}"].shape for i in range(3)] == [
        (16, 16, 1),
        (32, 32, 1),
        (64, 64, 1),
    ]


def test_sample_without_boxes():
    image = tf.zeros((120, 700, 3), tf.uint8)
    out = saccade_sample(
        image, tf.zeros([0, 4]), tf.zeros([0], tf.int32), tf.constant([1, 1]), DATA
    )
    assert out["boxes"].shape == (0, 4) and out["classes"].shape == (0,)
    assert all(out[f"attention_{i}"].numpy().sum() == 0 for i in range(3))
    assert np.all(np.isfinite(out["image"].numpy()))


def test_sample_puts_the_object_where_its_box_says():
    # A black image with one white 180 x 90 object: it is the reference, scaled to a longer side
    # of 96..254, so it lands on attention_0 at its centre's cell; the crop (mirrored or not) is
    # bright inside the returned box and dark outside it.
    pixels = np.zeros((400, 600, 3), np.uint8)
    pixels[100:190, 200:380] = 255
    image = tf.constant(pixels)
    box = tf.constant([[200.0, 100.0, 380.0, 190.0]])
    for k in range(6):
        out = saccade_sample(image, box, tf.constant([4]), tf.constant([k, 3]), DATA)
        ((x1, y1, x2, y2),) = out["boxes"].numpy()
        assert 96 - 1 <= max(x2 - x1, y2 - y1) <= 254, k
        assert out["classes"].numpy().tolist() == [4]
        cx, cy = int((x1 + x2) / 2 / 16), int((y1 + y2) / 2 / 16)
        assert np.nonzero(out["attention_0"].numpy()[..., 0]) == ([cy], [cx]), k
        picture = out["image"].numpy().mean(-1)
        inside = picture[int(y1) + 2 : int(y2) - 1, int(x1) + 2 : int(x2) - 1].mean()
        outside = np.delete(picture, np.s_[max(int(y1) - 2, 0) : int(y2) + 3], axis=0).mean()
        assert inside > outside + 2.0, k


def test_targets_of_the_loss_fixture_from_its_boxes(ref):
    # The official targets at 64 x 64 for a 255 input (gaussian_iou 0.5) from the boxes behind
    # them: encode_corners and draw_heatmaps for the kept boxes, draw_valid_maps for the ignored
    # ones, attention_targets for all.
    corners, ignored, attention = [], [], [[], [], []]
    for b, count in enumerate(ref["object_counts"]):
        objects = ref["objects"][b, :count]
        skip = objects[:, 5] > 0
        for rows, out in ((objects[~skip], corners), (objects[skip], ignored)):
            out.append(
                encode_corners(
                    rows[:, :4],
                    rows[:, 4].astype(np.int32) - 1,
                    input_size=(255, 255),
                    output_size=(64, 64),
                    max_objects=16,
                    gaussian_iou=0.5,
                )
            )
        for i, attention_map in enumerate(attention_targets(objects[:, :4])):
            attention[i].append(attention_map)
    stack = {key: tf.stack([c[key] for c in corners]) for key in corners[0]}
    skipped = {key: tf.stack([c[key] for c in ignored]) for key in ignored[0]}
    heatmaps = draw_heatmaps(stack, (64, 64), 4)
    valid = draw_valid_maps(skipped, (64, 64), 4)
    np.testing.assert_array_equal(stack["mask"], ref["tag_masks"].astype(bool))
    for corner in ("tl", "br"):
        np.testing.assert_array_equal(stack[f"{corner}_index"], ref[f"{corner}_tags"])
        # the official offsets are float32 differences (fx - int(fx) with fx ~ 50): one ulp
        np.testing.assert_allclose(stack[f"{corner}_offset"], ref[f"{corner}_regrs"], atol=1e-5)
        np.testing.assert_array_equal(
            heatmaps[f"{corner}_heatmap"], nhwc(ref[f"{corner}_heatmaps"])
        )
        np.testing.assert_array_equal(valid[f"{corner}_valid"], nhwc(ref[f"{corner}_valids"]))
    for i in range(3):
        np.testing.assert_array_equal(tf.stack(attention[i]), nhwc(ref[f"att_targets_{i}"]))
