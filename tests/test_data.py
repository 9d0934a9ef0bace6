"""The input pipeline: official evaluation geometry, determinism, resume, TFRecords, bad files."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import load_config
from cornernet_tf.data import (
    coco_source,
    crop_around,
    flip,
    make_dataset,
    prepare_example,
    tfrecord_source,
)
from tests.helpers import ROOT, load_fixture, run_script


@pytest.mark.parametrize("case", [0, 1, 2, 3])
def test_evaluation_pipeline_gives_the_official_targets(case):
    """Image boxes -> full-image crop -> resize -> clip -> targets, as kp_detection (debug)."""
    ref = load_fixture("targets_public.npz")
    h, w = ref[f"case{case}_image_size"]
    input_size = [int(v) for v in ref[f"case{case}_input_size"]]
    config = load_config(None, {"data.input_size": input_size})
    boxes = ref[f"case{case}_boxes_image"]
    example = {
        "image": np.zeros((int(h), int(w), 3), np.uint8),
        "boxes": boxes[:, :4].astype(np.float32),
        "classes": boxes[:, 4].astype(np.int32) - 1,
    }
    image, targets = prepare_example(example, tf.constant([0, 0], tf.int64), config, training=False)
    assert image.shape == (*input_size, 3)
    for corner in ("tl", "br"):
        official = np.transpose(ref[f"case{case}_{corner}_heatmaps"][0], (1, 2, 0))
        np.testing.assert_allclose(targets[f"{corner}_heatmap"], official, atol=1e-5)
        np.testing.assert_array_equal(
            targets[f"{corner}_index"], ref[f"case{case}_{corner}_tags"][0]
        )
        np.testing.assert_allclose(
            targets[f"{corner}_offset"], ref[f"case{case}_{corner}_regrs"][0], atol=2e-4
        )
    np.testing.assert_array_equal(targets["mask"], ref[f"case{case}_tag_masks"][0].astype(bool))


def test_crop_around_matches_the_official_crop_image():
    # 5 x 6 image, window 4 x 4 centred at (cy, cx) = (1, 4): rows 0..2, cols 2..5 of the image
    # land at rows 1..3, cols 0..3 of the window (official crop_image arithmetic, by hand).
    image = tf.reshape(tf.range(30, dtype=tf.float32), [5, 6, 1]) + 1
    cropped, boxes = crop_around(
        image, tf.constant([[2.0, 0.0, 5.0, 2.0]]), tf.constant([1, 4]), tf.constant([4, 4])
    )
    expected = np.zeros((4, 4))
    expected[1:4, 0:4] = np.arange(30).reshape(5, 6)[0:3, 2:6] + 1
    np.testing.assert_array_equal(cropped[..., 0], expected)
    np.testing.assert_array_equal(boxes, [[0.0, 1.0, 3.0, 3.0]])


def test_flip_uses_the_official_convention():
    image = tf.zeros([4, 10, 3])
    _, boxes = flip(image, tf.constant([[1.0, 2.0, 4.0, 3.0]]))
    np.testing.assert_array_equal(boxes, [[10 - 4 - 1, 2, 10 - 1 - 1, 3]])


def tiny_config(**overrides):
    return load_config(ROOT / "configs/tiny.yaml", {"data.input_size": [127, 127], **overrides})


def batches(dataset, count):
    return [(x.numpy(), {k: v.numpy() for k, v in t.items()}) for x, t in dataset.take(count)]


def test_training_pipeline_is_deterministic_and_resumable(shapes):
    source = coco_source(shapes / "train.json", shapes / "train")
    config = tiny_config()
    run = lambda seed, start=0: make_dataset(  # noqa: E731
        source, config, batch_size=4, training=True, seed=seed, start=start
    )
    first, again = batches(run(7), 5), batches(run(7), 5)
    for (xa, ta), (xb, tb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta["tl_heatmap"], tb["tl_heatmap"])
    other = batches(run(8), 1)
    assert not np.array_equal(other[0][0], first[0][0])
    resumed = batches(run(7, start=3 * 4), 2)  # the 4th and 5th batches (across an epoch)
    np.testing.assert_array_equal(resumed[0][0], first[3][0])
    np.testing.assert_array_equal(resumed[1][1]["mask"], first[4][1]["mask"])


def test_augmented_batches_look_like_network_input(shapes):
    source = coco_source(shapes / "train.json", shapes / "train")
    x, t = next(iter(make_dataset(source, tiny_config(), batch_size=4, training=True)))
    assert x.shape == (4, 127, 127, 3) and t["tl_heatmap"].shape == (4, 32, 32, 4)
    assert -3 < float(tf.reduce_mean(x)) < 3 and float(tf.math.reduce_std(x)) > 0.1
    assert int(tf.reduce_sum(tf.cast(t["mask"], tf.int32))) > 0
    assert float(tf.reduce_max(t["tl_heatmap"])) == 1.0


def test_tfrecords_round_trip(shapes, tmp_path):
    code = run_script(
        "create_tfrecords",
        "--annotations",
        str(shapes / "val.json"),
        "--images",
        str(shapes / "val"),
        "--out",
        str(tmp_path / "val"),
        "--shards",
        "1",
    )
    assert code == 0
    config = tiny_config()
    from_json = batches(
        make_dataset(
            coco_source(shapes / "val.json", shapes / "val"), config, batch_size=4, training=False
        ),
        1,
    )
    from_records = batches(
        make_dataset(
            tfrecord_source(str(tmp_path / "val-*.tfrecord")), config, batch_size=4, training=False
        ),
        1,
    )
    np.testing.assert_array_equal(from_json[0][0], from_records[0][0])
    for key in ("tl_index", "br_index", "mask"):
        np.testing.assert_array_equal(from_json[0][1][key], from_records[0][1][key])
    np.testing.assert_allclose(
        from_json[0][1]["tl_offset"], from_records[0][1]["tl_offset"], atol=1e-4
    )


def test_missing_and_corrupt_images_are_left_out_with_warnings(shapes, tmp_path):
    data = json.loads((shapes / "val.json").read_text())
    folder = tmp_path / "val"
    folder.mkdir()
    for info in data["images"]:
        (folder / info["file_name"]).write_bytes((shapes / "val" / info["file_name"]).read_bytes())
    (folder / data["images"][0]["file_name"]).write_text("garbage")  # corrupt
    (folder / data["images"][1]["file_name"]).unlink()  # missing
    data["annotations"].append(
        {
            "id": 999,
            "image_id": data["images"][2]["id"],
            "category_id": 1,
            "bbox": [500, 10, 20, 20],
        }
    )  # outside the 127 x 127 image
    (tmp_path / "val.json").write_text(json.dumps(data))
    source = coco_source(tmp_path / "val.json", folder)
    assert source.size == len(data["images"]) - 2
    assert any("does not exist" in w for w in source.warnings)
    assert any(
        "not a readable image" in w and data["images"][0]["file_name"] in w for w in source.warnings
    )
    assert any("annotation 999" in w and "outside the 127x127 image" in w for w in source.warnings)


@pytest.mark.parametrize("key", range(6))
def test_color_jitter_and_lighting_equal_the_official_steps(key):
    """color_jitter + lighting against the official color_jittering_ + lighting_ (sample/utils.py),
    step by step in NumPy with the same random numbers."""
    from cornernet_tf.data import EIGEN_VALUES, EIGEN_VECTORS, color_jitter, lighting

    rng = np.random.default_rng(key)
    image = rng.uniform(0, 255, (23, 31, 3)).astype(np.float32)
    jitter_seed, lighting_seed = tf.constant([key, 1], tf.int64), tf.constant([key, 2], tf.int64)
    out = lighting(color_jitter(tf.constant(image / 255.0), jitter_seed), lighting_seed).numpy()

    seeds = tf.random.experimental.stateless_split(jitter_seed, 4)
    alphas = 1 + tf.random.stateless_uniform([3], seeds[0], -0.4, 0.4).numpy()
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    order = orders[int(tf.random.stateless_uniform([], seeds[1], 0, 6, tf.int32))]
    noise = tf.random.stateless_normal([3], lighting_seed, stddev=0.1).numpy()
    x = image / 255.0
    gs = x @ np.array([0.114, 0.587, 0.299], np.float32)  # cv2 BGR2GRAY
    gs_mean = gs.mean()
    for k in order:  # brightness_, contrast_, saturation_ (blend_ with gs_mean / gs)
        if k == 0:
            x = x * alphas[0]
        elif k == 1:
            x = x * alphas[1] + gs_mean * (1 - alphas[1])
        else:
            x = x * alphas[2] + gs[..., None] * (1 - alphas[2])
    expected = x + np.dot(np.array(EIGEN_VECTORS), np.array(EIGEN_VALUES) * noise)
    np.testing.assert_allclose(out, expected, atol=1e-5)
