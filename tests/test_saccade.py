"""CornerNet-Saccade (CornerNet-Lite): the network against the official PyTorch outputs.

The official weights are regenerated with the reference make_lite_weights.py (seed 0, 468 MB),
written as a CornerNet-Lite state_dict (`module.hg.*`, `module.att_modules.*` keys), converted by
cornernet-convert --config saccade and loaded into a fresh model: the path a user takes with
CornerNet_Saccade_500000.pkl.
"""

import json
import math

import numpy as np
import pytest

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

ATTENTION = {f"attention_{i}": (16 * 2**i, 16 * 2**i) for i in range(3)}  # 255 in: 16, 32, 64


@pytest.fixture(scope="module")
def lite_weights():
    return official_lite_weights("saccade", 0)


@pytest.fixture(scope="module")
def saccade():
    return build_model(load_config("saccade"))


@pytest.fixture(scope="module")
def converted(lite_weights, tmp_path_factory):
    return convert_lite(lite_weights, "saccade", tmp_path_factory.mktemp("saccade"))


@pytest.fixture(scope="module")
def reference():
    return load_fixture("saccade_parity_public.npz")


def test_parameter_count_is_the_official_one(saccade):
    trainable = sum(math.prod(v.shape) for v in saccade.trainable_weights)
    moving = sum(math.prod(v.shape) for v in saccade.non_trainable_weights)
    assert trainable == 116_969_339
    assert moving == 77_312
    manifest = json.loads((DATA / "saccade_manifest.json").read_text())
    tensors = [k for k, _, _ in manifest if not k.endswith("num_batches_tracked")]
    assert len(saccade.weights) == len(tensors) == 708


def test_parameters_per_part(saccade, lite_weights):
    """Per official module (att_modules.<stack> included), from the official state_dict's shapes."""
    official = official_parts(lite_weights)
    ours = {}
    for part, trainable, _ in parameter_table(saccade):
        part = ".".join(part.split(".")[:2])  # att_modules.<s>.<level> -> att_modules.<s>
        ours[part] = ours.get(part, 0) + trainable
    assert ours == official
    assert official["att_modules.2"] == 2 * (384 * 256 * 9 + 256 + 257) + 256 * 256 * 9 + 256 + 257


def test_attention_maps_innermost_first(saccade):
    """The final stack's attention logits ride along with the heads; all_stacks adds the stack
    axis to every key. A 319 x 383 input: maps of 80 x 96 at stride 4, 40 x 48, 20 x 24."""
    out = saccade(np.zeros((1, 319, 383, 3), np.float32), training=False)
    assert out["tl_heatmap"].shape == (1, 80, 96, 80)
    assert [out[f"attention_{i}"].shape for i in range(3)] == [
        (1, 20, 24, 1),
        (1, 40, 48, 1),
        (1, 80, 96, 1),
    ]
    stacks = saccade(np.zeros((2, 255, 255, 3), np.float32), training=False, all_stacks=True)
    for key, (h, w) in ATTENTION.items():
        assert stacks[key].shape == (3, 2, h, w, 1)
    plain = saccade(np.zeros((1, 255, 255, 3), np.float32), training=False, attention=False)
    assert sorted(plain) == sorted(OFFICIAL_NAMES)  # the saccade crops need no attention maps


@pytest.mark.slow
def test_all_stacks_match_the_official_outputs(converted, reference):
    images = np.transpose(reference["input"], (0, 2, 3, 1))  # NCHW -> NHWC
    out = converted(images, training=False, all_stacks=True)
    names = {**OFFICIAL_NAMES, **{key: key for key in ATTENTION}}
    for key, name in names.items():
        ours = np.transpose(out[key].numpy(), (0, 1, 4, 2, 3))  # (S,B,h,w,C) -> (S,B,C,h,w)
        assert ours.shape == reference[name].shape and ours.shape[0] == 3, key
        np.testing.assert_allclose(ours, reference[name], atol=1e-4, rtol=1e-4, err_msg=key)
    assert reference["attention_strides"].tolist() == [16, 8, 4]


@pytest.mark.slow
@pytest.mark.parametrize(
    "corner_pool", ["scan", pytest.param("custom", marks=pytest.mark.custom_op)]
)
def test_folded_and_other_pools_match_the_official_outputs(converted, reference, corner_pool):
    folded = inference_model(converted, corner_pool=corner_pool)
    assert not folded.with_bn and folded.attention
    images = np.transpose(reference["input"], (0, 2, 3, 1))
    out = folded(images, training=False)
    for key, name in {**OFFICIAL_NAMES, **{key: key for key in ATTENTION}}.items():
        ours = np.transpose(out[key].numpy(), (0, 3, 1, 2))
        np.testing.assert_allclose(ours, reference[name][-1], atol=1e-4, rtol=1e-4, err_msg=key)
    for i in range(3):  # what the official test path returns: the sigmoid of the final stack's
        sigmoid = 1 / (1 + np.exp(-np.transpose(out[f"attention_{i}"].numpy(), (0, 3, 1, 2))))
        np.testing.assert_allclose(sigmoid, reference[f"test_attention_{i}"], atol=1e-5)


