#!/usr/bin/env python3
"""Benchmarks, printed as tables. Compare numbers only within one run: machines differ.

    python scripts/benchmark.py [--pools] [--model] [--squeeze] [--saccade] [--targets] [--data]
        [--train-step] [--ceiling] [--compare-official] [--repeats N] [--size 511] [--threads T]
        [--official-src CornerNet/] [--official-lite-src CornerNet-Lite/] [--torch-python PY]

--pools: corner pool implementations vs a plain copy of the same tensor, [4,128,128,128] float32,
         all four directions, forward and forward+backward (milliseconds, min of N runs).
--model: the Hourglass-104 test path (final stack), batch 1, in seconds and GFLOP/s (686 GFLOP at
         511x511, scaled by area), tf.function: the network as trained, with decode, and as
         Detector / export run it (BatchNorm folded, float32, bfloat16, and both with Winograd
         3x3 convolutions when the compiled ops are built); interleaved rounds;
         random weights with trained-like BatchNorm statistics and biases; then the ceiling of
         this CPU in float32 and bfloat16 (GFLOP/s of a large matmul and of the most common
         convolution in TF, and of that convolution in OpenVINO) and what the test path would
         take at TF's rates. With OpenVINO installed (".[openvino]"), the
         folded float32 test path converted by OpenVINO and compiled in float32 and bfloat16 (its
         precision hint) in the same rounds, the CPU's avx512/AMX flags, and a second table: the
         served procedure (fixed --size input, flip test, decode, soft-NMS) as the SavedModel's
         graph in TF and as the OpenVINO IR of `cornernet-export --openvino`.
--squeeze: the CornerNet-Squeeze test path (CornerNet-Lite, configs/squeeze.yaml), batch 1 at
         511 (or --size when it is 128k - 1), with decode at the official Squeeze test arguments
         (K=20, kernel 3, ae_threshold 0.5, num_dets 100), tf.function: as trained (BatchNorm not
         folded) float32, folded float32, folded bfloat16, and both folded forms with Winograd
         3x3 convolutions when the compiled ops are built; 4 x N interleaved rounds, seconds (min,
         median) and GFLOP/s (102.5 GFLOP at 511, the official hook count, scaled by area),
         random weights with trained-like BatchNorm statistics; then what its FLOPs take at the
         float32 ceiling of this CPU.
--saccade: the CornerNet-Saccade test procedure (configs/saccade.yaml) on a fixed set of four
         images, seconds per image: as trained, folded float32, folded bfloat16, both folded
         forms with Winograd, with the crop count of each image (scripts/benchmark_saccade.py).
--targets: encode_targets per image at 511 (10 and 100 boxes, 80 classes) and decode of a
         128x128x80 final-stack output, in ms (decode also as a share of the model forward).
--data:  images/s of the training input pipeline at 511 (decode, official augmentation, sparse
         targets) on one core (tf.data thread pool of 1) and on all cores, the time of drawing the
         heatmaps (80 classes) in the train step, and with --official-src the official loader.
--train-step: one Hourglass-104 training step, batch 2 at 511, in seconds, float32 and
         mixed_bfloat16 (loss in float32), interleaved.
--ceiling: the ceiling table of --model alone, a minute: GFLOP/s of a 4096^3 matmul and of the
         3x3 256->256 convolution at 128 x 128 in TF and OpenVINO per precision, and that
         convolution in OpenVINO in int8 (fake-quantised input and kernel) where the CPU has AVX2.
--compare-official: --model, --squeeze, --saccade and --train-step, with the official rows when the
         official checkouts are given.
Without any of these, all run. --threads T sets TF's intra- and inter-op threads (and the
official torch threads) to T; by default both use every core.

The engines' own switches, in the environment, are named in the first lines and kept by every
row: ONEDNN_MAX_CPU_ISA=AVX2 holds TF's and OpenVINO's oneDNN to the kernels an AVX2-only CPU
(no AVX-512) gets, on this one (float32 rows only: oneDNN has no bfloat16 kernels there);
TF_ENABLE_ONEDNN_OPTS=0 runs TF's own kernels instead of its oneDNN operations.

--official-src DIR --torch-python PY: also time the official code (a princeton-vl/CornerNet
checkout) in the same run and print ratios: the model's test path with the official decode, with
the same threads (scripts/official_timing.py, under a Python that has torch), and for --data the
official loader kp_detection on one core (scripts/official_loader_timing.py; that Python needs
opencv-python and tqdm too).
--official-lite-src DIR: a princeton-vl/CornerNet-Lite checkout, for the official rows of
--squeeze (official_timing.py --model squeeze: the official CornerNet_Squeeze `model()`, its test
path with `_decode` at the same arguments, 4 x N runs before and after our rounds, the faster
counts), and of --saccade (scripts/official_saccade_timing.py: the official
`cornernet_saccade_inference` on the same images with the same weights; that Python needs
opencv-python-headless, tqdm and Cython too). An --official-src that is a CornerNet-Lite checkout
is taken as --official-lite-src.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
TEST_PATH_GFLOP_511 = 686.3  # 343.17 GMACs, official hook count (conv multiply-adds x 2)
# CornerNet-Squeeze test path at 511: 51.23 GMACs by the same count (transposed convolutions as
# input x output channels x 16), in GFLOP: stem 42.7, both hourglasses' fire modules 4.4 and
# transposed upsampling 6.1, joins (cnvs, inters, inters_, cnvs_) 20.4, the final tl and br
# corner modules 25.2, 1x1 heads 3.6
SQUEEZE_GFLOP_511 = 102.5
SQUEEZE_TEST = {"k": 20, "kernel": 3, "ae_threshold": 0.5, "num_dets": 100}  # the official test


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: tracing, first allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench_pools(repeats: int) -> None:
    import tensorflow as tf

    from cornernet_tf.ops import DIRECTIONS, corner_pool, custom

    x = tf.random.stateless_normal([4, 128, 128, 128], seed=[0, 1])
    g = tf.random.stateless_normal([4, 128, 128, 128], seed=[0, 2])

    def forward(impl):
        return tf.function(lambda t: [corner_pool(t, d, implementation=impl) for d in DIRECTIONS])

    def backward(impl):
        @tf.function
        def run(t):
            grads = []
            for d in DIRECTIONS:
                with tf.GradientTape() as tape:
                    tape.watch(t)
                    out = corner_pool(t, d, implementation=impl)
                grads.append(tape.gradient(out, t, output_gradients=g))
            return grads

        return run

    copy = tf.function(lambda t: [tf.raw_ops.DeepCopy(x=t) for _ in DIRECTIONS])
    base = min(timed(lambda: [o.numpy() for o in copy(x)][0], repeats)) / 4
    print("\nCorner pooling, [4,128,128,128] float32, per direction (mean of the four), ms")
    print(f"{'implementation':<16} {'forward':>9} {'x copy':>7} {'fwd+bwd':>9} {'x copy':>7}")
    print(f"{'plain copy':<16} {base * 1e3:>9.2f} {1:>7.2f} {'':>9} {'':>7}")
    implementations = ["scan", "tf"] + (["custom"] if custom.load() else [])
    for impl in implementations:
        fwd, bwd = forward(impl), backward(impl)
        reps = max(1, repeats // 4) if impl == "scan" else repeats
        f = min(timed(lambda fn=fwd: fn(x)[0].numpy(), reps)) / 4
        b = min(timed(lambda fn=bwd: fn(x)[0].numpy(), reps)) / 4
        print(f"{impl:<16} {f * 1e3:>9.2f} {f / base:>7.2f} {b * 1e3:>9.2f} {b / base:>7.2f}")
    if not custom.load():
        print(f"(custom: {custom.load_error()})")


def bench_targets(repeats: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from cornernet_tf.decode import decode
    from cornernet_tf.targets import encode_targets

    rng = np.random.default_rng(0)
    print("\nTargets and decoding (tf.function, ms, min of runs)")
    for count in (10, 100):
        xy = rng.uniform(0, 400, (count, 2))
        boxes = tf.constant(np.concatenate([xy, xy + rng.uniform(8, 110, (count, 2))], 1))
        classes = tf.constant(rng.integers(0, 80, count))
        fn = tf.function(
            lambda b, c: encode_targets(
                b, c, input_size=(511, 511), output_size=(128, 128), num_classes=80
            )
        )
        run = lambda fn=fn, b=boxes, c=classes: fn(b, c)["tl_heatmap"].numpy()  # noqa: E731
        ms = min(timed(run, repeats)) * 1e3
        print(f"  encode_targets, {count:>3} boxes        {ms:8.2f}")
    outputs = {
        "tl_heatmap": tf.random.normal([1, 128, 128, 80]) - 3,
        "br_heatmap": tf.random.normal([1, 128, 128, 80]) - 3,
        "tl_embedding": tf.random.normal([1, 128, 128, 1]),
        "br_embedding": tf.random.normal([1, 128, 128, 1]),
        "tl_offset": tf.random.uniform([1, 128, 128, 2]),
        "br_offset": tf.random.uniform([1, 128, 128, 2]),
    }
    fn = tf.function(lambda o: decode(o))
    seconds = min(timed(lambda: fn(outputs)["scores"].numpy(), repeats))
    print(f"  decode, 1 x 128 x 128 x 80          {seconds * 1e3:8.2f}")
    return {"decode": seconds}


def bench_data(args) -> None:
    import tempfile

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from cornernet_tf import load_config
    from cornernet_tf.data import coco_source, make_dataset
    from cornernet_tf.targets import draw_heatmaps

    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(32):  # COCO-like: 640 x 480 JPEGs of smooth colour fields + noise, 7 boxes
        small = Image.fromarray(rng.integers(0, 255, (15, 20, 3), dtype=np.uint8))
        pixels = np.asarray(small.resize((640, 480), Image.BICUBIC)) + rng.normal(
            0, 6, (480, 640, 3)
        )
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            folder / f"{i}.jpg", quality=90
        )
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480})
        for k in range(7):
            x, y = rng.uniform(0, 500), rng.uniform(0, 350)
            annotations.append(
                {
                    "id": i * 10 + k,
                    "image_id": i,
                    "category_id": k + 1,
                    "bbox": [x, y, 100.0, 90.0],
                    "area": 9000.0,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": str(k)} for k in range(80)]
    (folder / "a.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    source = coco_source(folder / "a.json", folder)
    config = load_config("hourglass104")
    kb = np.mean([f.stat().st_size for f in folder.glob("*.jpg")]) / 1e3
    print(
        f"\nTraining input pipeline, 511 x 511, 80 classes, 640 x 480 JPEG sources ({kb:.0f} kB "
        "each), batches of 8, best of 3 rounds of 8 batches"
    )
    dataset = make_dataset(source, config, batch_size=8, training=True, seed=0)
    per_image = sum(
        s.shape[1:].num_elements() * s.dtype.size for s in tf.nest.flatten(dataset.element_spec)
    )  # fmt: skip
    print(
        f"  memory per image in a batch: {per_image / 1e6:.1f} MB (image + sparse targets); the "
        f"heatmaps ({2 * 80 * 128 * 128 * 4 / 1e6:.1f} MB) are drawn in the train step"
    )
    official = official_loader_rate(args, folder) if args.official_src else None
    rows = [("official kp_detection, 1 core", official, 1)] if official else []
    for threads in (1, os.cpu_count()):
        rows.append((f"tf.data, {threads} thread(s)", loader_rate(dataset, threads), threads))
    _, targets = next(iter(dataset.take(1)))  # a real batch of sparse targets
    draw = tf.function(lambda t: draw_heatmaps(t, (128, 128), 80))
    batch_s = min(timed(lambda: draw(targets)["tl_heatmap"].numpy(), args.repeats))
    one_core = 1 / (1 / rows[-2][1] + batch_s / 8)
    rows.append(("tf.data + draw_heatmaps, 1 core", one_core, 1))
    print(f"  {'':<34} {'images/s':>9} {'per core':>9} {'/ official':>11}")
    for name, rate, cores in rows:
        ratio = f"{rate / official:>11.2f}" if official else f"{'':>11}"
        print(f"  {name:<34} {rate:>9.1f} {rate / cores:>9.1f} {ratio}")
    print(
        f"  draw_heatmaps (train step): {batch_s * 1e3:.1f} ms per batch of 8 on this CPU; "
        "the last row adds it to the loader's time on one core"
    )
    if not official:
        print("  (add --official-src CornerNet/ --torch-python PY to time the official loader)")


def loader_rate(dataset, threads: int) -> float:
    """Images/s of `dataset` (batches of 8) on a tf.data thread pool of `threads`."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    iterator = iter(dataset.with_options(options))
    for _ in range(2):
        next(iterator)
    rates = []
    for _ in range(3):  # best of three rounds of 8 batches: the machine's noise is large
        start = time.perf_counter()
        for _ in range(8):
            next(iterator)
        rates.append(64 / (time.perf_counter() - start))
    return max(rates)


