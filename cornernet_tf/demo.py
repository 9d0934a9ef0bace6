"""The main job on the embedded default (`cornernet-demo`, `make demo`), step by step:

print_hourglass104_table()           the official Hourglass-104's parameters per part
make_shapes(config)                  the synthetic shapes dataset, unless it is there
training.train(config, train_dir)    the tiny CornerNet on it
evaluate(config, weights, out)       COCO AP on the held-out split, pictures of detections
plot_loss(history, path)             the loss curves
export(train_dir, weights, folder, browser)   SavedModel for TF Serving, TF.js for the browser
compare_finetuning(config, base, steps, out)   fine-tuning on new classes against scratch
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from tqdm import tqdm

from cornernet_tf.config import load_config
from cornernet_tf.evaluate import STAT_NAMES, CocoEvaluator
from cornernet_tf.images import read_image
from cornernet_tf.inference import Detector
from cornernet_tf.model import build_model, load_trained
from cornernet_tf.visualize import draw_detections, plot_precision_recall, sheet


def make_shapes(config) -> None:
    """The synthetic shapes dataset where the config's data paths say, at its input size."""
    from cornernet_tf.shapes import write_dataset

    folder = Path(config.data.train_annotations).parent
    print(f"\n== making the synthetic shapes dataset in {folder}")
    write_dataset(folder, size=config.data.input_size[0])


def shapes_ready(config) -> bool:
    """Is the shapes dataset there, made at the config's input size?"""
    path = Path(config.data.val_annotations)
    if not path.exists() or not Path(config.data.train_annotations).exists():
        return False
    info = json.loads(path.read_text()).get("info", {})
    return info.get("size") in (None, config.data.input_size[0])


def print_hourglass104_table() -> None:
    """The official Hourglass-104's parameters per part (the packaged hourglass104 config)."""
    from cornernet_tf.model import parameter_table

    model = build_model(load_config("hourglass104"))
    rows = parameter_table(model)
    print(
        f"Hourglass-104 CornerNet (config hourglass104)\n{'part':<12} {'parameters':>13} "
        f"{'BN statistics':>14}"
    )
    for part, trainable, moving in rows:
        print(f"{part:<12} {trainable:>13,} {moving:>14,}")
    print(f"{'total':<12} {sum(r[1] for r in rows):>13,} {sum(r[2] for r in rows):>14,}")


def evaluate(config, weights: Path, out: Path) -> dict:
    """COCO AP on the validation split with the official test procedure; writes the detections,
    metrics.json, precision_recall.png and detections.png (the first six validation images)."""
    print(f"\n== COCO evaluation on {config.data.val_annotations}")
    out.mkdir(parents=True, exist_ok=True)
    detector = Detector(load_trained(config, weights), config)
    evaluator = CocoEvaluator(config.data.val_annotations, config.data.category_ids)
    pictures = []
    images = sorted(evaluator.coco.imgs.values(), key=lambda info: info["id"])
    for info in tqdm(images, desc="evaluating", unit="image"):
        image = read_image(Path(config.data.val_images) / info["file_name"])
        dets = detector(image)
        evaluator.update(info["id"], dets["boxes"], dets["scores"], dets["classes"])
        if len(pictures) < 6:
            pictures.append(
                draw_detections(
                    image,
                    dets["boxes"],
                    dets["scores"],
                    dets["classes"],
                    config.data.class_names,
                    threshold=0.4,
                )
            )
    result = evaluator.result()
    out.mkdir(parents=True, exist_ok=True)
    evaluator.write_results(out / "detections.json")
    for name in STAT_NAMES:
        print(f"  {name:<6} {result[name]:.4f}")
    for name, ap in result["per_class"].items():
        print(f"  AP {name:<10} {ap:.3f}")
    if evaluator.coco_eval is not None:  # None when nothing at all was detected
        plot_precision_recall(
            evaluator.precision_recall(),
            out / "precision_recall.png",
            title=f"shapes val: AP {result['AP']:.3f}, AP50 {result['AP50']:.3f}",
        )
    sheet(pictures).save(out / "detections.png")
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def export(train_dir: Path, weights: Path, folder: Path, browser: bool = True) -> int:
    """`cornernet-export`: the SavedModel (official any-size procedure) and, with browser, the
    TF.js model (CornerNet-Saccade has none: docs/deployment.md)."""
    from cornernet_tf.cli import export as command

    arguments = ["--config", str(train_dir / "config.yaml"), "--weights", str(weights),
                 "--overwrite", "--out", str(folder / "cornernet")]  # fmt: skip
    tfjs = f" and {folder}/cornernet_tfjs" if browser else ""
    print(f"\n== exporting to {folder}/cornernet/1 (SavedModel){tfjs}")
    return command.main(arguments + (["--tfjs", str(folder / "cornernet_tfjs")] if browser else []))


