#!/usr/bin/env python3
"""Times the OFFICIAL CornerNet-Saccade test procedure on this CPU; run by
`benchmark.py --saccade --official-lite-src DIR`.

Runs under a Python that has torch, opencv-python-headless, tqdm and Cython (never the project's
venv: torch is not a dependency):

    TORCH_PYTHON scripts/official_saccade_timing.py --official-src CornerNet-Lite/ \\
        --weights saccade.npz --images a.png b.png [--repeats 1] [--threads N]

The procedure is the checkout's `core/test/cornernet_saccade.py` `cornernet_saccade_inference`,
unchanged, with the network of `core/models/CornerNet_Saccade.py` holding --weights (an .npz of
the official state_dict, keys without `module.`) and the checkout's `configs/CornerNet_Saccade.json`
on top of `core/dbs/detection.py`'s defaults. To run it without a GPU:
  - `torch.cuda.FloatTensor` makes CPU tensors and `Tensor.cuda` returns the tensor itself;
  - the compiled corner pools are pure-torch pools with the same forward (official_timing.py);
  - `core.external.nms` is compiled from the checkout's nms.pyx into a temporary folder, with two
    spellings numpy 2 no longer has (`np.int_t`, `np.float`) replaced in its hard-NMS function,
    which this procedure does not call; `soft_nms` compiles as written;
  - the official NetworkFactory's `test` (no_grad, inputs to the device) is a 3-line stand-in.
Prints per image `IMAGE name seconds=... crops=... detections=...` (crops: the network's
inputs, both rounds) and `RESULT seconds_total=... images=...`: the faster of --repeats rounds
per image, after a warm-up image.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from official_timing import pure_torch_pools

COCO_MEAN = [0.40789654, 0.44719302, 0.47026115]  # core/dbs/coco.py, BGR
COCO_STD = [0.28863828, 0.27408164, 0.27809835]


def build_nms(source: Path, folder: Path):
    """The checkout's Cython soft-NMS, compiled in `folder`; returns the module."""
    import importlib

    import numpy
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    text = (
        source.read_text()
        .replace("np.int_t", "np.intp_t")
        .replace("np.float thresh", "float thresh")
    )
    (folder / "nms.pyx").write_text(text)
    extension = Extension(
        "nms",
        [str(folder / "nms.pyx")],
        include_dirs=[numpy.get_include()],
        extra_compile_args=["-Wno-cpp", "-Wno-unused-function"],
    )
    dist = Distribution({"ext_modules": cythonize([extension], quiet=True)})
    command = dist.get_command_obj("build_ext")
    command.build_lib, command.build_temp = str(folder), str(folder / "build")
    dist.run_command("build_ext")
    sys.path.insert(0, str(folder))
    return importlib.import_module("nms")


def run_on_cpu(torch) -> None:
    cpu_tensor = torch.FloatTensor

    class FloatTensor:  # torch.cuda.FloatTensor(...) -> a CPU tensor
        def __new__(cls, *args):
            return cpu_tensor(*args)

    torch.cuda.FloatTensor = FloatTensor
    torch.Tensor.cuda = lambda self, *args, **kwargs: self


class Network:
    """The official NetworkFactory.test on the CPU."""

    def __init__(self, torch, model):
        self.torch, self.model = torch, model

    def test(self, xs, **kwargs):
        with self.torch.no_grad():
            return self.model(*xs, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--official-src", required=True, help="a princeton-vl/CornerNet-Lite checkout"
    )
    parser.add_argument("--weights", required=True, help=".npz of the official state_dict")
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import cv2
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    source = Path(args.official_src).resolve()
    run_on_cpu(torch)
    sys.modules["core.models.py_utils._cpools"] = pure_torch_pools(
        torch, "core.models.py_utils._cpools"
    )
    with tempfile.TemporaryDirectory() as folder:
        sys.modules["core.external.nms"] = build_nms(source / "core/external/nms.pyx", Path(folder))
        sys.path.insert(0, str(source))
        from core.dbs.detection import DETECTION
        from core.models.CornerNet_Saccade import model as official_model
        from core.test.cornernet_saccade import cornernet_saccade_inference

    db = DETECTION(json.loads((source / "configs/CornerNet_Saccade.json").read_text())["db"])
    db._mean, db._std = np.array(COCO_MEAN, np.float32), np.array(COCO_STD, np.float32)
    model = official_model().eval()
    with np.load(args.weights) as weights:
        state = {key: torch.from_numpy(weights[key]) for key in weights.files}
    model.load_state_dict(state, strict=False)
    missing = set(model.state_dict()) - set(state)
    if any(not key.endswith("num_batches_tracked") for key in missing):
        raise SystemExit(f"{args.weights}: misses {sorted(missing)[:5]}")
    network = Network(torch, model)
    crops = []
    original = model.forward

    def counting(*xs, **kwargs):
        crops[-1] += xs[0].shape[0]
        return original(*xs, **kwargs)

    model.forward = counting

    images = [(Path(path).name, cv2.imread(path)) for path in args.images]
    crops.append(0)
    cornernet_saccade_inference(db, network, images[0][1])  # warm-up
    total = 0.0
    for name, image in images:
        times = []
        for _ in range(args.repeats):
            crops.append(0)
            start = time.perf_counter()
            boxes = cornernet_saccade_inference(db, network, image)
            times.append(time.perf_counter() - start)
        count = sum(len(b) for b in boxes.values())
        print(f"IMAGE {name} seconds={min(times):.4f} crops={crops[-1]} detections={count}")
        total += min(times)
    print(
        f"RESULT seconds_total={total:.4f} images={len(images)} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
