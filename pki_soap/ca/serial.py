"""The CA's serial counter: an OpenSSL-style ``<root>.srl`` file, safe across processes."""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pki_soap.errors import CAFileError, InvalidInput
from pki_soap.files import write_private_file

log = logging.getLogger(__name__)

# X.509 serial numbers are at most 20 octets and positive (RFC 5280 4.1.2.2).
MAX_SERIAL = 2**159 - 1
_HEX = re.compile(r"[0-9A-Fa-f]+")


def format_serial(value: int) -> str:
    """OpenSSL's serial-file text: upper-case hex, an even number of digits, a newline."""
    digits = f"{value:X}"
    if len(digits) % 2:
        digits = "0" + digits
    return digits + "\n"


def parse_serial(text: str) -> int:
    """The value of a serial file's text (hex digits; either case; surrounding whitespace).

    Raises:
        ValueError: anything else.
    """
    digits = text.strip()
    if not _HEX.fullmatch(digits):
        raise ValueError(f"not a hex serial number: {text[:40]!r}")
    return int(digits, 16)


class SerialCounter:
    """The ``.srl`` file: the last serial number used, as OpenSSL's ``-CAserial`` keeps it.

    :meth:`take` holds an exclusive ``flock`` on a separate lock file
    (``<root>.srl.lock``) while it reads the value, adds one (or the size of a
    block) and writes the new value back (temp file, fsync, rename, directory
    fsync).  The numbers are on disk before they are returned, so neither two
    processes nor a crash followed by a restart can ever hand out the same
    number twice; a crash, or a block not used up, can only leave a gap.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"SerialCounter({str(self.path)!r})"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CAFileError(f"cannot open the serial lock file {self.lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def create(self, start: int = 0) -> bool:
        """Write the file with value ``start`` (``00`` by default) unless it exists.

        The first number :meth:`take` returns is then ``start + 1``.

        Returns:
            True if the file was created, False if it already existed (left untouched).

        Raises:
            CAFileError: ``start`` out of range, or the directory is not writable.
        """
        if not 0 <= start < MAX_SERIAL:
            raise CAFileError(f"serial start {start} is out of range")
        with self._locked():
            if self.path.exists():
                return False
            self._write(start)
            return True

    def current(self) -> int:
        """The last number handed out (the file's value).

        Raises:
            CAFileError: the file is missing, unreadable or not a hex number.
        """
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError as exc:
            raise CAFileError(f"the serial file {self.path} does not exist") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CAFileError(f"cannot read the serial file {self.path}: {exc}") from exc
        try:
            return parse_serial(text)
        except ValueError as exc:
            raise CAFileError(f"the serial file {self.path} is corrupt: {exc}") from exc

    def take(self, count: int = 1, *, after: int = 0) -> int:
        """Reserve ``count`` consecutive numbers and return the first (the file's value + 1).

        The file then holds the last of them, written durably before this returns;
        numbers of the block the caller does not use are gaps, never handed out again.
        ``after`` is the highest number already used (the store's): a file behind it (restored
        from a backup, say) is never used as it is - numbering continues after ``after``,
        and that is logged.

        Raises:
            InvalidInput: ``count`` is not a positive whole number.
            CAFileError: the file is missing or corrupt, the numbers would run past
                20 octets, or the new value cannot be written.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidInput(
                f"a block of serial numbers needs a count of at least 1, not {count!r}"
            )
        with self._locked():
            current = self.current()
            if current < after:
                log.warning(
                    "the serial file %s was at %d, behind number %d already issued: "
                    "numbering continues after %d",
                    self.path,
                    current,
                    after,
                    after,
                )
                current = after
            first = current + 1
            last = first + count - 1
            if last > MAX_SERIAL:
                raise CAFileError(f"the serial file {self.path} has run out of numbers")
            self._write(last)
            return first

    def take_block(self, count: int, *, after: int = 0) -> range:
        """Reserve ``count`` consecutive numbers in one durable write; return them as a range.

        Raises:
            InvalidInput, CAFileError: as :meth:`take`.
        """
        first = self.take(count, after=after)
        return range(first, first + count)

    def _write(self, value: int) -> None:
        try:
            write_private_file(self.path, format_serial(value).encode("ascii"))
        except OSError as exc:
            raise CAFileError(f"cannot write the serial file {self.path}: {exc}") from exc