def official_loader_rate(args, folder: Path) -> float:
    """Images/s of the official kp_detection on one core (scripts/official_loader_timing.py)."""
    command = [
        args.torch_python,
        str(ROOT / "scripts/official_loader_timing.py"),
        "--official-src",
        args.official_src,
        "--annotations",
        str(folder / "a.json"),
        "--images",
        str(folder),
    ]
    return float(run_official(command)["images_per_s"])


def bench_train_step(repeats: int) -> None:
    """One Hourglass-104 training step, batch 2 at 511, in float32 and mixed_bfloat16."""
    import keras
    import tensorflow as tf
    from benchmark_openvino import precisions

    from cornernet_tf import build_model, load_config
    from cornernet_tf.targets import encode_corners

    config = load_config("hourglass104")
    images = tf.random.stateless_normal([2, 511, 511, 3], seed=[3, 3])
    one = encode_corners(
        [[50.0, 60.0, 200.0, 220.0]], [3], input_size=(511, 511), output_size=(128, 128)
    )
    targets = {k: tf.stack([v, v]) for k, v in one.items()}
    targets["mask"] = tf.cast(targets["mask"], tf.float32)
    steps = {}
    policies = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
    for policy, precision in ((policies[p], p) for p in precisions()):
        model = build_model(config, precision)
        model.compile(optimizer=keras.optimizers.Adam(2.5e-4), jit_compile=False)
        steps[policy] = tf.function(lambda x, t, model=model: model.train_step((x, t)))
    times = {policy: [] for policy in steps}
    for _ in range(max(1, repeats // 2) + 1):  # interleaved; the first round warms up
        for policy, step in steps.items():
            start = time.perf_counter()
            float(step(images, targets)["loss"])
            times[policy].append(time.perf_counter() - start)
    print("\nHourglass-104 train step, batch 2 at 511, Adam (s, min of runs after a warm-up)")
    base = min(times["float32"][1:])
    for policy, values in times.items():
        best = min(values[1:])
        print(f"  {policy:<16} {best:7.2f}   / float32 {best / base:5.2f}")


def official_times(args, model: str = "cornernet", size=None, repeats=None) -> tuple[float, float]:
    """(min, median) seconds of the official test path, from scripts/official_timing.py under
    torch: CornerNet from --official-src, or (model "squeeze") CornerNet-Squeeze from
    --official-lite-src."""
    command = [
        args.torch_python,
        str(ROOT / "scripts/official_timing.py"),
        "--model",
        model,
        "--official-src",
        args.official_lite_src if model == "squeeze" else args.official_src,
        "--size",
        str(size or args.size),
        "--repeats",
        str(repeats or args.repeats),
        "--threads",
        str(args.threads or os.cpu_count()),
    ]
    values = run_official(command)
    return float(values["seconds_min"]), float(values["seconds_median"])


def run_official(command: list[str]) -> dict[str, str]:
    """Runs an official-code timing script; returns the key=value pairs of its RESULT line."""
    result = subprocess.run(command, capture_output=True, text=True)
    match = re.search(r"^RESULT (.*)$", result.stdout, re.MULTILINE)
    if result.returncode or not match:
        raise SystemExit(f"error: the official timing failed:\n{result.stdout}{result.stderr}")
    print(result.stdout.strip().splitlines()[-1])
    return dict(pair.split("=", 1) for pair in match.group(1).split() if "=" in pair)


def trained_like_weights(model, seed: int = 0) -> None:
    """Random BatchNorm statistics and affine terms, and random convolution biases, as a trained
    model has: with Keras's initial ones (mean 0, variance 1, gamma 1, beta 0, bias 0) every folded
    bias is zero and TF's graph optimiser drops the additions, which would flatter the folded
    model (measured about 2.5%)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for variable in model.weights:
        name = variable.path.rsplit("/", 1)[-1]
        if name in ("moving_mean", "beta") or (name == "bias" and not np.any(variable.numpy())):
            variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))
        elif name in ("moving_variance", "gamma"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))


@functools.cache
def compute_ceiling(repeats: int) -> dict[str, dict[str, float]]:
    """GFLOP/s of the fastest work each engine does on this CPU, per precision (`precisions()`
    of scripts/benchmark_openvino.py): a large matrix product and the network's most common
    convolution (3x3, 256 -> 256 channels at 128 x 128, bias, ReLU) in TF (oneDNN), and that
    convolution in OpenVINO when it is installed, there also in int8 where the CPU has AVX2;
    each the best of `repeats` runs. {row: {precision: rate}}. The test path cannot run faster
    than its FLOPs at an engine's rates."""
    import numpy as np
    import tensorflow as tf
    from benchmark_openvino import conv_rates, int8_missing, precisions

    conv_flop = 2 * 128 * 128 * 256 * 256 * 9
    rows = {"TF matmul 4096 x 4096 x 4096": {}, "TF conv 3x3 256->256 at 128 x 128": {}}
    x, w = tf.random.normal([1, 128, 128, 256]), tf.random.normal([3, 3, 256, 256]) * 0.02
    bias = tf.random.normal([256])
    a, b = tf.random.normal([4096, 4096]), tf.random.normal([4096, 4096])
    for dtype in (tf.as_dtype(name) for name in precisions()):
        ta, tb, tx, tw, tbias = (tf.cast(t, dtype) for t in (a, b, x, w, bias))

        def matmul(ta=ta, tb=tb):
            return tf.matmul(ta, tb)

        def conv(tx=tx, tw=tw, tbias=tbias):
            return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(tx, tw, 1, "SAME"), tbias))

        work = {
            "TF matmul 4096 x 4096 x 4096": (tf.function(matmul), 2 * 4096**3),
            "TF conv 3x3 256->256 at 128 x 128": (tf.function(conv), conv_flop),
        }
        for name, (fn, flop) in work.items():
            best = min(timed(lambda fn=fn: fn().numpy(), repeats))
            rows[name][dtype.name] = flop / best / 1e9
    kernel = np.transpose(w.numpy(), (3, 2, 0, 1))  # OIHW
    int8 = () if int8_missing() else ("int8",)
    openvino = conv_rates(x.numpy(), kernel, bias.numpy(), repeats, precisions() + int8)
    if openvino:
        rows["OpenVINO conv 3x3 256->256 at 128 x 128"] = {
            name: conv_flop / seconds / 1e9 for name, seconds in openvino.items()
        }
    return rows


