"""CornerNet-Saccade's test procedure (`cornernet_tf.saccade`) against the official
`cornernet_saccade_inference` (tests/data/saccade_attention_public.npz, NCHW): every stage of a
run on a 360x480 image with a stand-in network, and the official functions' standalone cases.

Everything is compared exactly (integers, and floats bit for bit) except the crops, whose
official resize runs in float64: allclose at 1e-5 (measured on CPU: 0, bit-identical).
"""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import saccade
from cornernet_tf.config import load_config
from tests.helpers import load_fixture

SETTINGS = {  # the official configs/CornerNet_Saccade.json
    "data.input_size": [255, 255],
    "test.procedure": "saccade",
    "test.top_k": 12,
    "test.num_dets": 12,
    "test.ae_threshold": 0.3,
    "test.no_border": True,
    "test.flip": False,
    "test.soft_nms_sigma": 0.7,
}


@pytest.fixture(scope="module")
def ref():
    return load_fixture("saccade_attention_public.npz")


@pytest.fixture(scope="module")
def config():
    return load_config("saccade", SETTINGS)  # the procedure needs a model with attention maps


def nhwc(array):
    return np.transpose(array, (0, 2, 3, 1))


def run(function, *args):
    """`function` traced as a tf.function (Grappler rewrites graphs; eager runs do not show it)."""
    return tf.nest.map_structure(lambda t: t.numpy(), tf.function(function)(*args))


def test_the_fixture_runs_the_official_settings(ref, config):
    test = config.test
    assert ref["cfg_init_sizes"].tolist() == list(test.init_sizes)
    assert ref["cfg_att_scales"].tolist() == [list(test.att_scales)]
    assert ref["cfg_att_thresholds"].tolist() == pytest.approx(list(test.att_thresholds))
    assert ref["cfg_att_max_crops"] == test.att_max_crops
    assert ref["cfg_att_ranges"].tolist() == [list(r) for r in test.att_ranges]
    assert ref["cfg_att_ratios"].tolist() == list(test.att_ratios)
    assert ref["cfg_att_nms_ks"].tolist() == [test.att_nms_kernel] * 3
    assert (ref["cfg_top_k"], ref["cfg_num_dets"], ref["cfg_max_per_image"]) == (12, 12, 100)
    assert ref["cfg_soft_nms_sigma"] == np.float32(test.soft_nms_sigma)
    np.testing.assert_array_equal(ref["im_mean"], np.float32(config.data.mean_bgr))
    np.testing.assert_array_equal(ref["im_std"], np.float32(config.data.std_bgr))


# --- where to look, and the crops ----------------------------------------------------------


def test_initial_locations(ref):
    locations = run(lambda: saccade.initial_locations(360, 480, (192, 255)))
    np.testing.assert_array_equal(locations, ref["s0_locations"])


@pytest.mark.parametrize("stage", ["s0", "s1"])
def test_crop_geometry_and_offsets(ref, stage):
    """The official int() truncations and // of crop_image_gpu, for float32 (glance) and
    float64 (saccade) locations."""
    locations = tf.constant(ref[f"{stage}_locations"][:, :3])
    geometry, offsets = run(
        lambda: (saccade.crop_geometry(locations, 360, 480), saccade.crop_offsets(locations))
    )
    np.testing.assert_array_equal(geometry, ref[f"{stage}_crop_geometry"])
    np.testing.assert_array_equal(offsets, ref[f"{stage}_offsets"])


@pytest.mark.parametrize("stage", ["s0", "s1"])
def test_crops(ref, config, stage):
    """The bilinear resize of each window into a zero crop, normalised: the fixture's image is
    the official BGR cv2 image, ours is RGB."""
    image = tf.constant(ref["image"][..., ::-1].copy())
    locations = tf.constant(ref[f"{stage}_locations"][:, :3])
    crops = run(lambda: saccade.crop_images(saccade.unit_bgr(image), locations, config.data))
    np.testing.assert_array_equal(crops["geometry"], ref[f"{stage}_crop_geometry"])
    # measured max abs difference: 0.0 (s0 and s1)
    np.testing.assert_allclose(crops["crops"], nhwc(ref[f"{stage}_images"]), rtol=0, atol=1e-5)


def test_a_window_outside_the_image_gives_a_zero_crop(config):
    locations = tf.constant([[-400.0, -400.0, 1.0]], tf.float64)
    image = tf.ones([50, 60, 3], tf.float64)
    crops = run(lambda: saccade.resize_into_crops(image, saccade.crop_geometry(locations, 50, 60)))
    assert crops.shape == (1, 255, 255, 3) and not crops.any()


# --- attention -----------------------------------------------------------------------------


