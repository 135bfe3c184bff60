"""How recorded SOAP exchanges are shown: their bytes as text that is safe to print.

``serve --record [N]`` keeps the last N exchanges in the store (:class:`pki_soap.store.Exchange`,
within :class:`pki_soap.store.RecordLimits`), each annotated by :mod:`pki_soap.soap.recorder`;
the portal's Exchanges page and ``server_app.py exchanges`` show them.  Everything recorded is
a stranger's text: :func:`readable` turns recorded bytes into text that is safe to print on a
terminal, and HTML pages escape it again.
"""

from __future__ import annotations

import re
import unicodedata

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
