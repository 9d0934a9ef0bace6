"""Tests for cornernet_tf.checkpoint (fixtures: tests/data/make_checkpoint_fixtures.py)."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cornernet_tf.checkpoint import CheckpointError, read_checkpoint
from tests.helpers import pickle_call as _call
from tests.helpers import pickle_value as _ops

DATA = Path(__file__).resolve().parent / "data"
MARKER = Path("/tmp/pwned_marker")


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(DATA / "ckpt_expected.npz") as npz:
        return {k: npz[k] for k in npz.files}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert type(got) is dict
    assert list(got) == list(want)
    for key, value in want.items():
        assert isinstance(got[key], np.ndarray), key
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert got[key].flags.c_contiguous, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("name", ["ckpt_legacy.pkl", "ckpt_zip.pt"])
def test_reads_torch_formats(name: str, expected: dict[str, np.ndarray]) -> None:
    got = read_checkpoint(DATA / name)
    assert_same(got, expected)
    assert all(k.startswith("module.") for k in got)
    assert got["module.scale"].shape == ()
    assert got["module.fc.weight_t"].shape == (5, 3)
    assert got["module.bf16"].dtype == np.float32


def test_legacy_fixture_looks_like_official_file() -> None:
    data = (DATA / "ckpt_legacy.pkl").read_bytes()
    assert b"torch.cuda\nFloatStorage" in data and b"cuda:0" in data


def test_shared_storage_views_are_independent_copies(expected: dict[str, np.ndarray]) -> None:
    got = read_checkpoint(DATA / "ckpt_legacy.pkl")
    a, b = got["module.shared.a"], got["module.shared.b"]
    assert a[3] == b[0, 0]  # both views see element 5 of the shared storage
    a[3] = 123.0
    assert b[0, 0] == expected["module.shared.b"][0, 0]


def test_npz_round_trip(tmp_path: Path, expected: dict[str, np.ndarray]) -> None:
    path = tmp_path / "weights.npz"
    np.savez(path, **expected)
    assert_same(read_checkpoint(path), expected)
    assert_same(read_checkpoint(str(DATA / "ckpt_expected.npz")), expected)


@pytest.mark.parametrize("name", ["ckpt_malicious.pkl", "ckpt_malicious_zip.pt"])
def test_malicious_files_are_refused(name: str) -> None:
    if MARKER.exists():
        MARKER.unlink()
    path = DATA / name
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "os.system" in message or "posix.system" in message
    assert "could run code" in message
    assert not MARKER.exists()


@pytest.mark.parametrize(
    "module,name",
    [
        ("builtins", "eval"),
        ("__builtin__", "exec"),
        ("subprocess", "Popen"),
        ("torch.storage", "_load_from_bytes"),
        ("torch", "load"),
        ("collections", "namedtuple"),
    ],
)
def test_any_other_global_is_refused(tmp_path: Path, module: str, name: str) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"(S'1'\ntR.")
    with pytest.raises(CheckpointError, match=rf"refused global '{module}\.{name}'"):
        read_checkpoint(path)


def test_truncated_file(tmp_path: Path) -> None:
    data = (DATA / "ckpt_legacy.pkl").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 3):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated") as info:
            read_checkpoint(path)
        assert str(path) in str(info.value)


def test_truncated_zip(tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    path.write_bytes((DATA / "ckpt_zip.pt").read_bytes()[:2000])
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(0).bytes(4096).replace(b"\x80", b"\x00"))
    with pytest.raises(CheckpointError, match="unknown format") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)
    path.write_bytes(b"\x80" + np.random.default_rng(1).bytes(4096))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pkl"
    with pytest.raises(CheckpointError, match="no such file") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("obj", [[1, 2], {"epoch": 3}, {1: 2}])
def test_not_a_state_dict(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as f:
        for part in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, obj, []):
            pickle.dump(part, f, protocol=2)
    with pytest.raises(CheckpointError, match="not a") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def _storage(key: str, numel: int, view: bytes = b"N") -> bytes:
    return (
        b"("
        + _ops("storage")
        + b"ctorch.cuda\nFloatStorage\n"
        + _ops(key)
        + _ops("cuda:0")
        + _ops(numel)
        + view
        + b"tQ"
    )


def _legacy_file(path: Path, entries: list[tuple[str, bytes]], root: np.ndarray) -> None:
    """Write a legacy torch file by hand (as torch 0.4 did, with storage views) over one root."""
    main = b"\x80\x02" + _call("collections", "OrderedDict") + b"("
    main += b"".join(_ops(k) + v for k, v in entries) + b"u."
    with open(path, "wb") as f:
        for part in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(part, f, protocol=2)
        f.write(main)
        pickle.dump(["root"], f, protocol=2)
        f.write(np.int64(root.size).tobytes() + root.astype("<f4").tobytes())


def test_hand_made_legacy_views_and_old_rebuilds(tmp_path: Path) -> None:
    root = np.arange(10, dtype=np.float32) * 1.5
    view = _storage("root", 10, b"(" + _ops("v1") + _ops(2) + _ops(5) + b"t")
    hooks = _call("collections", "OrderedDict")
    whole = _call(
        "torch._utils",
        "_rebuild_tensor_v2",
        _storage("root", 10),
        _ops(0),
        _ops((10,)),
        _ops((1,)),
        _ops(False),
        hooks,
    )
    entries = [
        ("param", _call("torch._utils", "_rebuild_parameter", whole, _ops(True), hooks)),
        (
            "old",
            _call("torch._utils", "_rebuild_tensor", view, _ops(1), _ops((2, 2)), _ops((1, 2))),
        ),
        (
            "scalar",
            _call(
                "torch._utils",
                "_rebuild_tensor_v2",
                view,
                _ops(4),
                _ops(()),
                _ops(()),
                _ops(False),
                hooks,
            ),
        ),
    ]
    path = tmp_path / "hand.pkl"
    _legacy_file(path, entries, root)
    got = read_checkpoint(path)
    assert list(got) == ["param", "old", "scalar"]
    np.testing.assert_array_equal(got["param"], root)
    np.testing.assert_array_equal(got["old"], root[2:7][1:].reshape(2, 2, order="F"))
    assert got["scalar"].shape == () and got["scalar"] == root[6]


def test_tensor_outside_its_storage_is_refused(tmp_path: Path) -> None:
    bad = _call(
        "torch._utils", "_rebuild_tensor", _storage("root", 10), _ops(3), _ops((4,)), _ops((3,))
    )
    path = tmp_path / "bad.pkl"
    _legacy_file(path, [("w", bad)], np.zeros(10, np.float32))
    with pytest.raises(CheckpointError, match="'w'.*reaches element 12"):
        read_checkpoint(path)


@pytest.mark.parametrize("target", [b"ctorch\nFloatStorage\n", b"ctorch._utils\n_rebuild_tensor\n"])
@pytest.mark.parametrize("state", [{"value": "int64"}, (None, {"value": "int64"})])
def test_pickle_cannot_alter_allowed_globals(tmp_path: Path, target: bytes, state: object) -> None:
    path = tmp_path / "build.pkl"
    path.write_bytes(b"\x80\x02" + target + _ops(state) + b"b.")  # BUILD on the stand-in
    with pytest.raises(CheckpointError, match="refused to set the state"):
        read_checkpoint(path)
    assert read_checkpoint(DATA / "ckpt_legacy.pkl")["module.conv.bias"].dtype == np.float32


def test_error_is_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)
    assert os.fspath(DATA)  # paths may be str or PathLike
