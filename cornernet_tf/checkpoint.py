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

Nothing is allocated on the word of the file alone: every length in a pickle, every storage's
element count, every tensor's shape, strides and offset, every zip entry's sizes and every .npy
header are checked against the bytes the file holds before anything of that size is read or
built, so a damaged or hostile file of a few hundred bytes cannot ask for gigabytes.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["CheckpointError", "read_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# the most bytes one deflated byte can stand for (zlib's limit is 1032:1)
_DEFLATE_RATIO = 1032

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
    numel: Any  # as the pickle declares it; checked by _storage_problem before any use
    key: Any = None
    data: np.ndarray | None = None
    base: _Storage | None = None  # legacy storage views: a slice of ``base`` from ``offset``
    offset: Any = 0
    load: Callable[[], np.ndarray] | None = None  # zip: reads the storage's entry

    def array(self) -> np.ndarray:
        """Return the storage's elements as a 1-D array (float32 for bfloat16)."""
        if self.base is not None:
            return self.base.array()[self.offset : self.offset + self.numel]
        if self.data is None and self.load is not None:
            self.data = self.load()
        if self.data is None:
            raise CheckpointError(
                f"storage {self.key!r:.40} is not in the file (file truncated or corrupt)"
            )
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
    """Stand-in for ``torch._utils._rebuild_tensor`` and ``_rebuild_tensor_v2``; the geometry
    is kept as declared and checked by :func:`_check_tensor`."""
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"tensor built from {type(storage).__name__}, not a storage")
    as_tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else v  # noqa: E731
    return _TensorRef(storage, storage_offset, as_tuple(size), as_tuple(stride))


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


def _read_legacy(f: BinaryIO, file_bytes: int) -> Any:
    """Read the legacy format from ``f``; return the top-level object (tensors still lazy)."""
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        _, dtype, root_key, _location, numel = pid[:5]
        root = storages.setdefault(root_key, _Storage(dtype, numel, root_key))
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise CheckpointError(f"storage {root_key!r:.40} has a bad view {view!r:.80}")
        view_key, offset, view_size = view
        view_storage = _Storage(dtype, view_size, view_key, None, root, offset)
        return storages.setdefault(view_key, view_storage)

    def unpickle() -> Any:
        _scan_pickle(f, file_bytes)
        return _SafeUnpickler(f, load_storage).load()

    if unpickle() != _LEGACY_MAGIC:
        raise CheckpointError("not a torch checkpoint (bad magic number)")
    if unpickle() != _LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy torch protocol version")
    sys_info = unpickle()
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    result = unpickle()
    _check_sizes(result, file_bytes)  # names the tensor whose declaration does not fit the file
    for key in unpickle():
        storage = storages.get(key)
        if storage is None or storage.base is not None:
            raise CheckpointError(f"unknown storage key {key!r:.40}")
        if problem := _storage_problem(storage, file_bytes):
            raise CheckpointError(problem)
        count = int.from_bytes(f.read(8), "big" if big_endian else "little")
        if count != storage.numel:
            raise CheckpointError(
                f"storage {key!r:.40} has {count} elements, expected "
                f"{storage.numel} (file truncated or corrupt)"
            )
        nbytes = count * _element_type(storage.dtype).itemsize
        if nbytes > file_bytes - f.tell():
            raise CheckpointError(
                f"storage {key!r:.40} needs {nbytes} bytes but {file_bytes - f.tell()} remain "
                "in the file (file truncated or corrupt)"
            )
        storage.data = _decode(f.read(nbytes), storage.dtype, count, big_endian)
    return result


def _read_zip(zf: zipfile.ZipFile, pkl_name: str, file_bytes: int) -> Any:
    """Read the zip torch format from ``zf``; return the top-level object (tensors still lazy:
    a storage's entry is read when its first tensor is converted)."""
    prefix = pkl_name[: -len("data.pkl")]
    names = set(zf.namelist())
    big_endian = (
        prefix + "byteorder" in names
        and _read_member(zf, prefix + "byteorder", file_bytes).strip() == b"big"
    )
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        _, dtype, key, _location, numel = pid[:5]
        if key not in storages:
            storages[key] = _Storage(dtype, numel, key)
            storages[key].load = lambda s=storages[key]: read_storage(s)
        return storages[key]

    def read_storage(storage: _Storage) -> np.ndarray:
        name = f"{prefix}data/{storage.key}"
        if name not in names:
            raise CheckpointError(
                f"storage {storage.key!r:.40} is missing from the zip (no {name})"
            )
        raw = _read_member(zf, name, file_bytes)
        return _decode(raw, storage.dtype, storage.numel, big_endian)

    data = io.BytesIO(_read_member(zf, pkl_name, file_bytes))
    _scan_pickle(data, len(data.getbuffer()))
    return _SafeUnpickler(data, load_storage).load()


