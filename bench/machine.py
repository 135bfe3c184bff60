"""The description of the machine a benchmark ran on (CPU, cores, load, versions, disk)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from report import load_average

LIBRARIES = ("spyne", "lxml", "zeep", "cryptography", "gunicorn", "Werkzeug", "requests")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` is often empty)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def filesystem_of(path: Path) -> str:
    """The file system type holding ``path`` (the longest matching /proc/mounts entry)."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "absent"
    words = (out.stdout + out.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


def describe(work_dir: Path) -> list[str]:
    """Markdown bullet lines describing this machine, its software and ``work_dir``'s disk."""
    libraries = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
    try:
        memory_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        memory = f"{memory_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown"
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; memory {memory}",
        f"- OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- Python {platform.python_version()} ({sys.implementation.name}); {libraries}; "
        f"wrk {_wrk_version()}",
        f"- Scratch data directory on {filesystem_of(work_dir)} (fsync is real there "
        "unless it is tmpfs)",
        f"- Load average at start: {load_average()} (shared machine: other engineers' "
        "test runs compete for the same cores)",
    ]