def float32_ceiling(repeats: int) -> dict[str, float]:
    """TF's float32 rows of `compute_ceiling`: {row: GFLOP/s}."""
    rows = compute_ceiling(repeats)  # one cached measurement for every table of a run
    return {name: r["float32"] for name, r in rows.items() if name.startswith("TF")}


def folded_forms(model) -> tuple[dict[tuple[str, bool], object], list[str]]:
    """The inference networks Detector and export build from `model`: BatchNorm folded, float32
    and (where oneDNN has bfloat16 kernels) bfloat16, each also with Winograd 3x3 convolutions
    when the compiled ops load. Returns ({(precision, winograd): network}, notes), in that order:
    float32, bfloat16, float32 Winograd, bfloat16 Winograd."""
    from benchmark_openvino import precisions

    from cornernet_tf.ops import custom
    from cornernet_tf.optimize import inference_model

    kinds = [(precision, False) for precision in precisions()]
    notes = []
    if custom.load() is not None:
        kinds += [(precision, True) for precision in precisions()]
    else:
        notes.append(f"no Winograd rows: {custom.load_error()}")
    forms = {(p, w): inference_model(model, p, winograd=w) for p, w in kinds}
    return forms, notes


def form_name(precision: str, winograd: bool) -> str:
    """The row name of a `folded_forms` network in the --model and --squeeze tables."""
    return "folded" + (" bf16" if precision == "bfloat16" else "") + (" winograd" * winograd)


