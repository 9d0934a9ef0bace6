"""The input pipeline: official evaluation geometry, determinism, resume, TFRecords, bad files."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import load_config
from cornernet_tf.data import (
    coco_source,
    crop_around,
    flip_boxes,
    make_dataset,
    prepare_example,
    tfrecord_source,
)
from cornernet_tf.targets import draw_heatmaps
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
    output_size = ((input_size[0] + 1) // 4, (input_size[1] + 1) // 4)
    batch = {k: v[None] for k, v in targets.items()}
    targets = {**targets, **{k: v[0] for k, v in draw_heatmaps(batch, output_size, 80).items()}}
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
    boxes = flip_boxes(tf.constant([[1.0, 2.0, 4.0, 3.0]]), 10)
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
        for key in ta:
            np.testing.assert_array_equal(ta[key], tb[key], err_msg=key)
    other = batches(run(8), 1)
    assert not np.array_equal(other[0][0], first[0][0])
    resumed = batches(run(7, start=3 * 4), 2)  # the 4th and 5th batches (across an epoch)
    np.testing.assert_array_equal(resumed[0][0], first[3][0])
    np.testing.assert_array_equal(resumed[1][1]["mask"], first[4][1]["mask"])


def test_augmented_batches_look_like_network_input(shapes):
    source = coco_source(shapes / "train.json", shapes / "train")
    x, t = next(iter(make_dataset(source, tiny_config(), batch_size=4, training=True)))
    assert x.shape == (4, 127, 127, 3) and "tl_heatmap" not in t  # drawn in the train step
    assert t["tl_index"].shape == (4, 128) and t["tl_offset"].shape == (4, 128, 2)
    assert -3 < float(tf.reduce_mean(x)) < 3 and float(tf.math.reduce_std(x)) > 0.1
    assert int(tf.reduce_sum(t["mask"])) > 0
    heatmaps = draw_heatmaps(t, (32, 32), 4)
    assert heatmaps["tl_heatmap"].shape == (4, 32, 32, 4)
    assert float(tf.reduce_max(heatmaps["tl_heatmap"])) == 1.0


def test_augmentation_equals_the_official_order_of_steps(shapes):
    """prepare_example crops and flips the uint8 source and folds colour into one affine map;
    the official order (float crop, resize, flip, /255, colour steps, lighting, normalize_) with
    the same random numbers gives the same image and targets."""
    from cornernet_tf.data import color_jitter, lighting, random_crop, resize
    from cornernet_tf.targets import encode_corners

    source = coco_source(shapes / "train.json", shapes / "train")
    config = tiny_config()
    data, size = config.data, (127, 127)
    flips = 0
    for index, item in enumerate(source.items.take(6)):
        example = source.load(item)
        seed = tf.constant([index, 5], tf.int64)
        image, targets = prepare_example(example, seed, config, training=True)

        seeds = tf.random.experimental.stateless_split(seed, 4)
        pixels = tf.cast(example["image"], tf.float32)
        crop, boxes = random_crop(pixels, example["boxes"], size, seeds[0])
        x, boxes = resize(crop, boxes, size)
        if tf.random.stateless_uniform([], seeds[1]) > 0.5:
            flips += 1
            x, boxes = x[:, ::-1], flip_boxes(boxes, size[1])
        x = x.numpy()[..., ::-1] / 255.0  # BGR
        gray = x @ np.array([0.114, 0.587, 0.299], np.float32)
        scale, gray_weight, offset = (float(v) for v in color_jitter(seeds[2], gray.mean()))
        x = scale * x + gray_weight * gray[..., None] + offset + lighting(seeds[3]).numpy()
        expected = (x - np.array(data.mean_bgr)) / np.array(data.std_bgr)
        np.testing.assert_allclose(image, expected, atol=1e-4)
        official = encode_corners(boxes, example["classes"], input_size=size, output_size=(32, 32))
        for key in official:
            np.testing.assert_allclose(targets[key], official[key], atol=1e-5, err_msg=key)
    assert 0 < flips < 6


def test_create_tfrecords_wants_a_prefix_not_a_folder(shapes, tmp_path, capsys):
    args = ["--annotations", str(shapes / "val.json"), "--images", str(shapes / "val")]
    assert run_script("create_tfrecords", *args, "--out", f"{tmp_path}/") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --out {tmp_path}/ is a folder; give a prefix")
    (tmp_path / "file").write_text("")
    assert run_script("create_tfrecords", *args, "--out", str(tmp_path / "file/train")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]


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
            tfrecord_source(str(tmp_path / "val-*.tfrecord"), (1, 2, 3, 4)),
            config,
            batch_size=4,
            training=False,
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
def test_colour_augmentation_equals_the_official_steps(key):
    """color_jitter + lighting + normalisation as one affine map (network_input) against the
    official color_jittering_, lighting_ and normalize_ (sample/utils.py, utils/image.py), step
    by step in NumPy with the same random numbers, on an RGB image."""
    from cornernet_tf.data import EIGEN_VALUES, EIGEN_VECTORS, color_jitter, lighting, network_input

    data = load_config(None).data
    rng = np.random.default_rng(key)
    rgb = rng.uniform(0, 255, (23, 31, 3)).astype(np.float32)
    jitter_seed, lighting_seed = tf.constant([key, 1], tf.int64), tf.constant([key, 2], tf.int64)
    gray_mean = float(np.mean(rgb @ np.array([0.299, 0.587, 0.114], np.float32))) / 255
    scale, gray_weight, offset = color_jitter(jitter_seed, gray_mean)
    shift = offset + lighting(lighting_seed)
    out = network_input(tf.constant(rgb), data, scale, gray_weight, shift).numpy()

    seeds = tf.random.experimental.stateless_split(jitter_seed, 2)
    alphas = 1 + tf.random.stateless_uniform([3], seeds[0], -0.4, 0.4).numpy()
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    order = orders[int(tf.random.stateless_uniform([], seeds[1], 0, 6, tf.int32))]
    noise = tf.random.stateless_normal([3], lighting_seed, stddev=0.1).numpy()
    x = rgb[..., ::-1] / 255.0  # BGR, as cv2 reads it
    gs = x @ np.array([0.114, 0.587, 0.299], np.float32)  # cv2 BGR2GRAY
    gs_mean = gs.mean()
    for k in order:  # brightness_, contrast_, saturation_ (blend_ with gs_mean / gs)
        if k == 0:
            x = x * alphas[0]
        elif k == 1:
            x = x * alphas[1] + gs_mean * (1 - alphas[1])
        else:
            x = x * alphas[2] + gs[..., None] * (1 - alphas[2])
    x = x + np.dot(np.array(EIGEN_VECTORS), np.array(EIGEN_VALUES) * noise)
    expected = (x - np.array(data.mean_bgr)) / np.array(data.std_bgr)
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_network_input_alone_is_the_official_normalisation():
    from cornernet_tf.data import network_input
    from cornernet_tf.preprocess import normalize_image

    data = load_config(None).data
    rgb = tf.constant(np.random.default_rng(0).uniform(0, 255, (9, 7, 3)), tf.float32)
    np.testing.assert_allclose(network_input(rgb, data), normalize_image(rgb, data), atol=1e-5)
