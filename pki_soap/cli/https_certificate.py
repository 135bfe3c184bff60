"""``server_app.py https-certificate``: issue or renew the server's own HTTPS certificate.

It checks ``<data-dir>/tls/`` (pki_soap/server/tls.py) and issues a new certificate only when one is
needed (none yet, due for renewal, other names, another CA) or ``--force`` says so; the CA key
password is asked only then.  ``serve --tls`` runs the same check at start, and its renewal
thread runs this command in a process of its own when the certificate falls due: a running
server picks the new files up at its next connection.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from pki_soap.ca import names
from pki_soap.cli import server_app as server_cli
from pki_soap.errors import PkiError
from pki_soap.server import tls
from pki_soap.server.datadir import open_data_directory

MODULE = "pki_soap.cli.https_certificate"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``https-certificate`` command to ``subparsers``."""
    command: argparse.ArgumentParser = subparsers.add_parser(
        "https-certificate",
        help="issue or renew the server's own HTTPS certificate (serve --tls does at start)",
        description=(
            "Check the server's HTTPS certificate in <data-dir>/tls/ and issue a new one when "
            "needed (none yet, due for renewal, other names, another CA) or with --force. "
            "A running serve --tls serves the new one from its next connection on."
        ),
    )
    command.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, metavar="DIR")
    command.add_argument(
        "--name",
        action="append",
        required=True,
        metavar="NAME",
        help="host name or IP address clients use (the first is the CN); repeatable",
    )
    command.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"file holding the CA key password (or ${server_cli.CA_PASSWORD_ENV}, or a prompt)",
    )
    command.add_argument(
        "--force", action="store_true", help="issue a new certificate even if this one is good"
    )
    return command


def ensure(
    data_dir: Path,
    wanted: Sequence[x509.GeneralName],
    password: Callable[[], bytes],
    *,
    force: bool = False,
) -> x509.Certificate:
    """Make sure the server's certificate for ``wanted`` is there and good; say what was done.

    ``password`` is called only when a certificate must be issued.  The data directory is
    opened and closed here (``serve`` calls this before gunicorn forks).  Returns the CA
    certificate.

    Raises:
        NotConfigured: no CA is configured.
        InvalidInput: no password to be had, or unusable names.
        WrongPassword, CAFileError: the CA key cannot sign.
    """
    files = tls.ServerFiles.of(data_dir)
    with open_data_directory(data_dir) as opened:
        ca_certificate = opened.server.authority().certificate
        why = "asked for with --force" if force else tls.problem(files, ca_certificate, wanted)
        if why is not None:
            print(f"The HTTPS certificate must be issued: {why}.", flush=True)
            issued = tls.issue(opened.server, files, wanted, password())
            print(f"HTTPS certificate number {issued.number} issued.", flush=True)
    cert = tls.read_server_certificate(files)
    assert cert is not None  # just checked or written
    print(
        f"HTTPS certificate for {names.sans_text(wanted)} valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC (renewed from "
        f"{tls.renewal_time(cert):%Y-%m-%d %H:%M} UTC).",
        flush=True,
    )
    return ca_certificate


def run(args: argparse.Namespace) -> int:
    """Run ``https-certificate``; 0 once the certificate is good.

    Raises:
        PkiError: as :func:`ensure`.
    """
    data_dir: Path = getattr(args, "data_dir", server_cli.DEFAULT_DATA_DIR)
    wanted = tls.server_names(args.name[0], args.name[1:])
    ensure(data_dir, wanted, lambda: server_cli.ca_password(args.password_file), force=args.force)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pki_soap.cli.https_certificate [options]``: the command on its own."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--data-dir", type=Path, default=server_cli.DEFAULT_DATA_DIR, metavar="DIR")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["https-certificate", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except PkiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
