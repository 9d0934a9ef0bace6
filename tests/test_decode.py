"""decode() against the official _decode on decode_public.npz and the parity outputs."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf.decode import _top_corners, decode
from tests.helpers import OFFICIAL_NAMES, load_fixture


def final_stack(ref, stack=None):
    """The fixture's maps as our NHWC output dict (the final stack of S-stacked arrays)."""
    out = {}
    for key, name in OFFICIAL_NAMES.items():
        value = ref[name] if stack is None else ref[name][stack]
        out[key] = tf.constant(np.transpose(value, (0, 2, 3, 1)))
    return out


def as_rows(dets):
    """Our dict -> the official (B, N, 8) rows [x1, y1, x2, y2, score, tl_score, br_score, cls]."""
    return np.concatenate(
        [
            dets["boxes"].numpy(),
            dets["scores"].numpy()[..., None],
            dets["tl_scores"].numpy()[..., None],
            dets["br_scores"].numpy()[..., None],
            dets["classes"].numpy()[..., None].astype(np.float32),
        ],
        axis=-1,
    )


def assert_same_detections(ours, official):
    valid = official[..., 4] > -1
    assert valid.sum() > 0
    for b in range(official.shape[0]):
        n = int(valid[b].sum())
        np.testing.assert_array_equal(ours[b, :n, 7], official[b, :n, 7])  # classes, in order
        np.testing.assert_allclose(ours[b, :n, :7], official[b, :n, :7], atol=1e-5, rtol=1e-6)
        assert np.all(ours[b, n:, 4] == -1)


@pytest.mark.parametrize(
    "rows, kwargs, expected_valid",
    [
        ("detections", dict(k=100, kernel=3, ae_threshold=0.5, num_dets=1000), 18),
        ("detections_default_args", dict(k=100, kernel=1, ae_threshold=1.0, num_dets=1000), 109),
    ],
)
def test_matches_the_official_decode(rows, kwargs, expected_valid):
    ref = load_fixture("decode_public.npz")
    ours = as_rows(decode(final_stack(ref), **kwargs))
    assert (ref[rows][..., 4] > -1).sum() == expected_valid
    assert_same_detections(ours, ref[rows])


@pytest.mark.parametrize(
    "fixture, stack, k",
    [
        ("decode_public.npz", None, 100),
        ("parity_public.npz", 1, 100),
        ("lite_decode_public.npz", None, 20),  # CornerNet-Lite's, with an NMS plateau
        ("squeeze_parity_public.npz", -1, 20),  # CornerNet-Squeeze's final stack
    ],
)
def test_top_k_corners_match_including_the_plateau_tie(fixture, stack, k):
    """The official 3x3 NMS + top-k: positions, classes and scores. Equal scores (an NMS plateau)
    are listed lower flat index first; torch's topk has no fixed order for them (the Lite fixture
    lists its plateau's two corners the other way round), so the official rows are put in that
    order before comparing: the same corners, scores and classes."""
    ref = load_fixture(fixture)
    out = final_stack(ref, stack)
    for corner in ("tl", "br"):
        top = _top_corners(
            out[f"{corner}_heatmap"], out[f"{corner}_offset"], out[f"{corner}_embedding"], k, 3
        )
        scores, index = ref[f"topk_{corner}_scores"][0], ref[f"topk_{corner}_inds"][0]
        classes = ref[f"topk_{corner}_clses"][0]
        order = np.lexsort((classes * 10**6 + index, -scores))  # score down, then flat C, H, W
        np.testing.assert_array_equal(top["index"][0], index[order])
        np.testing.assert_array_equal(top["classes"][0], classes[order])
        np.testing.assert_allclose(top["scores"][0], scores[order], rtol=1e-6)


def test_random_weights_give_no_pair_as_officially():
    ref = load_fixture("parity_public.npz")
    dets = decode(final_stack(ref, 1))
    assert np.all(dets["scores"].numpy() == -1)
    assert np.all(ref["detections"][..., 4] == -1)


