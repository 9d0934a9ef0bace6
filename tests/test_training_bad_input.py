"""cornernet-train on bad input: every case ends in one clear line (exit code 2) or a counted
warning, never in a traceback, a hang or a run that trained on nothing."""

import errno
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import ROOT, png_header, run_script


def train(tmp_path, capsys, *overrides, out=None):
    """cornernet-train with the tiny config and a tiny run in this process: (exit code, stdout,
    stderr)."""
    args = ["--config", str(ROOT / "configs/tiny.yaml"), "--out", str(out or tmp_path / "run")]
    args += ["--quiet", "data.input_size=[127,127]", "train.batch_size=2"]
    args += ["train.log_images_every=0", "train.validation_batches=1", "train.steps=2"]
    args += ["train.checkpoint_every=2", *overrides]
    code = run_script("train", *args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def coco(shapes, tmp_path, name, corrupt=(), truncate=()):
    """A copy of the shapes set `name` (train or val) with some images overwritten by bytes that
    start like a PNG but do not decode, and some cut short."""
    folder = tmp_path / name
    folder.mkdir()
    data = json.loads((shapes / f"{name}.json").read_text())
    for k, info in enumerate(data["images"]):
        raw = (shapes / name / info["file_name"]).read_bytes()
        if k in corrupt:
            raw = raw[:16] + b"\0" * 200
        if k in truncate:
            raw = raw[: len(raw) // 2]
        (folder / info["file_name"]).write_bytes(raw)
    (tmp_path / f"{name}.json").write_text(json.dumps(data))
    return [f"data.{name}_annotations={tmp_path / f'{name}.json'}", f"data.{name}_images={folder}"]


def records(path, shapes, count):
    """`count` TFRecord examples of one shapes image, one box each (category 1)."""
    image = sorted((shapes / "train").glob("*.png"))[0].read_bytes()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(count):
            feature = {
                "image/encoded": _bytes(image),
                "image/object/bbox/xmin": _floats(0.1),
                "image/object/bbox/ymin": _floats(0.1),
                "image/object/bbox/xmax": _floats(0.5),
                "image/object/bbox/ymax": _floats(0.5),
                "image/object/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[1])
                ),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _floats(value):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def test_a_junk_tfrecord_is_refused_before_training(tmp_path, capsys):
    junk = tmp_path / "junk.tfrecord"
    junk.write_bytes(bytes(range(256)) * 20)
    code, out, err = train(tmp_path, capsys, f"data.train_tfrecords={junk}")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "junk.tfrecord" in err and "no usable record" in err and "at byte 0" in err
    assert not (tmp_path / "run/final.weights.h5").exists()
    assert "truncated or corrupt" in (tmp_path / "run/data_warnings.txt").read_text()


def test_a_truncated_shard_is_counted_and_the_share_rule_applies(shapes, tmp_path, capsys):
    from cornernet_tf.data import tfrecord_source

    records(tmp_path / "a.tfrecord", shapes, 8)
    records(tmp_path / "b.tfrecord", shapes, 8)
    raw = (tmp_path / "b.tfrecord").read_bytes()
    (tmp_path / "b.tfrecord").write_bytes(raw[: len(raw) * 2 // 3])
    source = tfrecord_source(str(tmp_path / "*.tfrecord"), (1, 2, 3, 4))
    assert source.size == 8 + 5 and "1 file(s) truncated or corrupt" in source.summary
    (warning,) = [w for w in source.warnings if "b.tfrecord" in w]
    assert "truncated or corrupt after 5 records" in warning
    assert f"of {len(raw) * 2 // 3})" in warning
    assert len(list(source.examples())) == 13  # the pipeline stops where the shard breaks
    size = (tmp_path / "a.tfrecord").stat().st_size  # now less than half of the data is usable
    (tmp_path / "a.tfrecord").write_bytes(b"\x07" * size)
    data = [f"data.train_tfrecords={tmp_path / '*.tfrecord'}", "data.val_annotations=null"]
    code, out, err = train(tmp_path, capsys, *data)
    assert code == 2 and "of the training data are usable" in err and "at least 50%" in err
    assert "truncated or corrupt after 5 records" in out  # the warning, printed and in the file
    assert "b.tfrecord" in (tmp_path / "run/data_warnings.txt").read_text()


def test_images_that_do_not_decode_are_left_out_or_refused(shapes, tmp_path, capsys):
    # valid PNG headers, bodies that do not decode: counted, named, and no hang
    every = coco(shapes, tmp_path, "train", corrupt=range(12))
    code, out, err = train(tmp_path, capsys, *every, "data.val_annotations=null")
    assert code == 2 and "no image of 12 decodes" in err and len(err.strip().splitlines()) == 1
    assert (
        "000000.png left out: the image does not decode"
        in (tmp_path / "run/data_warnings.txt").read_text()
    )
    from cornernet_tf.data import coco_source
    from cornernet_tf.data.source import without_undecodable

    (tmp_path / "few").mkdir()
    coco(shapes, tmp_path / "few", "train", truncate=[1, 4])
    source = without_undecodable(coco_source(tmp_path / "few/train.json", tmp_path / "few/train"))
    assert source.size == 10 and source.usable == (10, 12, "images")
    assert "2 images do not decode" in source.summary
    assert sum("does not decode" in w for w in source.warnings) == 2
    assert len(list(source.examples())) == 10


def test_a_training_image_over_the_pixel_limit_is_left_out_before_decoding(shapes, tmp_path):
    from cornernet_tf.data import coco_source
    from cornernet_tf.data.source import without_undecodable

    coco(shapes, tmp_path, "train")
    (tmp_path / "train/000003.png").write_bytes(png_header(40000, 40000))  # 1.6 Gpx, 45 bytes
    source = without_undecodable(coco_source(tmp_path / "train.json", tmp_path / "train"))
    assert source.size == 11 and "1 image does not decode" in source.summary
    assert any("000003.png left out: the image does not decode (truncated, corrupt, or over "
               "33,177,600 pixels)" in w for w in source.warnings)  # fmt: skip


def test_a_corrupt_validation_set_is_an_error_before_training(shapes, tmp_path, capsys):
    val = coco(shapes, tmp_path, "val", corrupt=range(4))
    training = [f"data.train_annotations={shapes / 'train.json'}"]
    training += [f"data.train_images={shapes / 'train'}"]
    code, out, err = train(tmp_path, capsys, *training, *val)
    assert code == 2 and str(tmp_path / "val") in err
    assert "decodes" in err and not (tmp_path / "run/checkpoints").exists()


def test_half_the_validation_images_broken_is_refused(shapes, tmp_path, capsys):
    val = coco(shapes, tmp_path, "val", corrupt=range(3))
    training = [f"data.train_annotations={shapes / 'train.json'}"]
    training += [f"data.train_images={shapes / 'train'}"]
    code, out, err = train(tmp_path, capsys, *training, *val)
    assert code == 2 and "only 1 of 4 images of the validation data are usable (25%)" in err


@pytest.mark.parametrize(
    "start, steps, every, expected",
    [
        (0, 2, 100, [(2, 1)]),
        (0, 6, 2, [(2, 3)]),
        (0, 7, 2, [(2, 3), (1, 1)]),
        (4, 7, 2, [(2, 1), (1, 1)]),
        (7, 12, 5, [(3, 1), (2, 1)]),
        (7, 7, 2, []),
    ],
)
def test_chunks_end_exactly_at_train_steps(start, steps, every, expected):
    from cornernet_tf.training import chunks

    assert chunks(start, steps, every) == expected


def test_train_steps_not_a_multiple_of_checkpoint_every_trains_exactly(shapes, tmp_path, capsys):
    code, out, err = train(
        tmp_path,
        capsys,
        f"data.train_annotations={shapes / 'train.json'}",
        f"data.train_images={shapes / 'train'}",
        "data.val_annotations=null",
        "train.steps=3",
        "train.checkpoint_every=2",
    )
    assert code == 0, err
    checkpoints = tmp_path / "run/checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.index")) == ["ckpt-2.index", "ckpt-3.index"]
    reader = tf.train.load_checkpoint(str(checkpoints))
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 3
    history = (tmp_path / "run/logs/history.jsonl").read_text().splitlines()
    assert [json.loads(row)["step"] for row in history] == [2, 3]


def tiny_log(tmp_path, manager):
    from cornernet_tf import build_model, load_config
    from cornernet_tf.training import TrainingLog

    config = load_config(ROOT / "configs/tiny.yaml")
    model = build_model(config)
    model.compile(optimizer="adam")
    log = TrainingLog(tmp_path, manager, manager, config, None)
    log.set_model(model)
    return log


class Manager:
    """A CheckpointManager whose writes fail like a full disk, after leaving a temporary folder."""

    def __init__(self, folder, latest, error):
        self.directory, self.latest_checkpoint, self.error = str(folder), latest, error
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, checkpoint_number):
        (Path(self.directory) / "ckpt-0_temp").mkdir()
        (Path(self.directory) / "ckpt-0.index").write_bytes(b"part")
        raise self.error


def test_nan_loss_before_any_checkpoint_says_there_is_none(tmp_path):
    log = tiny_log(tmp_path, Manager(tmp_path / "checkpoints", None, AssertionError()))
    log.on_train_batch_end(0, {"loss": float("nan")})
    assert "became nan at step 0" in log.stopped and "None" not in log.stopped
    assert "No checkpoint was written yet" in log.stopped and log.model.stop_training


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        tf.errors.ResourceExhaustedError(None, None, "write failed"),
        tf.errors.OutOfRangeError(None, None, "write failed"),
    ],
)
def test_disk_full_while_checkpointing_stops_with_one_line(tmp_path, error):
    folder = tmp_path / "checkpoints"
    log = tiny_log(tmp_path, Manager(folder, str(folder / "ckpt-2"), error))
    log.on_train_begin()
    log.on_epoch_end(0, {"loss": 1.0})
    assert "cannot write the checkpoint at step 0" in log.stopped
    assert "disk full" in log.stopped and "last complete checkpoint is " in log.stopped
    assert str(folder / "ckpt-2") in log.stopped and log.model.stop_training
    assert list(folder.iterdir()) == []  # the temporary folder and partial files are removed


