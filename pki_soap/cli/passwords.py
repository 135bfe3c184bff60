"""Every password a command needs, read by one rule: a file, an environment variable, a prompt.

Never from argv (other users see a process's arguments) and never logged or printed.

* ``--password-file FILE`` (or another ``--...-file`` option): the file holds the password on
  one line; its line end (``\\n`` or ``\\r\\n``) is the file's, not the password's.  An empty
  file or one of several lines is refused; one other users may read is pointed out.
* else the environment variable, when it is set and not empty;
* else, when stdin is a terminal, a prompt (without echo), asked twice for a new password.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from pki_soap.cli.terminal import warn
from pki_soap.errors import InvalidInput


@dataclass(frozen=True)
class Prompt:
    """What the terminal asks for one password, and what it says when the answers fail."""

    question: str
    again: str | None = None
    """The question asked a second time for a new password; None: asked once."""
    differ: str = "the passwords do not match"
    empty: str | None = None
    """The refusal of an empty answer; None: an empty answer means no password."""


def read_password(
    file: Path | None, env: str, prompt: Prompt, *, missing: str | None
) -> bytes | None:
    """The password from ``file``, else ``$env``, else ``prompt`` on a terminal.

    None when there is none to be had and that is allowed: an empty answer to a prompt without
    ``empty``, or no terminal to ask on and ``missing`` None.

    Raises:
        InvalidInput: the file is unreadable, empty or of several lines; the two answers
            differ; an empty answer where ``prompt.empty`` refuses it; no file, no variable
            and no terminal when ``missing`` (the message) is given.
    """
    if file is not None:
        return from_file(file)
    from_env = os.environb.get(env.encode())
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        if missing is not None:
            raise InvalidInput(missing)
        return None
    answer = getpass.getpass(prompt.question).encode("utf-8")
    if not answer:
        if prompt.empty is not None:
            raise InvalidInput(prompt.empty)
        return None
    if prompt.again is not None and getpass.getpass(prompt.again).encode("utf-8") != answer:
        raise InvalidInput(prompt.differ)
    return answer


def required_password(file: Path | None, env: str, prompt: Prompt, *, missing: str) -> bytes:
    """:func:`read_password` where there must be one (``prompt.empty`` is its refusal).

    Raises:
        InvalidInput: as :func:`read_password`, and for an empty answer.
    """
    password = read_password(file, env, prompt, missing=missing)
    if password is None:
        raise InvalidInput(prompt.empty or missing)
    return password


def from_file(path: Path) -> bytes:
    """The password ``path`` holds (see the module docstring).

    Raises:
        InvalidInput: the file is unreadable, empty or of several lines.
    """
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise InvalidInput(f"cannot read the password file {path}: {exc.strerror}") from exc
    if stat.S_IMODE(mode) & 0o077:
        warn(f"the password file {path} is readable by other users")
    password = data.removesuffix(b"\n").removesuffix(b"\r")
    if not password:
        raise InvalidInput(f"the password file {path} is empty")
    if b"\n" in password:
        raise InvalidInput(f"the password file {path} holds more than one line")
    return password
