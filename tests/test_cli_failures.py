"""What every command does on a bad flag value, a file where a folder should be, weights of
another model, a full disk and Ctrl-C: one line `error: ...` and exit code 1 or 2."""

import errno
import os

import pytest

from cornernet_tf import build_model, cli, load_config
from tests.helpers import ROOT, run_script

TINY = str(ROOT / "configs/tiny.yaml")


@pytest.mark.parametrize(
    "command, flags, message",
    [
        ("detect", ["--threshold", "nan"], "--threshold: nan is not a number between 0 and 1"),
        ("detect", ["--threshold", "1.5"], "1.5 is not a number between 0 and 1"),
        ("export", ["--version", "0"], "argument --version: 0 is less than 1"),
        ("export", ["--version", "-1"], "argument --version: -1 is less than 1"),
        ("export", ["--max-pixels", "0"], "argument --max-pixels: 0 is less than 1"),
        ("export", ["--max-pixels", "1" + "0" * 22], "is more than 9223372036854775807"),
        ("export", ["--version", "1" + "0" * 20], "argument --version: 1000"),
        ("export", ["--input-size", "x"], "argument --input-size: 'x' is not an integer"),
    ],
)
def test_flag_values_that_mean_nothing_are_refused(tmp_path, capsys, command, flags, message):
    args = ["--config", TINY, "--weights", str(tmp_path / "w.weights.h5"), "--out", str(tmp_path)]
    if command == "detect":
        args.append(str(tmp_path / "a.png"))
    with pytest.raises(SystemExit) as exit_:
        run_script(command, *args, *flags)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "detect", "evaluate", "export", "demo"])
def test_help_names_every_packaged_config(capsys, command):
    from cornernet_tf.config import packaged_configs

    with pytest.raises(SystemExit) as exit_:
        run_script(command, "--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    text = " ".join(out.split())  # argparse wraps the lines
    assert f"a packaged config name ({', '.join(packaged_configs())})" in text
    # the usage in the epilog keeps its lines, each continued by a backslash, as in a shell
    usage = [line for line in out.splitlines() if line.startswith(f"    cornernet-{command}")]
    assert len(usage) == 1 and usage[0].endswith(" \\"), usage


@pytest.mark.parametrize("command", ["detect", "export"])
def test_out_that_is_a_file_is_one_line(tmp_path, tiny_weights, capsys, command):
    (tmp_path / "taken").write_text("a file")
    args = ["--config", TINY, "--weights", str(tiny_weights[1])]
    if command == "detect":
        args.append(str(tmp_path / "a.png"))
    assert run_script(command, *args, "--out", str(tmp_path / "taken")) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: --out {tmp_path / 'taken'} is a file, not a folder"
    assert run_script(command, *args, "--out", str(tmp_path / "taken/sub")) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'taken/sub'}: {tmp_path / 'taken'} is a file, not a folder" in err