def _read_member(zf: zipfile.ZipFile, name: str, file_bytes: int) -> bytes:
    """The bytes of a zip entry, once its declared sizes are found to fit the file."""
    _check_member(zf.getinfo(name), file_bytes)
    return zf.read(name)


def _check_member(info: zipfile.ZipInfo, file_bytes: int) -> None:
    """Raise CheckpointError unless the zip entry's declared sizes fit the file (stored, or
    deflated no more than deflate can expand)."""
    name = info.filename
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(
            f"zip entry {name!r:.80} uses compression {info.compress_type}; only stored and "
            "deflated entries are read"
        )
    if info.header_offset + info.compress_size > file_bytes:
        raise CheckpointError(
            f"zip entry {name!r:.80} declares {_human(info.compress_size)} but the file holds "
            f"{file_bytes} bytes (file truncated or corrupt)"
        )
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_RATIO
    if info.file_size > ratio * info.compress_size + 1024:
        raise CheckpointError(
            f"zip entry {name!r:.80} declares {_human(info.file_size)} from "
            f"{info.compress_size} bytes of data (file corrupt)"
        )


def _scan_pickle(f: BinaryIO, file_bytes: int) -> None:
    """Walk the next pickle in ``f`` without building anything, and return to where it starts:
    a length in it (bytes, strings) that reaches past the end of the file raises (ValueError),
    before the unpickler would allocate that length."""

    class Bounded:
        def read(self, n: int = -1) -> bytes:
            left = max(file_bytes - f.tell(), 0)
            return f.read(left if n is None or n < 0 else min(n, left))

        def readline(self) -> bytes:
            return f.readline(max(file_bytes - f.tell(), 0))

        def tell(self) -> int:
            return f.tell()

    start = f.tell()
    for _ in pickletools.genops(Bounded()):
        pass
    f.seek(start)


def _human(nbytes: int) -> str:
    """``nbytes`` for a message: "297 bytes", "13.4 GiB"."""
    if nbytes < 1024:
        return f"{nbytes} bytes"
    for power, unit in enumerate(("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"), 1):
        if nbytes < 1024 ** (power + 1):
            return f"{nbytes / 1024**power:.1f} {unit}"
    return "more than 1024 EiB"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _storage_problem(storage: _Storage, file_bytes: int) -> str | None:
    """Why a storage's declaration cannot be true of a file of ``file_bytes``, or None."""
    root = storage.base or storage
    what = f"storage {root.key!r:.40}"
    if not _is_count(root.numel):
        return f"{what} declares {root.numel!r:.40} elements"
    itemsize = _element_type(root.dtype).itemsize
    if root.numel * itemsize > file_bytes:
        return (
            f"{what} declares {_human(root.numel * itemsize)} ({root.numel} {root.dtype.value} "
            f"elements) but the file holds {file_bytes} bytes"
        )
    if storage.base is not None and not (
        _is_count(storage.offset)
        and _is_count(storage.numel)
        and storage.offset + storage.numel <= root.numel
    ):
        return (
            f"storage view {storage.key!r:.40} (offset {storage.offset!r:.40}, "
            f"{storage.numel!r:.40} elements) lies outside its {root.numel}-element {what}"
        )
    return None


def _check_tensor(name: str, ref: _TensorRef, file_bytes: int) -> int:
    """Raise CheckpointError unless the tensor's declared geometry and storage fit a file of
    ``file_bytes``; return the tensor's size in bytes. ``name``: "tensor 'conv.weight'"."""
    size, stride, offset = ref.size, ref.stride, ref.offset
    if not (
        isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride) <= 64
        and all(map(_is_count, size + stride))
        and _is_count(offset)
    ):
        raise CheckpointError(
            f"{name}: bad tensor geometry size={size!r:.80} stride={stride!r:.80} "
            f"offset={offset!r:.40}"
        )
    root = ref.storage.base or ref.storage
    itemsize = _element_type(root.dtype).itemsize
    _check_shape(name, size, root.dtype.value, itemsize, file_bytes)
    nbytes = math.prod(size) * itemsize
    if problem := _storage_problem(ref.storage, file_bytes):
        raise CheckpointError(f"{name}: {problem}")
    if nbytes:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= ref.storage.numel:
            raise CheckpointError(
                f"{name} reaches element {last} of a {ref.storage.numel}-element storage"
            )
    return nbytes


