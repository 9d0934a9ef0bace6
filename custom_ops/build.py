#!/usr/bin/env python3
"""Builds the compiled ops into cornernet_tf/ops/_custom_ops.so (`make ops`): corner pooling and
the Winograd convolution transforms.

    python custom_ops/build.py [--cpu-only]

The C++ CPU kernels always, with the compile and link flags of the installed TensorFlow
(tf.sysconfig: -std=c++17, -D_GLIBCXX_USE_CXX11_ABI=1, ...), -fPIC -O3 and, on x86-64, the
instruction sets of this machine's CPU that the kernels use (`isa_flags`). When nvcc exists, the
CUDA kernels too (nvcc -DGOOGLE_CUDA=1 -x cu --expt-relaxed-constexpr); if that part fails to
build, the CPU-only library is kept and the reason printed. A sidecar file records the
TensorFlow version the library was built for and the CPU flags it needs; the package refuses a
library built for another version or a CPU without those flags.
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


def isa_flags(cpu: set[str] | None) -> tuple[list[str], list[str]]:
    """(compiler flags, the /proc/cpuinfo flags they need) for a CPU with the flags `cpu`:
    on x86-64 -mavx, which TensorFlow's wheels need themselves, and -mavx2 where the CPU has it
    (the bfloat16 Winograd transforms run 1.5-2x faster with it: docs/performance.md). The
    library is built on the machine that runs it (`make ops`)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return [], []
    needed = ["avx", "avx2"] if "avx2" in (cpu or ()) else ["avx"]
    return [f"-m{name}" for name in needed], needed


def cpu_flags() -> set[str] | None:
    """The flags of /proc/cpuinfo, or None where there is no such file. The same reading as
    `cornernet_tf.ops.custom.cpu_flags`, which checks them when loading: this script runs before
    the package is installed (`CORNERNET_BUILD_OPS=1 pip install`), so it cannot import it."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def build(cpu_only: bool = False) -> int:
    import tensorflow as tf

    compile_flags = tf.sysconfig.get_compile_flags()
    link_flags = tf.sysconfig.get_link_flags()
    compile_isa, needed = isa_flags(cpu_flags())
    common = ["-shared", "-fPIC", "-O3", "-Wno-deprecated-declarations", *compile_isa]
    common += compile_flags
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
    # line 1: the TensorFlow version; line 2: the CPU flags the kernels need
    sidecar = TARGET.with_name(TARGET.name + ".tf-version")
    sidecar.write_text(f"{tf.__version__}\n{' '.join(needed)}\n")
    print(f"wrote {TARGET} (TensorFlow {tf.__version__})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA kernels")
    sys.exit(build(parser.parse_args().cpu_only))
