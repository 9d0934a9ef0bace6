"""Training: one step under MirroredStrategy, kill -9 and --resume, MultiWorker, NaN guard,
and a tiny model that overfits two images."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import ROOT, run_script

TRAIN = [
    sys.executable,
    str(ROOT / "scripts/train.py"),
    "--config",
    str(ROOT / "configs/tiny.yaml"),
]


def overrides(shapes, **extra):
    values = {
        "data.input_size": "[127,127]",
        "data.train_annotations": shapes / "train.json",
        "data.train_images": shapes / "train",
        "data.val_annotations": shapes / "val.json",
        "data.val_images": shapes / "val",
        "train.batch_size": 2,
        "train.steps": 6,
        "train.checkpoint_every": 2,
        "train.validation_batches": 1,
        "train.log_images_every": 2,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def weights(path):
    with h5py.File(path) as f:
        arrays = []
        f.visititems(
            lambda name, obj: (
                arrays.append(np.array(obj)) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def train(out, *args):
    """Runs scripts/train.py with the tiny config into `out` in its own process."""
    return subprocess.run(
        TRAIN + ["--out", out, *args], env=quiet_env(), capture_output=True, text=True, timeout=300
    )


def quiet_env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.e2e
def test_one_step_on_two_replicas_equals_the_per_half_mean_on_one_device():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests/scripts/mirrored_step.py"), str(ROOT)],
        capture_output=True,
        text=True,
        env=quiet_env(),
        timeout=300,
    )
    line = result.stdout.strip().splitlines()[-1]
    assert "replicas=2" in line, result.stderr[-2000:]
    values = dict(item.split("=") for item in line.split())
    assert values["loss"] == values["reference_loss"]
    assert float(values["max_update"]) > 1e-2
    assert float(values["max_diff"]) <= 1e-6  # measured: bit-identical


@pytest.mark.e2e
@pytest.mark.heavy
def test_kill_minus_9_then_resume_continues_exactly(shapes, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    args = ["--quiet"] + overrides(shapes)
    assert train(str(straight), *args).returncode == 0
    process = subprocess.Popen(
        TRAIN + ["--out", str(interrupted)] + args,
        env=quiet_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (interrupted / "checkpoints/ckpt-4.index").exists():
        assert process.poll() is None and time.time() < deadline, "no checkpoint 4 before the end"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "final.weights.h5").exists()
    # the same command again resumes automatically (BackupAndRestore-style)
    resumed = train(str(interrupted), *args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        "interrupted run: resuming it" in resumed.stdout
        and "resumed from" in resumed.stdout
        and ("at step 4" in resumed.stdout or "at step 2" in resumed.stdout)
    )
    for a, b in zip(
        weights(straight / "final.weights.h5"),
        weights(interrupted / "final.weights.h5"),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert (straight / "best/checkpoint").exists() and list((straight / "logs").rglob("*tfevents*"))
    finished = train(str(straight), *args)
    assert finished.returncode == 2 and "finished run" in finished.stderr  # no silent overwrite


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all bound at once, so that none is handed out twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.e2e
@pytest.mark.heavy
def test_multiworker_two_processes_agree(shapes, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    args = ["--strategy", "multiworker", "--quiet", "--out", str(tmp_path / "mw")]
    args += overrides(shapes, **{"train.steps": 2, "train.log_images_every": 0})
    processes = []
    for index in range(2):
        env = {
            **quiet_env(),
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        processes.append(
            subprocess.Popen(
                TRAIN + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [p.communicate(timeout=300) for p in processes]
    # either worker's failure can stem from the other's: show both
    told = "\n".join(
        f"--- worker {k}, exit {p.returncode}:\n{err[-2000:]}"
        for k, (p, (_out, err)) in enumerate(zip(processes, outputs, strict=True))
    )
    assert all(p.returncode == 0 for p in processes), told
    from cornernet_tf import build_model, load_config

    # Trainable weights are synchronised; BN moving statistics are per worker (no SyncBN), as
    # they are per GPU in the official training.
    config = load_config(ROOT / "configs/tiny.yaml", {"data.input_size": [127, 127]})
    chief, worker = build_model(config), build_model(config)
    chief.load_weights(str(tmp_path / "mw/final.weights.h5"))
    worker.load_weights(str(tmp_path / "mw/.worker_1/final.weights.h5"))
    for a, b in zip(chief.trainable_weights, worker.trainable_weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert (tmp_path / "mw/config.yaml").exists()


@pytest.mark.e2e
def test_mixed_bfloat16_training_runs(shapes, tmp_path):
    extra = {"train.steps": 2, "train.precision": "mixed_bfloat16", "train.log_images_every": 0}
    run = train(str(tmp_path), "--quiet", *overrides(shapes, **extra))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "UserWarning" not in run.stderr  # e.g. Keras's about fit(shuffle=True) on a dataset
    history = [
        json.loads(line) for line in (tmp_path / "logs/history.jsonl").read_text().splitlines()
    ]
    assert all(np.isfinite(row["loss"]) for row in history)


@pytest.mark.e2e
@pytest.mark.heavy
def test_xla_train_step_takes_sparse_targets(shapes):
    """jit_compile=True: XLA compiles the network, loss and gradients; the heatmaps (data-
    dependent shapes) are drawn outside it. Same loss as the plain step, and it trains."""
    import keras

    from cornernet_tf import build_model, load_config
    from cornernet_tf.data import coco_source, make_dataset

    config = load_config(ROOT / "configs/tiny.yaml", {"data.input_size": [127, 127]})
    source = coco_source(shapes / "train.json", shapes / "train")
    batch = next(iter(make_dataset(source, config, batch_size=2, training=True)))
    assert "tl_heatmap" not in batch[1]
    losses = {}
    for xla in (False, True):
        keras.utils.set_random_seed(1)
        model = build_model(config)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=xla)
        assert model.xla_gradients == xla
        before = [w.numpy() for w in model.trainable_weights]
        history = model.fit(tf.data.Dataset.from_tensors(batch), verbose=0, shuffle=False).history
        losses[xla] = history["loss"][0]
        after = model.trainable_weights
        assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, after, strict=True))
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from cornernet_tf import build_model, load_config
    from cornernet_tf.training import TrainingLog

    class Manager:
        latest_checkpoint = str(tmp_path / "ckpt-4")

        def save(self, checkpoint_number):
            raise AssertionError("must not save after a NaN")

    model = build_model(load_config(ROOT / "configs/tiny.yaml"))
    model.compile(optimizer="adam")
    log = TrainingLog(tmp_path, Manager(), Manager(), load_config(ROOT / "configs/tiny.yaml"), None)
    log.set_model(model)
    log.on_train_batch_end(0, {"loss": float("nan")})
    assert model.stop_training and "became nan" in log.stopped and "ckpt-4" in log.stopped
    log.on_epoch_end(0, {"loss": float("nan")})  # no save


def test_missing_training_data_is_a_clear_error(tmp_path, capsys):
    code = run_script(
        "train",
        "--config",
        str(ROOT / "configs/tiny.yaml"),
        "--out",
        str(tmp_path),
        "data.train_annotations=null",
    )
    assert code == 2 and "no training data" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.heavy
def test_tiny_model_overfits_two_images(tmp_path):
    import keras

    from cornernet_tf import build_model, load_config
    from cornernet_tf.data import coco_source, make_dataset
    from cornernet_tf.inference import detect_image

    assert (
        run_script(
            "make_shapes", "--out", str(tmp_path), "--train", "2", "--val", "1", "--size", "127"
        )
        == 0
    )
    config = load_config(
        ROOT / "configs/tiny.yaml", {"data.input_size": [127, 127], "test.flip": False}
    )
    source = coco_source(tmp_path / "train.json", tmp_path / "train")
    data = make_dataset(source, config, batch_size=2, training=False).cache().repeat()
    keras.utils.set_random_seed(0)
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    fitted = model.fit(data, steps_per_epoch=25, epochs=12, verbose=0, shuffle=False)
    history = fitted.history["loss"]
    assert history[-1] < history[0] / 10, history
    annotations = json.loads((tmp_path / "train.json").read_text())
    for info in annotations["images"]:
        from cornernet_tf.images import read_image

        dets = detect_image(
            model, tf.constant(read_image(tmp_path / "train" / info["file_name"])), config
        )
        boxes, scores, classes = (dets[k].numpy() for k in ("boxes", "scores", "classes"))
        for ann in (a for a in annotations["annotations"] if a["image_id"] == info["id"]):
            x, y, w, h = ann["bbox"]
            found = [
                iou([x, y, x + w, y + h], b)
                for b, s, c in zip(boxes, scores, classes, strict=True)
                if s > 0.3 and c == ann["category_id"] - 1
            ]
            assert found and max(found) > 0.7, (ann, boxes[:5], scores[:5], classes[:5])


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


@pytest.mark.e2e
def test_without_the_graph_optimiser_a_step_gives_the_same_gradients_each_time(tmp_path):
    """train.deterministic: Grappler's rewrites of a whole step of an Hourglass with attention
    heads vary between processes and between fresh traces of one step (the gradients differ
    in their last bits); off, every fresh trace gives the same gradients, bit for bit."""
    import keras

    from cornernet_tf import build_model, load_config
    from cornernet_tf.data import coco_source, make_dataset
    from cornernet_tf.training import graph_optimiser

    args = ["--out", str(tmp_path), "--train", "8", "--val", "1", "--size", "255"]
    assert run_script("make_shapes", *args) == 0
    config = load_config("tiny_saccade")  # 255 x 255 crops, batch 8: as make demo-saccade
    source = coco_source(tmp_path / "train.json", tmp_path / "train")
    images, targets = next(iter(make_dataset(source, config, batch_size=8, training=True)))
    keras.utils.set_random_seed(1)
    model = build_model(config)

    def gradients():
        @tf.function
        def step(images, targets):
            with tf.GradientTape() as tape:
                loss = model.compute_losses(images, targets, training=True)["loss"]
            return tape.gradient(loss, model.trainable_variables)

        return np.concatenate([np.ravel(g) for g in step(images, targets)])

    options = tf.config.optimizer.get_experimental_options()
    with graph_optimiser(False):
        assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"]
        first = gradients()
        for _ in range(3):
            np.testing.assert_array_equal(gradients(), first)
    assert tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False) == (
        options.get("disable_meta_optimizer", False)
    )
    assert load_config("tiny_saccade", ["train.deterministic=true"]).train.deterministic