def plot_loss(history: Path, path: Path) -> None:
    """Training loss terms (running means within each checkpoint chunk), validation loss and
    validation AP, from the training log history.jsonl, as a PNG."""
    if not history.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    figure, axes = plt.subplots(figsize=(6, 4.4), dpi=120)
    steps = [r["step"] for r in rows]
    for key in ("loss", "focal", "pull", "push", "offset"):
        axes.plot(steps, [r[key] for r in rows], label=key, linewidth=1.2)
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if val:
        axes.plot(*zip(*val, strict=True), "o-", label="validation loss", color="black")
    axes.set(xlabel="step", ylabel="loss", yscale="log", title="training on the shapes")
    axes.grid(alpha=0.3, which="both")
    handles, labels = axes.get_legend_handles_labels()
    ap = [(r["step"], r["AP"]) for r in rows if "AP" in r]
    if ap:  # the validation AP of train.eval_every, on its own axis
        right = axes.twinx()
        (line,) = right.plot(*zip(*ap, strict=True), "s--", color="tab:cyan", label="validation AP")
        right.set(ylabel="AP", ylim=(0, 1))
        handles, labels = handles + [line], labels + ["validation AP"]
    figure.legend(handles, labels, fontsize=8, loc="lower center", ncol=4, frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path)
    plt.close(figure)


def compare_finetuning(config, base: Path, steps: int, out: Path) -> dict[str, dict]:
    """Fine-tuning against training from scratch, on the "signs" class set (3 classes, category
    ids 3, 5, 8; made next to the shapes if missing, with another seed than the shapes, so that
    no background repeats): the model of `config` trained for `steps`
    steps from `base` (train.init_weights) and from its random initialisation, same seed, same
    data order; both evaluated on the signs' validation split. Returns {"fine-tuned": COCO
    numbers, "scratch": COCO numbers}; each run's pictures are in out/<name>/."""
    from cornernet_tf.shapes import write_dataset
    from cornernet_tf.training import train

    folder = Path(config.data.train_annotations).parent.parent / "signs"
    if not (folder / "val.json").exists():
        print(f"\n== making the signs dataset (hexagon, cross, arrow) in {folder}")
        write_dataset(folder, size=config.data.input_size[0], seed=1, classes="signs")
    data = dataclasses.replace(
        config.data,
        class_names=(),
        category_ids=(),
        train_annotations=str(folder / "train.json"),
        train_images=str(folder / "train"),
        val_annotations=str(folder / "val.json"),
        val_images=str(folder / "val"),
        train_tfrecords=None,
        val_tfrecords=None,
    )
    results = {}
    for name, init in (("fine-tuned", str(base)), ("scratch", None)):
        schedule = dataclasses.replace(
            config.train,
            steps=steps,
            checkpoint_every=steps,
            eval_every=0,
            best_by="loss",
            log_images_every=0,
            init_weights=init,
        )
        model = dataclasses.replace(config.model, num_classes=3)
        run = dataclasses.replace(config, model=model, data=data, train=schedule)
        print(f"\n== {name}: {steps} steps on the signs" + (f" from {base}" if init else ""))
        if (out / name).exists():
            shutil.rmtree(out / name)
        train(run, out / name)
        config_used = load_config(out / name / "config.yaml")
        results[name] = evaluate(config_used, out / name / "final.weights.h5", out / name)
    print(f"\n{'signs, ' + str(steps) + ' steps':<22} {'AP':>6} {'AP50':>6}")
    for name, result in results.items():
        print(f"{name:<22} {result['AP']:>6.3f} {result['AP50']:>6.3f}")
    (out / "finetune.json").write_text(
        json.dumps({name: {k: r[k] for k in ("AP", "AP50")} for name, r in results.items()})
    )
    return results
