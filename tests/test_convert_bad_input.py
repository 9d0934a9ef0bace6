"""Malformed, truncated and hostile checkpoints: `read_checkpoint` (and so `cornernet-convert`)
checks every declared size against the bytes in the file before allocating, and says which file
and which tensor is wrong. Each file is a few hundred bytes, made here by hand."""

import io
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cornernet_tf.checkpoint import CheckpointError, read_checkpoint
from tests.helpers import DATA, ROOT, run_script
from tests.helpers import pickle_call as _call
from tests.helpers import pickle_value as _ops

LEGACY_HEAD = (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})


def _storage(key: str, numel: object, view: bytes = b"N") -> bytes:
    """A legacy persistent id: ('storage', FloatStorage, key, 'cpu', numel, view)."""
    return (
        b"(" + _ops("storage") + b"ctorch\nFloatStorage\n" + _ops(key) + _ops("cpu")
        + _ops(numel) + view + b"tQ"
    )  # fmt: skip


def _tensor(storage: bytes, size: object, stride: object, offset: object = 0) -> bytes:
    return _call(
        "torch._utils", "_rebuild_tensor_v2", storage, _ops(offset), _ops(size), _ops(stride),
        _ops(False), _call("collections", "OrderedDict"),
    )  # fmt: skip


def _state_dict(entries: dict[str, bytes]) -> bytes:
    body = b"".join(_ops(k) + v for k, v in entries.items())
    return b"\x80\x02" + _call("collections", "OrderedDict") + b"(" + body + b"u."


