"""A stranger's text, made safe for where it goes: one helper per destination.

Everything a SOAP client sends (Name, Hostname, contact fields, the CSR's subject and
names) is chosen by whoever can reach the endpoint, so it is escaped for the place it is
written to, at the moment it is written:

* a shell command we print or mail: :func:`for_shell` (``shlex.quote``), so a pasted line
  runs exactly the command shown;
* a terminal: :func:`for_terminal`, so control characters (ESC sequences, CR, NUL) and
  format characters (bidi overrides and isolates, zero-width ones) show as ``\\x1b``,
  ``\\u202e``... instead of moving the cursor, hiding text or reordering it;
* an e-mail body or header: :func:`for_mail_body`, :func:`for_mail_header` (the same
  visible escapes: a value never adds a line, and a mail client is a terminal of sorts);
* HTML: Jinja2's autoescape in the portal's templates (nothing here).
"""

from __future__ import annotations

import functools
import re
import shlex
import unicodedata

# Cc: C0, DEL, C1 controls; Cf: format characters (bidi embeddings, overrides and isolates,
# LRM/RLM, zero-width joiners, soft hyphen, BOM); Zl, Zp: line and paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


@functools.cache
def _is_invisible(character: str) -> bool:
    return unicodedata.category(character) in _INVISIBLE_CATEGORIES


# The one rule for "a control character" in a field: Unicode category Cc, exactly C0, DEL
# and C1 (U+0000-U+001F, U+007F-U+009F).  Server and client refuse the same characters.
_CONTROL_CHARACTERS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]


@functools.cache
def _control_pattern(allowed: str) -> re.Pattern[str]:
    kept = "".join(re.escape(ch) for ch in _CONTROL_CHARACTERS if ch not in allowed)
    return re.compile(f"[{kept}]" if kept else "(?!)")


def has_control(text: str, allowed: str = "") -> bool:
    """True when ``text`` holds a control character (category Cc) not in ``allowed``."""
    return _control_pattern(allowed).search(text) is not None


_CANDIDATE = re.compile(r"[^\x20-\x7e]")  # only these can be invisible: skip printable ASCII


def _escaped(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_invisible(character: str) -> bool:
    """True for a control, format (bidi, zero-width) or line/paragraph separator character."""
    return _is_invisible(character)


def has_invisible(text: str) -> bool:
    """True when ``text`` holds a character :func:`for_terminal` would escape."""
    return any(_is_invisible(ch) for ch in _CANDIDATE.findall(text))


def for_terminal(text: str) -> str:
    """``text`` with every control, format and separator character as a visible escape.

    ESC becomes ``\\x1b``, CR ``\\x0d``, a right-to-left override ``\\u202e``: the result is
    one line that looks exactly like what it says.
    """
    return _CANDIDATE.sub(lambda m: _escaped(m[0]) if _is_invisible(m[0]) else m[0], text)


def for_mail_body(text: str) -> str:
    """One value inside a plain-text mail body: visible escapes, never a line of its own."""
    return for_terminal(text)


def for_mail_header(text: str) -> str:
    """A value inside a mail header (Subject): one line, visible escapes, no CR or LF."""
    return for_terminal(text)


def for_shell(text: str) -> str:
    """One shell word that stands for exactly ``text`` (``shlex.quote``)."""
    return shlex.quote(text)
