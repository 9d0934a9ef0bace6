"""CornerNet-Squeeze in the browser page: cornernet-export --tfjs on a random-weight Squeeze, picked
in the page's model picker in headless Chromium (WASM), gives the SavedModel's detections."""

import subprocess

import numpy as np
import pytest

from tests.test_web import (
    WEB,
    assert_close,
    browser_check,
    build_page,
    decoded,
    node,
    saved_model_outputs,
    served,
)

# The smallest input side Squeeze takes (128k - 1): a fixed size keeps the TF.js graph static, and
# the smallest keeps the export and the browser run short (its 32 x 32 maps still give 81 boxes).
INPUT_SIZE = 255
CLASS = 16  # dog, COCO category id 18: the page must map ids to names, not add 1


def pairing_squeeze_weights(path):
    """Seeded random Squeeze weights whose corners pair up, saved to `path`.

    BatchNorm statistics, affine terms and biases are random, as trained ones are (fresh ones
    fold into zero biases, which the converter drops). A random network's best corners have other
    classes at the top-left than at the bottom-right, and embeddings farther apart than
    test.ae_threshold, so every pair is rejected and no image gets a detection; here the last
    stack's heatmaps make every class but CLASS 9 logits less likely and its embeddings are scaled
    down 10 times, which leaves about 80 detections to compare."""
    import keras

    from cornernet_tf import build_model, load_config

    config = load_config("squeeze")
    keras.utils.set_random_seed(0)
    model = build_model(config)
    rng = np.random.default_rng(0)
    last = f".{config.model.num_stacks - 1}/1/"
    for variable in model.weights:
        name = variable.path.rsplit("/", 1)[-1]
        if name in ("moving_mean", "beta") or (name == "bias" and not np.any(variable.numpy())):
            variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))
        elif name in ("moving_variance", "gamma"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
        if f"_heats{last}bias" in variable.path:
            variable.assign(np.where(np.arange(80) == CLASS, 0.0, -9.0).astype("float32"))
        elif f"_tags{last}" in variable.path:
            variable.assign(variable.numpy() * 0.1)
    model.save_weights(str(path))


@pytest.fixture(scope="module")
def exported_squeeze(tmp_path_factory):
    """cornernet-export --config squeeze on pairing_squeeze_weights: a 255 x 255 SavedModel and
    its TF.js conversion (float32)."""
    from tests.helpers import run_script

    out = tmp_path_factory.mktemp("squeeze")
    pairing_squeeze_weights(out / "squeeze.weights.h5")
    code = run_script(
        "export", "--config", "squeeze", "--weights", str(out / "squeeze.weights.h5"),
        "--input-size", str(INPUT_SIZE), "--out", str(out / "squeeze"),
        "--tfjs", str(out / "squeeze_tfjs"),
    )  # fmt: skip
    assert code == 0
    return {"saved_model": out / "squeeze" / "1", "tfjs": out / "squeeze_tfjs"}


@pytest.mark.web
@pytest.mark.network
@pytest.mark.e2e
def test_chromium_picker_runs_squeeze_like_its_saved_model(
    exported_tfjs, exported_squeeze, test_images, tmp_path
):
    """The page built with the shapes model and Squeeze runs the first on the image, then, picked
    in the model picker, Squeeze on the same image: each gives its SavedModel's detections."""
    dist = tmp_path / "dist"
    build_page(dist, [f"shapes={exported_tfjs['tfjs']}", f"squeeze={exported_squeeze['tfjs']}"])
    with served(dist) as url:
        state = browser_check(
            f"{url}?backend=wasm", test_images[0], tmp_path, "--switch-to", "squeeze"
        )
    image = decoded(test_images[0])  # 127 x 127
    assert [m["name"] for m in state["models"]] == ["shapes", "squeeze"]
    assert state["first"]["model"] == "shapes"
    assert_close(state["first"]["raw"], saved_model_outputs(exported_tfjs, image))

    expected = saved_model_outputs(exported_squeeze, image)
    count = int(expected["num_detections"][0])
    assert count >= 20  # a real comparison: rejected pairs never reach the outputs
    assert state["backend"] == "wasm" and state["runs"] == 2
    assert state["model"] == state["result"]["model"] == "squeeze"
    assert_close(state["result"]["raw"], expected)
    detections = state["result"]["detections"]
    assert len(detections) == state["rows_at_zero"] == count
    assert {(d["class"], d["name"]) for d in detections} == {(CLASS, "dog")}
    ymin, xmin, ymax, xmax = expected["detection_boxes"][0, 0] * 127
    np.testing.assert_allclose(detections[0]["box"], [xmin, ymin, xmax, ymax], atol=0.2)
    assert state["time"].endswith(" ms per image (squeeze, wasm)")
    assert f"{INPUT_SIZE}×{INPUT_SIZE} input" in state["status"]
    assert not [m for m in state["console"] if m.startswith(("error", "pageerror"))]


@pytest.mark.web
def test_build_refuses_two_models_of_one_name(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "m").mkdir(parents=True)
        for file in ("model.json", "cornernet.json"):
            (tmp_path / name / "m" / file).write_text("{}")
    done = subprocess.run(
        [node(), str(WEB / "build.mjs"), "--model", str(tmp_path / "a" / "m"),
         "--model", str(tmp_path / "b" / "m"), "--out", str(tmp_path / "dist")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert "two models are named m: name them with --model NAME=DIR" in done.stderr
    assert not (tmp_path / "dist").exists()
