"""CornerNet-Saccade and TF.js: the browser export refuses the saccade test procedure, whose crop
choices need float64 (docs/deployment.md, "CornerNet-Saccade and TF.js"); the SavedModel is still
written."""

import pytest

from cornernet_tf import build_model, load_config
from cornernet_tf.export import export_saved_model
from tests.helpers import run_script

REASON = "TF.js cannot run CornerNet-Saccade's test procedure"


def test_browser_export_refuses_the_saccade_procedure(tmp_path):
    config = load_config("tiny_saccade")
    with pytest.raises(ValueError, match=REASON) as error:
        export_saved_model(build_model(config), config, tmp_path / "m", browser=True)
    assert "has no float64" in str(error.value)
    assert "tiny_saccade.yaml" in str(error.value)
    assert not (tmp_path / "m").exists()


@pytest.mark.e2e
def test_cornernet_export_tfjs_refuses_saccade(tmp_path, capsys):
    """cornernet-export --tfjs on a Saccade config writes the SavedModel, then refuses the TF.js
    model (exit 1) before converting anything: no TF.js folder, no converter needed."""
    weights = tmp_path / "saccade.weights.h5"
    build_model(load_config("tiny_saccade")).save_weights(str(weights))
    out, tfjs = tmp_path / "saccade", tmp_path / "saccade_tfjs"
    code = run_script(
        "export", "--config", "tiny_saccade", "--weights", str(weights), "--out", str(out),
        "--tfjs", str(tfjs),
    )  # fmt: skip
    assert code == 1
    error = capsys.readouterr().err
    assert REASON in error and "export the SavedModel only" in error
    assert (out / "1" / "saved_model.pb").exists()
    assert not tfjs.exists()
