"""Output folders, and failed reads and writes told in one line (commands and training)."""

from __future__ import annotations

import errno
import re
import stat
import sys
from pathlib import Path


class FolderError(ValueError):
    """An output folder cannot be used: a file is in the way, or it cannot be created."""


def output_folder(path, flag: str = "--out", create: bool = True) -> Path:
    """`path` as a folder to write into, created if missing (unless not `create`). FolderError
    naming `flag` when a file (or a file among its parents) is in the way or it cannot be made."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "" if part == path else f"{path}: "
            raise FolderError(f"{flag} {where}{part} is a file, not a folder")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FolderError(f"{flag} {path}: cannot create the folder: {reason(error)}") from None
    return path


def special_file(path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder (reading a named pipe or a
    device like /dev/zero would wait or never end): "a named pipe (FIFO)", "a character device",
    "a block device", "a socket"; None for files, folders and paths that do not exist."""
    try:
        mode = Path(path).stat().st_mode
    except (OSError, ValueError):
        return None
    kinds = {
        stat.S_ISFIFO: "a named pipe (FIFO)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), None)


def is_disk_full(error: BaseException, writing: bool = False) -> bool:
    """Did `error` come from a full disk: ENOSPC or a quota, or, while `writing` a file, the
    errors TensorFlow's file writers give for it (ResourceExhausted, OutOfRange)?"""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if writing and "tensorflow" in sys.modules:
        import tensorflow as tf

        if isinstance(error, tf.errors.ResourceExhaustedError | tf.errors.OutOfRangeError):
            return True
    text = str(getattr(error, "message", None) or error).lower()
    return "no space left" in text or "disk quota" in text


def reason(error: BaseException, writing: bool = False) -> str:
    """One line on why `error` happened, without TensorFlow's op names around it; it starts
    with "disk full" for a full disk. Of a graph error ("Graph execution error:", then where the
    failing node was defined, then the op's own message) it is the op's message."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror + (f": {error.filename}" if error.filename else "")
    else:
        text = str(getattr(error, "message", None) or error)
        text = re.sub(r"\{\{[^}]*\}\}|\[Op:\w+\]|\s+name:\s*$", "", text)
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line and line != "[[]]"]
        if lines[:1] == ["Graph execution error:"] and len(lines) > 1:
            text = lines[-1]
        else:
            text = lines[0] if lines else type(error).__name__
    return f"disk full ({text})" if is_disk_full(error, writing) else text
