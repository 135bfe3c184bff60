"""``serve --demo``: a throw-away test CA, so ``make run`` works on an empty data directory."""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from pki_soap import files
from pki_soap.ca import names
from pki_soap.cli.passwords import from_file
from pki_soap.server.datadir import open_data_directory

DEMO_ROOT = "DemoCA"
DEMO_DIRECTORY = "CAServer"
DEMO_PASSWORD_FILE = "demo-ca.password"
DEMO_SUBJECT = "/O=pki-soap demo/CN=pki-soap Demo CA"
DEMO_CA_DAYS = 3650
DEMO_DAYS = 365


def configure_demo(data_dir: Path) -> tuple[bool, str]:
    """Configure the demo CA in ``data_dir`` unless a CA is configured; (created, fingerprint).

    The password is random, kept in ``<data_dir>/demo-ca.password`` (0600) and reused when
    that file exists (the CA files may outlive a reinitialisation).

    Raises:
        PkiError: the store or the CA files cannot be used (e.g. WrongPassword when the
            CA files exist but the password file does not match them).
    """
    with open_data_directory(data_dir, create=True) as opened:
        server = opened.server
        if opened.store.server_config() is not None:
            return False, server.authority().fingerprint
        password_file = data_dir / DEMO_PASSWORD_FILE
        if password_file.exists():
            password = from_file(password_file)
        else:
            password = secrets.token_urlsafe(24).encode("ascii")
            files.write_private_file(password_file, password + b"\n")
        result = server.configure(
            root=DEMO_ROOT,
            directory=DEMO_DIRECTORY,
            password=password,
            days=DEMO_DAYS,
            ca_days=DEMO_CA_DAYS,
            subject=names.subject_from_text(DEMO_SUBJECT),
        )
        return True, result.fingerprint


def password_file(args: argparse.Namespace, data_dir: Path) -> Path | None:
    """The file ``serve`` reads the CA key password from: ``--password-file``, else the demo
    CA's (with ``--demo``, when it exists), else None."""
    demo_file = data_dir / DEMO_PASSWORD_FILE
    if args.password_file is None and args.demo and demo_file.exists():
        return demo_file
    path: Path | None = args.password_file
    return path
