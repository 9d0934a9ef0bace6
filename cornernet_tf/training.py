"""Training: strategy, data, optimiser, checkpoints and logs around `CornerNet.train_step`.

`train(config, out)` runs keras `fit` in chunks of `train.checkpoint_every` steps; after each
chunk it saves a checkpoint (TF writes it under a temporary name and renames it), computes the
validation loss and keeps the best checkpoint. `resume=True` restores the last checkpoint and
skips exactly the examples already seen, so the data order and augmentation go on unchanged. An
interrupted run (checkpoints but no final weights) is resumed automatically, as Keras's
BackupAndRestore does; a finished one is refused unless `resume` is set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml

from cornernet_tf.config import Config, to_dict
from cornernet_tf.data import coco_source, make_dataset, tfrecord_source
from cornernet_tf.model import CornerNet, build_model

# train.precision -> the model's compute precision (mixed: float32 variables, bfloat16 compute)
TRAIN_PRECISIONS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default: one device; mirrored: all local devices; multiworker: the cluster in TF_CONFIG."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def sources(config: Config):
    """(train source, validation source or None) from the data section of the config."""
    data = config.data
    if data.train_tfrecords:
        train = tfrecord_source(data.train_tfrecords)
    elif data.train_annotations and data.train_images:
        train = coco_source(data.train_annotations, data.train_images)
    else:
        raise TrainingError(
            f"{config.source}: no training data: set data.train_annotations and "
            "data.train_images (COCO JSON + folder) or data.train_tfrecords"
        )
    val = None
    if data.val_annotations and data.val_images:
        val = coco_source(data.val_annotations, data.val_images)
    return train, val


def learning_rate(config: Config):
    """Adam's schedule: the official step decay, lr / 10 at decay_at x steps."""
    t = config.train
    boundary = max(1, int(t.steps * t.decay_at))
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [boundary], [t.learning_rate, t.learning_rate / 10]
    )


def train(
    config: Config, out: Path, *, strategy: str = "default", resume: bool = False, verbose: int = 1
) -> CornerNet:
    """Trains the model of `config`; returns it. See the module docstring."""
    distribution = make_strategy(strategy)
    chief = _is_chief(distribution)
    out = Path(out) if chief else Path(out) / f".worker_{_task_id(distribution)}"
    checkpoints = out / "checkpoints"
    if (checkpoints / "checkpoint").exists() and not resume:
        if (out / "final.weights.h5").exists() and chief:
            raise TrainingError(
                f"{out} holds a finished run: choose another --out, or pass --resume with more "
                "train.steps to train on"
            )
        print(f"{out} holds an interrupted run: resuming it (as BackupAndRestore would)")
        resume = True
    train_source, val_source = sources(config)
    for warning in train_source.warnings + (val_source.warnings if val_source else []):
        print(f"warning: {warning}")

    t = config.train
    keras.utils.set_random_seed(t.seed)  # the initial weights (official: torch.manual_seed(317))
    with distribution.scope():
        model = build_model(config, TRAIN_PRECISIONS[t.precision])
        optimizer = keras.optimizers.Adam(learning_rate(config))
        model.compile(optimizer=optimizer, jit_compile=t.jit_compile)
        optimizer.build(model.trainable_variables)
    checkpoint = make_checkpoint(model, optimizer)
    manager = tf.train.CheckpointManager(checkpoint, checkpoints, max_to_keep=t.keep_checkpoints)
    best = tf.train.CheckpointManager(checkpoint, out / "best", max_to_keep=1)
    if resume:
        if manager.latest_checkpoint is None:
            raise TrainingError(f"--resume: no checkpoint in {checkpoints}")
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        print(
            f"resumed from {manager.latest_checkpoint} at step {int(optimizer.iterations.numpy())}"
        )
    start = int(optimizer.iterations.numpy())

    dataset = make_dataset(
        train_source,
        config,
        batch_size=t.batch_size,
        training=True,
        seed=t.seed,
        start=start * t.batch_size,
    )
    val, val_steps = None, None
    if val_source is not None:
        val = make_dataset(val_source, config, batch_size=t.batch_size, training=False)
        val = val.take(t.validation_batches).cache()
        val_steps = sum(1 for _ in val)
        val = val.repeat()  # fit reads exactly val_steps batches each time
    logger = TrainingLog(out / "logs", manager, best, config, val)
    callbacks = [logger, keras.callbacks.TensorBoard(out / "logs", update_freq=100)]
    per_chunk = t.checkpoint_every
    chunks = math.ceil(t.steps / per_chunk)
    done = start // per_chunk
    if done < chunks and not logger.stopped:
        model.fit(
            dataset,
            validation_data=val,
            epochs=chunks,
            initial_epoch=done,
            steps_per_epoch=per_chunk,
            validation_steps=val_steps if val is not None else None,
            callbacks=callbacks,
            verbose=verbose,
        )
    if logger.stopped:
        raise TrainingError(logger.stopped)
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out / "final.weights.h5"))  # every worker: saving is collective
    if chief:
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        print(f"wrote {out / 'final.weights.h5'} and {out / 'config.yaml'}")
    return model


