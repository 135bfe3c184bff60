"""What the command-line programs show and ask on the terminal: tables, questions, errors.

Whatever a SOAP client chose (names, contact fields, the CSR's subject) reaches the terminal
through :func:`pki_soap.escaping.for_terminal`: its control and bidi characters show as
escapes and never drive the administrator's terminal.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from pki_soap.errors import InvalidInput
from pki_soap.escaping import for_terminal


def program_name(script: str, installed: str) -> str:
    """``installed`` when run as the installed command (``pki-server``), else ``script``."""
    return installed if Path(sys.argv[0]).name == installed else script


def error(message: str) -> None:
    """Print ``error: <message>`` on stderr, on one line, escaped for the terminal."""
    one_line = " ".join(message.splitlines())
    print(f"error: {for_terminal(one_line)}", file=sys.stderr)


def warn(message: str) -> None:
    """Print ``warning: <message>`` on stderr (our own text: not escaped)."""
    print(f"warning: {message}", file=sys.stderr)


def when(moment: datetime | None, *, date_only: bool = False) -> str:
    """A moment as the tables show it (UTC); empty for None."""
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M:%S UTC")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns under a header and a rule; the last column is not padded.

    Every cell is escaped for the terminal (a stranger's text: see the module docstring).
    """
    shown = [[for_terminal(str(cell)) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in shown) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    headers, rows = shown[0], shown[1:]
    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def labelled(lines: Sequence[tuple[str, str]]) -> list[str]:
    """``Label:  value`` lines, the values aligned in one column."""
    width = max(len(label) for label, _ in lines) + 2
    return [f"{label + ':':<{width}}{value}" for label, value in lines]


def confirm(question: str, yes: bool) -> bool:
    """True if ``yes`` or the administrator answers y.

    Raises:
        InvalidInput: no ``--yes`` and no terminal to ask on.
    """
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InvalidInput("confirmation needed: run on a terminal or add --yes")
    answer = input(f"{for_terminal(question)}\nContinue? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return "warning: " + for_terminal(" ".join(super().format(record).split()))


@contextlib.contextmanager
def warnings_after_result() -> Iterator[None]:
    """Hold the package's log warnings while a command runs; print them when it is done.

    A delivery failure is logged while the notice is sent, which is before the command prints
    what it did: held back, the result comes first and the warnings follow it.
    """
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(_OneLine())
    held = logging.handlers.MemoryHandler(
        capacity=10_000, flushLevel=logging.CRITICAL + 1, target=stream, flushOnClose=True
    )
    held.setLevel(logging.WARNING)
    logger = logging.getLogger("pki_soap")
    logger.addHandler(held)
    try:
        yield
    finally:
        logger.removeHandler(held)
        sys.stdout.flush()
        held.close()  # flushes what was held
