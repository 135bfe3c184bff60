"""``client_app.py``: the CA client on the command line (configure, get-ca, submit, list, get,
export).

Without a command (or with ``show``) it shows where the client stands and the next step.
Prints the original's messages; on failure prints one ``error: <message>`` line on stderr and
returns the error's exit code (2 for usage errors), never a traceback.  Passwords never come
from the command line (see cli/client_commands.py).  The commands are cli/client_commands.py
and cli/client_overview.py; this module builds the parser and runs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pki_soap.ca.export import ExportFormat
from pki_soap.ca.keys import KeyType
from pki_soap.ca.names import DEFAULT_INSTANCE
from pki_soap.cli import Commands, client_commands
from pki_soap.cli.client_commands import P12_PASSWORD_ENV, PASSWORD_ENV, one_line, program_name
from pki_soap.cli.client_overview import show
from pki_soap.client import configuration
from pki_soap.client.soap_client import DEFAULT_PATH
from pki_soap.errors import PkiError

DEFAULT_DATA_DIR = Path("pki-data")


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("the timeout must be between 0 and 3600 seconds")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``client_app.py``."""
    prog = program_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        epilog=(
            "Without a command it shows where this client stands (as `show`). Every command\n"
            f"takes --data-dir; `{prog} COMMAND --help` shows its options."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="directory of the client's files and database (default: ./pki-data)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print the bytes of each SOAP request and answer on stderr",
    )
    # Each subcommand accepts --data-dir too; SUPPRESS keeps the global value when it is absent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    network = argparse.ArgumentParser(add_help=False, parents=[common])
    network.add_argument(
        "--trace",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the bytes of each request and answer on stderr",
    )
    network.add_argument(
        "--timeout",
        type=_timeout,
        default=configuration.DEFAULT_TIMEOUT,
        help="seconds to wait for the CA server (default: %(default)s)",
    )
    commands = Commands(
        parser, "%(prog)s [-h] [--data-dir DIR] [COMMAND [options]]", metavar="COMMAND"
    )
    parser.set_defaults(run=show, parser=parser, timeout=configuration.DEFAULT_TIMEOUT)

    def command(
        name: str, run: Callable[[argparse.Namespace], int], help: str, *, net: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add(name, help, run, parents=[network if net else common])
        sub.set_defaults(parser=sub)
        return sub

    command("show", show, "configuration, server, CA certificate, requests, next step")

    sub = command(
        "configure",
        client_commands.configure,
        "store the CA server and contact (or change one)",
        net=False,
    )
    sub.add_argument(
        "--server", help="CA server host name or IP address, or its URL https://host:port[/path]"
    )
    sub.add_argument("--port", type=_port, help="CA web server port (unless in --server's URL)")
    sub.add_argument("--path", help=f"CA server path (default: {DEFAULT_PATH})")
    sub.add_argument("--contact-name", help="local technical contact")
    sub.add_argument("--contact-phone")
    sub.add_argument("--contact-email", help="receives the 'certificate issued' notice")
    sub.add_argument("--hostname", help="this host's name (default: the node name)")
    sub.add_argument("--instance", help=f"this instance's name (default: {DEFAULT_INSTANCE})")
    sub.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reach the server over HTTPS, as --server https://... does (then run get-ca "
        "--fingerprint); --no-tls: plain HTTP again",
    )

    sub = command(
        "get-ca", client_commands.get_ca, "save the CA certificate as <CA root>.cer (and pin it)"
    )
    sub.add_argument(
        "--force",
        action="store_true",
        help="replace a different <CA root>.cer (and, with --fingerprint, another pin)",
    )
    sub.add_argument(
        "--out", type=Path, metavar="FILE", help="save it as FILE (or in directory FILE)"
    )
    sub.add_argument(
        "--fingerprint",
        metavar="FP",
        help="the CA certificate's fingerprint from the CA administrator (SHA256:AB:CD:... or "
        "the SHA-1 form E3:FB:...): checked, then the certificate is pinned and trusted",
    )

    sub = command("submit", client_commands.submit, "generate a key and CSR and submit the CSR")
    sub.add_argument("--root", required=True, help="file name root of <root>.key/.csr/.cer")
    sub.add_argument(
        "--resubmit",
        action="store_true",
        help="send the existing <root>.csr again (its key kept), e.g. after a deletion",
    )
    sub.add_argument("--subject", help='e.g. "/C=US/O=Example/CN=host.example.com"')
    sub.add_argument("--country")
    sub.add_argument("--state")
    sub.add_argument("--locality")
    sub.add_argument("--organization")
    sub.add_argument("--org-unit")
    sub.add_argument("--common-name")
    sub.add_argument(
        "--password-file",
        type=Path,
        help=f"file holding the key password (else ${PASSWORD_ENV}, else a prompt on a terminal;"
        " no password: the key is stored unencrypted, mode 0600)",
    )
    sub.add_argument(
        "--key-type",
        choices=[kind.value for kind in KeyType],
        default=KeyType.RSA2048.value,
        help="default: %(default)s",
    )
    sub.add_argument(
        "--san", action="append", default=[], help="subjectAltNames, e.g. DNS:x,IP:1.2.3.4"
    )

    sub = command(
        "list",
        client_commands.list_certificates,
        "list this instance's certificates (--all: every one)",
    )
    sub.add_argument("--all", action="store_true", help="every certificate the CA issued")

    sub = command("get", client_commands.get, "save certificate NUMBER as <Filename>.cer")
    sub.add_argument("number", metavar="NUMBER", help="certificate (serial) number")
    sub.add_argument("--force", action="store_true", help="replace a different existing file")
    sub.add_argument(
        "--out", type=Path, metavar="FILE", help="save it as FILE (or in directory FILE)"
    )
    sub = command(
        "export",
        client_commands.export,
        "write NAME.cer (and NAME.key) as PKCS#12 or a PEM chain",
        net=False,
    )
    sub.add_argument("name", metavar="NAME", help="file name root of NAME.cer / NAME.key")
    formats = sub.add_mutually_exclusive_group(required=True)
    for flag, kind, help_text in (
        ("--p12", ExportFormat.P12, "PKCS#12 with key, certificate and CA chain (Java keytool, "
         ".NET): NAME.p12"),
        ("--chain", ExportFormat.CHAIN, "PEM: the certificate and its intermediate CAs: "
         "NAME-chain.pem"),
        ("--fullchain", ExportFormat.FULLCHAIN, "PEM: the certificate and every CA up to the "
         "root: NAME-fullchain.pem"),
    ):  # fmt: skip
        formats.add_argument(
            flag, dest="format", action="store_const", const=kind.value, help=help_text
        )
    sub.add_argument(
        "--password-file",
        type=Path,
        help=f"file holding the PKCS#12 password (else ${P12_PASSWORD_ENV}, else a prompt)",
    )
    sub.add_argument(
        "--key-password-file",
        type=Path,
        help=f"file holding NAME.key's password if encrypted (else ${PASSWORD_ENV}, a prompt)",
    )
    sub.add_argument("--out", type=Path, help="the file to write (default: in the data directory)")
    sub.add_argument("--force", action="store_true", help="replace an existing file")
    parser.description = (
        "CA client of the InterSystems-compatible PKI (PKI.CAServer over SOAP).\n\n"
        + commands.listing()
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``client_app.py``; returns the exit code.

    Raises:
        SystemExit: only from argparse (usage errors exit 2, ``--help`` exits 0).
    """
    args = build_parser().parse_args(argv)
    try:
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except PkiError as exc:
        print(f"error: {one_line(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {one_line(exc.strerror or str(exc))}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"error: internal error: {type(exc).__name__}", file=sys.stderr)
        return 1