def _check_shape(name: str, shape: tuple, dtype: str, itemsize: int, file_bytes: int) -> None:
    """Raise CheckpointError if an array of ``shape`` would need more bytes than the file
    holds, or (an empty array) has a dimension longer than the file could fill."""
    nbytes = math.prod(shape) * itemsize
    what = f"(shape {shape}, {dtype})"
    if nbytes > file_bytes:
        raise CheckpointError(
            f"{name} declares {_human(nbytes)} {what} but the file holds {file_bytes} bytes"
        )
    if any(n * itemsize > file_bytes for n in shape):
        raise CheckpointError(
            f"{name} declares a dimension of {max(shape)} {what}, more than the file's "
            f"{file_bytes} bytes could fill"
        )


def _check_sizes(obj: Any, file_bytes: int) -> None:
    """Check every tensor of a state_dict against the file (:func:`_check_tensor`), and that
    together they declare no more bytes than the file holds."""
    if not isinstance(obj, dict):
        return
    total = 0
    for key, value in obj.items():
        if isinstance(value, _TensorRef):
            total += _check_tensor(f"tensor {key!r:.100}", value, file_bytes)
    if total > file_bytes:
        raise CheckpointError(
            f"the {len(obj)} tensors together declare {_human(total)} but the file holds "
            f"{file_bytes} bytes"
        )


def _to_state_dict(obj: Any, file_bytes: int) -> dict[str, np.ndarray]:
    """Check that ``obj`` is a dict of tensors that fit the file; return it as
    ``{key: np.ndarray}``."""
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
    _check_sizes(obj, file_bytes)
    for key, value in obj.items():
        try:
            out[key] = value.to_numpy()
        except CheckpointError as e:
            raise CheckpointError(f"tensor {key!r:.100}: {e}") from None
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
            file_bytes = os.fstat(f.fileno()).st_size
            head = f.read(4)
            f.seek(0)
            if head.startswith(b"PK"):
                return _read_zip_file(f, path, file_bytes)
            if head[:1] == b"\x80":
                return _to_state_dict(_read_legacy(f, file_bytes), file_bytes)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read file: {e}") from None
    except Exception as e:  # noqa: BLE001  (pickle/zipfile/numpy errors from damaged data)
        raise CheckpointError(
            f"{path}: file is truncated or corrupt ({type(e).__name__}: {e})"
        ) from None
    what = "empty file" if not head else "unknown format (not a torch checkpoint or .npz)"
    raise CheckpointError(f"{path}: {what}")


def _read_zip_file(f: BinaryIO, path: str, file_bytes: int) -> dict[str, np.ndarray]:
    """Read a zip archive: a zip-format torch checkpoint or an ``.npz``."""
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if pkl:
            return _to_state_dict(_read_zip(zf, pkl[0], file_bytes), file_bytes)
        if not names or not all(n.endswith(".npy") for n in names):
            raise CheckpointError("zip archive is neither a torch checkpoint nor .npz")
        for info in zf.infolist():
            _check_npy(zf, info, file_bytes)
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _check_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_bytes: int) -> None:
    """Raise CheckpointError unless an .npz entry's header declares no more bytes than the
    entry holds (numpy would allocate the declared array before reading it)."""
    _check_member(info, file_bytes)
    name = f"tensor {info.filename.removesuffix('.npy')!r:.100}"
    with zf.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise CheckpointError(f"{name}: unsupported .npy format version {version}")
    if len(shape) > 64:
        raise CheckpointError(f"{name}: {len(shape)} dimensions")
    _check_shape(name, shape, str(dtype), dtype.itemsize, file_bytes)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise CheckpointError(
            f"{name} declares {_human(nbytes)} (shape {shape}, {dtype}) but its zip entry "
            f"holds {info.file_size} bytes"
        )
