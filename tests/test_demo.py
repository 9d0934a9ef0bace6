"""The demo runs end to end (a few steps on a few small images, to stay fast) and draws."""

import json

import pytest
from PIL import Image

from tests.helpers import run_script


@pytest.mark.e2e
@pytest.mark.network
def test_demo_trains_evaluates_and_draws(tmp_path, capsys):
    shapes = tmp_path / "shapes"
    assert (
        run_script(
            "make_shapes", "--out", str(shapes), "--train", "8", "--val", "4", "--size", "127"
        )
        == 0
    )
    overrides = [
        "data.input_size=[127,127]",
        f"data.train_annotations={shapes / 'train.json'}",
        f"data.train_images={shapes / 'train'}",
        f"data.val_annotations={shapes / 'val.json'}",
        f"data.val_images={shapes / 'val'}",
        "train.steps=4",
        "train.checkpoint_every=2",
        "train.batch_size=2",
        "train.validation_batches=1",
        "train.log_images_every=0",
    ]
    out, exported = tmp_path / "demo", tmp_path / "exported"
    args = ["--out", str(out), "--export", str(exported), "--skip-table", *overrides]
    assert run_script("demo", *args) == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed and "== done" in printed
    # it ends with both exports and says how to serve them
    assert (exported / "cornernet" / "1" / "saved_model.pb").is_file()
    assert (exported / "cornernet_tfjs" / "model.json").is_file()
    assert "docker run" in printed and "make web" in printed
    assert Image.open(out / "detections.png").size == (127 * 3, 127 * 2)
    for name in ("loss.png", "precision_recall.png"):
        assert (out / name).stat().st_size > 1000
    assert set(json.loads((out / "metrics.json").read_text())) >= {"AP", "AP50", "per_class"}
    # a second run reuses the trained weights
    assert run_script("demo", *args) == 0
    assert "using the trained weights" in capsys.readouterr().out
