"""Writes the corner-pool fixtures (tests/data/pools_public.npz, NCHW) as raw NHWC float32 files
for cuda_harness.cu (NumPy only, for a GPU machine without TensorFlow).

    python write_fixture.py tests/data/pools_public.npz OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np

source, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
with np.load(source) as data:
    for key in data.files:
        np.ascontiguousarray(np.transpose(data[key], (0, 2, 3, 1)), np.float32).tofile(
            out / f"{key}.bin"
        )
    n, c, h, w = data["x_ties"].shape
(out / "shape.txt").write_text(f"{n} {h} {w} {c}\n")
print(f"wrote {len(list(out.glob('*.bin')))} arrays to {out}")
