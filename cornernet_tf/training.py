"""Training: strategy, data, optimiser, checkpoints and logs around `CornerNet.train_step`.

`train(config, out)` checks the data (`sources`), writes out/config.yaml with the category map
it uses, optionally starts from other weights (`train.init_weights`, `cornernet_tf.finetune`),
then runs keras `fit` in chunks of `train.checkpoint_every` steps, exactly `train.steps` in all
(the last chunk is shorter when train.steps is not a multiple). After each chunk it saves a
checkpoint (TF writes it under a temporary name and renames it), computes the validation loss,
every `train.eval_every` steps the COCO AP of the official test procedure, and keeps the best
model by `train.best_by` (best/ checkpoint, best.weights.h5, best.keras; the best score is kept
in best/score.json, so it survives a resume). `resume=True` restores the last checkpoint and
skips exactly the examples already seen, so the data order and augmentation go on unchanged. An
interrupted run (checkpoints but no final weights) is resumed automatically, as Keras's
BackupAndRestore does; a finished one is refused unless `resume` is set.

Bad input ends in one clear error (TrainingError, DataError), never in a traceback, a hang or a
run that trains on nothing. The data checks read every record and decode every image once
before the first step; what they leave out is counted in the summary lines and listed in
out/data_warnings.txt. Training refuses to start when less than `min_usable` (default 50%) of
the training or the validation images are usable (TFRecords: of their bytes, as a truncated
shard's lost records cannot be counted), or when none is. A NaN loss, a failed checkpoint write
(a full disk) or a failing input pipeline stops training with the step and the last complete
checkpoint; temporary files of the failed write are removed, and the same command resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml

from cornernet_tf.config import Config, category_ids, to_dict
from cornernet_tf.data import (
    MIN_USABLE,
    DataError,
    coco_source,
    make_dataset,
    require_usable,
    tfrecord_source,
    without_undecodable,
)
from cornernet_tf.files import output_folder, reason
from cornernet_tf.inference import Detector, network_input_problem
from cornernet_tf.model import CornerNet, build_model

# train.precision -> the model's compute precision (mixed: float32 variables, bfloat16 compute)
TRAIN_PRECISIONS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


class WriteError(TrainingError):
    """A checkpoint or the weights could not be written (a full disk): the machine failed, not
    the input; the commands exit with code 1."""

    exit_code = 1


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default: one device; mirrored: all local devices; multiworker: the cluster in TF_CONFIG."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def check_tf_config(text: str | None) -> None:
    """TrainingError unless `text` (the TF_CONFIG variable) is JSON naming a cluster of workers
    and this process's task in it."""
    example = (
        'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}\''
    )
    if not text:
        raise TrainingError(
            f"--strategy multiworker reads the cluster from TF_CONFIG, which is not set: "
            f"export {example} on each worker (its own index)"
        )
    try:
        spec = json.loads(text)
    except ValueError as error:
        raise TrainingError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]!r}") from None
    workers = spec.get("cluster", {}).get("worker") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not (isinstance(workers, list) and workers and isinstance(task, dict)):
        raise TrainingError(
            f"TF_CONFIG needs cluster.worker (a list of host:port) and task, e.g. {example}; "
            f"got {text[:200]!r}"
        )


def sources(config: Config, progress: bool = False):
    """(config with its category map and class names filled in, train source, validation
    source or None), from the data section of the config, every record checked (DataError);
    `progress`: progress bars while checking."""
    data = config.data
    if data.train_tfrecords:  # the config's map, validated against num_classes with the config
        ids = category_ids(config)
        train = tfrecord_source(data.train_tfrecords, ids, progress)
        names = data.class_names
    elif data.train_annotations and data.train_images:
        train = coco_source(data.train_annotations, data.train_images, data.category_ids)
        train = without_undecodable(train, progress=progress)
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
        val = tfrecord_source(data.val_tfrecords, ids, progress)
    elif data.val_annotations and data.val_images:
        val = coco_source(data.val_annotations, data.val_images, ids)
        val = without_undecodable(val, progress=progress)
    return config, train, val


