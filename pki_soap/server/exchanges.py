"""The record of SOAP exchanges: what one exchange keeps, the limits, and how it is shown.

``serve --record [N]`` keeps the last N exchanges in the store (:mod:`pki_soap.store`), each
annotated by :mod:`pki_soap.soap.recorder`; the portal's Exchanges page and ``server_app.py
exchanges`` show them.  Everything recorded is a stranger's text: :func:`readable` turns
recorded bytes into text that is safe to print on a terminal, and HTML pages escape it again.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from pki_soap.errors import InvalidInput

#: How many exchanges ``serve --record`` keeps when no number is given.
DEFAULT_KEEP = 1000
#: The most all kept exchanges may take together (request and answer bytes, headers, notes).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Exchanges hold contact names, e-mail addresses and CSRs: they expire after this many days.
DEFAULT_MAX_DAYS = 7.0
#: Of each request and answer, at most this much is kept (the rest is counted, not stored).
BODY_KEPT = 256 * 1024
#: The smallest total allowed: two whole bodies of one exchange always fit.
MIN_MAX_BYTES = 4 * BODY_KEPT
MAX_KEEP = 100_000

#: Kinds of :class:`Note`: what IRIS would have done differently, and what is known of the
#: client's toolkit (from its User-Agent).
IRIS = "IRIS"
TOOLKIT = "toolkit"


@dataclass(frozen=True)
class RecordLimits:
    """How much the recorder keeps; the oldest exchanges go first when any limit is passed."""

    keep: int = DEFAULT_KEEP
    max_bytes: int = DEFAULT_MAX_BYTES
    max_days: float = DEFAULT_MAX_DAYS

    def __post_init__(self) -> None:
        if isinstance(self.keep, bool) or not 1 <= self.keep <= MAX_KEEP:
            raise InvalidInput(f"the number of exchanges kept must be from 1 to {MAX_KEEP}")
        if self.max_bytes < MIN_MAX_BYTES:
            raise InvalidInput(f"the bytes kept for exchanges must be at least {MIN_MAX_BYTES}")
        if not 0 < self.max_days <= 3650:
            raise InvalidInput("exchanges must expire after more than 0 and at most 3650 days")


@dataclass(frozen=True)
class Note:
    """One annotation of an exchange: its kind (:data:`IRIS` or :data:`TOOLKIT`) and text."""

    kind: str
    text: str


@dataclass
class Exchange:
    """One SOAP request and its answer, as the server saw them."""

    received: datetime
    duration_ms: float
    client: str
    user_agent: str | None
    method: str | None
    """The web method the request was routed to (None when routing failed)."""
    status: int
    fault: str | None
    """``faultcode: faultstring`` of a fault answer, else None."""
    strict_iris: bool
    request_headers: list[tuple[str, str]]
    answer_headers: list[tuple[str, str]]
    request: bytes
    answer: bytes
    request_size: int
    """The whole request's length; ``request`` holds at most :data:`BODY_KEPT` of it."""
    answer_size: int
    notes: list[Note] = field(default_factory=list)
    id: int | None = None

    @property
    def size(self) -> int:
        """What this exchange counts against the byte limit."""
        headers = sum(len(k) + len(v) for k, v in self.request_headers + self.answer_headers)
        notes = sum(len(note.text) for note in self.notes)
        return len(self.request) + len(self.answer) + headers + notes


@dataclass(frozen=True)
class ExchangeSummary:
    """An exchange without its bytes, for listings."""

    id: int
    received: datetime
    duration_ms: float
    client: str
    user_agent: str | None
    method: str | None
    status: int
    fault: str | None
    strict_iris: bool
    request_size: int
    answer_size: int
    note_count: int


# Control and format characters (C0, C1, DEL, bidi overrides, zero-width) would move a
# terminal's cursor, colour it or reorder what is shown; they are written as escapes.  The
# pattern finds every candidate (any control character but LF and TAB, any non-ASCII
# character); :func:`_escape` keeps the non-ASCII ones that are not format characters.
_CANDIDATE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\U0010ffff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code > 0x9F and unicodedata.category(char) != "Cf":
        return char
    if char == "\r":
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def readable(data: bytes | str) -> str:
    """Recorded bytes as text safe for a terminal or a ``<pre>`` block.

    UTF-8 is decoded (an invalid byte becomes ``\\xNN``); LF and TAB stay; CR becomes a
    visible ``\\r`` so CR LF line ends show; every other control or format character
    becomes ``\\xNN`` / ``\\uNNNN``.
    """
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return _CANDIDATE.sub(_escape, text)


def one_line(text: str, limit: int = 120) -> str:
    """``text`` (already :func:`readable`) on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


__all__ = [
    "BODY_KEPT",
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DAYS",
    "IRIS",
    "TOOLKIT",
    "Exchange",
    "ExchangeSummary",
    "Note",
    "RecordLimits",
    "one_line",
    "readable",
]