def shapes_only(shapes) -> list[str]:
    """Overrides: train one step on the shapes training set, no validation."""
    train_data = [f"data.train_annotations={shapes / 'train.json'}"]
    return [*train_data, f"data.train_images={shapes / 'train'}", "data.val_annotations=null",
            "train.steps=1"]  # fmt: skip


def test_disk_full_ends_the_command_with_exit_code_1(shapes, tmp_path, capsys, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
    code, out, err = train(tmp_path, capsys, *shapes_only(shapes), "train.checkpoint_every=1")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "disk full" in err and "at step 1" in err and "no checkpoint was written yet" in err


def test_ctrl_c_says_where_training_stopped_and_how_to_resume(
    shapes, tmp_path, capsys, monkeypatch
):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "fit", interrupted)
    code, out, err = train(tmp_path, capsys, *shapes_only(shapes))
    assert code == 1
    assert err.strip() == (
        "error: interrupted (Ctrl-C) at step 0; no checkpoint was written yet (training would "
        "start afresh); run the same command again to resume"
    )


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    code, out, err = train(tmp_path, capsys, out=tmp_path / "taken")
    assert code == 2 and "is a file, not a folder" in err


def test_min_usable_must_be_a_fraction(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        train(tmp_path, capsys, "--min-usable", "2")
    assert exit.value.code == 2 and "2 is not a number between 0 and 1" in capsys.readouterr().err


def test_a_graph_execution_error_is_told_by_its_cause():
    """TensorFlow's graph errors start "Graph execution error:" and put where the node was
    defined before the op's own message: the one-line reason is that message."""
    from cornernet_tf.files import reason

    @tf.function
    def gather(x):
        return tf.gather(x, [5])

    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        gather(tf.constant([1, 2]))
    assert str(info.value).startswith("Graph execution error:")
    assert reason(info.value) == "indices[0] = 5 is not in [0, 2)"
    eager = tf.errors.InvalidArgumentError(None, None, "bad value\n\tmore detail")
    assert reason(eager) == "bad value"


def test_the_data_checks_show_progress_only_when_asked(shapes, tmp_path, capsys):
    from cornernet_tf.data import coco_source, tfrecord_source
    from cornernet_tf.data.source import without_undecodable

    coco(shapes, tmp_path, "train", truncate=[2])
    records(tmp_path / "a.tfrecord", shapes, 4)
    found = {}
    for progress in (False, True):
        source = coco_source(tmp_path / "train.json", tmp_path / "train")
        found[progress] = without_undecodable(source, progress=progress).size
        tfrecord_source(str(tmp_path / "a.tfrecord"), (1, 2, 3, 4), progress=progress)
        err = capsys.readouterr().err
        assert ("decoding every image once" in err) == progress
        assert ("checking every record" in err) == progress
    assert found[True] == found[False] == 11  # the same check, with or without the bar


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "--strategy multiworker reads the cluster from TF_CONFIG, which is not set"),
        ("{bad", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {}}', "TF_CONFIG needs cluster.worker (a list of host:port) and task"),
        ("[1, 2]", "TF_CONFIG needs cluster.worker"),
    ],
)
def test_multiworker_names_a_missing_or_bad_tf_config(
    tmp_path, capsys, monkeypatch, value, message
):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    args = ["--config", str(ROOT / "configs/tiny.yaml"), "--strategy", "multiworker"]
    assert run_script("train", *args, "--out", str(tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_a_test_scale_too_large_for_the_validation_images_is_refused_before_training(
    shapes, tmp_path, capsys
):
    """AP during training runs the test procedure on the validation images: a scale that makes a
    network input over the pixel limit of the first one is an error before the first step, not
    one after train.eval_every steps."""
    data = [f"data.train_annotations={shapes / 'train.json'}"]
    data += [f"data.train_images={shapes / 'train'}"]
    data += [f"data.val_annotations={shapes / 'val.json'}", f"data.val_images={shapes / 'val'}"]
    code, out, err = train(tmp_path, capsys, *data, "train.eval_every=2", "test.scales=[60]")
    first = shapes / "val" / "000000.png"
    assert code == 2, err
    assert (
        f"train.eval_every 2 scores AP on the validation images with the test procedure: {first}: "
        "127x127 at test.scales 60 is resized to 7620x7620 = 58,064,400 pixels, more than the "
        "limit of 33,177,600 for a network input: lower test.scales" in err
    )
    assert not (tmp_path / "run/checkpoints").exists()
    # without AP during training the scale is not used, and training runs
    no_ap = ["train.eval_every=0", "train.best_by=loss"]
    code, out, err = train(tmp_path, capsys, *data, *no_ap, "test.scales=[60]")
    assert code == 0, err


def test_validation_images_too_large_for_the_test_scale_are_left_out_of_the_ap(tmp_path):
    """The images of a mixed validation set that the test scale would blow up past the pixel
    limit are left out of training's AP and named; the others are scored."""
    from cornernet_tf import load_config
    from cornernet_tf.data.source import Source
    from cornernet_tf.training import scored_examples

    images = [np.zeros((16, 16, 3), np.uint8), np.zeros((600, 600, 3), np.uint8)]
    images.append(np.zeros((20, 12, 3), np.uint8))
    paths = [str(tmp_path / f"{k}.png") for k in range(3)]
    for path, image in zip(paths, images, strict=True):
        tf.io.write_file(path, tf.io.encode_png(image))

    def load(path):
        image = tf.io.decode_png(tf.io.read_file(path), channels=3)
        return {"image": image, "boxes": tf.zeros((0, 4)), "classes": tf.zeros((0,), tf.int32)}

    source = Source(tf.data.Dataset.from_tensor_slices(paths), load, 3)
    config = load_config("tiny", ["test.scales=[10]"])
    left_out = []
    scored = [e["image"].shape for e in scored_examples(source, config, 3, left_out)]
    assert scored == [(16, 16, 3), (20, 12, 3)]
    assert left_out == [
        f"{paths[1]}: 600x600 at test.scales 10 is resized to 6000x6000 = 36,000,000 pixels, "
        "more than the limit of 33,177,600 for a network input: lower test.scales"
    ]
    assert [e["image"].shape for e in scored_examples(source, config, 1, left_out)] == [(16, 16, 3)]