def _legacy(path: Path, entries, keys=("0",), count=None, data=b"", pad=0) -> Path:
    """A legacy torch.save file: the header pickles (`pad` bytes more in the system info), the
    state_dict, the storage keys, then one storage's element count and `data`."""
    with open(path, "wb") as f:
        for part in LEGACY_HEAD[:2] + ({**LEGACY_HEAD[2], "pad": "x" * pad},):
            pickle.dump(part, f, protocol=2)
        f.write(_state_dict(entries))
        pickle.dump(list(keys), f, protocol=2)
        if count is not None:
            f.write(struct.pack("<q", count) + data)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _refused(path: Path, *fragments: str) -> str:
    """read_checkpoint(path) raises a one-line CheckpointError naming the file and `fragments`,
    without allocating more than a few MiB on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message, message
    assert peak < 16 * 2**20, f"{peak} bytes allocated for {message}"
    return message


BIG = _tensor(_storage("0", 60000 * 60000), (60000, 60000), (60000, 1))


def test_a_storage_larger_than_the_file_is_refused_before_reading_it(tmp_path):
    path = _legacy(tmp_path / "X.pkl", {"kps.0.conv.weight": BIG}, count=60000 * 60000)
    size = path.stat().st_size
    assert size < 400
    _refused(
        path,
        "tensor 'kps.0.conv.weight' declares 13.4 GiB (shape (60000, 60000), float32)",
        f"but the file holds {size} bytes",
    )


def test_the_big_declaration_is_refused_under_a_small_memory_limit(tmp_path):
    """The same 13.4 GiB declaration in a process that cannot map more than 3 GiB."""
    path = _legacy(tmp_path / "X.pkl", {"kps.0.conv.weight": BIG}, count=60000 * 60000)
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))\n"
        "import importlib.util\n"  # checkpoint.py alone: numpy, no TensorFlow
        "spec = importlib.util.spec_from_file_location('ckpt', sys.argv[2])\n"
        "ckpt = sys.modules['ckpt'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(ckpt)\n"
        "CheckpointError, read_checkpoint = ckpt.CheckpointError, ckpt.read_checkpoint\n"
        "try:\n    read_checkpoint(sys.argv[1])\n"
        "except CheckpointError as e:\n    print(e)\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), str(ROOT / "cornernet_tf/checkpoint.py")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert "declares 13.4 GiB" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(
    "size, stride, fragments",
    [
        ((100000, 100000), (0, 0), ["declares 37.3 GiB (shape (100000, 100000), float32)"]),
        ((2**62, 2**62, 2**62), (1, 1, 1), ["declares", "shape (4611686018427387904,"]),
        ((0, 2**70), (1, 1), ["dimension of 1180591620717411303424"]),
        ((1,) * 65, (1,) * 65, ["bad tensor geometry"]),
        ((-4,), (1,), ["bad tensor geometry", "size=(-4,)"]),
        ((4,), (-1,), ["bad tensor geometry", "stride=(-1,)"]),
        (("4",), (1,), ["bad tensor geometry", "size=('4',)"]),
        ((4, 4), (1,), ["bad tensor geometry"]),
        ((4,), (3,), ["reaches element 9 of a 4-element storage"]),
    ],
)
def test_hostile_tensor_geometry_is_refused(tmp_path, size, stride, fragments):
    entry = _tensor(_storage("0", 4), size, stride)
    data = np.zeros(4, "<f4").tobytes()
    path = _legacy(tmp_path / "geo.pkl", {"w": entry}, count=4, data=data)
    _refused(path, "tensor 'w'", *fragments)


def test_a_negative_offset_is_refused(tmp_path):
    entry = _tensor(_storage("0", 4), (2,), (1,), offset=-1)
    path = _legacy(tmp_path / "off.pkl", {"w": entry}, count=4, data=bytes(16))
    _refused(path, "tensor 'w'", "bad tensor geometry")


@pytest.mark.parametrize("numel", [-5, "many", 2**70])
def test_a_storage_of_a_bad_element_count_is_refused(tmp_path, numel):
    entry = _tensor(_storage("0", numel), (1,), (1,))
    path = _legacy(tmp_path / "numel.pkl", {"w": entry}, count=4, data=bytes(16))
    _refused(path, "tensor 'w'", "storage")


def test_a_storage_view_outside_its_storage_is_refused(tmp_path):
    view = b"(" + _ops("v") + _ops(2) + _ops(10**9) + b"t"
    entry = _tensor(_storage("0", 4, view), (1,), (1,))
    path = _legacy(tmp_path / "view.pkl", {"w": entry}, count=4, data=bytes(16))
    _refused(path, "tensor 'w'", "view")


def test_a_storage_missing_from_the_file_is_named(tmp_path):
    entry = _tensor(_storage("0", 4), (4,), (1,))
    path = _legacy(tmp_path / "nostorage.pkl", {"w": entry}, keys=())
    _refused(path, "tensor 'w'", "storage '0'", "not in the file")


def test_storage_bytes_cut_short_are_refused(tmp_path):
    entry = _tensor(_storage("0", 1000), (1000,), (1,))
    path = _legacy(tmp_path / "short.pkl", {"w": entry}, count=1000, data=bytes(40), pad=5000)
    _refused(path, "storage '0'", "4000 bytes", "truncated")


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x96"])  # BINBYTES8, BYTEARRAY8
def test_a_pickled_value_longer_than_the_file_is_refused(tmp_path, opcode):
    path = tmp_path / "bytes8.pkl"
    path.write_bytes(b"\x80\x05" + opcode + struct.pack("<Q", 13 * 2**30) + b"abc.")
    _refused(path, "truncated or corrupt")


def test_a_long_string_length_is_refused(tmp_path):
    path = tmp_path / "str.pkl"
    path.write_bytes(b"\x80\x04\x8d" + struct.pack("<Q", 2**40) + b"abc.")  # BINUNICODE8
    _refused(path, "truncated or corrupt")


def _torch_zip(path: Path, entries: dict[str, bytes], storages: dict[str, bytes]) -> Path:
    members = {"archive/data.pkl": _state_dict(entries), "archive/version": b"3\n"}
    members.update({f"archive/data/{k}": v for k, v in storages.items()})
    return _zip(path, members)


def test_zip_storage_missing_is_named(tmp_path):
    entry = _tensor(_storage("0", 4), (4,), (1,))
    path = _torch_zip(tmp_path / "missing.pt", {"conv.weight": entry}, {})
    _refused(path, "tensor 'conv.weight'", "archive/data/0", "missing")


def test_zip_storage_larger_than_the_file_is_refused(tmp_path):
    path = _torch_zip(tmp_path / "big.pt", {"kps.0.conv.weight": BIG}, {"0": bytes(16)})
    _refused(path, "tensor 'kps.0.conv.weight' declares 13.4 GiB", "but the file holds")


def test_zip_storage_shorter_than_declared_is_refused(tmp_path):
    entry = _tensor(_storage("0", 64), (64,), (1,))
    path = _torch_zip(tmp_path / "short.pt", {"w": entry}, {"0": bytes(16)})
    _refused(path, "tensor 'w'", "16 bytes", "256 expected")


def test_zip_entry_that_claims_more_bytes_than_the_file_is_refused(tmp_path):
    entry = _tensor(_storage("0", 4), (4,), (1,))
    path = _torch_zip(tmp_path / "lying.pt", {"w": entry}, {"0": bytes(16)})
    data = bytearray(path.read_bytes())
    # the central directory entry of archive/data/0: compressed and uncompressed size -> 2^31
    header = data.rindex(b"archive/data/0") - 46
    assert data[header : header + 4] == b"PK\x01\x02"
    struct.pack_into("<II", data, header + 20, 2**31, 2**31)
    path.write_bytes(bytes(data))
    _refused(path, "archive/data/0", "but the file holds")


def test_npz_header_larger_than_the_file_is_refused(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": (60000, 60000)}
    )
    path = _zip(tmp_path / "X.npz", {"kps.0.conv.weight.npy": buffer.getvalue() + bytes(16)})
    _refused(path, "tensor 'kps.0.conv.weight' declares 13.4 GiB (shape (60000, 60000), float32)")


def test_empty_file_directory_text_and_missing_file(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    _refused(tmp_path / "empty.pkl", "empty file")
    (tmp_path / "folder.pkl").mkdir()
    _refused(tmp_path / "folder.pkl", "is a directory")
    (tmp_path / "text.pkl").write_text("model: tiny\n")
    _refused(tmp_path / "text.pkl", "unknown format")
    _refused(tmp_path / "nope.pkl", "no such file")
    _refused(_zip(tmp_path / "other.zip", {"readme.txt": b"hello"}), "neither a torch")


def test_good_fixtures_still_read():
    for name in ("ckpt_legacy.pkl", "ckpt_zip.pt", "lite_legacy.pkl", "lite_zip.pt"):
        assert read_checkpoint(DATA / name)
    with np.load(DATA / "ckpt_expected.npz") as npz:
        want = {k: npz[k] for k in npz.files}
    got = read_checkpoint(DATA / "ckpt_expected.npz")
    assert list(got) == list(want)


def test_convert_command_prints_one_line_and_exits_2(tmp_path, capsys):
    path = _legacy(tmp_path / "X.pkl", {"kps.0.conv.weight": BIG}, count=60000 * 60000)
    output = tmp_path / "out.weights.h5"
    assert run_script("convert_weights", str(path), str(output), "--config", "tiny") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: tensor 'kps.0.conv.weight' declares 13.4 GiB"), err
    assert "\n" not in err and not output.exists()


def test_convert_command_refuses_an_output_it_cannot_write(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    output = blocker / "out.weights.h5"
    code = run_script(
        "convert_weights", str(DATA / "ckpt_legacy.pkl"), str(output), "--config", "tiny"
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {output}:") and "\n" not in err, err
