"""CornerNet-Squeeze (CornerNet-Lite) against the official PyTorch outputs.

The official weights are regenerated with the reference make_lite_weights.py (seed 0, 127 MB),
written as a CornerNet-Lite state_dict (`module.hg.*` keys), converted by cornernet-convert
--config squeeze and loaded into a fresh model: the path a user takes with
CornerNet_Squeeze_500000.pkl.
"""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import build_model, load_config
from cornernet_tf.convert import WeightMismatchError, load_official_weights
from cornernet_tf.model import parameter_table
from cornernet_tf.optimize import inference_model
from tests.helpers import (
    DATA,
    OFFICIAL_NAMES,
    convert_lite,
    load_fixture,
    official_lite_weights,
    official_parts,
    run_script,
)


@pytest.fixture(scope="module")
def lite_weights():
    return official_lite_weights("squeeze", 0)


@pytest.fixture(scope="module")
def squeeze():
    return build_model(load_config("squeeze"))


@pytest.fixture(scope="module")
def converted(lite_weights, tmp_path_factory):
    return convert_lite(lite_weights, "squeeze", tmp_path_factory.mktemp("squeeze"))


@pytest.fixture(scope="module")
def reference():
    return load_fixture("squeeze_parity_public.npz")


def test_parameter_count_is_the_official_one(squeeze):
    trainable = sum(math.prod(v.shape) for v in squeeze.trainable_weights)
    moving = sum(math.prod(v.shape) for v in squeeze.non_trainable_weights)
    assert trainable == 31_771_852
    assert moving == 77_568
    manifest = json.loads((DATA / "squeeze_manifest.json").read_text())
    tensors = [k for k, _, _ in manifest if not k.endswith("num_batches_tracked")]
    assert len(squeeze.weights) == len(tensors) == 845


def test_parameters_per_part(squeeze, lite_weights):
    """Per official module, counted from the official state_dict's shapes."""
    official = official_parts(lite_weights)
    ours = {part: trainable for part, trainable, _ in parameter_table(squeeze)}
    assert ours == official


