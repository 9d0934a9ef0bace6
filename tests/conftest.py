"""Fixtures shared by several test files, and the prerequisites of the test tiers.

Markers (pyproject.toml): slow, e2e, custom_op, web, network, heavy. A test whose prerequisite
is missing is skipped with the reason, which `-ra` prints at the end: custom_op needs the
compiled ops (`make ops`), web needs Node.js, web/node_modules (`cd web && npm ci`) and Chromium
for the page tests. `make test` installs and builds all of them and runs every tier but heavy
(`make test-heavy` runs those).
"""

import shutil

import pytest

from tests.helpers import ROOT, run_script


def missing_prerequisite(item) -> str | None:
    """Why `item` cannot run here, or None."""
    if item.get_closest_marker("custom_op"):
        from cornernet_tf.ops import custom

        if custom.load() is None:
            return f"the compiled ops are unavailable: {custom.load_error()}"
    if item.get_closest_marker("web"):
        if not shutil.which("node"):
            return "Node.js (node) is not installed"
        if not (ROOT / "web" / "node_modules" / "@tensorflow" / "tfjs").is_dir():
            return "web/node_modules is missing (`cd web && npm ci`, or `make test`)"
        if "chromium" in item.name and not shutil.which("chromium"):
            return "Chromium is not installed (`make browser`, or `make test`)"
    return None


def pytest_runtest_setup(item):
    if reason := missing_prerequisite(item):
        pytest.skip(reason)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """A small synthetic shapes dataset (12 train, 4 val images of 127 x 127), COCO format."""
    out = tmp_path_factory.mktemp("shapes")
    code = run_script(
        "make_shapes", "--out", str(out), "--train", "12", "--val", "4", "--size", "127"
    )
    assert code == 0
    return out


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """configs/tiny.yaml with seeded random weights: (config path, .weights.h5 path)."""
    import keras

    from cornernet_tf import build_model, load_config

    config_path = ROOT / "configs" / "tiny.yaml"
    keras.utils.set_random_seed(2)  # random weights that pair some corners on the shapes
    model = build_model(load_config(config_path))
    weights = tmp_path_factory.mktemp("tiny") / "tiny.weights.h5"
    model.save_weights(str(weights))
    return config_path, weights


@pytest.fixture(scope="session")
def test_images(shapes, tmp_path_factory):
    """Four encoded images of different sizes and formats: PNG 127x127, JPEG 90x160,
    PNG 200x120 (RGBA), JPEG 159x159."""
    from PIL import Image

    out = tmp_path_factory.mktemp("images")
    source = sorted((shapes / "val").glob("*.png"))
    paths = []
    for i, (size, suffix, mode) in enumerate(
        [((127, 127), "png", "RGB"), ((160, 90), "jpg", "RGB"), ((120, 200), "png", "RGBA"),
         ((159, 159), "jpg", "RGB")]
    ):  # fmt: skip
        image = Image.open(source[i % len(source)]).convert(mode).resize(size)
        path = out / f"image{i}.{suffix}"
        image.save(path)
        paths.append(path)
    return paths


def export_tiny(tiny_weights, out, tfjs: bool) -> dict:
    config, weights = tiny_weights
    args = ["--config", str(config), "--weights", str(weights), "--input-size", "159"]
    args += ["--out", str(out / "cornernet")]
    if tfjs:
        args += ["--tfjs", str(out / "cornernet_tfjs")]
    assert run_script("export", *args) == 0
    return {"saved_model": out / "cornernet" / "1", "tfjs": out / "cornernet_tfjs"}


@pytest.fixture(scope="session")
def exported(tiny_weights, tmp_path_factory):
    """cornernet-export on the tiny model: a 159 x 159 SavedModel."""
    return export_tiny(tiny_weights, tmp_path_factory.mktemp("exported"), tfjs=False)


@pytest.fixture(scope="session")
def exported_tfjs(tiny_weights, tmp_path_factory):
    """cornernet-export on the tiny model with --tfjs: the SavedModel and its TF.js conversion
    (the converter's venv is created on first use: tests using this are marked network)."""
    return export_tiny(tiny_weights, tmp_path_factory.mktemp("exported_tfjs"), tfjs=True)
