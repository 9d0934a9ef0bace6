"""encode_targets against the official kp_detection (targets_public.npz, loss_public.npz)."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.targets import (
    draw_heatmaps,
    encode_corners,
    encode_targets,
    gaussian_bumps,
    gaussian_radius,
)
from tests.helpers import load_fixture


def draw_gaussians(shape, xs, ys, radii) -> tf.Tensor:
    """Reference: the official gaussian bumps at integer (xs, ys), each on a map of `shape`.

    Returns (N, height, width) float64: bump n alone on the map n (0 outside its window).
    """
    height, width = shape[0], shape[1]
    xs, ys = tf.cast(xs, tf.float64), tf.cast(ys, tf.float64)
    dx = tf.range(tf.cast(width, tf.float64))[None, None, :] - xs[:, None, None]
    dy = tf.range(tf.cast(height, tf.float64))[None, :, None] - ys[:, None, None]
    return gaussian_bumps(dx, dy, tf.cast(radii, tf.float64)[:, None, None])


@pytest.fixture(scope="module")
def ref():
    return load_fixture("targets_public.npz")


def encode_case(ref, case, **kwargs):
    boxes = ref[f"case{case}_boxes_input"]
    return encode_targets(
        boxes[:, :4],
        boxes[:, 4].astype(np.int64) - 1,
        input_size=tuple(ref[f"case{case}_input_size"]),
        output_size=tuple(ref[f"case{case}_output_size"]),
        num_classes=80,
        **kwargs,
    )


def assert_matches_official(ours, ref, prefix):
    for corner in ("tl", "br"):
        official_map = np.transpose(ref[f"{prefix}{corner}_heatmaps"][0], (1, 2, 0))
        np.testing.assert_allclose(ours[f"{corner}_heatmap"], official_map, atol=1e-6)
        assert np.sum(ours[f"{corner}_heatmap"].numpy() == 1) == np.sum(official_map == 1)
        mask = ref[f"{prefix}tag_masks"][0].astype(bool)
        np.testing.assert_array_equal(ours["mask"], mask)
        np.testing.assert_array_equal(ours[f"{corner}_index"], ref[f"{prefix}{corner}_tags"][0])
        np.testing.assert_allclose(
            ours[f"{corner}_offset"], ref[f"{prefix}{corner}_regrs"][0], atol=1e-6
        )


@pytest.mark.parametrize("case", [0, 1, 2, 3])
def test_cases_match_the_official_targets(ref, case):
    ours = encode_case(ref, case)
    oh, ow = ref[f"case{case}_output_size"]
    assert ours["tl_heatmap"].shape == (oh, ow, 80)
    assert ours["tl_index"].dtype == tf.int32 and ours["mask"].dtype == tf.bool
    assert_matches_official(ours, ref, f"case{case}_")


def test_loss_fixture_targets_match(ref):
    loss = load_fixture("loss_public.npz")
    for b in range(2):
        n = int(loss["num_boxes_input"][b])
        boxes = loss["boxes_input"][b, :n]
        ours = encode_targets(
            boxes[:, :4],
            boxes[:, 4].astype(int) - 1,
            input_size=(255, 255),
            output_size=(64, 64),
            num_classes=80,
        )
        single = {
            key: loss[key][b : b + 1]
            for key in (
                "tl_heatmaps",
                "br_heatmaps",
                "tag_masks",
                "tl_tags",
                "br_tags",
                "tl_regrs",
                "br_regrs",
            )
        }
        assert_matches_official(ours, single, "")


@pytest.mark.parametrize("iou", ["03", "07"])
def test_radius_table(ref, iou):
    sizes = ref["radius_table_sizes"]
    h, w = np.meshgrid(sizes, sizes, indexing="ij")
    ours = gaussian_radius(h, w, float(iou) / 10).numpy()
    np.testing.assert_allclose(ours, ref[f"radius_table_iou{iou}"], rtol=1e-12)


def test_radius_of_the_cases(ref):
    for case in range(4):
        boxes = ref[f"case{case}_boxes_input"]
        (ih, iw), (oh, ow) = ref[f"case{case}_input_size"], ref[f"case{case}_output_size"]
        bw = np.ceil((boxes[:, 2] - boxes[:, 0]) * (ow / iw))
        bh = np.ceil((boxes[:, 3] - boxes[:, 1]) * (oh / ih))
        np.testing.assert_allclose(
            gaussian_radius(bh, bw, 0.3), ref[f"case{case}_radius_float"], rtol=1e-12
        )


def test_draw_steps_and_the_r3_kernel(ref):
    draws = ref["draw_gaussian_draws_xyr"]
    for step in range(len(draws)):
        bumps = draw_gaussians(
            (12, 15), draws[: step + 1, 0], draws[: step + 1, 1], draws[: step + 1, 2]
        )
        merged = tf.cast(tf.reduce_max(bumps, axis=0), tf.float32)
        np.testing.assert_allclose(merged, ref["draw_gaussian_steps"][step], atol=1e-7)
    kernel = draw_gaussians((7, 7), [3], [3], [3])[0]
    np.testing.assert_allclose(kernel, ref["gaussian2D_r3"], rtol=1e-12)


def test_boxes_outside_the_input_are_dropped_and_the_rest_unchanged(ref):
    boxes, classes = ref["case2_boxes_input"][:, :4], ref["case2_boxes_input"][:, 4].astype(int) - 1
    outside = np.array(
        [[300.0, 10.0, 400.0, 50.0], [20.0, 30.0, 20.0, 90.0]]
    )  # off the right; zero width
    with_extra = encode_targets(
        np.concatenate([outside[:1], boxes, outside[1:]]),
        np.r_[5, classes, 6],
        input_size=(255, 255),
        output_size=(64, 64),
        num_classes=80,
    )
    plain = encode_targets(
        boxes, classes, input_size=(255, 255), output_size=(64, 64), num_classes=80
    )
    for key in plain:
        np.testing.assert_array_equal(with_extra[key], plain[key], err_msg=key)


def test_empty_image_and_too_many_boxes():
    empty = encode_targets(
        np.zeros((0, 4)),
        np.zeros((0,), int),
        input_size=(255, 255),
        output_size=(64, 64),
        num_classes=3,
        max_objects=8,
    )
    assert not np.any(empty["mask"]) and np.all(empty["tl_heatmap"].numpy() == 0)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (12, 2))
    boxes = np.concatenate([xy, xy + 40], axis=1)
    many = encode_targets(
        boxes,
        np.arange(12) % 3,
        input_size=(255, 255),
        output_size=(64, 64),
        num_classes=3,
        max_objects=8,
    )
    assert many["mask"].numpy().sum() == 8 and many["tl_index"].shape == (8,)
    first = encode_targets(
        boxes[:8],
        np.arange(8) % 3,
        input_size=(255, 255),
        output_size=(64, 64),
        num_classes=3,
        max_objects=8,
    )
    for key in first:  # the first max_objects boxes, on the heatmaps too
        np.testing.assert_array_equal(many[key], first[key], err_msg=key)


def test_runs_in_tf_data_with_unknown_box_count():
    def gen():
        yield np.array([[10.0, 20.0, 100.0, 120.0]], np.float32), np.array([1], np.int32)
        yield np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)

    ds = tf.data.Dataset.from_generator(
        gen,
        output_signature=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)),
    ).map(
        lambda b, c: encode_targets(
            b, c, input_size=(255, 255), output_size=(64, 64), num_classes=2
        )
    )
    first, second = list(ds)
    assert first["mask"].numpy().sum() == 1 and first["tl_heatmap"][5, 2, 1] == 1.0
    assert second["mask"].numpy().sum() == 0


def test_heatmaps_are_the_float64_maxima_cast_once():
    """The bumps are cast to float32 before the per-class max: exactly the float64 max cast."""
    rng = np.random.default_rng(11)
    corners = rng.uniform(0, 380, (40, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(4, 120, (40, 2))], 1)
    classes = rng.integers(0, 5, 40)
    ours = encode_targets(
        boxes, classes, input_size=(511, 511), output_size=(128, 128), num_classes=5
    )
    x1, y1 = np.floor(boxes[:, 0] * 128 / 511), np.floor(boxes[:, 1] * 128 / 511)
    width = np.ceil((boxes[:, 2] - boxes[:, 0]) * 128 / 511)
    height = np.ceil((boxes[:, 3] - boxes[:, 1]) * 128 / 511)
    radii = np.maximum(gaussian_radius(height, width, 0.3).numpy().astype(int), 0)
    bumps = draw_gaussians((128, 128), x1, y1, radii).numpy()  # float64
    expected = np.zeros((128, 128, 5))
    for bump, cls in zip(bumps, classes, strict=True):
        expected[..., cls] = np.maximum(expected[..., cls], bump)
    np.testing.assert_array_equal(ours["tl_heatmap"].numpy(), expected.astype(np.float32))


def test_heatmaps_drawn_per_batch_equal_each_example_alone():
    """draw_heatmaps on a batch of encode_corners (float mask, as the train step gets it) gives
    each example's own heatmaps: objects of one image never leak into another."""
    rng = np.random.default_rng(3)
    examples = []
    for count in (5, 0, 9):
        xy = rng.uniform(0, 400, (count, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 100, (count, 2))], 1)
        examples.append((boxes, rng.integers(0, 4, count)))
    kwargs = dict(input_size=(511, 511), output_size=(128, 128), max_objects=16)
    alone = [encode_targets(b, c, num_classes=4, **kwargs) for b, c in examples]
    batch = [encode_corners(b, c, **kwargs) for b, c in examples]
    batch = {k: tf.stack([t[k] for t in batch]) for k in batch[0]}
    batch["mask"] = tf.cast(batch["mask"], tf.float32)
    drawn = draw_heatmaps(batch, (128, 128), 4)
    for corner in ("tl", "br"):
        expected = np.stack([t[f"{corner}_heatmap"] for t in alone])
        np.testing.assert_array_equal(drawn[f"{corner}_heatmap"], expected)
    assert np.all(expected[1] == 0) and np.sum(expected[2] == 1) >= 8