def test_attention_nms(ref):
    maps = [tf.constant(nhwc(ref[f"s0_att_{i}"])) for i in range(3)]
    kept = run(lambda: saccade.attention_nms(maps, 3))
    for i in range(3):
        np.testing.assert_array_equal(kept[i], nhwc(ref[f"s0_att_nms_{i}"]))


@pytest.mark.parametrize("case", [0, 1, 2])
def test_decode_attention_cases(ref, case):
    """decode_atts of 4 crops at zooms 0.5 .. 2.5: the zoom > 2 and zoom x att_scale > 4 rules,
    ignore_same, att_scales 1.5, positions in float64."""
    maps = [tf.constant(nhwc(ref[f"decode_atts_att_{i}"])) for i in range(3)]
    height, width = ref["decode_atts_image_hw"].tolist()
    locations = run(
        lambda: saccade.decode_attention(
            maps,
            tf.constant(ref["decode_atts_scales"]),
            tf.constant(ref["decode_atts_offsets"]),
            height,
            width,
            att_scales=ref[f"decode_atts_case{case}_att_scales"].tolist(),
            att_ratios=(16, 8, 4),
            threshold=float(ref["decode_atts_thresh"]),
            ignore_same=bool(ref[f"decode_atts_case{case}_ignore_same"]),
        )
    )
    assert locations.dtype == np.float64
    np.testing.assert_array_equal(locations, ref[f"decode_atts_case{case}_locations"])


# --- detections ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["s0", "s1"])
def test_rescale_and_remap_detections(ref, stage):
    raw = tf.constant(ref[f"{stage}_dets_raw"])
    zooms, offsets = ref[f"{stage}_locations"][:, 2], tf.constant(ref[f"{stage}_offsets"])
    rescaled, remapped = run(
        lambda: (
            saccade.rescale_detections(raw, 64 / 255),
            saccade.remap_detections(saccade.rescale_detections(raw, 64 / 255), zooms, offsets),
        )
    )
    np.testing.assert_array_equal(rescaled, ref[f"{stage}_dets_rescaled"])
    np.testing.assert_array_equal(remapped, ref[f"{stage}_dets_remapped"])


def test_reference_locations(ref):
    locations = run(lambda: saccade.reference_locations(tf.constant(ref["s0_dets"])))
    np.testing.assert_array_equal(locations, ref["s0_ref_locations"])


@pytest.mark.parametrize("name", ["location_nms", "s0"])
def test_location_nms(ref, name):
    """The standalone case and the glance's (20 attention peaks + 15 reference locations, which
    all score 1: the order of equal scores decides which survive)."""
    source, target = {
        "location_nms": ("location_nms_input", "location_nms_output"),
        "s0": ("s0_location_nms_input", "s0_next_locations"),
    }[name]
    kept = run(lambda: saccade.location_nms(tf.constant(ref[source]), 16))
    np.testing.assert_array_equal(kept, ref[target])


def test_location_nms_ranks_equal_scores_later_row_first():
    """numpy's argsort(scores)[::-1]: of two equal scores, the later row is taken first."""
    locations = tf.constant([[10.0, 10.0, 1.0, 0.5], [12.0, 12.0, 1.0, 0.5], [200, 200, 1, 0.9]])
    kept = run(lambda: saccade.location_nms(locations, 16))
    np.testing.assert_array_equal(kept[:, :2], [[200, 200], [12, 12]])


# --- soft-NMS ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", range(5))
def test_soft_nms_cases(ref, case):
    """The official Cython soft_nms, methods 2, 2, 1, 0, 1: the kept rows in its order (ties
    broken as its in-place swaps leave them), scores bit for bit."""
    rows = ref[f"softnms_case{case}_input"]
    sigma, overlap, threshold, method = ref[f"softnms_case{case}_args"].tolist()
    kept = run(
        lambda: saccade.class_soft_nms(
            tf.constant(rows[:, :4]),
            tf.constant(rows[:, 4]),
            tf.zeros([len(rows)], tf.int32),
            method=int(method),
            sigma=sigma,
            overlap=overlap,
            threshold=threshold,
        )
    )
    count = len(ref[f"softnms_case{case}_keep"])
    assert kept["counts"].tolist() == [count]
    official = ref[f"softnms_case{case}_output"][:count, :5]
    np.testing.assert_array_equal(rows[kept["index"], :4], official[:, :4])
    np.testing.assert_array_equal(kept["scores"], official[:, 4])


