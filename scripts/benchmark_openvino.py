"""OpenVINO beside TensorFlow in `scripts/benchmark.py`: the CPU's flags, the Hourglass-104 test
path converted to OpenVINO (float32 and bfloat16 by the precision hint), and the served
procedure (`cornernet_tf.openvino_ir`) against the SavedModel's graph, in the same rounds."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

CPU_FLAGS = (
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)


def cpu_flags() -> str:
    """Which of the flags that decide the engines' kernels this CPU has (/proc/cpuinfo)."""
    from cornernet_tf.cpu import cpu_flags as flags_of_this_cpu

    flags = flags_of_this_cpu()
    if flags is None:
        return "CPU flags: unknown (no /proc/cpuinfo)"
    shown = [f"{flag} {'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS]
    return "CPU flags: " + ", ".join(shown)


# oneDNN's instruction-set levels (ONEDNN_MAX_CPU_ISA) that have no bfloat16 kernels
NO_BFLOAT16_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI")


def onednn_limits() -> str | None:
    """This process's oneDNN settings that change which kernels run, as a line, or None.
    ONEDNN_MAX_CPU_ISA=AVX2 keeps TF's and OpenVINO's oneDNN to its AVX2 kernels, those an
    AVX2-only CPU gets. TF_ENABLE_ONEDNN_OPTS=0: TF's own kernels (Eigen, with oneDNN's matrix
    product) instead of its oneDNN operations."""
    settings = [
        f"{name}={os.environ[name]}"
        for name in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")
        if os.environ.get(name)
    ]
    return "oneDNN settings: " + ", ".join(settings) if settings else None


def precisions() -> tuple[str, ...]:
    """The precisions to time: float32 and bfloat16, or float32 alone where ONEDNN_MAX_CPU_ISA
    holds oneDNN below the bfloat16 kernels: TF and OpenVINO still see the CPU's bfloat16 flags,
    choose oneDNN's bfloat16 kernels, and oneDNN refuses to create them."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return ("float32",) if isa in NO_BFLOAT16_ISAS else ("float32", "bfloat16")


def openvino_or_reason():
    """(the openvino module, None) or (None, why not)."""
    try:
        import openvino
    except ImportError:
        return None, 'no OpenVINO rows: pip install ".[openvino]"'
    return openvino, None


def compiled_variants(function, spec, threads: int) -> dict:
    """A tf.function converted by OpenVINO (as `cornernet-export --openvino` converts) and
    compiled in each of `precisions()`: {row name: callable(numpy input)}."""
    from cornernet_tf.openvino_ir import PRECISION_HINTS, convert

    ov, _ = openvino_or_reason()
    converted = convert(function.get_concrete_function(spec))
    core, result = ov.Core(), {}
    for name in precisions():
        hint = PRECISION_HINTS[name]
        settings = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads}
        result[f"OpenVINO {name} + decode"] = core.compile_model(converted, "CPU", settings)
    return result


def conv_rates(x, kernel, bias, repeats: int, precisions) -> dict[str, float] | None:
    """Seconds (best of `repeats`) of relu(conv3x3(x, kernel) + bias) in OpenVINO, per precision:
    float32, bfloat16 (precision hints), int8 (input and kernel fake-quantised over their
    ranges, as NNCF quantises, so OpenVINO runs an int8 convolution); x NHWC, kernel OIHW. None
    without OpenVINO."""
    import numpy as np

    ov, _ = openvino_or_reason()
    if ov is None:
        return None
    from openvino import opset13 as ops

    from cornernet_tf.openvino_ir import PRECISION_HINTS

    def model(int8: bool):
        data = ops.parameter(x.shape, np.float32)
        nchw = ops.transpose(data, np.int64([0, 3, 1, 2]))
        weights = ops.constant(kernel)
        if int8:
            low, high, limit = np.float32(x.min()), np.float32(x.max()), np.abs(kernel).max()
            nchw = ops.fake_quantize(nchw, low, high, low, high, 256)
            weights = ops.fake_quantize(weights, -limit, limit, -limit, limit, 255)
        conv = ops.convolution(nchw, weights, [1, 1], [1, 1], [1, 1], [1, 1])
        out = ops.relu(ops.add(conv, ops.constant(bias.reshape(1, -1, 1, 1))))
        return ov.Model([out], [data])

    seconds = {}
    for name in precisions:
        hint = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS.get(name, "f32")}
        compiled = ov.Core().compile_model(model(name == "int8"), "CPU", hint)
        compiled(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            compiled(x)
            times.append(time.perf_counter() - start)
        seconds[name] = min(times)
    return seconds


def int8_missing() -> str | None:
    """Why there is no int8 row (NNCF missing, no AVX2), or None."""
    from cornernet_tf.openvino_ir import int8_unhelpful

    try:
        import nncf  # noqa: F401
    except ImportError:
        return 'pip install ".[int8]"'
    return int8_unhelpful()


def bench_served(repeats: int, size: int, threads: int) -> None:
    """The served procedure on one 511-class image (fixed size input, flip test, decode,
    soft-NMS): the SavedModel's graph in TF and the OpenVINO IR of it, in each of `precisions()`
    (bfloat16 by OpenVINO's precision hint), and int8 where NNCF is installed and the CPU has
    AVX2 (calibrated on 3 random images, so a speed, not an accuracy); interleaved
    rounds, seconds."""
    import dataclasses

    import numpy as np
    import tensorflow as tf
    from benchmark import trained_like_weights  # scripts/benchmark.py

    from cornernet_tf import build_model, load_config
    from cornernet_tf.export import serving_functions
    from cornernet_tf.openvino_ir import export_openvino, load_openvino
    from cornernet_tf.optimize import inference_model

    ov, reason = openvino_or_reason()
    if ov is None:
        print(f"\n({reason})")
        return
    config = load_config("hourglass104")
    model = build_model(config)
    trained_like_weights(model)
    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    variants = {}
    for precision in precisions():
        test = dataclasses.replace(config.test, precision=precision)
        network = inference_model(model, precision, corner_pool="tf")
        served = dataclasses.replace(config, test=test)
        function, _ = serving_functions(network, served, size, browser=True)["serve_image"]
        traced = tf.function(function)
        variants[f"TF SavedModel graph, {precision}"] = lambda f=traced: f(tf.constant(image))
    with tempfile.TemporaryDirectory() as folder:
        export_openvino(model, config, folder, input_size=size)
        for precision in precisions():
            run = load_openvino(folder, precision, threads)
            variants[f"OpenVINO IR, {precision}"] = lambda r=run: r(image)
        if no_int8 := int8_missing():
            print(f"\n(no int8 row: {no_int8})")
        else:
            rng = np.random.default_rng(1)
            calibration = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(3)]
            int8 = Path(folder) / "int8"
            export_openvino(model, config, int8, input_size=size, int8_images=calibration)
            run = load_openvino(int8, "float32", threads)
            variants["OpenVINO IR, int8"] = lambda r=run: r(image)
    times = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    print(f"\nHourglass-104 served procedure (fixed {size} input, flip test, decode, soft-NMS)")
    print(f"{'engine':<32} {'min s':>7} {'median s':>9} {'/ TF float32':>13}")
    base = statistics.median(times["TF SavedModel graph, float32"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<32} {min(values):>7.2f} {median:>9.2f} {median / base:>13.2f}")
