"""``server_app.py portal-password``: set the management portal's administrator password."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from pki_soap.errors import InvalidInput, PkiError
from pki_soap.portal.auth import PASSWORD_MIN_LENGTH, set_password
from pki_soap.server.datadir import open_data_directory

ENV_VARIABLE = "PKI_PORTAL_PASSWORD"
DEFAULT_DATA_DIR = Path("./pki-data")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``portal-password`` command to ``subparsers`` (from ``add_subparsers()``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "portal-password",
        help="set the web portal's administrator password",
        description=(
            "Set the password that signs in to the web portal (/pki/). It is stored as an "
            "Argon2 hash in portal.json (mode 0600) in the data directory; setting a new one "
            "signs out every open portal session. The password is read from --password-file, "
            f"else from the environment variable {ENV_VARIABLE}, else asked for twice."
        ),
    )
    # SUPPRESS: a --data-dir given to the main parser is not overwritten by this default.
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="data directory (default: ./pki-data)",
    )
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="read the password from the first line of FILE",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Set the portal password; print what was done; return the exit code."""
    data_dir = Path(getattr(args, "data_dir", None) or DEFAULT_DATA_DIR)
    try:
        password = _read_password(getattr(args, "password_file", None))
        with open_data_directory(data_dir, create=True) as data:
            path = set_password(data_dir, password, store=data.store)
    except PkiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; the password was not changed", file=sys.stderr)
        return 130
    print(f"Portal password set (Argon2 hash in {path}); open portal sessions are signed out.")
    return 0


def _read_password(password_file: Path | None) -> bytes:
    if password_file is not None:
        try:
            text = password_file.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {password_file}: {exc.strerror}") from exc
        return text.splitlines()[0] if text.strip() else b""
    from_env = os.environ.get(ENV_VARIABLE)
    if from_env:
        return from_env.encode("utf-8")
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"no password given: use --password-file or the environment variable {ENV_VARIABLE}"
        )
    first = getpass.getpass(f"New portal password (at least {PASSWORD_MIN_LENGTH} characters): ")
    second = getpass.getpass("Type it again: ")
    if first != second:
        raise InvalidInput("the two passwords differ; the password was not changed")
    return first.encode("utf-8")