@pytest.mark.slow
def test_both_stacks_match_the_official_outputs(converted, reference):
    images = np.transpose(reference["input"], (0, 2, 3, 1))  # NCHW -> NHWC
    out = converted(images, training=False, all_stacks=True)
    for key, name in OFFICIAL_NAMES.items():
        ours = np.transpose(out[key].numpy(), (0, 1, 4, 2, 3))  # (S,B,h,w,C) -> (S,B,C,h,w)
        assert ours.shape == reference[name].shape == (2, 1, ours.shape[2], 32, 32)
        np.testing.assert_allclose(ours, reference[name], atol=1e-4, rtol=1e-4, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize(
    "corner_pool", ["scan", pytest.param("custom", marks=pytest.mark.custom_op)]
)
def test_folded_and_other_pools_match_the_official_outputs(converted, reference, corner_pool):
    folded = inference_model(converted, corner_pool=corner_pool)
    assert not folded.with_bn
    images = np.transpose(reference["input"], (0, 2, 3, 1))
    out = folded(images, training=False)
    for key, name in OFFICIAL_NAMES.items():
        ours = np.transpose(out[key].numpy(), (0, 3, 1, 2))
        np.testing.assert_allclose(ours, reference[name][-1], atol=1e-4, rtol=1e-4, err_msg=key)


# bfloat16 (folded or not) against the official float32 outputs on the parity input: measured max
# abs differences 0.0145 (heatmaps, |x| <= 3.6), 0.0142 (embeddings), 0.0126 (offsets); 0.03
# leaves room and still fails if a layer computed in float16 or lost its scale.
BFLOAT16_ATOL = 0.03


@pytest.mark.slow
@pytest.mark.parametrize("fold", [True, False])
def test_bfloat16_is_within_its_measured_tolerance(converted, reference, fold):
    network = inference_model(converted, "bfloat16", fold=fold)
    images = np.transpose(reference["input"], (0, 2, 3, 1))
    out = network(images, training=False)
    for key, name in OFFICIAL_NAMES.items():
        ours = np.transpose(out[key].numpy(), (0, 3, 1, 2))
        difference = np.abs(ours - reference[name][-1]).max()
        assert 0 < difference < BFLOAT16_ATOL, (key, difference)


def test_hourglass104_checkpoint_is_refused_naming_the_first_mismatch(squeeze, lite_weights):
    hourglass = build_model(load_config("hourglass104", {"model.num_stacks": 1}))
    with pytest.raises(WeightMismatchError) as info:
        load_official_weights(hourglass, lite_weights, source="CornerNet_Squeeze_500000.pkl")
    message = str(info.value)
    assert "CornerNet_Squeeze_500000.pkl does not fit the model" in message
    assert "CornerNet-Lite (hg.*)" in message
    # the first variable in the model's order: the first residual's 3x3 conv in the hourglass
    assert "first mismatch kps.0.up1.0.conv1.weight: checkpoint (128, 256, 1, 1)" in message
    assert "model (3, 3, 256, 256)" in message


def test_config_is_the_official_test_procedure():
    ref = load_fixture("squeeze_testpath_public.npz")
    test = load_config("squeeze").test
    assert (test.top_k, test.nms_kernel, test.num_dets) == (20, 3, 100)
    assert test.ae_threshold == ref["cfg_ae_threshold"] == 0.5
    assert test.soft_nms_sigma == ref["cfg_soft_nms_sigma"] == 0.5
    assert (test.scales, test.flip, test.no_border, test.max_per_image) == (
        (1.0,),
        False,
        False,
        100,
    )


def test_test_procedure_reproduces_the_official(monkeypatch):
    """cornernet_inference of CornerNet-Lite on squeeze_testpath_public.npz: the image padded (not
    resized) to 255 x 383, normalised; the official network + _decode output (`dets_raw`) mapped
    back to the image, soft-NMS (sigma 0.5), the 100 best."""
    import tensorflow as tf

    from cornernet_tf import inference

    ref = load_fixture("squeeze_testpath_public.npz")
    config = load_config("squeeze")
    seen = {}

    class StandIn:  # the network: records its input; decode below returns the official output
        def __call__(self, inputs, training=False):
            seen["input"] = inputs.numpy()
            return {"tl_heatmap": tf.zeros([1, 32, 48, 80])}

    def official_decode(outputs, **kwargs):
        seen["decode"] = kwargs
        rows = tf.constant(ref["dets_raw"])
        return {
            "boxes": rows[..., :4],
            "scores": rows[..., 4],
            "tl_scores": rows[..., 5],
            "br_scores": rows[..., 6],
            "classes": tf.cast(rows[..., 7], tf.int32),
        }

    monkeypatch.setattr(inference, "decode", official_decode)
    rgb = ref["image"][..., ::-1]  # the fixture is cv2's BGR
    dets = inference.detect_image(StandIn(), tf.constant(rgb.copy()), config)

    np.testing.assert_allclose(
        seen["input"], np.transpose(ref["input"], (0, 2, 3, 1)), atol=1e-5, rtol=1e-6
    )
    assert seen["decode"] == dict(k=20, kernel=3, ae_threshold=0.5, num_dets=100, no_border=False)
    geometry = inference.scale_geometry(200, 300, 1.0, 128, None, 8)
    np.testing.assert_allclose(geometry["ratio"].numpy(), ref["ratios"][0], rtol=1e-7)
    top, left = geometry["padding"].numpy()
    assert [top, top + 200, left, left + 300] == ref["borders"][0].tolist()

    # the official final_boxes [x1, y1, x2, y2, score, class 1..80] are in class order
    final = ref["final_boxes"]
    assert ref["softnms_nkeep"].sum() == len(final) == 10  # no stale soft-NMS rows here
    order = np.argsort(-final[:, 4], kind="stable")
    np.testing.assert_allclose(dets["boxes"].numpy(), final[order, :4], atol=1e-4)
    np.testing.assert_allclose(dets["scores"].numpy(), final[order, 4], atol=1e-6)
    np.testing.assert_array_equal(dets["classes"].numpy() + 1, final[order, 5])


def test_input_sizes_the_stride_8_network_cannot_take_list_the_valid_ones(squeeze):
    from cornernet_tf.config import ConfigError
    from cornernet_tf.inference import check_input_size

    with pytest.raises(ConfigError, match=r"side 500 .*valid: 127, 255, 383, 511"):
        load_config("squeeze", {"data.input_size": [500, 500]})
    with pytest.raises(ValueError, match=r"input size 300 .*output stride 8.* 255, 383, 511"):
        check_input_size(300, 4, 8)
    with pytest.raises(ValueError, match=r"input height 300 is not 127 mod 128"):
        squeeze(np.zeros((1, 300, 255, 3), np.float32))


def test_no_pair_on_the_saved_maps_as_officially(reference):
    """The official test-path output of the parity weights (random: every pair rejected), from the
    saved raw maps of the final stack (its top-20 corners: test_decode.py)."""
    from cornernet_tf.decode import decode
    from tests.test_decode import final_stack

    dets = decode(final_stack(reference, -1), k=20, kernel=3, ae_threshold=0.5, num_dets=100)
    assert dets["scores"].shape == (1, 100)
    assert np.all(dets["scores"].numpy() == -1) and np.all(reference["detections"][..., 4] == -1)


@pytest.mark.heavy
def test_tiny_squeeze_learns_from_stride_8_targets(shapes):
    """The input pipeline makes targets on the 16 x 16 maps of a stride-8 network at 127, and the
    train step fits one batch of them: the loss falls by more than half in 20 steps."""
    import keras

    from cornernet_tf.data import coco_source, make_dataset

    config = load_config("tiny_squeeze", {"data.input_size": [127, 127], "model.num_classes": 4})
    source = coco_source(shapes / "train.json", shapes / "train")
    images, targets = next(iter(make_dataset(source, config, batch_size=4, training=False)))
    assert images.shape == (4, 127, 127, 3)
    mask = targets["mask"].numpy() > 0
    for corner in ("tl", "br"):
        index = targets[f"{corner}_index"].numpy()[mask]
        assert index.max() < 16 * 16 and index.min() >= 0
    keras.utils.set_random_seed(0)
    model = build_model(config)
    model.compile(keras.optimizers.Adam(1e-3))
    before = float(model.compute_losses(images, targets, training=True)["loss"])
    data = tf.data.Dataset.from_tensors((images, targets)).repeat(20)
    model.fit(data, verbose=0, shuffle=False)
    after = float(model.compute_losses(images, targets, training=True)["loss"])
    assert np.isfinite(after) and after < 0.5 * before, (before, after)


MICRO = {
    "model.num_stacks": 2,
    "model.depth": 1,
    "model.dims": [16, 24],
    "model.modules": [1, 2],
    "model.stem_dim": 8,
    "model.cnv_dim": 16,
    "model.pool_dim": 8,
}


@pytest.mark.parametrize("name", ["lite_legacy.pkl", "lite_zip.pt"])
def test_convert_reads_official_lite_checkpoints(name, tmp_path):
    """CornerNet_Squeeze_500000.pkl's format (legacy torch.save, `module.hg.*` keys, CUDA-tagged
    storages; and the zip format with num_batches_tracked), a micro Squeeze made by
    tests/data/make_lite_checkpoint_fixtures.py: every variable holds its official value."""
    from cornernet_tf.convert import lite_to_cornernet, official_key, to_keras

    output = tmp_path / "micro.weights.h5"
    overrides = [f"{key}={value}" for key, value in MICRO.items()]
    args = [str(DATA / name), str(output), "--config", "tiny_squeeze", *overrides]
    assert run_script("convert_weights", *args) == 0
    model = build_model(load_config("tiny_squeeze", MICRO))
    model.load_weights(str(output))
    official = official_lite_weights("micro_squeeze", 3)
    official = {lite_to_cornernet(key): value for key, value in official.items()}
    depthwise = 0
    for variable in model.weights:
        value = official[official_key(variable.path)]
        depthwise += value.ndim == 4 and value.shape[1] == 1 and value.shape[0] > 1
        expected = to_keras(variable.path.rsplit("/", 1)[1], value, variable.shape)
        np.testing.assert_array_equal(variable.numpy(), expected, err_msg=variable.path)
    assert (
        len(model.weights) == len(official) and depthwise == 2 * 5
    )  # fire modules: up1, low1, 2 low2, low3


def test_config_is_the_official_training():
    """configs/CornerNet_Squeeze.json: batch 55, Adam 2.5e-4 / 10 at 450k of 500k, input 511,
    output 64 (output stride 8), the loss weights of CornerNet_Loss(pull 0.1, push 0.1)."""
    from cornernet_tf.geometry import output_size

    config = load_config("squeeze")
    train = config.train
    assert (train.batch_size, train.steps, train.learning_rate) == (55, 500_000, 2.5e-4)
    assert train.decay_at * train.steps == 450_000
    assert (train.pull_weight, train.push_weight, train.offset_weight) == (0.1, 0.1, 1.0)
    assert config.data.input_size == (511, 511) and config.data.gaussian_iou == 0.3
    assert output_size(config.data.input_size, config.model.output_stride) == (64, 64)
    assert len(config.data.category_ids) == 80 and config.data.category_ids[-1] == 90
