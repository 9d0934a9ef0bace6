"""Official state_dict -> Keras: the key mapping, the errors, and the convert_weights script."""

import numpy as np
import pytest
import tensorflow as tf

from cornernet_tf import build_model, load_config
from cornernet_tf.convert import WeightMismatchError, load_official_weights, official_key
from tests.helpers import DATA, ROOT, make_weights_module, official_manifest, run_script


@pytest.fixture(scope="module")
def tiny():
    return build_model(load_config(ROOT / "configs/tiny.yaml", {"model.num_stacks": 2}))


@pytest.fixture(scope="module")
def tiny_state_dict(tiny):
    """Official-layout weights for the tiny model, as the official trainer saves them."""
    weights = make_weights_module().make_weights(official_manifest(tiny), seed=5)
    return {"module." + key: value for key, value in weights.items()}


@pytest.mark.parametrize(
    "path, key",
    [
        ("cornernet/pre.0/conv/kernel", "pre.0.conv.weight"),
        ("cornernet/pre.1/skip.1/moving_variance", "pre.1.skip.1.running_var"),
        (
            "cornernet/kps.0/low2/low2/low2/low2/low2.3/conv2/kernel",
            "kps.0.low2.low2.low2.low2.low2.3.conv2.weight",
        ),
        ("cornernet/tl_cnvs.1/p1_conv1/bn/gamma", "tl_cnvs.1.p1_conv1.bn.weight"),
        ("cornernet/tl_heats.1/1/bias", "tl_heats.1.1.bias"),
        ("cornernet/inters_.0/1/moving_mean", "inters_.0.1.running_mean"),
    ],
)
def test_official_key_examples(path, key):
    assert official_key(path) == key


def test_loading_puts_each_tensor_in_its_place(tiny, tiny_state_dict):
    load_official_weights(tiny, tiny_state_dict)
    conv = tiny_state_dict["module.pre.0.conv.weight"]  # OIHW
    kernel = tiny.pre[0].conv.kernel.numpy()  # HWIO
    np.testing.assert_array_equal(kernel[2, 5, 1, 7], conv[7, 1, 2, 5])
    np.testing.assert_array_equal(
        tiny.br_cnvs[1].p_bn1.moving_variance.numpy(),
        tiny_state_dict["module.br_cnvs.1.p_bn1.running_var"],
    )
    np.testing.assert_array_equal(
        tiny.heads[0]["tl_heatmap"].out.bias.numpy(), tiny_state_dict["module.tl_heats.0.1.bias"]
    )


def test_mismatches_are_listed_by_name(tiny, tiny_state_dict):
    broken = dict(tiny_state_dict)
    del broken["module.pre.0.bn.running_mean"]
    del broken["module.tl_tags.1.1.weight"]
    broken["module.extra.weight"] = np.zeros(3, np.float32)
    broken["module.cnvs.0.conv.weight"] = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(WeightMismatchError) as info:
        load_official_weights(tiny, broken, source="ckpt.pkl")
    message = str(info.value)
    assert "ckpt.pkl does not fit the model" in message
    assert "missing from the checkpoint (2)" in message
    assert "pre.0.bn.running_mean" in message and "tl_tags.1.1.weight" in message
    assert "unexpected in the checkpoint (1):\n    extra.weight" in message
    assert "wrong shape (1):\n    cnvs.0.conv.weight: checkpoint (1, 2, 3, 3)" in message


def test_num_batches_tracked_and_missing_prefix_are_accepted(tiny, tiny_state_dict):
    plain = {key.removeprefix("module."): value for key, value in tiny_state_dict.items()}
    plain["pre.0.bn.num_batches_tracked"] = np.array(0, np.int64)
    load_official_weights(tiny, plain)


@pytest.mark.e2e
def test_script_converts_npz_to_loadable_weights(tiny, tiny_state_dict, tmp_path):
    checkpoint = tmp_path / "tiny.npz"
    np.savez(checkpoint, **tiny_state_dict)
    output = tmp_path / "out" / "tiny.weights.h5"
    code = run_script(
        "convert_weights",
        str(checkpoint),
        str(output),
        "--config",
        str(ROOT / "configs/tiny.yaml"),
        "model.num_stacks=2",
    )
    assert code == 0
    loaded = build_model(load_config(ROOT / "configs/tiny.yaml", {"model.num_stacks": 2}))
    loaded.load_weights(str(output))
    load_official_weights(tiny, tiny_state_dict)
    x = tf.random.stateless_normal([1, 63, 63, 3], seed=[4, 4])
    a, b = tiny(x, all_stacks=True), loaded(x, all_stacks=True)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_script_refuses_a_malicious_pickle(tmp_path, capsys):
    marker = tmp_path / "pwned"
    code = run_script(
        "convert_weights", str(DATA / "ckpt_malicious.pkl"), str(tmp_path / "x.weights.h5")
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "ckpt_malicious.pkl" in err and "system" in err and "could run code" in err
    assert not marker.exists() and not (tmp_path / "x.weights.h5").exists()


def test_script_reports_mismatch_and_bad_names(tmp_path, capsys):
    np.savez(tmp_path / "small.npz", **{"pre.0.conv.weight": np.zeros((1, 3, 7, 7), np.float32)})
    assert (
        run_script(
            "convert_weights",
            str(tmp_path / "small.npz"),
            str(tmp_path / "a.weights.h5"),
            "--config",
            str(ROOT / "configs/tiny.yaml"),
        )
        == 2
    )
    assert "missing from the checkpoint" in capsys.readouterr().err
    assert run_script("convert_weights", str(tmp_path / "small.npz"), str(tmp_path / "a.h5")) == 2
    assert "must end in .weights.h5" in capsys.readouterr().err