def test_decode_in_a_traced_function_with_unknown_sizes():
    ref = load_fixture("decode_public.npz")
    specs = {key: tf.TensorSpec([None, None, None, None], tf.float32) for key in OFFICIAL_NAMES}
    fn = tf.function(
        lambda outputs: decode(outputs, k=100, kernel=3, ae_threshold=0.5, num_dets=1000),
        input_signature=[specs],
    )
    assert_same_detections(as_rows(fn(final_stack(ref))), ref["detections"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_of_random_boxes(seed):
    """encode_targets -> perfect logits -> decode gives back every box (IoU 1) and its class."""
    from cornernet_tf.targets import encode_targets
    from tests.helpers import perfect_logits

    rng = np.random.default_rng(seed)
    count = 6
    corners = rng.choice(60, size=(count, 2), replace=False)  # distinct tl cells (x, y)
    tl = corners * 4.0 + rng.uniform(0, 3.9, (count, 2))
    br = tl + rng.uniform(12, 60, (count, 2))
    boxes = np.minimum(np.concatenate([tl, br], 1), 254.0)
    classes = rng.integers(0, 5, count)
    targets = encode_targets(
        boxes, classes, input_size=(255, 255), output_size=(64, 64), num_classes=5
    )
    dets = decode(perfect_logits(targets, count), k=20, num_dets=50)
    found = dets["scores"].numpy()[0] > 0.9
    assert found.sum() == count
    got = dets["boxes"].numpy()[0][found] * (255 / 64)  # output-map pixels -> input pixels
    order, expected = np.lexsort(got.T[::-1]), np.lexsort(boxes.T[::-1])
    np.testing.assert_allclose(got[order], boxes[expected], atol=1e-3)
    np.testing.assert_array_equal(dets["classes"].numpy()[0][found][order], classes[expected])


def test_empty_targets_decode_to_nothing():
    from cornernet_tf.targets import encode_targets
    from tests.helpers import perfect_logits

    targets = encode_targets(
        np.zeros((0, 4)),
        np.zeros(0, int),
        input_size=(255, 255),
        output_size=(64, 64),
        num_classes=5,
    )
    dets = decode(perfect_logits(targets, 0), k=20, num_dets=50)
    assert np.all(dets["scores"].numpy() < 0.01)


@pytest.mark.parametrize(
    "name, expected_valid",
    [("squeeze", 10), ("saccade", 5), ("squeeze_no_border", 8), ("default_args", 43)],
)
def test_matches_the_official_lite_decode(name, expected_valid):
    """CornerNet-Lite's _decode (no_border added) on lite_decode_public.npz, its 4 argument sets."""
    ref = load_fixture("lite_decode_public.npz")
    kwargs = dict(
        k=int(ref[f"{name}_K"]),
        kernel=int(ref[f"{name}_kernel"]),
        ae_threshold=float(ref[f"{name}_ae_threshold"]),
        num_dets=int(ref[f"{name}_num_dets"]),
        no_border=bool(ref[f"{name}_no_border"]),
    )
    official = ref[f"detections_{name}"]
    assert (official[..., 4] > -1).sum() == expected_valid
    ours = as_rows(decode(final_stack(ref), **kwargs))
    assert ours.shape == official.shape
    assert_same_detections(ours, official)


def test_no_border_rejects_exactly_the_border_pairs():
    """The two no-border sets differ only by the pairs with a corner on the map's edge."""
    ref = load_fixture("lite_decode_public.npz")
    maps = final_stack(ref)
    kept = as_rows(decode(maps, k=20, kernel=3, ae_threshold=0.5, num_dets=100))
    inner = as_rows(decode(maps, k=20, kernel=3, ae_threshold=0.5, num_dets=100, no_border=True))
    kept, inner = kept[0][kept[0, :, 4] > -1], inner[0][inner[0, :, 4] > -1]
    planted = ref["planted"]  # [b, cls, x1, y1, x2, y2, ..., ix1, iy1, ix2, iy2]
    on_edge = {
        int(row[1])
        for row in planted
        if row[10] == 0 or row[11] == 0 or row[12] == 63 or row[13] == 63
    }
    dropped = {int(c) for c in kept[:, 7]} - {int(c) for c in inner[:, 7]}
    assert len(kept) - len(inner) == 2
    assert dropped <= on_edge