def bench_model(repeats: int, size: int, official_fn=None, decode_s=None, threads: int = 0) -> None:
    """The Hourglass-104 test path, batch 1: the network alone and with decode, as built for
    training and as Detector / export run it (BatchNorm folded; float32, bfloat16, and both with
    Winograd 3x3 convolutions when the compiled ops are built). official_fn, if given, times
    the official code (seconds): once before and once after our rounds, the faster counts."""
    import tensorflow as tf
    from benchmark_openvino import compiled_variants, cpu_flags, openvino_or_reason, precisions

    from cornernet_tf import build_model, load_config
    from cornernet_tf.decode import decode
    from cornernet_tf.optimize import bfloat16_slowness

    model = build_model(load_config("hourglass104"))
    trained_like_weights(model)
    forms, notes = folded_forms(model)
    x = tf.random.stateless_normal([1, size, size, 3], seed=[1, 1])
    gflop = TEST_PATH_GFLOP_511 * ((size + 1) / 512) ** 2

    def path(network, with_decode=True):
        if with_decode:
            return tf.function(lambda t: decode(network(t, training=False)))
        return tf.function(lambda t: network(t, training=False))

    variants = {"network": path(model, False), "network + decode": path(model)}
    variants |= {f"{form_name(*kind)} + decode": path(net) for kind, net in forms.items()}
    for note in notes:
        print(f"({note})")
    runs = {name: lambda f=fn: list(f(x).values())[0].numpy() for name, fn in variants.items()}
    ov, no_openvino = openvino_or_reason()
    if ov is not None:  # the folded float32 test path, converted by OpenVINO
        spec = tf.TensorSpec(x.shape, tf.float32)
        inputs = x.numpy()
        for name, compiled in compiled_variants(
            path(forms["float32", False]), spec, threads or os.cpu_count()
        ).items():
            runs[name] = lambda c=compiled: c(inputs)
    times = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up: tracing, compiling
    official = official_fn() if official_fn else None
    for _ in range(repeats):  # interleaved rounds: this machine's speed wanders
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    if official_fn:
        official = min(official, official_fn())
    print(f"\nHourglass-104 test path (final stack), 1 x {size} x {size}, {gflop:.0f} GFLOP")
    print(cpu_flags())
    if no_openvino:
        print(f"  ({no_openvino})")
    if reason := bfloat16_slowness():
        print(f"  note: {reason}")
    print(f"{'variant':<30} {'min s':>7} {'median s':>9} {'GFLOP/s':>8} {'/ official':>11}")
    if official is not None:
        print(
            f"{'official PyTorch':<30} {official:>7.2f} {'':>9} {gflop / official:>8.0f} {1:>11.2f}"
        )
    for name, values in times.items():
        best = min(values)
        ratio = f"{best / official:>11.2f}" if official is not None else f"{'':>11}"
        median = statistics.median(values)
        print(f"{name:<30} {best:>7.2f} {median:>9.2f} {gflop / best:>8.0f} {ratio}")
    if decode_s is not None:
        network = min(times["network"])
        print(f"decode alone ({decode_s * 1e3:.1f} ms) / network: {decode_s / network:.1%}")
    if official is not None:
        print("(the official time includes its _decode: compare it with the + decode rows)")
    print(f"(GFLOP/s: the direct convolutions' {gflop:.0f} GFLOP per second; Winograd does less)")
    rows = print_ceiling(repeats, flags=False)  # the flags head the table above
    for precision in precisions():
        best = max(r[precision] for name, r in rows.items() if name.startswith("TF"))
        floor = f"  TF {precision} at {best:.0f} GFLOP/s: at least {gflop / best:.2f} s"
        if official is not None:
            floor += f", {gflop / best / official:.2f} x official"
        print(floor)


