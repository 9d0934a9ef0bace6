#!/usr/bin/env python3
"""The main job on the embedded default (`make demo`): shapes -> train -> COCO AP -> pictures.

    python scripts/demo.py [--config configs/tiny.yaml] [--out runs/demo] [--fresh] [key=value ...]

1. the official Hourglass-104's parameter table (configs/hourglass104.yaml), to show the model;
2. the synthetic shapes dataset (scripts/make_shapes.py) in runs/shapes, unless it is there;
3. training of the tiny config on it (resumes an interrupted run; --fresh starts over);
4. COCO evaluation of the trained model on the held-out split, with the official test procedure;
5. pictures: detections on validation images, the loss curve, the precision-recall curve;
6. export: a SavedModel for TF Serving (exported/cornernet/1) and a TF.js model
   (exported/cornernet_tfjs) for the browser demo (`make web`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs/tiny.yaml"))
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--fresh", action="store_true", help="retrain from scratch")
    parser.add_argument("--skip-table", action="store_true", help="no Hourglass-104 table")
    parser.add_argument("--export", default="exported", help="folder of the exported models")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    start = time.perf_counter()

    from cornernet_tf import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if not args.skip_table:
        print_hourglass104_table()

    shapes = Path(config.data.train_annotations).parent
    if not _shapes_ready(config):
        print(f"\n== making the synthetic shapes dataset in {shapes}")
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "make_shapes", ROOT / "scripts/make_shapes.py"
        )
        make_shapes = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(make_shapes)
        size = str(config.data.input_size[0])
        if make_shapes.main(["--out", str(shapes), "--size", size]) != 0:
            return 2

    train_dir = out / "train"
    weights = train_dir / "final.weights.h5"
    if args.fresh and train_dir.exists():
        shutil.rmtree(train_dir)
    if weights.exists():
        print(f"\n== using the trained weights in {weights} (--fresh to retrain)")
    else:
        from cornernet_tf.training import train

        resume = (train_dir / "checkpoints/checkpoint").exists()
        t = config.train
        print(
            f"\n== training {config.source} for {t.steps} steps of {t.batch_size} images"
            + (" (resuming)" if resume else "")
        )
        train(config, train_dir, resume=resume)

    result = evaluate(config, weights, out)
    plot_loss(train_dir / "logs/history.jsonl", out / "loss.png")
    if export(train_dir, weights, Path(args.export)) != 0:
        return 1
    minutes = (time.perf_counter() - start) / 60
    print(
        f"\n== done in {minutes:.1f} min: AP {result['AP']:.3f}, AP50 {result['AP50']:.3f} on the "
        f"held-out shapes; pictures in {out}/ (detections.png, loss.png, precision_recall.png)"
    )
    return 0


def _shapes_ready(config) -> bool:
    """Is the shapes dataset there, made at the config's input size?"""
    path = Path(config.data.val_annotations)
    if not path.exists() or not Path(config.data.train_annotations).exists():
        return False
    info = json.loads(path.read_text()).get("info", {})
    return info.get("size") in (None, config.data.input_size[0])


def print_hourglass104_table() -> None:
    from cornernet_tf import build_model, load_config
    from cornernet_tf.model import parameter_table

    model = build_model(load_config(ROOT / "configs/hourglass104.yaml"))
    rows = parameter_table(model)
    print(
        f"Hourglass-104 CornerNet (configs/hourglass104.yaml)\n{'part':<12} {'parameters':>13} "
        f"{'BN statistics':>14}"
    )
    for part, trainable, moving in rows:
        print(f"{part:<12} {trainable:>13,} {moving:>14,}")
    print(f"{'total':<12} {sum(r[1] for r in rows):>13,} {sum(r[2] for r in rows):>14,}")


def evaluate(config, weights: Path, out: Path) -> dict:
    """COCO AP on the validation split; draws the first validation images."""
    from PIL import Image
    from tqdm import tqdm

    from cornernet_tf import build_model
    from cornernet_tf.evaluate import STAT_NAMES, CocoEvaluator
    from cornernet_tf.images import read_image
    from cornernet_tf.inference import Detector
    from cornernet_tf.visualize import draw_detections, plot_precision_recall

    print(f"\n== COCO evaluation on {config.data.val_annotations}")
    model = build_model(config)
    model.load_weights(str(weights))
    detector = Detector(model, config)
    evaluator = CocoEvaluator(config.data.val_annotations)
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
    width, height = pictures[0].size
    sheet = Image.new("RGB", (width * 3, height * 2), "white")
    for k, picture in enumerate(pictures):
        sheet.paste(picture, ((k % 3) * width, (k // 3) * height))
    sheet.save(out / "detections.png")
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def export(train_dir: Path, weights: Path, folder: Path) -> int:
    """scripts/export.py: the SavedModel (official any-size procedure) and the TF.js model."""
    import importlib.util

    print(f"\n== exporting to {folder}/cornernet/1 (SavedModel) and {folder}/cornernet_tfjs")
    spec = importlib.util.spec_from_file_location("export", ROOT / "scripts/export.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.main(
        ["--config", str(train_dir / "config.yaml"), "--weights", str(weights), "--overwrite",
         "--out", str(folder / "cornernet"), "--tfjs", str(folder / "cornernet_tfjs")]
    )  # fmt: skip


def plot_loss(history: Path, path: Path) -> None:
    """Training loss terms (running means within each checkpoint chunk) and validation loss."""
    if not history.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    steps = [r["step"] for r in rows]
    for key in ("loss", "focal", "pull", "push", "offset"):
        axes.plot(steps, [r[key] for r in rows], label=key, linewidth=1.2)
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if val:
        axes.plot(*zip(*val, strict=True), "o-", label="validation loss", color="black")
    axes.set(xlabel="step", ylabel="loss", yscale="log", title="training on the shapes")
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
