#!/usr/bin/env python3
"""Builds the compiled ops into cornernet_tf/ops/_custom_ops.so (`make ops`): corner pooling and
the Winograd convolution transforms.

    python custom_ops/build.py [--cpu-only]

The C++ CPU kernels always, with the compile and link flags of the installed TensorFlow
(tf.sysconfig: -std=c++17, -D_GLIBCXX_USE_CXX11_ABI=1, ...) and -fPIC -O3. When nvcc exists, the
CUDA kernels too (nvcc -DGOOGLE_CUDA=1 -x cu --expt-relaxed-constexpr); if that part fails to
build, the CPU-only library is kept and the reason printed. A sidecar file records the
TensorFlow version the library was built for; the package refuses a library built for another.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "custom_ops" / "corner_pool"
CPU_SOURCES = [str(SOURCE / "corner_pool.cc"), str(ROOT / "custom_ops/winograd/winograd.cc")]
TARGET = ROOT / "cornernet_tf" / "ops" / "_custom_ops.so"
CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))


def run(command: list[str]) -> subprocess.CompletedProcess:
    print("  " + " ".join(command), flush=True)
    return subprocess.run(command, capture_output=True, text=True)


# TensorFlow's x86 wheels need AVX (and so SSE4.1) themselves: the kernels may use them too (the
# bfloat16 conversions of the Winograd transforms narrow 32-bit lanes with SSE4.1's packusdw)
X86_FLAGS = ["-mavx"] if platform.machine().lower() in ("x86_64", "amd64") else []


def build(cpu_only: bool = False) -> int:
    import tensorflow as tf

    compile_flags = tf.sysconfig.get_compile_flags()
    link_flags = tf.sysconfig.get_link_flags()
    common = ["-shared", "-fPIC", "-O3", "-Wno-deprecated-declarations", *X86_FLAGS, *compile_flags]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        built = None
        nvcc = shutil.which("nvcc") or (CUDA_HOME / "bin" / "nvcc")
        if not cpu_only and Path(nvcc).exists():
            print(f"building the CPU and CUDA kernels (nvcc: {nvcc})")
            gpu_object = scratch / "corner_pool_gpu.o"
            steps = [
                [str(nvcc), "-std=c++17", "-c", "-DGOOGLE_CUDA=1", "-x", "cu",
                 "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", "-O3",
                 str(SOURCE / "corner_pool_gpu.cu"), "-o", str(gpu_object)],
                ["g++", *common, "-DGOOGLE_CUDA=1", f"-I{CUDA_HOME / 'include'}",
                 *CPU_SOURCES, str(gpu_object), "-o", str(scratch / "gpu.so"),
                 *link_flags, f"-L{CUDA_HOME / 'lib64'}", "-lcudart"],
            ]  # fmt: skip
            for step in steps:
                done = run(step)
                if done.returncode:
                    print(f"the CUDA build failed, CPU kernels only:\n{done.stderr[-2000:]}")
                    break
            else:
                built = scratch / "gpu.so"
        if built is None:
            print("building the CPU kernels")
            done = run(["g++", *common, *CPU_SOURCES, "-o",
                        str(scratch / "cpu.so"), *link_flags])  # fmt: skip
            if done.returncode:
                print(f"error: the CPU build failed:\n{done.stderr[-4000:]}", file=sys.stderr)
                return 1
            built = scratch / "cpu.so"
        shutil.copyfile(built, TARGET)
    TARGET.with_name(TARGET.name + ".tf-version").write_text(tf.__version__)
    print(f"wrote {TARGET} (TensorFlow {tf.__version__})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA kernels")
    sys.exit(build(parser.parse_args().cpu_only))
