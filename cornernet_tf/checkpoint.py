"""Read a PyTorch state_dict checkpoint into numpy arrays without importing torch.

Supported inputs:

* the legacy (non-zip) ``torch.save`` format written by PyTorch <= 1.5 (and by
  ``_use_new_zipfile_serialization=False`` today), e.g. the official ``CornerNet_500000.pkl``;
* the zip ``torch.save`` format of newer PyTorch (``<name>/data.pkl`` + ``<name>/data/<key>``);
* a ``.npz`` archive holding the same keys.

Pickles are read with a restricted unpickler: only ``collections.OrderedDict``, the tensor and
parameter rebuild functions, storage types and dtype names are allowed, each resolved to an
inert stand-in defined here. Any other global makes :func:`read_checkpoint` raise
:class:`CheckpointError`, so a checkpoint can never run code.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["CheckpointError", "read_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Element types by the names torch uses; "bfloat16" is read as uint16 and widened to float32.
_NUMPY_TYPES: dict[str, str] = {
    "float32": "float32",
    "float64": "float64",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64",
    "int32": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "bool",
    "complex64": "complex64",
    "complex128": "complex128",
}
_STORAGE_TYPES: dict[str, str] = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}
_DTYPE_ALIASES: dict[str, str] = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    **{name: name for name in _NUMPY_TYPES},
}


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, of an unknown format, or not a plain state_dict."""


class _Inert:
    """Base of the stand-ins handed to the pickle: a pickle cannot change their state."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError(f"refused to change {self!r:.80}")

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(f"refused to set the state of {self!r:.80}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class _DType(_Inert):
    """Stand-in for a torch storage type or ``torch.<dtype>``; ``value``: a key of _NUMPY_TYPES."""

    __slots__ = ()


class _Func(_Inert):
    """Stand-in for an allowed torch function; calling it calls ``value``."""

    __slots__ = ()

    def __call__(self, *args: Any) -> Any:
        return self.value(*args)


@dataclass
class _Storage:
    """A storage declared by a persistent id; ``data`` is filled in once its bytes are read."""

    dtype: _DType
    numel: int
    data: np.ndarray | None = None
    base: _Storage | None = None  # legacy storage views: a slice of ``base`` from ``offset``
    offset: int = 0

    def array(self) -> np.ndarray:
        """Return the storage's elements as a 1-D array (float32 for bfloat16)."""
        if self.base is not None:
            return self.base.array()[self.offset : self.offset + self.numel]
        if self.data is None:
            raise CheckpointError("storage data missing")
        return self.data


