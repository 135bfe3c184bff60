"""What every ``server_app.py`` command shares: its name, the data directory, the CA password.

Passwords never come from argv: ``--password-file FILE``, the ``PKI_CA_PASSWORD`` environment
variable (``PKI_SMTP_PASSWORD`` for the SMTP password), or a prompt when stdin is a terminal
(pki_soap/cli/passwords.py).  Questions (reinitialize, delete, revoke, drop-mail) need a
terminal or ``--yes``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pki_soap.cli import terminal
from pki_soap.cli.passwords import Prompt, required_password
from pki_soap.errors import NotConfigured
from pki_soap.server.datadir import DataDirectory, open_data_directory
from pki_soap.server.mail import SMTP_CAFILE_ENV

PROG = "server_app.py"
INSTALLED_PROG = "pki-server"
DEFAULT_DATA_DIR = Path("pki-data")
CA_PASSWORD_ENV = "PKI_CA_PASSWORD"
SMTP_PASSWORD_ENV = "PKI_SMTP_PASSWORD"


def program_name() -> str:
    """``pki-server`` when run as the installed command, else ``server_app.py``."""
    return terminal.program_name(PROG, INSTALLED_PROG)


def password(
    file: Path | None, *, what: str = "CA key password", env: str = CA_PASSWORD_ENV, confirm: bool
) -> bytes:
    """The password ``what`` from ``file``, ``$env`` or a prompt (twice with ``confirm``).

    Raises:
        InvalidInput: see :func:`pki_soap.cli.passwords.read_password`.
    """
    question = what[:1].upper() + what[1:]
    prompt = Prompt(
        f"{question}: ",
        again=f"{question} (again): " if confirm else None,
        differ=f"the two {what}s differ",
        empty=f"the {what} may not be empty",
    )
    return required_password(
        file,
        env,
        prompt,
        missing=(
            f"the {what} is needed: use --password-file FILE or ${env}, "
            "or run on a terminal to be asked"
        ),
    )


def ca_password(file: Path | None) -> bytes:
    """The CA key password as every command asks it: ``file``, ``$PKI_CA_PASSWORD``, a prompt.

    Raises:
        InvalidInput: see :func:`password`.
    """
    return password(file, confirm=False)


def add_password_file(
    parser: argparse.ArgumentParser, what: str = "the CA key password", env: str = CA_PASSWORD_ENV
) -> None:
    """The ``--password-file`` option of a command that needs password ``what``."""
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"file holding {what} (or ${env}, or a prompt on a terminal)",
    )


def add_yes(parser: argparse.ArgumentParser) -> None:
    """The ``--yes`` option of a command that asks before it changes anything."""
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def open_data_dir(
    args: argparse.Namespace, *, create: bool = False, deliver_now: bool = True
) -> DataDirectory:
    """This command's data directory, opened once (the only CLI entry to the store).

    Raises:
        NotConfigured: no store there and ``create`` is false.
        PkiError: the store cannot be opened.
    """
    return open_data_directory(
        args.data_dir,
        create=create,
        smtp_cafile=os.environ.get(SMTP_CAFILE_ENV) or None,
        deliver_now=deliver_now,
    )


def queued_mail_note(count: int) -> str:
    """What is said after a command when e-mail waits in the outbox."""
    return (
        f"{count} undelivered e-mail message(s) stay queued and are retried; "
        f"`{program_name()} status` lists them, `{program_name()} drop-mail --all` drops them."
    )


def ca_configured(data_dir: Path) -> bool:
    """True when ``data_dir`` holds a configured CA server (nothing is created to find out).

    Raises:
        PkiError: the store cannot be opened.
    """
    try:
        opened = open_data_directory(data_dir)
    except NotConfigured:  # no store at all
        return False
    with opened:
        return opened.store.server_config() is not None
