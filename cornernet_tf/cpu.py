"""This machine's CPU flags, from /proc/cpuinfo (Linux): which compiled kernels it can run,
whether it has native bfloat16 and whether int8 helps there."""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def flags_in(cpuinfo: str) -> set[str]:
    """The flags of the first `flags` line of /proc/cpuinfo text (an empty set without one)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_flags() -> set[str] | None:
    """This CPU's flags, or None where there is no /proc/cpuinfo to read (unknown)."""
    try:
        return flags_in(CPUINFO.read_text())
    except OSError:
        return None
