"""CornerNet-Saccade's test procedure on a fixed set of images, side by side with the official code
in one run: `benchmark.py --saccade [--official-lite-src CornerNet-Lite/ --torch-python PY]`.

Both sides hold the same weights (tests/data/make_lite_weights.py, seed 0: the parity weights,
written once as an official state_dict and converted for ours) and see the same images, so they
make the same crops: the table shows both counts. The images: the official procedure fixture's
360 x 480 scene and three shapes scenes of 480 x 640, 427 x 640 and 640 x 480, written as PNG.
Ours runs as `Detector` does (one tf.function for any image size) with the network as trained,
folded float32, folded bfloat16, and both folded forms with Winograd 3x3 convolutions (when the
compiled ops are built); each image's time is the fastest of --repeats calls after a warm-up call.
The official side is scripts/official_saccade_timing.py (its `cornernet_saccade_inference`,
unchanged, on the CPU), the fastest of --repeats calls per image after a warm-up image. Last,
what the network's FLOPs of all images take at the float32 ceiling of this CPU (benchmark.py's
`float32_ceiling`): the least any direct float32 implementation can take here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SIZES = ((480, 640), (427, 640), (640, 480))  # the shapes scenes, (height, width)
# GFLOP of the network on one 255 x 255 crop (TensorFlow's profiler count of the test path's
# graph, multiply-adds x 2): a glance crop (with the attention heads) and a saccade crop (without)
GLANCE_GFLOP, SACCADE_GFLOP = 192.2, 185.1


def write_images(folder: Path) -> list[Path]:
    """The fixed image set as PNG files in `folder`."""
    from PIL import Image

    from cornernet_tf.shapes import make_image

    with np.load(DATA / "saccade_attention_public.npz") as fixture:
        scenes = [fixture["image"][..., ::-1]]  # cv2's BGR -> RGB
    rng = np.random.default_rng(5)
    for height, width in SIZES:
        image = np.asarray(make_image(rng, max(height, width))[0])
        scenes.append(image[:height, :width])
    paths = []
    for i, scene in enumerate(scenes):
        paths.append(folder / f"saccade_{i}_{scene.shape[0]}x{scene.shape[1]}.png")
        Image.fromarray(np.ascontiguousarray(scene)).save(paths[-1])
    return paths


def write_weights(folder: Path) -> Path:
    """The seed-0 parity weights as an official state_dict (.npz, keys without `module.`)."""
    import json

    script = DATA / "make_lite_weights.py"
    spec = importlib.util.spec_from_file_location("make_lite_weights", script)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(DATA))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DATA))
    manifest = json.loads((DATA / "saccade_manifest.json").read_text())
    path = folder / "saccade_seed0.npz"
    np.savez(path, **module.make_lite_weights(manifest, 0))
    return path


def official_rows(args, weights: Path, images: list[Path]) -> dict[str, tuple[float, int]]:
    """{image name: (seconds, crops)} of the official procedure."""
    command = [
        args.torch_python,
        str(ROOT / "scripts/official_saccade_timing.py"),
        "--official-src",
        args.official_lite_src,
        "--weights",
        str(weights),
        "--threads",
        str(args.threads or os.cpu_count()),
        "--repeats",
        str(args.repeats),
        "--images",
        *map(str, images),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode or "RESULT" not in result.stdout:
        raise SystemExit(f"error: the official timing failed:\n{result.stdout}{result.stderr}")
    rows = {}
    for line in result.stdout.splitlines():
        if line.startswith("IMAGE "):
            _, name, *pairs = line.split()
            values = dict(pair.split("=", 1) for pair in pairs)
            rows[name] = (float(values["seconds"]), int(values["crops"]))
    print(result.stdout.strip().splitlines()[-1])
    return rows


def bench_saccade(args, folder: Path) -> None:
    import tensorflow as tf
    from benchmark import float32_ceiling, folded_forms

    from cornernet_tf import build_model, load_config
    from cornernet_tf.convert import load_official_weights
    from cornernet_tf.saccade import saccade_detect, saccade_network, saccade_stages

    images = write_images(folder)
    weights = write_weights(folder)
    official = official_rows(args, weights, images) if args.official_lite_src else {}
    config = load_config("saccade")
    model = build_model(config)
    with np.load(weights) as state:
        load_official_weights(model, {key: state[key] for key in state.files}, str(weights))
    weights.unlink()

    forms, notes = folded_forms(model)
    networks = {"as trained": model}
    for (precision, winograd), network in forms.items():
        networks[f"folded {precision}" + " Winograd" * winograd] = network
    spec = [tf.TensorSpec([None, None, 3], tf.uint8)]
    variants = {
        name: tf.function(
            lambda image, n=network: saccade_detect(saccade_network(n, config.test), image, config),
            input_signature=spec,
        )
        for name, network in networks.items()
    }
    count = tf.function(
        lambda image: {
            key: tf.shape(value)[0]
            for key, value in saccade_stages(
                saccade_network(networks["folded float32"], config.test), image, config
            ).items()
            if key in ("s0_locations", "s1_locations", "scores")
        },
        input_signature=spec,
    )
    rows = []
    for path in images:
        image = tf.io.decode_png(path.read_bytes(), channels=3)
        sizes = {key: int(value) for key, value in count(image).items()}
        crops = sizes["s0_locations"] + sizes["s1_locations"]
        times = {}
        for name, fn in variants.items():
            fn(image)["scores"].numpy()  # warm-up (the first call traces)
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn(image)["scores"].numpy()
                best = min(best, time.perf_counter() - start)
            times[name] = best
        rows.append((path.name, crops, sizes["scores"], times))

    print(
        "\nCornerNet-Saccade test procedure (configs/saccade.yaml: glance at 192 and 255, "
        "attention crops, up to 30 more 255 x 255 crops, soft-NMS), batch = the crops of one "
        f"image, seed-0 parity weights; seconds per image, min of {args.repeats}"
    )
    for note in notes:
        print(f"  note: {note}")
    names = list(variants)
    header = f"{'image':<26} {'crops':>5}" + (f" {'official':>9}" if official else "")
    header += "".join(f" {name:>24}" for name in names)
    print(header)
    totals = {name: 0.0 for name in ["official", *names]}
    for name, crops, _, times in rows:
        line = f"{name:<26} {crops:>5}"
        if official:
            seconds, their_crops = official[name]
            line = f"{name:<26} {crops:>2}/{their_crops:<2}" + f" {seconds:>9.2f}"
            totals["official"] += seconds
        for variant in names:
            totals[variant] += times[variant]
            ratio = f" ({times[variant] / official[name][0]:.2f}x)" if official else ""
            line += f" {times[variant]:>{24 - len(ratio)}.2f}{ratio}"
        print(line)
    line = f"{'all images':<26} {'':>5}"
    if official:
        line += f" {totals['official']:>9.2f}"
    for variant in names:
        ratio = f" ({totals[variant] / totals['official']:.2f}x)" if official else ""
        line += f" {totals[variant]:>{24 - len(ratio)}.2f}{ratio}"
    print(line)
    if official:
        print("(crops: ours/official; (Nx): our time / the official time of the same image)")

    rates = float32_ceiling(args.repeats)
    rate, which = max(rates.values()), max(rates, key=rates.get)
    crops = sum(row[1] for row in rows)
    gflop = 2 * len(rows) * GLANCE_GFLOP + (crops - 2 * len(rows)) * SACCADE_GFLOP
    floor = (
        f"float32 ceiling of this CPU under TF: {rate:.0f} GFLOP/s ({which}); the network's "
        f"{gflop:.0f} GFLOP on these {crops} crops take at least {gflop / rate:.2f} s there"
    )
    if official:
        floor += f", {gflop / rate / totals['official']:.2f} x official"
    print(floor)
