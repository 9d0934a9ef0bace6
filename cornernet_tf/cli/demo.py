"""The main job on the embedded default (`make demo`): shapes -> train -> COCO AP -> pictures.

    cornernet-demo [--config tiny] [--out runs/demo] [--export exported] [--fresh] \\
        [--skip-table] [--finetune STEPS] [key=value ...]

1. the official Hourglass-104's parameter table, to show the model;
2. the synthetic shapes dataset (cornernet-make-shapes) where the config's data paths say
   (runs/shapes for the tiny config), unless it is there;
3. training of the tiny config on it (resumes an interrupted run; --fresh starts over);
4. COCO evaluation of the trained model on the held-out split, with the official test procedure;
5. pictures: detections on validation images, the loss curve, the precision-recall curve;
6. export: a SavedModel for TF Serving (exported/cornernet/1) and a TF.js model
   (exported/cornernet_tfjs) for the browser demo (`make web`).
--finetune STEPS replaces 4-6: the trained model is fine-tuned for STEPS steps on three new
classes ("signs": hexagon, cross, arrow, category ids 3, 5, 8), and the same model is trained
from scratch for as many steps; prints both APs and writes OUT/finetune/ (`make finetune-demo`).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from cornernet_tf import cli


@cli.command
def main(argv=None) -> int:
    parser = cli.parser(__doc__, config_default="tiny")
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--fresh", action="store_true", help="retrain from scratch")
    parser.add_argument("--skip-table", action="store_true", help="no Hourglass-104 table")
    parser.add_argument("--export", default="exported", help="folder of the exported models")
    parser.add_argument(
        "--finetune",
        type=cli.at_least(1),
        metavar="STEPS",
        help="compare fine-tuning with scratch on new classes",
    )
    args = cli.parse(parser, argv)
    start = time.perf_counter()
    config = cli.load_config(args)
    cli.output_folder(args.out, create=False)  # checked now, not after training
    cli.output_folder(args.export, "--export", create=False)
    from cornernet_tf import demo
    from cornernet_tf.training import train

    out = Path(args.out)
    if not args.skip_table:
        demo.print_hourglass104_table()
    if not demo.shapes_ready(config):
        demo.make_shapes(config)

    train_dir = out / "train"
    weights = train_dir / "final.weights.h5"
    if args.fresh and train_dir.exists():
        shutil.rmtree(train_dir)
    if weights.exists():
        print(f"\n== using the trained weights in {weights} (--fresh to retrain)")
    else:
        resume = (train_dir / "checkpoints/checkpoint").exists()
        t = config.train
        print(
            f"\n== training {config.source} for {t.steps} steps of {t.batch_size} images"
            + (" (resuming)" if resume else "")
        )
        train(config, train_dir, resume=resume)

    if args.finetune:
        demo.compare_finetuning(config, weights, args.finetune, out / "finetune")
        print(f"\n== done in {(time.perf_counter() - start) / 60:.1f} min")
        return 0
    result = demo.evaluate(config, weights, out)
    demo.plot_loss(train_dir / "logs/history.jsonl", out / "loss.png")
    browser = config.test.procedure != "saccade"  # TF.js lacks float64: docs/deployment.md
    if demo.export(train_dir, weights, Path(args.export), browser) != 0:
        return 1
    minutes = (time.perf_counter() - start) / 60
    print(
        f"\n== done in {minutes:.1f} min: AP {result['AP']:.3f}, AP50 {result['AP50']:.3f} on the "
        f"held-out shapes; pictures in {out}/ (detections.png, loss.png, precision_recall.png)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
