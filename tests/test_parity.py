"""Hourglass-104 against the official PyTorch outputs (parity_public.npz), through the converter.

The official weights are regenerated with the reference make_weights.py (seed 0, ~805 MB), written
as a checkpoint, converted by scripts/convert_weights.py to .weights.h5 and loaded into a fresh
model: the whole path a user takes with CornerNet_500000.pkl.
"""

import json
import math

import numpy as np
import pytest

from cornernet_tf import build_model, load_config
from cornernet_tf.model import parameter_table
from cornernet_tf.optimize import inference_model
from tests.helpers import DATA, OFFICIAL_NAMES, ROOT, load_fixture, make_weights_module, run_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted_file(tmp_path_factory):
    """The official synthetic weights as a checkpoint, through the converter: hg104.weights.h5."""
    manifest = json.loads((DATA / "official_cornernet_manifest.json").read_text())
    weights = make_weights_module().make_weights(manifest, 0)
    np.testing.assert_allclose(
        weights["pre.0.conv.weight"][0, 0, 0, :3], [0.09363909, 0.06765512, 0.04952310], rtol=1e-6
    )
    folder = tmp_path_factory.mktemp("hg104")
    checkpoint, output = folder / "official_seed0.npz", folder / "hg104.weights.h5"
    np.savez(checkpoint, **{"module." + k: v for k, v in weights.items()})
    del weights
    assert run_script("convert_weights", str(checkpoint), str(output)) == 0
    checkpoint.unlink()
    return output


@pytest.fixture(scope="module")
def converted(converted_file):
    model = build_model(load_config(ROOT / "configs/hourglass104.yaml"))
    model.load_weights(str(converted_file))
    return model


@pytest.fixture(scope="module")
def reference():
    return load_fixture("parity_public.npz")


def test_parameter_count_is_the_official_one(converted):
    trainable = sum(math.prod(v.shape) for v in converted.trainable_weights)
    moving = sum(math.prod(v.shape) for v in converted.non_trainable_weights)
    assert trainable == 201_035_212
    assert moving == 125_696
    assert len(converted.weights) == 948


def test_parameters_per_part_match_the_official_breakdown(converted):
    # OFFICIAL_CORNERNET.md section 2, counted on the PyTorch model.
    table = {part: trainable for part, trainable, _ in parameter_table(converted)}
    assert table["pre"] == 938_112
    assert table["kps.0"] == table["kps.1"] == 92_134_400
    assert table["cnvs.0"] == 590_336
    assert table["tl_cnvs.1"] == table["br_cnvs.0"] == 1_542_144
    assert table["tl_heats.0"] == 610_640
    assert table["br_tags.1"] == 590_337
    assert table["tl_regrs.1"] == 590_594
    assert table["inters.0"] == 1_180_672
    assert table["inters_.0"] == table["cnvs_.0"] == 66_048
    assert sum(table.values()) == 201_035_212


def test_both_stacks_match_the_official_outputs(converted, reference):
    images = np.transpose(reference["input"], (0, 2, 3, 1))  # NCHW -> NHWC
    out = converted(images, training=False, all_stacks=True)
    for key, name in OFFICIAL_NAMES.items():
        ours = np.transpose(out[key].numpy(), (0, 1, 4, 2, 3))  # (S,B,h,w,C) -> (S,B,C,h,w)
        assert ours.shape == reference[name].shape
        np.testing.assert_allclose(ours, reference[name], atol=1e-4, rtol=1e-4, err_msg=key)


def test_test_path_is_the_final_stack(converted, reference):
    images = np.transpose(reference["input"], (0, 2, 3, 1))
    out = converted(images, training=False)
    for key, name in OFFICIAL_NAMES.items():
        ours = np.transpose(out[key].numpy(), (0, 3, 1, 2))
        np.testing.assert_allclose(ours, reference[name][1], atol=1e-4, rtol=1e-4, err_msg=key)


@pytest.mark.parametrize("winograd", [False, pytest.param(True, marks=pytest.mark.custom_op)])
def test_inference_model_matches_the_official_outputs(converted, reference, winograd):
    """What Detector runs: BatchNorm folded, and optionally Winograd F(4x4, 3x3) convolutions
    (measured: max |difference| 1.1e-5 folded, 7.6e-6 with Winograd)."""
    network = inference_model(converted, winograd=winograd)
    out = network(np.transpose(reference["input"], (0, 2, 3, 1)), training=False)
    for key, name in OFFICIAL_NAMES.items():
        ours = np.transpose(out[key].numpy(), (0, 3, 1, 2))
        np.testing.assert_allclose(ours, reference[name][1], atol=1e-4, rtol=1e-4, err_msg=key)


@pytest.mark.heavy  # keeps `make test` under 20 minutes; CI runs it
@pytest.mark.custom_op
def test_bfloat16_winograd_is_as_close_to_the_official_outputs_as_bfloat16(converted, reference):
    """bfloat16 with Winograd F(2x2, 3x3) against the official float32 outputs: its RMS
    difference stays within twice the direct bfloat16 network's, per output (measured: 1.0-1.3
    times)."""
    x = np.transpose(reference["input"], (0, 2, 3, 1))
    errors = {}
    for winograd in (False, True):
        out = inference_model(converted, "bfloat16", winograd=winograd)(x, training=False)
        errors[winograd] = {
            key: float(
                np.sqrt(np.mean((np.transpose(out[key], (0, 3, 1, 2)) - reference[name][1]) ** 2))
            )
            for key, name in OFFICIAL_NAMES.items()
        }
    print("RMS difference from the official outputs, direct / Winograd bfloat16:")
    for key in OFFICIAL_NAMES:
        print(f"  {key}: {errors[False][key]:.2e} / {errors[True][key]:.2e}")
        assert errors[True][key] <= 2 * errors[False][key], key


def test_converted_coco_weights_fine_tune_to_new_classes(converted, converted_file):
    """The fine-tuning recipe at full size: the converted 80-class weights into the 3-class
    Hourglass-104 of configs/custom_example.yaml."""
    from cornernet_tf.finetune import init_weights
    from cornernet_tf.heads import HEAT_BIAS

    config = load_config(ROOT / "configs/custom_example.yaml")
    model = build_model(config)
    fresh = init_weights(model, converted_file, config.source)
    layers = sorted(line.split(":")[0] for line in fresh)
    assert layers == ["br_heats.0/1", "br_heats.1/1", "tl_heats.0/1", "tl_heats.1/1"]
    loaded = {v.path: v for v in converted.weights}
    for variable in model.weights:
        if variable.path.split("/")[1] in {layer.split("/")[0] for layer in layers} and (
            variable.path.split("/")[2] == "1"
        ):
            assert variable.shape[-1] == 3
            if variable.path.endswith("bias"):
                np.testing.assert_allclose(variable.numpy(), HEAT_BIAS)
        else:
            np.testing.assert_array_equal(variable.numpy(), loaded[variable.path].numpy())
