#!/usr/bin/env python3
"""Times the OFFICIAL PyTorch test path; run by `benchmark.py --official-src DIR`.

Runs under a Python that has torch (never the project's venv: torch is not a dependency):

    TORCH_PYTHON scripts/official_timing.py --official-src CornerNet/ [--size 511] [--repeats 3]
    TORCH_PYTHON scripts/official_timing.py --model squeeze --official-src CornerNet-Lite/

--model cornernet (the default): the official model is built by the official code
(`models/CornerNet.py` of a princeton-vl/CornerNet checkout) and timed as
`model(x, K=100, kernel=3, ae_threshold=0.5, num_dets=1000)`.
--model squeeze: CornerNet-Squeeze, built by `core/models/CornerNet_Squeeze.py` of a
princeton-vl/CornerNet-Lite checkout and timed as `model(x, test=True, K=20, kernel=3,
ae_threshold=0.5, num_dets=100)` (its configs/CornerNet_Squeeze.json test arguments).

Either model is the official code, unchanged (the checkout is only read), except that its
compiled corner-pool extension (`models.py_utils._cpools`, in Lite `core.models.py_utils._cpools`)
is replaced, in sys.modules, by pure-torch pools with the same forward (cummax). The time is the
last stack's heads plus the official `_decode`, batch 1, no_grad, eval mode, random weights.
Prints one line: `RESULT seconds_min=... seconds_median=... params=...`.
"""

import argparse
import statistics
import sys
import time
import types

# --model: (the pools' module name, the model's module, its test keyword arguments)
MODELS = {
    "cornernet": (
        "models.py_utils._cpools",
        "models.CornerNet",
        {"K": 100, "kernel": 3, "ae_threshold": 0.5, "num_dets": 1000},
    ),
    "squeeze": (
        "core.models.py_utils._cpools",
        "core.models.CornerNet_Squeeze",
        {"test": True, "K": 20, "kernel": 3, "ae_threshold": 0.5, "num_dets": 100},
    ),
}


def pure_torch_pools(torch, name: str = "models.py_utils._cpools"):
    def reverse_cummax(x, dim):
        return torch.flip(torch.cummax(torch.flip(x, [dim]), dim)[0], [dim])

    def pool(fn):
        return type(fn.__name__, (torch.nn.Module,), {"forward": lambda self, x: fn(x)})

    module = types.ModuleType(name)
    module.TopPool = pool(lambda x: reverse_cummax(x, 2))
    module.LeftPool = pool(lambda x: reverse_cummax(x, 3))
    module.BottomPool = pool(lambda x: torch.cummax(x, 2)[0])
    module.RightPool = pool(lambda x: torch.cummax(x, 3)[0])
    return module


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--official-src",
        required=True,
        help="princeton-vl/CornerNet checkout (--model squeeze: princeton-vl/CornerNet-Lite)",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="cornernet")
    parser.add_argument("--size", type=int, default=511)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import importlib

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pools_name, module_name, test_kwargs = MODELS[args.model]
    sys.modules[pools_name] = pure_torch_pools(torch, pools_name)
    sys.path.insert(0, args.official_src)
    official_model = importlib.import_module(module_name).model

    torch.manual_seed(0)
    net = (official_model() if args.model == "squeeze" else official_model(None)).eval()
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(1, 3, args.size, args.size)
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            net(x, **test_kwargs)
            times.append(time.perf_counter() - start)
    times = times[1:]
    print(
        f"RESULT seconds_min={min(times):.4f} seconds_median={statistics.median(times):.4f} "
        f"params={params} torch={torch.__version__} threads={torch.get_num_threads()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