def print_ceiling(repeats: int, flags: bool = True) -> dict[str, dict[str, float]]:
    """Prints `compute_ceiling` as a table (headed by the CPU's flags if `flags`), returns it."""
    from benchmark_openvino import cpu_flags

    rows = compute_ceiling(repeats)
    columns = [p for p in ("float32", "bfloat16", "int8") if any(p in r for r in rows.values())]
    named = f"; {cpu_flags()}" if flags else ""
    print(f"\nceiling of this CPU, GFLOP/s (int8: GOP/s), best of {repeats} runs{named}")
    print(f"  {'':<40}" + "".join(f" {column:>9}" for column in columns))
    for name, rates in rows.items():
        cells = (f"{rates[c]:>9.0f}" if c in rates else f"{'':>9}" for c in columns)
        print(f"  {name:<40} " + " ".join(cells))
    openvino = rows.get("OpenVINO conv 3x3 256->256 at 128 x 128", {})
    if "int8" in openvino:
        ratio = openvino["float32"] / openvino["int8"]
        print(f"  OpenVINO int8 convolution / float32, time: {ratio:.2f}")
    return rows


def squeeze_size(size: int) -> int:
    """`size` if CornerNet-Squeeze takes it (sides 128k - 1), else 511."""
    if (size + 1) % 128 == 0:
        return size
    print(f"\n(CornerNet-Squeeze takes sides 128k - 1: --size {size} becomes 511 there)")
    return 511