def report(sources, out: Path, shown: int = 10, warnings=()) -> None:
    """Prints what the data checks found (a summary line per source and the first `shown`
    warnings) and writes the summary lines and every warning to out/data_warnings.txt.
    `warnings`: more of them (those of a check that gave up)."""
    summaries = [f"data: {source.summary}" for source in sources if source]
    warnings = [w for source in sources if source for w in source.warnings] + list(warnings)
    for line in summaries:
        print(line)
    for warning in warnings[:shown]:
        print(f"warning: {warning}")
    if warnings:
        text = "".join(line + "\n" for line in summaries + warnings)
        try:
            (out / "data_warnings.txt").write_text(text)
        except OSError as error:
            raise TrainingError(
                f"cannot write {out / 'data_warnings.txt'}: {reason(error)}"
            ) from None
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
    config: Config,
    out: Path,
    *,
    strategy: str = "default",
    resume: bool = False,
    verbose: int = 1,
    min_usable: float = MIN_USABLE,
) -> CornerNet:
    """Trains the model of `config`; returns it. See the module docstring. `min_usable`: the
    least share of the training and of the validation data that must be usable. With
    train.deterministic, TensorFlow's graph optimiser is off while it runs (`graph_optimiser`)."""
    with graph_optimiser(not config.train.deterministic):
        return _train(config, out, strategy, resume, verbose, min_usable)