def test_soft_nms_per_class(ref):
    """The procedure's per-class call (sigma 0.7) on all 79 detections: 5, 18, 15, 14 kept."""
    rows = ref["softnms_input"]
    kept = run(
        lambda: saccade.class_soft_nms(
            tf.constant(rows[:, :4]),
            tf.constant(rows[:, 4]),
            tf.constant(rows[:, 7].astype(np.int32)),
            sigma=0.7,
            overlap=0.5,
        )
    )
    counts = ref["softnms_nkeep"]
    assert kept["counts"].tolist() == counts[: len(kept["counts"])].tolist()
    assert not counts[len(kept["counts"]) :].any()
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows[:, 7].astype(int), minlength=80))])
    official = np.concatenate(
        [ref["softnms_output"][s : s + n, :5] for s, n in zip(starts[:-1], counts, strict=True)]
    )
    np.testing.assert_array_equal(rows[kept["index"], :4], official[:, :4])
    np.testing.assert_array_equal(kept["scores"], official[:, 4])


def test_inference_soft_nms_keeps_the_same_boxes(ref):
    """inference.soft_nms (TF's NonMaxSuppressionV5) keeps the same 52 boxes; its scores differ
    by up to 3e-5 (it separates the classes by shifting the boxes, which costs float32 bits)."""
    from cornernet_tf.inference import soft_nms

    rows = ref["detections_all"]
    kept = soft_nms(
        {
            "boxes": tf.constant(rows[:, :4]),
            "scores": tf.constant(rows[:, 4]),
            "classes": tf.constant(rows[:, 7].astype(np.int32)),
        },
        sigma=0.7,
    )
    ours = np.concatenate(
        [kept["boxes"].numpy(), kept["scores"].numpy()[:, None], kept["classes"].numpy()[:, None]],
        1,
    )
    official = ref["final_boxes"] - np.float32([0, 0, 0, 0, 0, 1])
    assert ours.shape == official.shape
    ours, official = sort_rows(ours), sort_rows(official)
    np.testing.assert_array_equal(ours[:, [0, 1, 2, 3, 5]], official[:, [0, 1, 2, 3, 5]])
    np.testing.assert_allclose(ours[:, 4], official[:, 4], rtol=0, atol=5e-5)  # measured 3e-5


def sort_rows(rows):
    """Rows in lexicographic order (x1 first), to compare sets of detections."""
    return rows[np.lexsort(rows.T[::-1])]


# --- the whole procedure -------------------------------------------------------------------


class Replay:
    """A stand-in network that answers each call with the official run's recorded outputs:
    the glance's detections and attention maps, then the saccades' detections (row k % 16 for
    the k-th crop, so that other images run too)."""

    def __init__(self, ref):
        self.ref, self.calls = ref, 0

    def __call__(self, crops, attention=True):
        glance, self.calls = self.calls % 2 == 0, self.calls + 1
        assert attention == glance  # the saccades need no attention maps
        if glance:
            maps = [tf.constant(nhwc(self.ref[f"s0_att_{i}"])) for i in range(3)]
            return tf.constant(self.ref["s0_dets_raw"]), maps
        count = tf.shape(crops)[0]
        dets = tf.gather(tf.constant(self.ref["s1_dets_raw"]), tf.range(count) % 16)
        return dets, [tf.zeros([count, side, side, 1]) for side in (16, 32, 64)]


@pytest.fixture(scope="module")
def procedure(ref, config):
    """saccade_stages traced once for RGB uint8 images of any size, and its run on the image."""
    detect = tf.function(
        lambda image: saccade.saccade_stages(Replay(ref), image, config),
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
    )
    stages = detect(tf.constant(ref["image"][..., ::-1].copy()))
    return detect, tf.nest.map_structure(lambda t: t.numpy(), stages)


@pytest.mark.parametrize(
    "ours, official",
    [
        ("s0_locations", "s0_locations"),
        ("s0_geometry", "s0_crop_geometry"),
        ("s0_offsets", "s0_offsets"),
        ("s0_detections", "s0_dets_remapped"),
        ("s0_att_locations", "s0_att_locations"),
        ("s0_dets", "s0_dets"),
        ("s0_ref_locations", "s0_ref_locations"),
        ("s0_next_locations", "s0_next_locations"),
        ("s1_locations", "s1_locations"),
        ("s1_geometry", "s1_crop_geometry"),
        ("s1_offsets", "s1_offsets"),
        ("s1_detections", "s1_dets_remapped"),
        ("s1_dets", "s1_dets"),
        ("detections", "detections_all"),
    ],
)
def test_procedure_stage(ref, procedure, ours, official):
    """Each stage of the traced procedure equals the official run's, bit for bit."""
    _, stages = procedure
    assert stages[ours].dtype == ref[official].dtype or ours.endswith("geometry")
    np.testing.assert_array_equal(stages[ours], ref[official])


