#!/usr/bin/env python3
"""Deployment benchmark: export sizes, latency of the Keras model, the SavedModel, the OpenVINO IR
(float32, bfloat16, int8) and the TF.js model (Node and headless Chromium), and the COCO AP of
the OpenVINO IRs and of the TF.js model with quantised weights.

    python scripts/benchmark_deploy.py [--config runs/demo/train/config.yaml]
        [--weights runs/demo/train/final.weights.h5] [--annotations runs/shapes/val.json]
        [--images runs/shapes/val] [--calibration runs/shapes/train] [--repeats 10]
        [--limit 100] [--no-tfjs]

Defaults are what `make demo` leaves behind. Needs Node.js with web/node_modules (make web) and,
for the Chromium rows, /usr/bin/chromium (--no-tfjs leaves the TF.js rows out); the OpenVINO rows
need ".[openvino]", the int8 ones ".[int8]" and a CPU with AVX2; int8 is calibrated on
--calibration (the training images). One image, batch 1, median of --repeats runs after a
warm-up run; all rows in one run on one machine. ONEDNN_MAX_CPU_ISA and TF_ENABLE_ONEDNN_OPTS
are named in the first lines, as in scripts/benchmark.py (no bfloat16 row below AVX-512).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def run_node(model_dir: Path, images: list, repeats: int, backend: str, scratch: Path) -> dict:
    """web/run_node.mjs on decoded images; returns its JSON."""
    from cornernet_tf.tfjs import node_images

    (scratch / "images.json").write_text(json.dumps(node_images(images)))
    command = ["node", str(WEB / "run_node.mjs"), str(model_dir), str(scratch / "images.json"),
               str(scratch / "out.json"), str(repeats), backend]  # fmt: skip
    subprocess.run(command, check=True, cwd=WEB, capture_output=True)
    return json.loads((scratch / "out.json").read_text())


def chromium_ms(dist: Path, image: Path, backend: str | None, repeats: int, scratch: Path):
    """(backend, median ms) of the page in headless Chromium, or None if it cannot run."""
    if not Path("/usr/bin/chromium").exists():
        return None
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/serve_web.py"), "--dir", str(dist), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().split()[-1] + (f"?backend={backend}" if backend else "")
        subprocess.run(
            ["node", str(WEB / "browser_check.mjs"), url, str(image), str(scratch / "state.json"),
             str(scratch / "page.png"), str(repeats)],
            check=True, cwd=WEB, capture_output=True, timeout=600,
        )  # fmt: skip
    finally:
        server.terminate()
    state = json.loads((scratch / "state.json").read_text())
    return state["backend"], statistics.median(state["times_ms"])


def coco_ap(outputs: list[dict], infos: list[dict], annotations: str) -> dict:
    """COCO AP of serving-format outputs (one dict per image, batch 1)."""
    from cornernet_tf.evaluate import CocoEvaluator
    from cornernet_tf.serving import pixel_detections

    evaluator = CocoEvaluator(annotations)
    for out, info in zip(outputs, infos, strict=True):
        dets = pixel_detections(out, 0, info["height"], info["width"])
        evaluator.update(info["id"], dets["boxes"], dets["scores"], dets["classes"])
    return evaluator.result()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="runs/demo/train/config.yaml")
    parser.add_argument("--weights", default="runs/demo/train/final.weights.h5")
    parser.add_argument("--annotations", default="runs/shapes/val.json")
    parser.add_argument("--images", default="runs/shapes/val")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--limit", type=int, default=100, help="images for the AP table")
    parser.add_argument("--calibration", default="runs/shapes/train", help="int8 calibration")
    parser.add_argument("--no-tfjs", action="store_true", help="leave the TF.js rows out")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    from benchmark_openvino import onednn_limits  # scripts/
    from pycocotools.coco import COCO

    from cornernet_tf.export import export_saved_model
    from cornernet_tf.images import read_image
    from cornernet_tf.inference import Detector
    from cornernet_tf.tfjs import convert_to_tfjs

    for path in (args.config, args.weights, args.annotations):
        if not Path(path).exists():
            print(f"error: {path} is missing (run `make demo` first)", file=sys.stderr)
            return 2
    detector = Detector.from_files(args.config, args.weights)
    config = detector.config
    size = max(config.data.input_size)
    infos = sorted(COCO(args.annotations).imgs.values(), key=lambda info: info["id"])
    infos = infos[: args.limit]
    paths = [(Path(args.images) / info["file_name"]).resolve() for info in infos]
    images = [read_image(p) for p in paths]  # as detect, evaluate and serving_default decode
    first, encoded = images[0], paths[0].read_bytes()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; model {args.weights}, input {size}")
    if limits := onednn_limits():
        print(limits)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        print("\nexporting ...", flush=True)
        saved = export_saved_model(detector.model, config, scratch / "saved" / "1")
        browser = export_saved_model(
            detector.model, config, scratch / "browser", input_size=size, browser=True
        )
        tfjs = {}
        for quantize in () if args.no_tfjs else ("none", "float16", "uint8"):
            tfjs[quantize] = scratch / f"tfjs_{quantize}"
            convert_to_tfjs(browser, tfjs[quantize], quantize=quantize, metadata={
                "class_names": list(config.data.class_names), "input_size": size, "flip": True,
                "quantize": quantize, "weights": args.weights})  # fmt: skip

        irs = openvino_irs(detector.model, config, scratch, args.calibration)
        print(f"\nExport sizes (MB)\n  SavedModel               {folder_mb(saved):7.1f}")
        for name, (path, _) in irs.items():
            print(f"  {name + ' IR':<24} {folder_mb(path):7.1f}")
        for quantize, path in tfjs.items():
            print(f"  TF.js, weights {quantize:<8}  {folder_mb(path):7.1f}")

        loaded = tf.saved_model.load(str(saved))
        rows = [
            ("Keras model + test procedure (Detector)", median_ms(
                lambda: detector(first), args.repeats)),
            ("SavedModel serving_default (PNG bytes)", median_ms(
                lambda: loaded.signatures["serving_default"](images=tf.constant([encoded])),
                args.repeats)),
            ("SavedModel serve_image (uint8)", median_ms(
                lambda: loaded.signatures["serve_image"](images=tf.constant(first[None])),
                args.repeats)),
        ]  # fmt: skip
        for name, (_, run) in irs.items():
            rows.append((f"{name} IR (uint8 image)", median_ms(lambda run=run: run(first),
                                                                args.repeats)))  # fmt: skip
        for backend in () if args.no_tfjs else ("cpu", "wasm"):
            result = run_node(tfjs["none"], [first], args.repeats + 1, backend, scratch)
            rows.append((f"TF.js in Node, {backend} backend", statistics.median(
                result["images"][0]["times_ms"][1:])))  # fmt: skip
        dist = scratch / "dist"
        if tfjs:
            subprocess.run(["node", str(WEB / "build.mjs"), "--model", str(tfjs["none"]), "--out",
                            str(dist)], check=True, capture_output=True)  # fmt: skip
        for backend in () if args.no_tfjs else ("wasm", "cpu", None):
            timing = chromium_ms(dist, paths[0], backend, args.repeats, scratch)
            if timing:
                label = backend or f"page default: {timing[0]}"
                rows.append((f"TF.js in headless Chromium, {label}", timing[1]))
        keras_ms = rows[0][1]
        print(f"\nLatency, one {first.shape[1]}x{first.shape[0]} image, flip test, batch 1 "
              f"(median of {args.repeats}, ms)")  # fmt: skip
        print(f"  {'':<48} {'ms':>8} {'/ Keras':>8}")
        for name, ms in rows:
            print(f"  {name:<48} {ms:8.1f} {ms / keras_ms:8.2f}")

        print(f"\nCOCO AP on {len(images)} images of {args.annotations} (TF.js: Node, wasm)")
        print("(the Python pipeline at the fixed TF.js input; the OpenVINO IRs run any size)")
        fixed = Detector(detector.model, config, input_size=size)
        reference = []
        for im in images:
            dets = fixed(im)
            h, w = im.shape[:2]
            x1, y1, x2, y2 = dets["boxes"].T
            reference.append({
                "detection_boxes": np.stack([y1 / h, x1 / w, y2 / h, x2 / w], -1),
                "detection_scores": dets["scores"], "detection_classes": dets["classes"] + 1,
                "num_detections": [len(dets["scores"])]})  # fmt: skip
        base = coco_ap(reference, infos, args.annotations)
        print(f"  {'':<34} {'AP':>6} {'AP50':>6} {'max |score diff|':>17}")
        print(f"  {'Python, float32':<34} {base['AP']:6.3f} {base['AP50']:6.3f} {'':>17}")
        ir_outputs = {}
        for name, (_, run) in irs.items():
            ir_outputs[name] = [run(im) for im in images]
            ap = coco_ap(ir_outputs[name], infos, args.annotations)
            diff = ""
            if name != "OpenVINO float32":
                diff = f"{top_score_diff(ir_outputs[name], ir_outputs['OpenVINO float32']):17.4f}"
            print(f"  {name + ' IR':<34} {ap['AP']:6.3f} {ap['AP50']:6.3f} {diff:>17}")
        for quantize, path in tfjs.items():
            result = run_node(path, images, 1, "wasm", scratch)
            outputs = [{k: v["data"] for k, v in r["outputs"].items()} for r in result["images"]]
            ap = coco_ap(outputs, infos, args.annotations)
            diff = top_score_diff(outputs, reference)
            print(f"  {'TF.js, weights ' + quantize:<34} {ap['AP']:6.3f} {ap['AP50']:6.3f} "
                  f"{diff:17.4f}")  # fmt: skip
    print(
        "\n(max |score diff|: over the 10 best scores of each image, vs Python float32; for the "
        "OpenVINO IRs vs the float32 IR)"
    )
    return 0


def top_score_diff(outputs: list[dict], reference: list[dict]) -> float:
    """The largest difference between the 10 best scores of the same image, over all images."""
    import numpy as np

    def best(scores):
        return np.sort(np.ravel(scores))[::-1][:10]

    return max(
        float(np.max(np.abs(best(o["detection_scores"]) - best(r["detection_scores"]))))
        for o, r in zip(outputs, reference, strict=True)
    )


def openvino_irs(model, config, scratch: Path, calibration: str) -> dict:
    """{row name: (IR folder, run)} of the any-size OpenVINO IR in each of `precisions()` and of
    its int8 version calibrated on up to 300 images of `calibration`; each row left out, with a
    line saying why, when its package, its CPU instructions or the calibration images are
    missing."""
    from benchmark_openvino import int8_missing, openvino_or_reason, precisions  # scripts/

    from cornernet_tf.openvino_ir import export_openvino, load_openvino

    if (reason := openvino_or_reason()[1]) is not None:
        print(f"({reason})")
        return {}
    export_openvino(model, config, scratch / "openvino")
    irs = {
        f"OpenVINO {precision}": (
            scratch / "openvino",
            load_openvino(scratch / "openvino", precision),
        )
        for precision in precisions()
    }
    files = sorted(Path(calibration).glob("*"))[:300]
    if reason := int8_missing():
        print(f"(no int8 row: {reason})")
    elif not files:
        print(f"(no int8 row: no calibration images in {calibration})")
    else:
        print(f"quantising the IR to int8 on {len(files)} images of {calibration} ...", flush=True)
        export_openvino(model, config, scratch / "openvino_int8", int8_images=files)
        irs["OpenVINO int8"] = (scratch / "openvino_int8", load_openvino(scratch / "openvino_int8"))
    return irs


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