def bench_squeeze(repeats: int, size: int, official_fn=None) -> None:
    """The CornerNet-Squeeze test path, batch 1, with decode at the official Squeeze test
    arguments: as trained (BatchNorm not folded) float32, folded float32 and folded bfloat16 (as
    Detector / export run it), and folded float32 with Winograd 3x3 convolutions when the
    compiled ops are built. official_fn, if given, times the official code ((min, median)
    seconds): once before and once after our 4 x `repeats` interleaved rounds, the faster
    counts."""
    import warnings

    import tensorflow as tf

    from cornernet_tf import build_model, load_config
    from cornernet_tf.decode import decode
    from cornernet_tf.optimize import bfloat16_slowness

    model = build_model(load_config("squeeze"))
    trained_like_weights(model)
    params = sum(int(tf.size(w)) for w in model.trainable_weights)
    x = tf.random.stateless_normal([1, size, size, 3], seed=[1, 1])
    gflop = SQUEEZE_GFLOP_511 * ((size + 1) / 512) ** 2

    def path(network):
        return tf.function(lambda t: decode(network(t, training=False), **SQUEEZE_TEST))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        forms, notes = folded_forms(model)
    variants = {"as trained + decode": path(model)}
    variants |= {f"{form_name(*kind)} + decode": path(net) for kind, net in forms.items()}
    notes += sorted({str(w.message) for w in caught})
    times = {name: [] for name in variants}
    for fn in variants.values():
        fn(x)["scores"].numpy()  # warm-up: tracing
    official = official_fn() if official_fn else None
    for _ in range(4 * repeats):  # interleaved rounds: this machine's speed wanders
        for name, fn in variants.items():
            start = time.perf_counter()
            fn(x)["scores"].numpy()
            times[name].append(time.perf_counter() - start)
    if official_fn:
        official = min(official, official_fn())
    test = ", ".join(f"{k}={v}" for k, v in SQUEEZE_TEST.items())
    print(
        f"\nCornerNet-Squeeze test path (final stack) + decode ({test}), batch 1 x {size} x "
        f"{size}, {gflop:.1f} GFLOP, {params:,} parameters; {cpu_name()}"
    )
    if reason := bfloat16_slowness():
        notes.append(reason)
    for note in notes:
        print(f"  note: {note}")
    print(f"{'variant':<30} {'min s':>7} {'median s':>9} {'GFLOP/s':>8} {'/ official':>11}")
    if official is not None:
        best, median = official
        print(
            f"{'official PyTorch':<30} {best:>7.3f} {median:>9.3f} {gflop / best:>8.0f} {1:>11.2f}"
        )
        official = best
    for name, values in times.items():
        best = min(values)
        ratio = f"{best / official:>11.2f}" if official is not None else f"{'':>11}"
        median = statistics.median(values)
        print(f"{name:<30} {best:>7.3f} {median:>9.3f} {gflop / best:>8.0f} {ratio}")
    if official is not None:
        print(
            "(the official time includes its _decode at the same arguments; its min and median "
            "are those of the faster of its two timings)"
        )
    print(f"(GFLOP/s: the direct convolutions' {gflop:.1f} GFLOP per second; Winograd does less)")
    rates = float32_ceiling(repeats)
    best = max(rates.values())
    which = max(rates, key=rates.get)
    floor = f"float32 ceiling of this CPU under TF: {best:.0f} GFLOP/s ({which}); "
    floor += f"direct convolutions at that rate: at least {gflop / best:.3f} s"
    if official is not None:
        floor += f", {gflop / best / official:.2f} x official"
    print(floor)


