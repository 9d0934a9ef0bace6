"""The package as pip installs it (a wheel, not the checkout): the commands run from any
directory, the configs ship inside it, and the metadata is complete."""

import os
import subprocess
import sys
import zipfile

import pytest

import cornernet_tf
from tests.helpers import ROOT

COMMANDS = ("train", "detect", "evaluate", "export", "convert", "make-shapes", "demo")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of this checkout, installed with pip into a folder of its own."""
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        env={**os.environ, "CORNERNET_BUILD_OPS": "0"},
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (out / "dist").glob("cornernet_tf-*.whl")
    target = out / "site"
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return wheel, target


@pytest.mark.e2e
def test_wheel_holds_the_configs_commands_and_metadata(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    configs = ("tiny", "hourglass104", "squeeze", "tiny_squeeze")
    assert {f"cornernet_tf/configs/{name}.yaml" for name in configs} <= names
    assert "cornernet_tf/cli/train.py" in names
    for command in COMMANDS:
        module = command.replace("-", "_")
        assert f"cornernet-{command} = cornernet_tf.cli.{module}:main" in entry_points
    assert f"Version: {cornernet_tf.__version__}" in metadata
    assert "License: BSD-3-Clause" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
    assert "Provides-Extra: and-cuda" in metadata


@pytest.mark.e2e
def test_installed_commands_run_from_another_directory(installed, tmp_path):
    _, target = installed
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import cornernet_tf as c; print(c.__file__); "
         "print(c.load_config('tiny').model.num_classes)"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    path, classes = where.stdout.split()
    assert path.startswith(str(target)) and classes == "4"
    shapes = subprocess.run(
        [str(target / "bin" / "cornernet-make-shapes"), "--out", "shapes", "--train", "2",
         "--val", "1", "--size", "64"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert shapes.returncode == 0, shapes.stderr[-3000:]
    assert (tmp_path / "shapes" / "train.json").is_file()
    running = {  # side by side: each one imports TensorFlow
        command: subprocess.Popen(
            [str(target / "bin" / f"cornernet-{command}"), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        for command in COMMANDS
    }
    for command, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and "usage:" in out, (command, err[-2000:])