@dataclass
class _TensorRef:
    """A tensor as described by the pickle: a strided view of a storage, built lazily."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        """Return a fresh, contiguous numpy copy of the tensor."""
        flat = self.storage.array()
        size, stride = tuple(int(s) for s in self.size), tuple(int(s) for s in self.stride)
        if len(size) != len(stride) or min(size + stride + (self.offset,), default=0) < 0:
            raise CheckpointError(f"bad tensor geometry size={size} stride={stride}")
        if 0 in size:
            return np.empty(size, flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= flat.size:
            raise CheckpointError(f"tensor reaches element {last} of a {flat.size}-element storage")
        strides = tuple(s * flat.itemsize for s in stride)
        return as_strided(flat[self.offset :], size, strides, writeable=False).copy()


def _rebuild_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor`` and ``_rebuild_tensor_v2``."""
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"tensor built from {type(storage).__name__}, not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is just its tensor."""
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _Func(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Func(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Func(_rebuild_parameter),
    **{
        (mod, name): _DType(t)
        for name, t in _STORAGE_TYPES.items()
        for mod in ("torch", "torch.cuda", "torch.storage")
    },
    **{("torch", name): _DType(t) for name, t in _DTYPE_ALIASES.items()},
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and torch storage persistent ids."""

    def __init__(self, f: BinaryIO, load_storage: Callable[[tuple], _Storage]):
        super().__init__(f)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"refused global '{module}.{name}': the file is not a plain "
                "state_dict and was refused because loading it could run code"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], _DType)
        ):
            raise CheckpointError(f"unsupported persistent id {pid!r:.100}")
        return self._load_storage(pid)


def _element_type(dtype: _DType) -> np.dtype:
    """Return the numpy type in which a storage of ``dtype`` is stored on disk."""
    if dtype.value not in _NUMPY_TYPES:
        raise CheckpointError(f"unsupported element type {dtype.value!r:.40}")
    return np.dtype("uint16" if dtype.value == "bfloat16" else dtype.value)


def _decode(raw: bytes | bytearray, dtype: _DType, count: int, big_endian: bool) -> np.ndarray:
    """Return ``count`` elements of ``raw`` as a 1-D array in native order (bfloat16 -> float32)."""
    etype = _element_type(dtype)
    if len(raw) < count * etype.itemsize:
        raise CheckpointError(
            f"storage data is {len(raw)} bytes, {count * etype.itemsize} "
            "expected (file truncated or corrupt)"
        )
    arr = np.frombuffer(raw, etype.newbyteorder(">" if big_endian else "<"), count)
    if dtype.value == "bfloat16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(etype, copy=False)


def _read_legacy(f: BinaryIO) -> Any:
    """Read the legacy format from ``f``; return the top-level object (tensors still lazy)."""
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        _, dtype, root_key, _location, numel = pid[:5]
        root = storages.setdefault(root_key, _Storage(dtype, int(numel)))
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return root
        view_key, offset, view_size = view
        view_storage = _Storage(dtype, int(view_size), None, root, int(offset))
        return storages.setdefault(view_key, view_storage)

    def unpickle() -> Any:
        return _SafeUnpickler(f, load_storage).load()

    if unpickle() != _LEGACY_MAGIC:
        raise CheckpointError("not a torch checkpoint (bad magic number)")
    if unpickle() != _LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy torch protocol version")
    sys_info = unpickle()
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    result = unpickle()
    for key in unpickle():
        storage = storages.get(key)
        if storage is None or storage.base is not None:
            raise CheckpointError(f"unknown storage key {key!r}")
        count = int.from_bytes(f.read(8), "big" if big_endian else "little")
        if count != storage.numel:
            raise CheckpointError(
                f"storage {key} has {count} elements, expected "
                f"{storage.numel} (file truncated or corrupt)"
            )
        raw = f.read(count * _element_type(storage.dtype).itemsize)
        storage.data = _decode(raw, storage.dtype, count, big_endian)
    return result


def _read_zip(zf: zipfile.ZipFile, pkl_name: str) -> Any:
    """Read the zip torch format from ``zf``; return the top-level object (tensors still lazy)."""
    prefix = pkl_name[: -len("data.pkl")]
    names = set(zf.namelist())
    big_endian = prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() == b"big"
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        _, dtype, key, _location, numel = pid[:5]
        if key not in storages:
            raw = zf.read(f"{prefix}data/{key}")
            storages[key] = _Storage(dtype, int(numel), _decode(raw, dtype, int(numel), big_endian))
        return storages[key]

    with zf.open(pkl_name) as f:
        return _SafeUnpickler(f, load_storage).load()


def _to_state_dict(obj: Any) -> dict[str, np.ndarray]:
    """Check that ``obj`` is a dict of tensors; return it as ``{key: np.ndarray}``."""
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"top-level object is a {type(obj).__name__}, not a state_dict (a dict of tensors)"
        )
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, _TensorRef):
            raise CheckpointError(
                f"entry {key!r:.80} is a {type(value).__name__}, "
                "not a tensor; the file is not a plain state_dict"
            )
        try:
            out[key] = value.to_numpy()
        except CheckpointError as e:
            raise CheckpointError(f"tensor {key!r}: {e}") from None
    return out


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a PyTorch state_dict (legacy or zip ``torch.save`` format) or a ``.npz`` file.

    Returns an ordinary ``dict`` mapping each key, exactly as stored and in file order, to a
    C-contiguous numpy array (float32/float64/float16/int64/int32/int16/int8/uint8/bool;
    bfloat16 is widened to float32). Never runs code from the file; raises
    :class:`CheckpointError` for a missing, truncated, unknown or non-state_dict file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head.startswith(b"PK"):
                return _read_zip_file(f, path)
            if head[:1] == b"\x80":
                return _to_state_dict(_read_legacy(f))
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read file: {e}") from None
    except Exception as e:  # noqa: BLE001  (pickle/zipfile/numpy errors from damaged data)
        raise CheckpointError(
            f"{path}: file is truncated or corrupt ({type(e).__name__}: {e})"
        ) from None
    what = "empty file" if not head else "unknown format (not a torch checkpoint or .npz)"
    raise CheckpointError(f"{path}: {what}")


def _read_zip_file(f: BinaryIO, path: str) -> dict[str, np.ndarray]:
    """Read a zip archive: a zip-format torch checkpoint or an ``.npz``."""
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if pkl:
            return _to_state_dict(_read_zip(zf, pkl[0]))
        if not names or not all(n.endswith(".npy") for n in names):
            raise CheckpointError("zip archive is neither a torch checkpoint nor .npz")
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}