@pytest.mark.slow
@pytest.mark.custom_op
def test_winograd_matches_the_official_outputs(converted, reference):
    """The Winograd F(4x4, 3x3) float32 network of the Saccade benchmark, built at 511 so that
    every 3x3 stride-1 convolution takes Winograd: measured max |diff| 7.3e-6."""
    network = inference_model(converted, winograd=True)
    images = np.transpose(reference["input"], (0, 2, 3, 1))
    out = network(images, training=False)
    for key, name in {**OFFICIAL_NAMES, **{key: key for key in ATTENTION}}.items():
        ours = np.transpose(out[key].numpy(), (0, 3, 1, 2))
        np.testing.assert_allclose(ours, reference[name][-1], atol=1e-4, rtol=1e-4, err_msg=key)


# bfloat16 (folded or not) against the official float32 outputs on the parity input: measured max
# abs differences 0.034 (heatmaps, |x| <= 5.0), 0.028 (embeddings), 0.028 (offsets), 0.030
# (attention logits), three stacks deep; 0.07 leaves room and still fails if a layer computed in
# float16 or lost its scale.
BFLOAT16_ATOL = 0.07


@pytest.mark.slow
@pytest.mark.parametrize("fold", [True, False])
def test_bfloat16_is_within_its_measured_tolerance(converted, reference, fold):
    network = inference_model(converted, "bfloat16", fold=fold)
    images = np.transpose(reference["input"], (0, 2, 3, 1))
    out = network(images, training=False)
    for key, name in {**OFFICIAL_NAMES, **{key: key for key in ATTENTION}}.items():
        ours = np.transpose(out[key].numpy(), (0, 3, 1, 2))
        difference = np.abs(ours - reference[name][-1]).max()
        assert 0 < difference < BFLOAT16_ATOL, (key, difference)


def test_squeeze_checkpoint_is_refused_naming_the_first_mismatch(saccade):
    squeeze = official_lite_weights("squeeze", 0)
    with pytest.raises(WeightMismatchError) as info:
        load_official_weights(saccade, squeeze, source="CornerNet_Squeeze_500000.pkl")
    message = str(info.value)
    assert "CornerNet_Squeeze_500000.pkl does not fit the model" in message
    # the first variable in the model's order that differs: the hourglass's first residual
    assert "first mismatch kps.0.up1.0.conv1.weight: checkpoint (128, 256, 1, 1)" in message
    assert "model (3, 3, 256, 256)" in message
    assert "missing from the checkpoint (" in message
    assert "unexpected in the checkpoint (" in message


def test_saved_model_keeps_the_attention_heads(tmp_path):
    """A tiny Saccade-like network round-trips through .keras with its attention argument."""
    import keras

    config = load_config("tiny", {"model.attention": True})
    model = build_model(config)
    assert model.get_config()["attention"] is True
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, compile=False)
    images = np.random.default_rng(0).normal(size=(1, 127, 127, 3)).astype("float32")
    ours, theirs = model(images), again(images)
    assert sorted(ours) == sorted(theirs) and "attention_0" in ours
    for key in ours:
        np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy(), err_msg=key)


def test_config_is_the_official_architecture_and_training():
    """configs/CornerNet_Saccade.json: batch 48, Adam 2.5e-4 / 10 at 450k of 500k, input 255,
    output 64, gaussian_iou 0.5; the loss weights of CornerNet_Saccade_Loss(pull 0.1, push 0.1)."""
    from cornernet_tf.geometry import output_size

    config = load_config("saccade")
    train, model = config.train, config.model
    assert (model.num_stacks, model.depth, model.modules) == (3, 3, (1, 1, 1, 1))
    assert model.attention and model.output_stride == 4 and model.head_kernel == 3
    assert (train.batch_size, train.steps, train.learning_rate) == (48, 500_000, 2.5e-4)
    assert train.decay_at * train.steps == 450_000
    assert (train.pull_weight, train.push_weight, train.offset_weight) == (0.1, 0.1, 1.0)
    assert config.data.input_size == (255, 255) and config.data.gaussian_iou == 0.5
    assert output_size(config.data.input_size, model.output_stride) == (64, 64)
    assert len(config.data.category_ids) == 80 and config.data.category_ids[-1] == 90


def test_input_sides_are_31_mod_32(saccade):
    from cornernet_tf.config import ConfigError

    with pytest.raises(ConfigError, match=r"side 250 .*valid: 31, 63, 95, 127"):
        load_config("saccade", {"data.input_size": [250, 250]})
    with pytest.raises(ValueError, match=r"input width 256 is not 31 mod 32"):
        saccade(np.zeros((1, 255, 256, 3), np.float32))


MICRO = {
    "model.num_stacks": 2,
    "model.depth": 2,
    "model.dims": [16, 24, 32],
    "model.modules": [1, 1, 1],
    "model.stem_dim": 8,
    "model.cnv_dim": 16,
    "model.pool_dim": 8,
    "model.attention": True,
}


