"""Write the CornerNet-Lite checkpoint fixtures used by tests/test_squeeze.py and test_saccade.py.

Run by hand, from any directory, with a Python that has torch (never by the tests):

    /tmp/torchvenv/bin/python tests/data/make_lite_checkpoint_fixtures.py

A micro CornerNet-Squeeze (the layout of `micro_squeeze_manifest.json`: CornerNet-Lite's key names
`hg.pre`, `hg.hgs`, `tl_modules`, `tl_offs`, ..., a depthwise (C, 1, 3, 3) kernel in every fire
module, a (in, out, 4, 4) transposed convolution per level; 62,684 floats) with the weights of
make_lite_weights.py (seed 3), saved as the official trainer saves CornerNet_Squeeze_500000.pkl:
  lite_legacy.pkl   legacy torch.save of an OrderedDict, keys prefixed "module.", float storages
                    pickled as torch.cuda.FloatStorage at "cuda:0";
  lite_zip.pt       the same dict in the zip format of newer torch (locations "cuda:0"), with
                    num_batches_tracked entries.
  saccade_legacy.pkl  a micro CornerNet-Saccade (`micro_saccade_manifest.json`: 2 stacks, depth 2,
                    attention heads `att_modules.<stack>.<level>`), seed 3, as lite_legacy.pkl.
"""

import json
import sys
from collections import OrderedDict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_checkpoint_fixtures import cuda_tagger, legacy_bytes  # noqa: E402
from make_lite_weights import make_lite_weights  # noqa: E402

SEED = 3


def main() -> None:
    torch.serialization.register_package(-1, cuda_tagger, lambda storage, location: None)
    manifest = json.loads((HERE / "micro_squeeze_manifest.json").read_text())
    weights = make_lite_weights(manifest, SEED)
    sd = OrderedDict(("module." + k, torch.from_numpy(v.copy())) for k, v in weights.items())
    (HERE / "lite_legacy.pkl").write_bytes(legacy_bytes(sd))
    with_nbt = OrderedDict(sd)
    for key in [k for k in sd if k.endswith("running_var")]:
        with_nbt[key.replace("running_var", "num_batches_tracked")] = torch.tensor(5)
    torch.save(with_nbt, HERE / "lite_zip.pt")
    manifest = json.loads((HERE / "micro_saccade_manifest.json").read_text())
    weights = make_lite_weights(manifest, SEED)
    saccade = OrderedDict(("module." + k, torch.from_numpy(v.copy())) for k, v in weights.items())
    (HERE / "saccade_legacy.pkl").write_bytes(legacy_bytes(saccade))
    written = (("lite_legacy.pkl", sd), ("lite_zip.pt", with_nbt), ("saccade_legacy.pkl", saccade))
    for name, expected in written:
        loaded = torch.load(HERE / name, map_location="cpu", weights_only=False)
        assert list(loaded) == list(expected), name
        assert all(torch.equal(loaded[k], v) for k, v in expected.items()), name
    print("wrote", *(HERE / name for name, _ in written))


if __name__ == "__main__":
    main()
