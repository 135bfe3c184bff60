"""Files written whole or not at all: temp file, fsync, rename, directory fsync.

The one place a file is written atomically, and the one place its mode is fixed from the
instant it exists: 0600 for anything holding a key, password or secret, 0644 for the public.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL + the final mode at creation: the bytes are never readable by others,
    # not even for an instant, and a stale temp file is never reused.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; make it exact
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry change (a rename) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from creation: temp file, fsync, rename.

    Raises:
        OSError: the directory is missing or not writable.
    """
    _write_atomically(path, data, 0o600)


def write_public_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0644: temp file, fsync, rename.

    Raises:
        OSError: the directory is missing or not writable.
    """
    _write_atomically(path, data, 0o644)
