"""The server's own HTTPS certificate: ``server_app.py https-certificate`` and ``serve --tls``.

The command checks ``<data-dir>/tls/`` (pki_soap/server/tls.py) and issues a new certificate
only when one is needed (none yet, due for renewal, other names, another CA) or ``--force``
says so; the CA key password is asked only then.  ``serve --tls`` runs the same check at
start, and its renewal thread runs this command in a process of its own when the certificate
falls due: a running server picks the new files up at its next connection.

The running server does not keep the CA key password.  So renewal happens without a person
only when the password can be read again: from ``--password-file`` (read anew at each
renewal, never kept in memory), the environment variable, or the demo CA's password file;
otherwise the log says a restart is due.  The renewal runs in a process of its own: gunicorn's
master never holds a database connection while it forks workers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

import pki_soap
from pki_soap.ca import fingerprints, names
from pki_soap.cli import Commands, admin, demo
from pki_soap.server import tls
from pki_soap.server.datadir import open_data_directory

ENTRY_MODULE = "pki_soap.cli.server_app"
"""What the renewal process runs (``python -m``)."""


def add_commands(commands: Commands) -> None:
    """Add ``https-certificate``."""
    command = commands.add(
        "https-certificate",
        "issue or renew the server's own HTTPS certificate (serve --tls does at start)",
        _run,
    )
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
        help=f"file holding the CA key password (or ${admin.CA_PASSWORD_ENV}, or a prompt)",
    )
    command.add_argument(
        "--force", action="store_true", help="issue a new certificate even if this one is good"
    )


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


def _run(args: argparse.Namespace) -> int:
    """Check the server's HTTPS certificate in <data-dir>/tls/ and issue a new one when
    needed (none yet, due for renewal, other names, another CA) or with --force. A running
    serve --tls serves the new one from its next connection on.
    """
    wanted = tls.server_names(args.name[0], args.name[1:])
    ensure(args.data_dir, wanted, lambda: admin.ca_password(args.password_file), force=args.force)
    return 0


@dataclass(frozen=True)
class Https:
    """What ``serve`` serves HTTPS with."""

    certfile: Path
    keyfile: Path
    renewer: tls.Renewer | None
    """Keeps our own certificate fresh; None for ``--certfile/--keyfile``."""


def prepare_https(args: argparse.Namespace, public_url: str) -> Https:
    """Check ``--certfile/--keyfile``, or make sure our own certificate is there and fresh.

    Raises:
        InvalidInput: unusable files or names, or no CA key password when one is needed.
        NotConfigured: no CA is configured (nobody could issue our certificate).
        WrongPassword, CAFileError: the CA key cannot sign.
    """
    if args.certfile is not None:
        tls.check_files(args.certfile, args.keyfile)
        print(f"HTTPS with {args.certfile} (reloaded when it changes)", flush=True)
        return Https(args.certfile, args.keyfile, None)
    data_dir: Path = args.data_dir
    host = urlsplit(public_url).hostname or ""
    wanted = tls.server_names(host, args.tls_name)
    # Opened and closed here, before gunicorn forks (as the demo set-up).
    ca_certificate = ensure(
        data_dir, wanted, lambda: admin.ca_password(demo.password_file(args, data_dir))
    )
    print(
        "Clients trust this CA with:\n  client_app.py get-ca --fingerprint "
        f"SHA256:{fingerprints.sha256_fingerprint(ca_certificate)}",
        flush=True,
    )
    files = tls.ServerFiles.of(data_dir)
    renewer = tls.Renewer(files, ca_certificate, wanted, renewal_action(args, wanted))
    return Https(files.cer, files.key, renewer)


def renewal_action(
    args: argparse.Namespace, wanted: list[x509.GeneralName]
) -> Callable[[str], None]:
    """What the renewal thread does when the certificate falls due.

    It runs ``https-certificate`` in a process of its own, which reads the password anew from
    the password file (or the demo CA's), else from the environment; a prompt's answer is
    never kept, so without a file or variable it only says that a restart is due.
    """
    data_dir: Path = args.data_dir
    password_file = demo.password_file(args, data_dir)
    unattended = password_file is not None or bool(os.environb.get(admin.CA_PASSWORD_ENV.encode()))
    command = [sys.executable, "-m", ENTRY_MODULE, "--data-dir", str(data_dir.resolve())]
    command.append("https-certificate")
    for name in wanted:
        command += ["--name", str(name.value)]
    if password_file is not None:
        command += ["--password-file", str(password_file.resolve())]
    # The same package, wherever the server was started from.
    package_parent = str(Path(pki_soap.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))

    def renew(why: str) -> None:
        if not unattended:
            _report(
                f"the HTTPS certificate must be renewed ({why}), but there is no password "
                "file or environment variable to read the CA key password from: restart "
                "serve --tls, or start it with --password-file"
            )
            return
        _report(f"renewing the HTTPS certificate ({why})")
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": python_path},
            check=False,
        )
        for line in (done.stdout + done.stderr).splitlines():
            _report(line)

    return renew


def _report(line: str) -> None:
    """One line of the running server's log (stderr, as gunicorn's)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S +0000")
    print(f"[{stamp}] [{os.getpid()}] [pki-soap] {line}", file=sys.stderr, flush=True)