@contextlib.contextmanager
def graph_optimiser(enabled: bool):
    """Grappler, TensorFlow's graph optimiser, on (TensorFlow's default: nothing changes) or off
    for the functions first run inside; the process's setting is restored after. Off, the same
    step gives the same numbers in every process: Grappler's rewrites of a whole training step
    (Hourglass with attention heads) vary between processes: its gradients differ in their last
    bits, and training drifts apart."""
    if enabled:
        yield
        return
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def _train(config, out, strategy, resume, verbose, min_usable) -> CornerNet:
    distribution = make_strategy(strategy)
    chief = _is_chief(distribution)
    out = Path(out) if chief else Path(out) / f".worker_{_task_id(distribution)}"
    output_folder(out, "--out")
    checkpoints = out / "checkpoints"
    if (checkpoints / "checkpoint").exists() and not resume:
        if (out / "final.weights.h5").exists() and chief:
            raise TrainingError(
                f"{out} holds a finished run: choose another --out, or pass --resume with more "
                "train.steps to train on"
            )
        print(f"{out} holds an interrupted run: resuming it (as BackupAndRestore would)")
        resume = True
    try:
        config, train_source, val_source = sources(config, progress=verbose > 0 and chief)
    except DataError as error:
        report([], out, warnings=error.warnings)
        raise
    report([train_source, val_source], out)
    require_usable(train_source, "training", min_usable)
    if val_source is not None:
        require_usable(val_source, "validation", min_usable)
    if resume and (out / "config.yaml").exists():
        try:
            saved = yaml.safe_load((out / "config.yaml").read_text())
            saved = saved.get("data", {}).get("category_ids")
        except (OSError, yaml.YAMLError, AttributeError) as error:
            raise TrainingError(
                f"{out / 'config.yaml'}: cannot read the config of the run to resume "
                f"({reason(error)}): train into another --out"
            ) from None
        if saved and list(saved) != list(config.data.category_ids):
            raise TrainingError(
                f"{out} was trained with the category map {saved}; the data now give "
                f"{list(config.data.category_ids)}: train into another --out"
            )
    if chief:
        try:
            (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        except OSError as error:
            raise TrainingError(f"cannot write {out / 'config.yaml'}: {reason(error)}") from None

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
        try:
            checkpoint.restore(manager.latest_checkpoint).expect_partial()
        except (ValueError, tf.errors.OpError, AssertionError) as error:
            raise TrainingError(
                f"{manager.latest_checkpoint}: cannot resume from this checkpoint: "
                f"{reason(error)}: it is damaged or of another model; train into another --out"
            ) from None
        print(
            f"resumed from {manager.latest_checkpoint} at step {int(optimizer.iterations.numpy())}"
        )
    start = int(optimizer.iterations.numpy())

    if t.eval_every and val_source is not None:
        check_test_scale(config, val_source)
    val, val_steps = None, None
    if val_source is not None:
        val = make_dataset(val_source, config, batch_size=t.batch_size, training=False)
        val = val.take(t.validation_batches).cache()
        try:
            val_steps = sum(1 for _ in val)
        except tf.errors.OpError as error:
            raise TrainingError(
                f"the validation data failed to load: {reason(error)} (a file changed since "
                "the check?)"
            ) from None
        val = val.repeat()  # fit reads exactly val_steps batches each time
    logger = TrainingLog(out, manager, best, config, val, val_source)
    callbacks = [logger, keras.callbacks.TensorBoard(out / "logs", update_freq=100)]
    epoch = start // t.checkpoint_every
    for steps, epochs in chunks(start, t.steps, t.checkpoint_every):
        if logger.stopped:
            break
        step = int(optimizer.iterations.numpy())
        dataset = make_dataset(
            train_source,
            config,
            batch_size=t.batch_size,
            training=True,
            seed=t.seed,
            start=step * t.batch_size,
        )
        try:
            model.fit(
                dataset,
                validation_data=val,
                epochs=epoch + epochs,
                initial_epoch=epoch,
                steps_per_epoch=steps,
                validation_steps=val_steps,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # the dataset shuffles itself (Keras would warn it ignores True)
            )
        except KeyboardInterrupt:
            step = int(optimizer.iterations.numpy())
            raise KeyboardInterrupt(
                f"at step {step}; {last_checkpoint(manager)}; run the same command again to resume"
            ) from None
        except (OSError, tf.errors.OpError) as error:
            step = int(optimizer.iterations.numpy())
            raise TrainingError(
                f"training failed at step {step}: {reason(error)}; {last_checkpoint(manager)}; "
                "run the same command again to resume"
            ) from None
        epoch += epochs
    if logger.stopped:
        raise (WriteError if logger.write_failed else TrainingError)(logger.stopped)
    done = int(optimizer.iterations.numpy())
    if done != max(t.steps, start):
        raise TrainingError(
            f"training stopped at step {done} of {t.steps}: the training data ran out; "
            f"{last_checkpoint(manager)}"
        )
    try:
        save_model(model, out, "final")
    except (OSError, tf.errors.OpError) as error:
        raise WriteError(
            f"cannot write the final weights to {out}: {reason(error, True)} at step {done}; "
            f"{last_checkpoint(manager)}; run the same command again to write them"
        ) from None
    if chief:
        print(f"wrote {out / 'final.weights.h5'}, {out / 'final.keras'} and {out / 'config.yaml'}")
    return model


def check_test_scale(config: Config, source) -> None:
    """TrainingError when test.scales makes too large a network input of the first image of
    `source` (the validation data that training scores AP on every train.eval_every steps): a
    mistake to tell before the first step, not after eval_every of them."""
    left_out = []
    try:
        next(scored_examples(source, config, 1, left_out), None)
    except tf.errors.OpError:  # loading the validation batches next says what is wrong
        return
    if left_out:
        raise TrainingError(
            f"train.eval_every {config.train.eval_every} scores AP on the validation images "
            f"with the test procedure: {left_out[0]}"
        )


def scored_examples(source, config: Config, count: int, left_out: list[str]):
    """The first `count` examples of `source`, without those whose image the test procedure
    would make too large a network input of (`inference.network_input_problem`): each of those
    is added to `left_out` as "file: why"."""
    names = None
    for k, example in enumerate(source.examples(count).as_numpy_iterator()):
        if problem := network_input_problem(*example["image"].shape[:2], config):
            names = names or source.item_names()
            left_out.append(f"{names[k]}: {problem}")
        else:
            yield example


def chunks(start: int, steps: int, every: int) -> list[tuple[int, int]]:
    """The fit calls from step `start` to exactly `steps`, checkpointing at every multiple of
    `every` and at `steps`: [(steps per epoch, epochs)], equal chunks grouped into one call."""
    ends = [end for end in range(every, steps, every) if end > start]
    ends += [steps] if steps > start else []
    result, previous = [], start
    for end in ends:
        if result and result[-1][0] == end - previous:
            result[-1] = (end - previous, result[-1][1] + 1)
        else:
            result.append((end - previous, 1))
        previous = end
    return result


def last_checkpoint(manager) -> str:
    """Where training can go on from: the last complete checkpoint, or that there is none."""
    if manager.latest_checkpoint is None:
        return "no checkpoint was written yet (training would start afresh)"
    return f"the last complete checkpoint is {manager.latest_checkpoint}"


def remove_partial(manager, prefix: str) -> None:
    """Removes what a failed write left in the folder of `manager`: TF's temporary folders and
    files (`*_temp*`) and the files of the checkpoint `prefix` unless it became complete."""
    folder = Path(manager.directory)
    if not folder.is_dir():
        return
    complete = Path(manager.latest_checkpoint or "").name == prefix
    for path in folder.iterdir():
        if "_temp" in path.name or (path.name.startswith(prefix + ".") and not complete):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


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
    optimizer, whose state would triple the files (it is in the training checkpoints). Each is
    written under a temporary name and renamed, so a failed write (a full disk) leaves the old
    file whole and no partial one."""
    plain = CornerNet.from_config(model.get_config())
    plain.build()
    for target, source in zip(plain.weights, model.weights, strict=True):
        target.assign(source)
    for suffix, write in ((".weights.h5", plain.save_weights), (".keras", plain.save)):
        temporary = out / f".{stem}_temp{suffix}"
        try:
            write(str(temporary))
            os.replace(temporary, out / f"{stem}{suffix}")
        finally:
            temporary.unlink(missing_ok=True)


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
        self.stopped = ""  # why training stopped early
        self.write_failed = False  # because a write failed
        log_dir = self.out / "logs"
        self.writer = tf.summary.create_file_writer(str(log_dir / "images"))
        self.images_every = config.train.log_images_every
        self.history_path = log_dir / "history.jsonl"
        self.history: list[dict] = []

    def on_train_begin(self, logs=None):
        self.previous_step = int(self.model.optimizer.iterations.numpy())

    def _saved_score(self) -> float:
        """The best score of this run so far (resume), or the worst possible."""
        try:
            saved = json.loads(self.score_path.read_text()) if self.score_path.exists() else {}
            if saved.get("by") == self.config.train.best_by:
                return float(saved["value"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            print(f"warning: {self.score_path}: unreadable ({error}); the next score is the best")
        return -np.inf if self.config.train.best_by == "ap" else np.inf

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        step = int(self.model.optimizer.iterations.numpy())
        if loss is not None and step % 10 == 0:
            self.history.append({"step": step, **{k: float(v) for k, v in logs.items()}})
        if loss is not None and not np.isfinite(float(loss)):
            if self.manager.latest_checkpoint is None:
                where = "No checkpoint was written yet, so there is none to resume from"
            else:
                where = f"The last good checkpoint is {self.manager.latest_checkpoint}"
            self.stopped = (
                f"the loss became {float(loss)} at step {step}; training stopped. {where} "
                "(is train.learning_rate finite and small enough? lower it)"
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
        if not self.write(step, "the checkpoint", self.manager, self._checkpoint, step):
            return
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
        if not self.write(step, "the training history", None, self._history, step, logs):
            return
        self.history = []
        score = logs.get("AP" if t.best_by == "ap" else "val_loss")
        better = t.best_by == "ap" and score is not None and score > self.best_score
        better |= t.best_by == "loss" and score is not None and score < self.best_score
        if better:
            if self.write(step, "the best model", self.best, self._best, step, score):
                self.best_score = score

    def write(self, step: int, what: str, manager, save, *args) -> bool:
        """Runs save(*args); when it fails (a full disk): removes its temporary files (those of
        `manager`'s folder too), stops training with a message naming the step and the last
        complete checkpoint, returns False."""
        try:
            save(*args)
            return True
        except (OSError, tf.errors.OpError) as error:
            if manager is not None:
                remove_partial(manager, f"ckpt-{step}")
            for stem in ("best", "final"):
                for suffix in (".weights.h5", ".keras"):
                    (self.out / f".{stem}_temp{suffix}").unlink(missing_ok=True)
            where = f" to {manager.directory}" if manager is not None else ""
            self.write_failed = True
            self.stopped = (
                f"cannot write {what} at step {step}{where}: {reason(error, writing=True)}; "
                f"{last_checkpoint(self.manager)}; free space and run the same command again "
                "to resume"
            )
            print(f"\nerror: {self.stopped}")
            self.model.stop_training = True
            return False

    def _checkpoint(self, step: int) -> None:
        self.manager.save(checkpoint_number=step)

    def _history(self, step: int, logs: dict) -> None:
        Path(self.history_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.history_path, "a") as history:  # running means within each chunk
            for row in self.history + [{"step": step, **logs}]:
                history.write(json.dumps(row) + "\n")

    def _best(self, step: int, score: float) -> None:
        by = self.config.train.best_by
        self.best.save(checkpoint_number=step)
        save_model(self.model, self.out, "best")
        self.score_path.write_text(json.dumps({"by": by, "value": score, "step": step}))

    def evaluate(self) -> dict:
        """COCO AP and AP50 of the model now, with the official test procedure, on the first
        train.eval_images validation images."""
        from cornernet_tf.evaluate import evaluate_examples

        source, config = self.val_source, self.config
        detector = Detector(self.model, config)
        count, left_out = min(config.train.eval_images, source.size), []
        examples = scored_examples(source, config, count, left_out)
        first = next(examples, None)
        if first is None:
            why = left_out[0] if left_out else "none was loaded"
            raise TrainingError(
                f"none of the {count} validation images can be scored: {why}; "
                f"{last_checkpoint(self.manager)}; lower test.scales and run the same command "
                "again to resume"
            )
        result = evaluate_examples(
            detector,
            itertools.chain([first], examples),
            config.data.category_ids,
            config.data.class_names,
        )
        if left_out:
            print(
                f"\nwarning: {len(left_out)} of {count} validation images left out of the AP "
                f"(first: {left_out[0]})"
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
