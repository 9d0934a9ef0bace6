"""Fixtures shared by several test files."""

import pytest

from tests.helpers import ROOT, run_script


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


@pytest.fixture(scope="session")
def exported(tiny_weights, tmp_path_factory):
    """scripts/export.py on the tiny model: a 159 x 159 SavedModel and its TF.js conversion."""
    config, weights = tiny_weights
    out = tmp_path_factory.mktemp("exported")
    code = run_script(
        "export", "--config", str(config), "--weights", str(weights),
        "--out", str(out / "cornernet"), "--input-size", "159",
        "--tfjs", str(out / "cornernet_tfjs"),
    )  # fmt: skip
    assert code == 0
    return {"saved_model": out / "cornernet" / "1", "tfjs": out / "cornernet_tfjs"}
