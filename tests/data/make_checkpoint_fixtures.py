"""Write the small checkpoint fixtures used by tests/test_checkpoint.py.

Run by hand, from any directory, with a Python that has torch (never by the tests):

    /tmp/torchvenv/bin/python tests/data/make_checkpoint_fixtures.py

Writes into this file's directory:
  ckpt_legacy.pkl         legacy (non-zip) torch.save of an OrderedDict of tensors, keys prefixed
                          "module.", float storages pickled as torch.cuda.FloatStorage with
                          location "cuda:0" like the official CornerNet_500000.pkl (torch 0.4.0)
  ckpt_zip.pt             the same dict in the zip torch.save format (locations "cuda:0" too)
  ckpt_expected.npz       the expected numpy arrays, keys as stored
  ckpt_malicious.pkl      legacy-looking file whose main pickle calls os.system when unpickled
  ckpt_malicious_zip.pt   zip torch file whose data.pkl calls os.system when unpickled
"""

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
PAYLOAD = b"cos\nsystem\n(S'echo pwned > /tmp/pwned_marker'\ntR."  # protocol-0 os.system call


def make_state_dict() -> "OrderedDict[str, torch.Tensor]":
    """Return the fixture state_dict: mixed shapes, dtypes, strides, offsets, shared storage."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(10, generator=g)
    sd = OrderedDict()
    sd["module.conv.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    sd["module.conv.bias"] = torch.randn(4, generator=g)
    sd["module.bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    sd["module.scale"] = torch.tensor(1.5)
    sd["module.fc.weight_t"] = torch.randn(3, 5, generator=g).t()  # non-contiguous (5, 3)
    sd["module.shared.a"] = base[2:6]  # two views of one storage, offsets 2 and 5
    sd["module.shared.b"] = base[5:].view(1, 5)
    sd["module.index"] = torch.arange(-3, 3, dtype=torch.int64).view(2, 3)
    sd["module.half"] = torch.randn(3, generator=g).half()
    sd["module.double"] = torch.randn(2, 2, generator=g).double()
    sd["module.int32"] = torch.tensor([1, -2, 3], dtype=torch.int32)
    sd["module.uint8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["module.mask"] = torch.tensor([True, False, True])
    sd["module.bf16"] = torch.tensor([1.0, -2.5, 3.140625], dtype=torch.bfloat16)
    return sd


def expected_arrays(sd) -> "OrderedDict[str, np.ndarray]":
    """Return the numpy arrays the reader must produce (bfloat16 -> float32)."""
    return OrderedDict(
        (k, (v.float() if v.dtype == torch.bfloat16 else v).numpy().copy()) for k, v in sd.items()
    )


def cuda_tagger(storage):
    """Location tagger that claims every storage lives on cuda:0, like the official file."""
    return "cuda:0"


def legacy_bytes(sd) -> bytes:
    """Return sd saved in the legacy format, with FloatStorage renamed torch.cuda.FloatStorage."""
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    # torch 0.4 pickled CUDA float storages as GLOBAL 'torch.cuda FloatStorage'; modern torch
    # writes 'torch FloatStorage' plus the location. GLOBAL is newline-terminated and nothing
    # in the file records byte offsets, so renaming the module in place is safe.
    old, new = b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n"
    assert data.count(old) == 1, data.count(old)
    return data.replace(old, new)


def malicious_legacy_bytes() -> bytes:
    """Return a legacy-looking torch file whose main pickle calls os.system."""
    head = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (
            0x1950A86A20F9469CFC6C,
            1001,
            {
                "protocol_version": 1001,
                "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8},
            },
        )
    )
    return head + PAYLOAD + pickle.dumps([], protocol=2)


def malicious_zip_bytes() -> bytes:
    """Return a zip torch file whose data.pkl calls os.system."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("ckpt_malicious_zip/data.pkl", PAYLOAD)
        zf.writestr("ckpt_malicious_zip/byteorder", "little")
        zf.writestr("ckpt_malicious_zip/version", "3\n")
    return buf.getvalue()


def main() -> None:
    torch.serialization.register_package(-1, cuda_tagger, lambda storage, location: None)
    sd = make_state_dict()
    (HERE / "ckpt_legacy.pkl").write_bytes(legacy_bytes(sd))
    torch.save(sd, HERE / "ckpt_zip.pt")
    np.savez(HERE / "ckpt_expected.npz", **expected_arrays(sd))
    (HERE / "ckpt_malicious.pkl").write_bytes(malicious_legacy_bytes())
    (HERE / "ckpt_malicious_zip.pt").write_bytes(malicious_zip_bytes())
    for name in ("ckpt_legacy.pkl", "ckpt_zip.pt"):
        data = (HERE / name).read_bytes()
        if name.endswith(".pt"):
            with zipfile.ZipFile(HERE / name) as zf:
                data = zf.read("ckpt_zip/data.pkl")
        assert b"cuda:0" in data, name
        loaded = torch.load(HERE / name, map_location="cpu", weights_only=False)
        assert list(loaded) == list(sd), name
        for k, v in sd.items():
            assert torch.equal(loaded[k], v), (name, k)
    print("wrote fixtures to", HERE)


if __name__ == "__main__":
    main()
