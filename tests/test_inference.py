"""The official test procedure: geometry, soft-NMS vs a NumPy transcription, the full round trip."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import load_config
from cornernet_tf.inference import detect_image, scale_geometry, soft_nms, soft_nms_merge
from cornernet_tf.targets import encode_targets
from tests.helpers import perfect_logits


def official_soft_nms(boxes, sigma=0.5, threshold=0.001, merge=False, weight_exp=8.0, quirk=False):
    """The official Cython soft_nms / soft_nms_merge (method 2), transcribed; rows
    [x1, y1, x2, y2, score, tl_score, br_score]. Returns the first N rows (the kept boxes).

    quirk=True keeps the official bug of moving only columns 0-4 when boxes are swapped or
    overwritten, which pairs boxes with other boxes' corner scores in the merge; our
    implementation moves the whole row (a documented deliberate difference)."""
    cols = slice(0, 5) if quirk else slice(0, 7)
    boxes = boxes.astype(np.float32).copy()
    n = len(boxes)
    i = 0
    while i < n:
        maxpos = i + int(np.argmax(boxes[i:n, 4]))  # first maximum, as the strict '<' scan
        boxes[[i, maxpos], cols] = boxes[[maxpos, i], cols]
        if merge:
            m = np.array(
                [
                    boxes[i, 0] * boxes[i, 5],
                    boxes[i, 1] * boxes[i, 5],
                    boxes[i, 2] * boxes[i, 6],
                    boxes[i, 3] * boxes[i, 6],
                ],
                np.float32,
            )
            mts, mbs = boxes[i, 5], boxes[i, 6]
        tx1, ty1, tx2, ty2 = boxes[i, :4]
        pos = i + 1
        while pos < n:
            x1, y1, x2, y2 = boxes[pos, :4]
            area = (x2 - x1 + 1) * (y2 - y1 + 1)
            iw = min(tx2, x2) - max(tx1, x1) + 1
            if iw > 0:
                ih = min(ty2, y2) - max(ty1, y1) + 1
                if ih > 0:
                    ua = (tx2 - tx1 + 1) * (ty2 - ty1 + 1) + area - iw * ih
                    ov = iw * ih / ua
                    weight = np.float32(np.exp(-(ov * ov) / sigma))
                    if merge:
                        mw = (1 - weight) ** weight_exp
                        m += (
                            np.array(
                                [
                                    x1 * boxes[pos, 5],
                                    y1 * boxes[pos, 5],
                                    x2 * boxes[pos, 6],
                                    y2 * boxes[pos, 6],
                                ]
                            )
                            * mw
                        )
                        mts += boxes[pos, 5] * mw
                        mbs += boxes[pos, 6] * mw
                    boxes[pos, 4] *= weight
                    if boxes[pos, 4] < threshold:
                        boxes[pos, cols] = boxes[n - 1, cols]
                        n -= 1
                        pos -= 1
            pos += 1
        if merge:
            boxes[i, :4] = [m[0] / mts, m[1] / mts, m[2] / mbs, m[3] / mbs]
        i += 1
    return boxes[:n]


def random_detections(seed, n=80, classes=3):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(20, 200, (n // 8, 2)).repeat(8, axis=0) + rng.normal(0, 6, (n, 2))
    size = rng.uniform(10, 60, (n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1).astype(np.float32)
    scores = np.maximum(rng.uniform(0, 1, n) ** 3, 0.0015).astype(np.float32)
    return {
        "boxes": tf.constant(boxes),
        "scores": tf.constant(scores),
        "tl_scores": tf.constant(rng.uniform(0.1, 1, n).astype(np.float32)),
        "br_scores": tf.constant(rng.uniform(0.1, 1, n).astype(np.float32)),
        "classes": tf.constant(rng.integers(0, classes, n).astype(np.int32)),
    }


def official_per_class(dets, merge, quirk=False):
    rows = []
    for c in np.unique(dets["classes"].numpy()):
        pick = dets["classes"].numpy() == c
        table = np.concatenate(
            [
                dets["boxes"].numpy()[pick],
                dets["scores"].numpy()[pick, None],
                dets["tl_scores"].numpy()[pick, None],
                dets["br_scores"].numpy()[pick, None],
            ],
            1,
        )
        kept = official_soft_nms(table, merge=merge, quirk=quirk)
        rows.append(np.concatenate([kept[:, :5], np.full((len(kept), 1), c)], 1))
    rows = np.concatenate(rows)
    return rows[np.argsort(-rows[:, 4], kind="stable")]


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_soft_nms_matches_the_official_algorithm(seed, merge):
    dets = random_detections(seed)
    kept = (soft_nms_merge if merge else soft_nms)(dets)
    order = np.argsort(-kept["scores"].numpy(), kind="stable")
    ours = np.concatenate(
        [kept["boxes"].numpy(), kept["scores"].numpy()[:, None], kept["classes"].numpy()[:, None]],
        1,
    )[order]
    official = official_per_class(dets, merge)
    assert len(ours) == len(official) and len(ours) < 80  # some boxes were dropped
    np.testing.assert_allclose(ours, official, rtol=1e-4, atol=1e-3)
    if merge:  # the official column quirk moves merged boxes (so the test can tell them apart)
        quirky = official_per_class(dets, merge, quirk=True)
        assert not np.allclose(ours[:, :4], quirky[:, :4], atol=1e-3)


def test_soft_nms_of_nothing():
    empty = {k: v[:0] for k, v in random_detections(0).items()}
    assert soft_nms(empty)["scores"].shape == (0,)
    assert soft_nms_merge(empty)["scores"].shape == (0,)


def test_scale_geometry_hand_computed():
    g = {k: v.numpy().tolist() for k, v in scale_geometry(480, 640, 1.0).items()}
    assert g["new_size"] == [480, 640] and g["input_size"] == [511, 767]
    assert g["output_size"] == [128, 192] and g["padding"] == [255 - 240, 383 - 320]
    np.testing.assert_allclose(g["ratio"], [128 / 511, 192 / 767], rtol=1e-6)
    g = {k: v.numpy().tolist() for k, v in scale_geometry(333, 500, 0.5).items()}
    assert g["new_size"] == [166, 250] and g["input_size"] == [255, 255]


class PerfectModel:
    """Stands in for CornerNet: returns the logits that make `boxes` (image pixels) certain."""

    def __init__(self, config, image_size, boxes, classes):
        self.config, self.image_size = config, image_size
        self.boxes, self.classes = np.asarray(boxes, np.float64), np.asarray(classes)

    def __call__(self, inputs, training=False):
        inp_h, inp_w = inputs.shape[1:3]
        g = scale_geometry(*self.image_size, 1.0, 4 * 2**self.config.model.depth)
        top, left = g["padding"].numpy()
        boxes = self.boxes + [left, top, left, top]
        t = encode_targets(
            boxes,
            self.classes,
            input_size=(inp_h, inp_w),
            output_size=((inp_h + 1) // 4, (inp_w + 1) // 4),
            num_classes=self.config.model.num_classes,
        )
        return perfect_logits(t, len(self.boxes), inputs.shape[0])


def test_perfect_outputs_give_back_every_box():
    config = load_config(None, {"test.flip": False, "model.num_classes": 5})
    boxes = np.array([[20.5, 30.25, 180.0, 150.0], [100.0, 10.0, 290.5, 190.0], [5, 5, 60, 44]])
    classes = np.array([1, 4, 1])
    model = PerfectModel(config, (200, 300), boxes, classes)
    dets = detect_image(model, tf.zeros([200, 300, 3], tf.uint8), config)
    found = dets["boxes"].numpy()
    assert len(found) == 3
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order], boxes[np.argsort(boxes[:, 0])], atol=1e-3)
    np.testing.assert_array_equal(dets["classes"].numpy()[order], classes[np.argsort(boxes[:, 0])])


def test_empty_image_gives_no_detection():
    config = load_config(None, {"test.flip": False, "model.num_classes": 5})
    model = PerfectModel(config, (200, 300), np.zeros((0, 4)), np.zeros((0,), int))
    dets = detect_image(model, tf.zeros([200, 300, 3], tf.uint8), config)
    assert dets["boxes"].shape == (0, 4)


@pytest.mark.parametrize("merge", [False, True])
def test_real_model_traced_for_any_image_size(merge):
    import keras

    from cornernet_tf import build_model
    from tests.helpers import ROOT

    config = load_config(
        ROOT / "configs/tiny.yaml",
        {"test.scales": [0.5, 1.0], "test.merge_boxes": merge, "test.max_per_image": 20},
    )
    keras.utils.set_random_seed(2)  # random weights that pair some corners on these images
    model = build_model(config)
    spec = tf.TensorSpec([None, None, 3], tf.uint8)
    fn = tf.function(lambda image: detect_image(model, image, config), input_signature=[spec])
    for shape in [(90, 130, 3), (64, 40, 3)]:
        image = tf.random.stateless_uniform(shape, [1, 2], maxval=256, dtype=tf.int32)
        dets = fn(tf.cast(image, tf.uint8))
        n = dets["scores"].shape[0]
        assert 0 < n <= 20 and dets["boxes"].shape == (n, 4)
        boxes = dets["boxes"].numpy()
        assert (
            boxes.min() >= 0
            and np.all(boxes[:, 2] <= shape[1] + 1e-3)
            and np.all(boxes[:, 3] <= shape[0] + 1e-3)
        )
        assert np.all(np.diff(dets["scores"].numpy()) <= 0)


def test_network_inputs_beyond_the_image_limit_are_refused_before_running():
    from cornernet_tf.images import MAX_PIXELS, ImageError
    from cornernet_tf.inference import Detector, check_input_size, network_input_problem

    config = load_config(None, {"test.scales": [0.5, 1.5]})
    assert network_input_problem(4608, 4800, config) == (
        "4800x4608 at test.scales 1.5 is resized to 7200x6912 = 49,766,400 pixels, more than "
        "the limit of 33,177,600 for a network input: lower test.scales"
    )
    assert 5760 * 5760 == MAX_PIXELS == 7680 * 4320
    assert network_input_problem(3600, 3600, load_config(None, {"test.scales": [1.6]})) is None
    assert network_input_problem(4608, 4800, config, input_size=511) is None  # fitted into it
    with pytest.raises(ValueError, match=r"input size 6015: 6015x6015 = 36,180,225 pixels"):
        check_input_size(6015, depth=5)
    assert check_input_size(5759, depth=5) == 5759  # 5760 x 5760 is the limit; 5759 + 1 = 45 x 128

    class Unused:
        def __call__(self, *args, **kwargs):
            raise AssertionError("the network ran")

    detector = Detector.__new__(Detector)  # the check comes before the traced procedure
    detector.config, detector.input_size, detector._detect = config, None, Unused()
    with pytest.raises(ImageError, match="is resized to 7200x6912"):
        detector(np.zeros((4608, 4800, 3), np.uint8))