def test_procedure_crops_and_attention(ref, procedure):
    _, stages = procedure
    for stage in ("s0", "s1"):  # measured max abs difference: 0.0
        np.testing.assert_allclose(
            stages[f"{stage}_crops"], nhwc(ref[f"{stage}_images"]), atol=1e-5
        )
    for i in range(3):
        np.testing.assert_array_equal(stages["s0_attentions"][i], nhwc(ref[f"s0_att_nms_{i}"]))


def test_procedure_final_detections(ref, procedure):
    """The 52 final detections (boxes in image pixels, decayed scores, classes) as a set."""
    _, stages = procedure
    counts = stages["soft_nms_counts"]
    assert counts.tolist() == ref["softnms_nkeep"][: len(counts)].tolist()
    ours = np.concatenate(
        [stages["boxes"], stages["scores"][:, None], stages["classes"][:, None] + 1.0], 1
    )
    assert ours.shape == ref["final_boxes"].shape == (52, 6)
    assert np.all(np.diff(stages["scores"]) <= 0)
    np.testing.assert_array_equal(sort_rows(ours), sort_rows(ref["final_boxes"]))


def test_procedure_is_traced_once_for_any_image_size(ref, procedure):
    detect, _ = procedure
    detect(tf.constant(ref["image"][:300, :400]))
    detect(tf.zeros([97, 123, 3], tf.uint8))
    assert detect.experimental_get_tracing_count() == 1


def test_saccade_detect_keeps_max_per_image(ref):
    config = load_config("saccade", {**SETTINGS, "test.max_per_image": 7})
    out = run(
        lambda image: saccade.saccade_detect(Replay(ref), image, config),
        tf.constant(ref["image"][..., ::-1].copy()),
    )
    assert sorted(out) == ["boxes", "classes", "scores"]
    assert out["boxes"].shape == (7, 4) and out["classes"].dtype == np.int32
    best = np.sort(ref["final_boxes"][:, 4])[::-1][:7]
    np.testing.assert_array_equal(out["scores"], best)


def test_no_saccades_when_the_glance_finds_nothing(config):
    """No attention peak and no detection: no location, and the network is not run on an
    empty batch (the official stops too); nothing is detected."""

    def network(crops, attention=True):
        count = crops.shape[0]
        assert count > 0, "the network ran on no crops"
        dets = tf.concat([tf.zeros([count, 12, 4]), -tf.ones([count, 12, 4])], -1)
        return dets, [tf.zeros([count, side, side, 1]) for side in (16, 32, 64)]

    stages = saccade.saccade_stages(network, tf.zeros([40, 50, 3], tf.uint8), config)
    assert stages["s1_locations"].shape == (0, 4) and stages["s1_raw"].shape == (0, 12, 8)
    assert stages["boxes"].shape == (0, 4) and stages["classes"].dtype == tf.int32


def test_saccade_network_of_a_model_with_attention():
    """A small CornerNet with attention heads as the procedure's network: decoded detections in
    the official 8-column layout and the three sigmoid attention maps, innermost first."""
    from cornernet_tf.decode import decode
    from cornernet_tf.model import build_model

    tiny = {
        "model.attention": True,
        "model.dims": [8, 8, 8, 8],
        "model.stem_dim": 8,
        "model.cnv_dim": 8,
        "model.pool_dim": 8,
        "data.input_size": [255, 255],
        "test.top_k": 12,
        "test.num_dets": 12,
        "test.no_border": True,
    }
    config = load_config("tiny", tiny)
    model = build_model(config)
    network = saccade.saccade_network(model, config.test)
    crops = tf.random.stateless_normal([2, 255, 255, 3], seed=[1, 2])
    detections, maps = network(crops)
    assert network(crops, attention=False)[1] == []
    assert detections.shape == (2, 12, 8)
    assert [m.shape for m in maps] == [(2, s, s, 1) for s in (16, 32, 64)]
    assert all(0 < float(tf.reduce_min(m)) and float(tf.reduce_max(m)) < 1 for m in maps)
    outputs = model(crops, training=False)
    dets = decode(outputs, k=12, ae_threshold=config.test.ae_threshold, num_dets=12, no_border=True)
    np.testing.assert_array_equal(detections[..., :4], dets["boxes"])
    np.testing.assert_array_equal(detections[..., 4], dets["scores"])
    np.testing.assert_array_equal(detections[..., 7], tf.cast(dets["classes"], tf.float32))
    np.testing.assert_array_equal(maps[0], tf.sigmoid(outputs["attention_0"]))
    image = tf.cast(tf.random.stateless_uniform([90, 130, 3], [3, 4], maxval=255), tf.uint8)
    out = saccade.saccade_detect(network, image, config)
    assert out["boxes"].shape[1] == 4 and out["boxes"].shape[0] <= config.test.max_per_image
