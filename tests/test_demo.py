"""The demo script runs end to end (on the tiny config, to stay fast) and draws its result."""

from PIL import Image

from tests.helpers import ROOT, run_script


def test_demo_runs_and_draws(tmp_path, capsys):
    code = run_script("demo", "--config", str(ROOT / "configs/tiny.yaml"), "--out", str(tmp_path))
    assert code == 0
    out = capsys.readouterr().out
    assert "total" in out and "2,030,862" in out and "test procedure" in out
    assert Image.open(tmp_path / "detections.png").size == (255, 255)
