"""Training: strategy, data, optimiser, checkpoints and logs around `CornerNet.train_step`.

`train(config, out)` checks the data (`sources`), writes out/config.yaml with the category map
it uses, optionally starts from other weights (`train.init_weights`, `cornernet_tf.finetune`),
then runs keras `fit` in chunks of `train.checkpoint_every` steps. After each chunk it saves a
checkpoint (TF writes it under a temporary name and renames it), computes the validation loss,
every `train.eval_every` steps the COCO AP of the official test procedure, and keeps the best
model by `train.best_by` (best/ checkpoint, best.weights.h5, best.keras; the best score is kept
in best/score.json, so it survives a resume). `resume=True` restores the last checkpoint and
skips exactly the examples already seen, so the data order and augmentation go on unchanged. An
interrupted run (checkpoints but no final weights) is resumed automatically, as Keras's
BackupAndRestore does; a finished one is refused unless `resume` is set.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml

from cornernet_tf.config import Config, category_ids, to_dict
from cornernet_tf.data import DataError, coco_source, make_dataset, tfrecord_source
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
    """(config with its category map and class names filled in, train source, validation
    source or None), from the data section of the config, every record checked (DataError)."""
    data = config.data
    if data.train_tfrecords:  # the config's map, validated against num_classes with the config
        ids = category_ids(config)
        train = tfrecord_source(data.train_tfrecords, ids)
        names = data.class_names
    elif data.train_annotations and data.train_images:
        train = coco_source(data.train_annotations, data.train_images, data.category_ids)
        ids, names = train.category_ids, data.class_names or train.class_names
        if len(ids) != config.model.num_classes:  # a map read from the file
            raise DataError(
                f"{config.source}: model.num_classes is {config.model.num_classes}, but "
                f"{data.train_annotations} has {len(ids)} categories (ids {list(ids)}): set "
                f"model.num_classes={len(ids)}"
            )
    else:
        raise TrainingError(
            f"{config.source}: no training data: set data.train_annotations and "
            "data.train_images (COCO JSON + folder) or data.train_tfrecords"
        )
    data = dataclasses.replace(data, category_ids=tuple(ids), class_names=tuple(names))
    config = dataclasses.replace(config, data=data)
    val = None
    if data.val_tfrecords:
        val = tfrecord_source(data.val_tfrecords, ids)
    elif data.val_annotations and data.val_images:
        val = coco_source(data.val_annotations, data.val_images, ids)
    return config, train, val


def report(sources, out: Path, shown: int = 10) -> None:
    """Prints what the data checks found (a summary line per source and the first `shown`
    warnings) and writes every warning to out/data_warnings.txt."""
    warnings = [w for source in sources if source for w in source.warnings]
    for source in sources:
        if source:
            print(f"data: {source.summary}")
    for warning in warnings[:shown]:
        print(f"warning: {warning}")
    if warnings:
        out.mkdir(parents=True, exist_ok=True)
        (out / "data_warnings.txt").write_text("".join(w + "\n" for w in warnings))
        more = f" ({len(warnings) - shown} more)" if len(warnings) > shown else ""
        print(f"{len(warnings)} warnings{more}: all in {out / 'data_warnings.txt'}")


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
    config, train_source, val_source = sources(config)
    report([train_source, val_source], out)
    if resume and (out / "config.yaml").exists():
        saved = yaml.safe_load((out / "config.yaml").read_text()).get("data", {})
        saved = saved.get("category_ids")
        if saved and list(saved) != list(config.data.category_ids):
            raise TrainingError(
                f"{out} was trained with the category map {saved}; the data now give "
                f"{list(config.data.category_ids)}: train into another --out"
            )
    if chief:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

    t = config.train
    keras.utils.set_random_seed(t.seed)  # the initial weights (official: torch.manual_seed(317))
    with distribution.scope():
        model = build_model(config, TRAIN_PRECISIONS[t.precision])
        if t.init_weights and not resume:
            start_from(model, t.init_weights, config)
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
    logger = TrainingLog(out, manager, best, config, val, val_source)
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
    save_model(model, out, "final")
    if chief:
        print(f"wrote {out / 'final.weights.h5'}, {out / 'final.keras'} and {out / 'config.yaml'}")
    return model


def start_from(model: CornerNet, path: str, config: Config) -> None:
    """train.init_weights: loads `path` (`cornernet_tf.finetune.init_weights`), printing the
    layers initialised afresh; TrainingError when the file does not fit."""
    from cornernet_tf.finetune import init_weights

    try:
        fresh = init_weights(model, path, config.source)
    except ValueError as error:
        raise TrainingError(f"train.init_weights: {error}") from None
    print(f"started from {path}" + (": initialised afresh (shapes differ):" if fresh else ""))
    for line in fresh:
        print(f"  {line}")


def save_model(model: CornerNet, out: Path, stem: str) -> None:
    """out/<stem>.weights.h5 and out/<stem>.keras of the model alone: a copy without the
    optimizer, whose state would triple the files (it is in the training checkpoints)."""
    plain = CornerNet.from_config(model.get_config())
    plain.build()
    for target, source in zip(plain.weights, model.weights, strict=True):
        target.assign(source)
    plain.save_weights(str(out / f"{stem}.weights.h5"))
    plain.save(str(out / f"{stem}.keras"))


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
    """Checkpoints after each chunk, validation loss and AP, the best model by train.best_by,
    NaN guard, learning rate and images."""

    def __init__(self, out: Path, manager, best, config: Config, val, val_source=None):
        super().__init__()
        self.out, self.manager, self.best, self.config = Path(out), manager, best, config
        self.val, self.val_source = val, val_source
        self.score_path = self.out / "best" / "score.json"
        self.best_score = self._saved_score()
        self.stopped = ""
        log_dir = self.out / "logs"
        self.writer = tf.summary.create_file_writer(str(log_dir / "images"))
        self.images_every = config.train.log_images_every
        self.history_path = log_dir / "history.jsonl"
        self.history: list[dict] = []

    def on_train_begin(self, logs=None):
        self.previous_step = int(self.model.optimizer.iterations.numpy())

    def _saved_score(self) -> float:
        """The best score of this run so far (resume), or the worst possible."""
        if self.score_path.exists():
            saved = json.loads(self.score_path.read_text())
            if saved.get("by") == self.config.train.best_by:
                return float(saved["value"])
        return -np.inf if self.config.train.best_by == "ap" else np.inf

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
        logs = {k: float(v) for k, v in (logs or {}).items()}
        step = int(self.model.optimizer.iterations.numpy())
        self.manager.save(checkpoint_number=step)
        t = self.config.train
        with self.writer.as_default(step=step):
            lr = self.model.optimizer.learning_rate
            tf.summary.scalar("learning_rate", float(lr(step) if callable(lr) else lr))
            due = t.eval_every and step // t.eval_every > self.previous_step // t.eval_every
            if due and self.val_source is not None:
                ap = self.evaluate()
                logs.update(ap)
                for name, value in ap.items():
                    tf.summary.scalar(f"validation/{name}", value)
                print(f"\nstep {step}: validation AP {ap['AP']:.4f}, AP50 {ap['AP50']:.4f}")
        self.previous_step = step
        Path(self.history_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.history_path, "a") as history:  # running means within each chunk
            for row in self.history + [{"step": step, **logs}]:
                history.write(json.dumps(row) + "\n")
        self.history = []
        score = logs.get("AP" if t.best_by == "ap" else "val_loss")
        better = t.best_by == "ap" and score is not None and score > self.best_score
        better |= t.best_by == "loss" and score is not None and score < self.best_score
        if better:
            self.best_score = score
            self.best.save(checkpoint_number=step)
            save_model(self.model, self.out, "best")
            self.score_path.write_text(json.dumps({"by": t.best_by, "value": score, "step": step}))

    def evaluate(self) -> dict:
        """COCO AP and AP50 of the model now, with the official test procedure, on the first
        train.eval_images validation images."""
        from cornernet_tf.evaluate import evaluate_examples
        from cornernet_tf.inference import Detector

        source, data = self.val_source, self.config.data
        detector = Detector(self.model, self.config)
        examples = source.examples(self.config.train.eval_images)
        result = evaluate_examples(
            detector, examples.as_numpy_iterator(), data.category_ids, data.class_names
        )
        return {"AP": result["AP"], "AP50": result["AP50"]}

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