def make_checkpoint(model, optimizer) -> tf.train.Checkpoint:
    """A checkpoint of every model variable (by path) and the optimizer state.

    tf.train.Checkpoint(model=model) would save none of a Keras 3 model's variables: its layer
    lists are Keras containers that TF's object tracking does not walk. So they are named here.
    """
    variables = {v.path.replace("/", "."): v for v in model.weights}
    return tf.train.Checkpoint(model_variables=variables, optimizer=optimizer)


def _is_chief(distribution) -> bool:
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


def _task_id(distribution) -> int:
    return int(distribution.cluster_resolver.task_id)


class TrainingLog(keras.callbacks.Callback):
    """Checkpoints after each chunk, the best one by validation loss, NaN guard, lr and images."""

    def __init__(self, log_dir, manager, best, config: Config, val):
        super().__init__()
        self.manager, self.best, self.config, self.val = manager, best, config, val
        self.best_loss = np.inf
        self.stopped = ""
        self.writer = tf.summary.create_file_writer(str(log_dir / "images"))
        self.images_every = config.train.log_images_every
        self.history_path = Path(log_dir) / "history.jsonl"
        self.history: list[dict] = []

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        step = int(self.model.optimizer.iterations.numpy())
        if loss is not None and step % 10 == 0:
            self.history.append({"step": step, **{k: float(v) for k, v in logs.items()}})
        if loss is not None and not np.isfinite(float(loss)):
            self.stopped = (
                f"the loss became {float(loss)} at step {step}; training stopped. The last good "
                f"checkpoint is {self.manager.latest_checkpoint} (lower train.learning_rate?)"
            )
            print(f"\nerror: {self.stopped}")
            self.model.stop_training = True
        elif self.images_every and step % self.images_every == 0:
            self._log_images(step)

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped:
            return
        logs = logs or {}
        step = int(self.model.optimizer.iterations.numpy())
        self.manager.save(checkpoint_number=step)
        with self.writer.as_default(step=step):
            lr = self.model.optimizer.learning_rate
            tf.summary.scalar("learning_rate", float(lr(step) if callable(lr) else lr))
        Path(self.history_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.history_path, "a") as history:  # running means within each chunk
            for row in self.history + [{"step": step, **{k: float(v) for k, v in logs.items()}}]:
                history.write(json.dumps(row) + "\n")
        self.history = []
        val_loss = logs.get("val_loss")
        if val_loss is not None and val_loss < self.best_loss:
            self.best_loss = float(val_loss)
            self.best.save(checkpoint_number=step)

    def _log_images(self, step: int) -> None:
        if self.val is None:
            return
        images, targets = next(iter(self.val))
        images, targets = images[:4], {key: value[:4] for key, value in targets.items()}
        outputs = self.model(images, training=False)
        targets = self.model.with_heatmaps(images, targets)
        data = self.config.data
        rgb = (images * tf.constant(data.std_bgr) + tf.constant(data.mean_bgr))[..., ::-1]
        with self.writer.as_default(step=step):
            tf.summary.image("input", tf.clip_by_value(rgb, 0, 1), max_outputs=4)
            for corner in ("tl", "br"):
                target = tf.reduce_max(targets[f"{corner}_heatmap"], -1, keepdims=True)
                predicted = tf.reduce_max(
                    tf.sigmoid(outputs[f"{corner}_heatmap"]), -1, keepdims=True
                )
                pair = tf.concat([target, tf.cast(predicted, target.dtype)], axis=2)
                tf.summary.image(f"{corner}_heatmap target | predicted", pair, max_outputs=4)