def test_export_and_demo_check_their_folders_before_any_work(tmp_path, tiny_weights, capsys):
    (tmp_path / "taken").write_text("a file")
    args = ["--config", TINY, "--weights", str(tiny_weights[1]), "--out", str(tmp_path / "saved")]
    assert run_script("export", *args, "--tfjs", str(tmp_path / "taken")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --tfjs {tmp_path / 'taken'} is a file, not a folder"
    assert not (tmp_path / "saved").exists()  # refused before the SavedModel is written
    demo = ["--skip-table", "--out", str(tmp_path / "demo"), "--export", str(tmp_path / "taken")]
    assert run_script("demo", *demo) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --export {tmp_path / 'taken'} is a file, not a folder"
    assert not (tmp_path / "demo").exists()  # refused before the data is made or trained on
    with pytest.raises(SystemExit) as exit_:
        run_script("demo", "--finetune", "0")
    assert exit_.value.code == 2 and "--finetune: 0 is less than 1" in capsys.readouterr().err


def test_weights_of_another_model_are_named_and_counted(tmp_path, tiny_weights, capsys):
    args = ["--config", TINY, "--weights", str(tiny_weights[1]), str(tmp_path / "a.png")]
    code = run_script(
        "detect", *args, "--out", str(tmp_path), "model.num_classes=7", "data.class_names=[]"
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert f"error: {tiny_weights[1]}: these weights are not those of the model of" in err
    assert "the model has" in err and "give the --config the weights were trained with" in err
    (tmp_path / "w.h5").write_bytes(tiny_weights[1].read_bytes())
    assert run_script("detect", *args[:3], str(tmp_path / "w.h5"), *args[4:], "--out", "x") == 2
    assert "w.h5: weights must be a .weights.h5 or a .keras file" in capsys.readouterr().err
    cut = tmp_path / "cut.keras"
    cut.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    (tmp_path / "junk.weights.h5").write_text("junk")
    for path, kind in [(cut, "a zip archive"), (tmp_path / "junk.weights.h5", "an HDF5 file")]:
        assert run_script("detect", *args[:3], str(path), *args[4:], "--out", "x") == 2
        message = f"{path}: not a {path.name[path.name.index('.') :]} file (it is not {kind})"
        assert message in capsys.readouterr().err


def test_damaged_weights_are_named_in_one_line(tmp_path, tiny_weights, capsys):
    """Files that pass the format check but do not load: a zip without a Keras model in it, an
    HDF5 file with damaged bytes. detect (the model's weights) and train (--init-weights)."""
    import zipfile

    from cornernet_tf.model import WeightsError
    from cornernet_tf.training import TrainingError, start_from

    plain = tmp_path / "plain.keras"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("hello.txt", "not a model")
    data = bytearray(tiny_weights[1].read_bytes())
    for i in range(2000, min(60000, len(data))):
        data[i] ^= 0x5A
    damaged = tmp_path / "damaged.weights.h5"
    damaged.write_bytes(bytes(data))
    config = load_config(TINY)
    for path in (plain, damaged):
        args = ["--config", TINY, "--weights", str(path), str(tmp_path / "a.png")]
        assert run_script("detect", *args, "--out", str(tmp_path / "o")) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}: cannot load these weights") and "\n" not in err
        with pytest.raises((TrainingError, WeightsError), match=path.name):
            start_from(build_model(config), str(path), config)


@pytest.mark.parametrize(
    "failure, message",
    [
        (KeyboardInterrupt(), "error: interrupted (Ctrl-C)"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/out/ckpt"),
            "error: disk full (No space left on device: /out/ckpt); free space and run again",
        ),
        (
            NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/b"),
            "error: Not a directory: /a/b",
        ),
    ],
)
def test_ctrl_c_and_file_system_failures_end_in_one_line_and_exit_1(capsys, failure, message):
    @cli.command
    def main(argv):
        raise failure

    assert main([]) == 1
    assert capsys.readouterr().err.strip() == message


def test_a_full_disk_while_tensorflow_writes_is_one_line(capsys):
    import tensorflow as tf

    @cli.command
    def main(argv):
        message = "{{function_node SaveV2}} /out/x.data-00000; No space left on device [Op:SaveV2]"
        raise tf.errors.UnknownError(None, None, message)

    assert main([]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: disk full (/out/x.data-00000; No space left on device); free space and run again"
    )


def test_a_bug_still_shows_its_traceback():
    @cli.command
    def main(argv):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        main([])


def test_init_weights_that_are_damaged_are_named(tmp_path):
    from cornernet_tf.finetune import source_file
    from cornernet_tf.model import WeightsError

    (tmp_path / "cut.keras").write_text("junk")
    with pytest.raises(WeightsError, match="cut.keras: not a .keras file"):
        source_file(tmp_path / "cut.keras")


def test_a_pipe_as_weights_is_named_as_one(tmp_path):
    from cornernet_tf.model import WeightsError, load_trained

    os.mkfifo(tmp_path / "pipe.weights.h5")
    with pytest.raises(WeightsError, match=r"pipe\.weights\.h5: not a weights file but a named"):
        load_trained(load_config(TINY), str(tmp_path / "pipe.weights.h5"))
