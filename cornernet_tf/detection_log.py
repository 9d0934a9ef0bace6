"""`DetectionLog`: the detections of cornernet-detect and cornernet-evaluate, one JSON line per
image as soon as it is done, so that an interrupted run resumes where it stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["LOG_NAME", "DetectionLog", "differences", "file_stamp"]

LOG_NAME = "detections.partial.jsonl"  # in a command's --out folder

# the keys of a whole record: an image's detections, or the error that left it out
DETECTED = {"image_id", "size", "boxes", "scores", "classes"}
FAILED = {"image_id", "error"}


class DetectionLog:
    """A command's detections, one JSON line per image as soon as it is done, so that an
    interrupted run (Ctrl-C, a crash, a killed job) resumes where it stopped.

    The first line holds `settings` (what decides the detections: config, weights, data). A
    log of other settings is replaced (`replaced` names the settings that differ); a torn last
    line, written when the process died, is dropped. `records`: image id -> the record `add`
    wrote for it. Floats round-trip exactly through JSON, so resumed detections equal those of
    a run in one go.
    """

    def __init__(self, path: str | Path, settings: dict):
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings))  # as read back: tuples become lists
        self.records: dict = {}
        self.replaced: list[str] = []
        if self.path.is_file():
            lines = self.path.read_bytes().decode(errors="replace").splitlines()
            kept = _json_or_none(lines[0]) if lines else None
            if kept is not None and kept.get("settings") == self.settings:
                for line in lines[1:]:
                    record = _json_or_none(line)
                    if record is not None and set(record) in (DETECTED, FAILED):
                        self.records[record["image_id"]] = record
            else:
                self.replaced = differences(kept.get("settings") if kept else None, self.settings)
        self._file = None

    def __enter__(self) -> DetectionLog:
        """Writes the settings and the records kept (dropping torn lines), then appends."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        lines = [{"settings": self.settings}, *self.records.values()]
        try:
            temporary.write_text("".join(json.dumps(line) + "\n" for line in lines))
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)
        self._file = self.path.open("a")
        return self

    def done(self, key) -> bool:
        """Whether the image `key` was detected (an image that failed is tried again)."""
        return "error" not in self.records.get(key, {"error": None})

    def __exit__(self, *exc) -> None:
        self._file.close()

    def add(self, image_id, size=None, detections=None, error: str | None = None) -> dict:
        """Records one image: its (width, height) and detections (boxes, scores, classes), or
        the error that left it out. Returns the record."""
        record = {"image_id": image_id}
        if error is not None:
            record["error"] = error
        else:
            record["size"] = [int(v) for v in size]
            for key in ("boxes", "scores", "classes"):
                record[key] = np.asarray(detections[key]).tolist()
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.records[image_id] = record
        return record

    def remove(self) -> None:
        """Deletes the log (the command's results are written)."""
        self.path.unlink(missing_ok=True)


def differences(old, new, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts (all of them when `old` is
    not a dict)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [prefix.rstrip(".") or "all"] if old != new else []
    found = []
    for key in dict.fromkeys([*new, *old]):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}")
    return found


def file_stamp(path: str | Path) -> dict:
    """A file's absolute path, size and modification time: changes when the file is replaced."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}


def _json_or_none(line: str):
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