def test_convert_reads_an_official_saccade_checkpoint(tmp_path):
    """CornerNet_Saccade_500000.pkl's format (legacy torch.save, `module.hg.*` and
    `module.att_modules.*` keys, CUDA-tagged storages), a micro Saccade made by
    tests/data/make_lite_checkpoint_fixtures.py: every variable holds its official value."""
    from cornernet_tf.convert import lite_to_cornernet, official_key, to_keras

    output = tmp_path / "micro.weights.h5"
    overrides = [f"{key}={value}" for key, value in MICRO.items()]
    args = [str(DATA / "saccade_legacy.pkl"), str(output), "--config", "tiny", *overrides]
    assert run_script("convert_weights", *args) == 0
    model = build_model(load_config("tiny", MICRO))
    model.load_weights(str(output))
    official = official_lite_weights("micro_saccade", 3)
    official = {lite_to_cornernet(key): value for key, value in official.items()}
    for variable in model.weights:
        value = official[official_key(variable.path)]
        expected = to_keras(variable.path.rsplit("/", 1)[1], value, variable.shape)
        np.testing.assert_array_equal(variable.numpy(), expected, err_msg=variable.path)
    attention = [v for v in model.weights if v.path.split("/")[1].startswith("att_modules.")]
    assert len(model.weights) == len(official) and len(attention) == 2 * 2 * 4


@pytest.mark.heavy
def test_tiny_saccade_learns_from_the_saccade_sampling(shapes):
    """make_dataset with data.sampling saccade gives 255 x 255 crops, sparse corner targets, the
    ignored boxes and the three attention targets; the train step draws the heatmaps and the
    focal-loss masks and fits one batch: every term falls, attention included."""
    import keras
    import tensorflow as tf

    from cornernet_tf.data import coco_source, make_dataset

    config = load_config("tiny_saccade")
    source = coco_source(shapes / "train.json", shapes / "train")
    images, targets = next(iter(make_dataset(source, config, batch_size=2, training=True)))
    assert images.shape == (2, 255, 255, 3)
    for i, side in enumerate((16, 32, 64)):
        assert targets[f"attention_{i}"].shape == (2, side, side, 1)
    assert float(tf.reduce_sum(targets["mask"])) > 0
    assert targets["ignored_mask"].dtype == tf.float32
    assert sum(float(tf.reduce_sum(targets[f"attention_{i}"])) for i in range(3)) > 0
    keras.utils.set_random_seed(0)
    model = build_model(config)
    full = model.with_heatmaps(images, targets)
    assert full["tl_valid"].shape == full["tl_heatmap"].shape == (2, 64, 64, 4)
    model.compile(keras.optimizers.Adam(1e-3))
    before = model.compute_losses(images, targets, training=True)
    data = tf.data.Dataset.from_tensors((images, targets)).repeat(12)
    history = model.fit(data, verbose=0, shuffle=False)
    after = model.compute_losses(images, targets, training=True)
    assert "attention" in history.history
    for term in ("loss", "focal", "attention"):
        assert np.isfinite(float(after[term])) and float(after[term]) < float(before[term]), term


def test_saccade_sampling_needs_the_saccade_attention_maps():
    from cornernet_tf.config import ConfigError

    with pytest.raises(ConfigError, match=r"data.sampling saccade .*model.attention true"):
        load_config("tiny", {"data.sampling": "saccade"})
    with pytest.raises(ConfigError, match=r"data.sampling must be cornernet or saccade"):
        load_config("tiny", {"data.sampling": "glance"})


def test_detector_runs_the_saccade_procedure_on_any_image_size():
    """Detector, detect and evaluate all go through detect_image, which runs the Saccade
    procedure for test.procedure saccade: one trace for two image sizes. Weights of seed 3 give
    100 boxes on both images (seeds 0-2 none); as the official procedure's, they are not clipped
    to the image (those of crops at its border reach past it)."""
    import keras

    from cornernet_tf.inference import Detector

    keras.utils.set_random_seed(3)
    detector = Detector.from_files("tiny_saccade", overrides={"test.att_thresholds": [0.0]})
    rng = np.random.default_rng(0)
    for height, width in ((200, 300), (333, 250)):
        image = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        dets = detector(image)
        boxes = dets["boxes"]
        assert boxes.shape == (100, 4) and dets["scores"].shape == (100,)
        assert np.all(np.isfinite(boxes)) and np.all(np.diff(dets["scores"]) <= 0)
        assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])
        # the boxes span the image (crops cover it all) and reach past it (not clipped)
        assert boxes[:, 0].min() < 0 and boxes[:, 2].max() > width
    assert detector._detect.experimental_get_tracing_count() == 1
    with pytest.raises(ValueError, match=r"255 x 255 crops of any image; a fixed input size"):
        Detector.from_files("tiny_saccade", input_size=511)(image)