def official_kind(path: str | None) -> str | None:
    """The kind of an official checkout: "cornernet" (princeton-vl/CornerNet), "lite"
    (princeton-vl/CornerNet-Lite) or None."""
    if path and (Path(path) / "core/models/CornerNet_Squeeze.py").is_file():
        return "lite"
    if path and (Path(path) / "models/CornerNet.py").is_file():
        return "cornernet"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", action="store_true")
    parser.add_argument("--model", action="store_true")
    parser.add_argument("--squeeze", action="store_true", help="the CornerNet-Squeeze test path")
    parser.add_argument(
        "--saccade", action="store_true", help="the CornerNet-Saccade test procedure"
    )
    parser.add_argument("--targets", action="store_true")
    parser.add_argument("--data", action="store_true")
    parser.add_argument("--train-step", action="store_true")
    parser.add_argument("--ceiling", action="store_true", help="the ceiling table of --model alone")
    parser.add_argument(
        "--compare-official",
        action="store_true",
        help="the model, Squeeze, Saccade and train-step tables beside the official code",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=511)
    parser.add_argument("--threads", type=int, default=0, help="intra/inter-op threads (0: TF's)")
    parser.add_argument("--official-src", help="a princeton-vl/CornerNet checkout to compare with")
    parser.add_argument(
        "--official-lite-src",
        help="a princeton-vl/CornerNet-Lite checkout (for --squeeze and --saccade)",
    )
    parser.add_argument("--torch-python", default="python3", help="a Python with torch installed")
    args = parser.parse_args(argv)
    if args.official_src and official_kind(args.official_src) == "lite":
        args.official_lite_src = args.official_lite_src or args.official_src
        args.official_src = None  # a CornerNet-Lite checkout: the official rows of --squeeze
    for flag, path, kind in (
        ("--official-src", args.official_src, "cornernet"),
        ("--official-lite-src", args.official_lite_src, "lite"),
    ):
        if path and official_kind(path) != kind:
            name = "CornerNet" if kind == "cornernet" else "CornerNet-Lite"
            parser.error(f"{flag} {path}: not a princeton-vl/{name} checkout")
    import tensorflow as tf
    from benchmark_openvino import onednn_limits, precisions

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    threads = args.threads or os.cpu_count()
    print(f"TensorFlow {tf.__version__}, {cpu_name()}, {os.cpu_count()} CPUs, {threads} threads")
    if limits := onednn_limits():
        if "bfloat16" not in precisions():
            limits += " (oneDNN has no bfloat16 kernels at that level: float32 rows only)"
        print(limits)
    if args.compare_official:
        args.model = args.squeeze = args.saccade = args.train_step = True
    chosen = (
        args.pools,
        args.model,
        args.squeeze,
        args.saccade,
        args.targets,
        args.data,
        args.train_step,
        args.ceiling,
    )
    everything = not any(chosen)
    if args.pools or everything:
        bench_pools(args.repeats)
    timings = bench_targets(args.repeats) if (args.targets or everything) else {}
    if args.data or everything:
        bench_data(args)
    if args.train_step or everything:
        bench_train_step(args.repeats)
    if args.ceiling and not (args.model or everything):
        print_ceiling(args.repeats)
    if args.model or everything:
        from benchmark_openvino import bench_served

        official_fn = (lambda: official_times(args)[0]) if args.official_src else None
        bench_model(args.repeats, args.size, official_fn, timings.get("decode"), threads)
        bench_served(args.repeats, args.size, threads)
    if args.squeeze or everything:
        size = squeeze_size(args.size)
        official_fn = None
        if args.official_lite_src:
            runs = 4 * args.repeats
            official_fn = functools.partial(official_times, args, "squeeze", size, runs)
        bench_squeeze(args.repeats, size, official_fn)
    if args.saccade or everything:
        import tempfile

        from benchmark_saccade import bench_saccade

        with tempfile.TemporaryDirectory() as folder:
            bench_saccade(args, Path(folder))
    if not args.official_src and (everything or args.model or args.data or args.train_step):
        print(
            "\n(no official rows: to time the official code in the same run, add\n"
            "  --official-src CornerNet/ --torch-python PY\n"
            "with a princeton-vl/CornerNet checkout and a Python that has torch, opencv-python "
            "and tqdm)"
        )
    if not args.official_lite_src and (everything or args.squeeze or args.saccade):
        print(
            "\n(no official CornerNet-Lite rows: add --official-lite-src CornerNet-Lite/ "
            "--torch-python PY with a princeton-vl/CornerNet-Lite checkout and a Python with "
            "torch; --saccade also needs opencv-python-headless, tqdm and Cython there)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
