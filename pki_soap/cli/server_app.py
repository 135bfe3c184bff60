"""``server_app.py``: the CA administrator's commands (configure, review, issue, serve, ...).

Without a command it serves the configured CA (as ``serve``), or, on a data directory with no
CA configured, says how to configure one or start the demo.  Passwords never come from argv:
``--password-file FILE``, the ``PKI_CA_PASSWORD`` environment variable (``PKI_SMTP_PASSWORD``
for the SMTP password), or a prompt when stdin is a terminal.  Questions (reinitialize,
delete, drop-mail) need a terminal or ``--yes``.  Errors print one ``error: <message>`` line
on stderr and exit with the error's code (errors.py); argparse usage errors exit 2.  Warnings
raised while a command runs (undelivered e-mail, ...) are printed after its result.

Whatever a SOAP client chose (names, contact fields, the CSR's subject) is printed through
:func:`pki_soap.escaping.for_terminal`: its control and bidi characters show as escapes and
never drive the administrator's terminal.

Other command modules plug in through :data:`EXTRA_COMMANDS`: each entry names a
module and its ``add_*_parser(subparsers)`` and ``run_*(args) -> int``
functions; a module that does not exist (yet) is left out.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib
import importlib.util
import logging
import logging.handlers
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from pki_soap import files, messages
from pki_soap.ca import keys, names, policy
from pki_soap.ca.authority import Usage
from pki_soap.ca.keys import KeyType
from pki_soap.cli import Commands
from pki_soap.errors import InvalidInput, NotConfigured, NotFound, PkiError, UnknownCertificate
from pki_soap.escaping import for_terminal
from pki_soap.server import revocation, settings
from pki_soap.server.crl import Reason, SignedCrl
from pki_soap.server.datadir import DataDirectory, open_data_directory
from pki_soap.server.exchanges import one_line, readable
from pki_soap.server.mail import SMTP_CAFILE_ENV
from pki_soap.server.revocation import Revocations
from pki_soap.server.tasks import CAServer
from pki_soap.server.tasks.issue import IssueResult
from pki_soap.store import (
    DEFAULT_KEEP,
    IRIS,
    TOOLKIT,
    Exchange,
    IssuedCertificate,
    Mail,
    PendingRequest,
    RecordLimits,
    Revocation,
    ServerConfig,
    Store,
)

PROG = "server_app.py"
INSTALLED_PROG = "pki-server"
DEFAULT_DATA_DIR = Path("pki-data")
CA_PASSWORD_ENV = "PKI_CA_PASSWORD"
SMTP_PASSWORD_ENV = "PKI_SMTP_PASSWORD"


@dataclass(frozen=True)
class ExtraCommand:
    """A subcommand kept in another module, imported only when it is the one run."""

    name: str
    help: str
    module: str
    add_parser: str  # function(subparsers) adding the ``name`` subparser
    run: str  # function(args) -> exit code


EXTRA_COMMANDS: list[ExtraCommand] = [
    ExtraCommand(
        "serve",
        "serve the CA over SOAP and the portal (the default)",
        "pki_soap.cli.serve",
        "add_serve_parser",
        "run_serve",
    ),
    ExtraCommand(
        "https-certificate",
        "issue or renew the server's own HTTPS certificate (serve --tls does at start)",
        "pki_soap.cli.https_certificate",
        "add_parser",
        "run",
    ),
    ExtraCommand(
        "portal-password",
        "set the web portal's administrator password",
        "pki_soap.cli.portal_password",
        "add_parser",
        "run",
    ),
]
"""Commands of other modules; a module that does not exist (yet) is left out."""

_USAGES = {usage.value: usage for usage in Usage}
_NAME_HELP = "the request's Name, its Filename, or the start of its Name"


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``server_app.py`` command; return the process exit code.

    Raises:
        SystemExit: only from argparse (``--help``: 0, usage errors: 2).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    # The administration commands parse without importing the service (spyne, gunicorn):
    # a first pass only finds out which command is wanted.
    parser, runners = build_parser()
    command_names = {*runners, *(extra.name for extra in EXTRA_COMMANDS)}
    if not set(arguments) & {*command_names, "-h", "--help"}:
        # No command is `serve`, with serve's options; with none at all and no CA to serve,
        # a newcomer learns how to make one instead of getting a bare warning.
        data_dir_only = argparse.ArgumentParser(add_help=False)
        data_dir_only.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
        given, serve_options = data_dir_only.parse_known_args(arguments)
        try:
            if not serve_options and not ca_configured(given.data_dir):
                return _explain_unconfigured(given.data_dir)
        except PkiError as exc:
            _error(exc.message)
            return exc.exit_code
        return main(["serve", *arguments])
    args, unknown = parser.parse_known_args(arguments)
    extra = next((c for c in EXTRA_COMMANDS if c.name == args.command), None)
    if extra is not None:
        parser, runners = build_parser(load=extra)
    if extra is not None or unknown:
        args = parser.parse_args(arguments)  # exits 2 on anything unknown
    try:
        if args.command == "serve":  # runs until stopped: its warnings cannot wait
            return runners[args.command](args)
        with _warnings_after_result():
            return runners[args.command](args)
    except PkiError as exc:
        _error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _error("interrupted")
        return 130
    except EOFError:
        _error("no answer (end of input); nothing was changed")
        return 1
    except OSError as exc:
        _error(str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:  # a bug: still one line, never a traceback
        _error(f"unexpected {type(exc).__name__}: {exc}")
        return 1


def build_parser(
    load: ExtraCommand | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    """The argparse parser and, for each subcommand name, the function that runs it.

    Commands of :data:`EXTRA_COMMANDS` are placeholders (listed in the help, taking any
    arguments) except ``load``, whose module is imported and whose real parser is added.

    Raises:
        ImportError: the module of ``load`` fails to import.
    """
    prog = program_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        epilog=(
            "Without a command it serves the configured CA (as `serve`, with its options).\n"
            f"Every command takes --data-dir; `{prog} COMMAND --help` shows its options."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="data directory (default: ./pki-data)",
    )
    # Every subcommand accepts --data-dir too; SUPPRESS keeps the global value when absent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, metavar="DIR")
    commands = Commands(
        parser,
        "%(prog)s [-h] [--data-dir DIR] [COMMAND [options]]",
        dest="command",
        metavar="COMMAND",
    )
    sub = commands.subparsers
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}

    configure = commands.add(
        "configure",
        "configure the CA (a new key and certificate, or yours)",
        parents=[common],
        description=(
            "Configure the CA server. If <root>.cer and <root>.key both exist in the "
            "directory they are used (an unencrypted key is encrypted with the password); "
            "otherwise a new key and self-signed CA certificate are created. On a configured "
            "CA the root and directory are fixed (reinitialize first) and only the settings "
            "given change: --days, the SMTP settings, --admin-email, --instance, --node "
            '(an empty value, e.g. --smtp-server "", removes an optional setting).'
        ),
    )
    configure.add_argument("--root", help="file name root of <root>.cer/.key (first time)")
    configure.add_argument(
        "--dir",
        dest="directory",
        metavar="DIR",
        help="directory of the CA files (relative: inside the data directory)",
    )
    configure.add_argument("--subject", help='CA subject, e.g. "/C=US/O=Example/CN=Example CA"')
    for flag, help_text in (
        ("--country", "two-letter country code (C)"),
        ("--state", "state or province (ST)"),
        ("--locality", "locality (L)"),
        ("--organization", "organization (O)"),
        ("--org-unit", "organizational unit (OU)"),
        ("--common-name", "common name (CN)"),
    ):
        configure.add_argument(flag, help=help_text)
    configure.add_argument("--ca-days", type=int, help="validity of a new CA certificate (days)")
    configure.add_argument("--days", type=int, help="validity of issued certificates (days)")
    configure.add_argument(
        "--key-type",
        choices=[kind.value for kind in KeyType],
        help="key type of a new CA key (default: rsa2048)",
    )
    _add_password_file(configure, "the CA key password")
    configure.add_argument("--smtp-server", metavar="HOST[:PORT]", help="SMTP server for e-mail")
    configure.add_argument("--smtp-user", help="SMTP user name (login after STARTTLS)")
    configure.add_argument(
        "--smtp-password-file",
        type=Path,
        metavar="FILE",
        help=f"file holding the SMTP password (or ${SMTP_PASSWORD_ENV}, or a prompt)",
    )
    configure.add_argument("--admin-email", help="the CA administrator's e-mail address")
    configure.add_argument("--instance", help="instance name the CA reports (default: PKI)")
    configure.add_argument("--node", help="node name the CA reports (default: this host)")
    configure.add_argument(
        "--public-url",
        metavar="URL",
        help='URL clients reach the server at (serve\'s default; "" removes it); new '
        "certificates then carry its CRL and OCSP addresses",
    )
    configure.add_argument(
        "--revocation-urls",
        action=argparse.BooleanOptionalAction,
        help="whether new certificates carry the CRL and OCSP addresses (default: yes, "
        "when a public URL is set)",
    )
    configure.add_argument(
        "--crl-days",
        type=int,
        help=f"how long each CRL is valid (default: {revocation.DEFAULT_CRL_DAYS} days)",
    )
    runners["configure"] = _configure

    reinitialize = commands.add(
        "reinitialize", "forget configuration, CSRs and records (files stay)", parents=[common]
    )
    _add_yes(reinitialize)
    runners["reinitialize"] = _reinitialize

    commands.add("pending", "list the pending CSRs", parents=[common])
    runners["pending"] = _pending

    show = commands.add(
        "show", "show a pending CSR and what each usage would issue", parents=[common]
    )
    show.add_argument("name", metavar="NAME", help=_NAME_HELP)
    runners["show"] = _show

    issue = commands.add(
        "issue", "issue a certificate for a pending CSR (or --all)", parents=[common]
    )
    issue.add_argument("name", metavar="NAME", nargs="?", help=_NAME_HELP)
    issue.add_argument("--all", action="store_true", help="issue every pending CSR")
    issue.add_argument(
        "--usage",
        required=True,
        choices=list(_USAGES),
        help="tls: TLS/SSL and XML security; intermediate: intermediate CA; codesign",
    )
    _add_password_file(issue, "the CA key password")
    runners["issue"] = _issue

    delete = commands.add("delete", "delete (reject) a pending CSR", parents=[common])
    delete.add_argument("name", metavar="NAME", help=_NAME_HELP)
    _add_yes(delete)
    runners["delete"] = _delete

    certificates = commands.add(
        "certificates",
        "list the issued certificates, or export one (--export NUMBER)",
        parents=[common],
    )
    certificates.add_argument(
        "--export",
        metavar="NUMBER",
        help="write certificate NUMBER as PEM: <Filename>.cer (with --chain or --fullchain: "
        "<Filename>-chain.pem, <Filename>-fullchain.pem)",
    )
    shape = certificates.add_mutually_exclusive_group()
    shape.add_argument(
        "--chain", action="store_true", help="with --export: add the intermediate CA certificates"
    )
    shape.add_argument(
        "--fullchain", action="store_true", help="with --export: add every CA up to the root"
    )
    certificates.add_argument(
        "--out", type=Path, metavar="FILE", help="with --export: the file to write ('-': stdout)"
    )
    certificates.add_argument(
        "--force", action="store_true", help="with --export: replace an existing file"
    )
    runners["certificates"] = _certificates

    revoke = commands.add(
        "revoke",
        "revoke an issued certificate and sign a new CRL",
        parents=[common],
        description=(
            "Revoke certificate NUMBER: the OCSP responder says so at once, and a new CRL is "
            "signed. certificateHold can later be made permanent (revoke again with another "
            "reason) or released (--reason removeFromCRL)."
        ),
    )
    revoke.add_argument("number", type=_certificate_number, metavar="NUMBER")
    revoke.add_argument(
        "--reason",
        choices=[reason.value for reason in Reason if reason is not Reason.UNSPECIFIED],
        help="RFC 5280 reason code (default: none, i.e. unspecified)",
    )
    _add_password_file(revoke, "the CA key password")
    _add_yes(revoke)
    runners["revoke"] = _revoke

    crl = commands.add(
        "crl",
        "sign a new CRL (and renew the OCSP signer when due)",
        parents=[common],
        description=(
            "Sign a new CRL with the CA key. The running server cannot (it never holds the "
            "CA key): run this before the CRL's next update, by hand or from a timer with "
            "--if-due."
        ),
    )
    crl.add_argument(
        "--if-due",
        action="store_true",
        help="do nothing (and ask no password) unless the CRL is behind, past half its "
        "validity, or the OCSP signing certificate is close to its end",
    )
    crl.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="also write the latest CRL to FILE (PEM if it ends in .pem, else DER)",
    )
    _add_password_file(crl, "the CA key password")
    runners["crl"] = _crl

    status = commands.add(
        "status", "configuration, counts, serial counter, CRL, e-mail outbox", parents=[common]
    )
    status.add_argument(
        "--retry", action="store_true", help="try to send every undelivered e-mail now"
    )
    runners["status"] = _status

    drop_mail = commands.add(
        "drop-mail", "drop undelivered e-mail from the outbox", parents=[common]
    )
    drop_mail.add_argument(
        "ids", metavar="ID", type=int, nargs="*", help="message ids (`status` lists them)"
    )
    drop_mail.add_argument("--all", action="store_true", help="every undelivered message")
    _add_yes(drop_mail)
    runners["drop-mail"] = _drop_mail

    mode = commands.add(
        "settings",
        "IRIS-strict mode and exchange recording (both off by default)",
        parents=[common],
        description=(
            "Show or change the settings `serve` starts with: IRIS-strict mode and the "
            "recording of SOAP exchanges. `serve` options override them for one run."
        ),
    )
    add_mode_arguments(mode, for_serve=False)
    runners["settings"] = _settings

    exchanges = commands.add(
        "exchanges",
        "the SOAP exchanges recorded by `serve --record`",
        parents=[common],
        description=(
            "List the recorded SOAP exchanges, newest first, or show one with its bytes and "
            "what IRIS would have done differently."
        ),
    )
    exchanges.add_argument(
        "--last", type=int, default=20, metavar="K", help="list the newest K (default 20)"
    )
    exchanges.add_argument("--show", type=int, metavar="ID", help="show exchange ID in full")
    runners["exchanges"] = _exchanges

    for extra in EXTRA_COMMANDS:
        if extra == load:
            module = importlib.import_module(extra.module)
            getattr(module, extra.add_parser)(sub)
            commands.list_only(extra.name, extra.help)
            runners[extra.name] = getattr(module, extra.run)
        elif importlib.util.find_spec(extra.module) is not None:
            commands.add(extra.name, extra.help, add_help=False)
    parser.description = (
        "Certificate Authority server: administration and the SOAP service.\n\n"
        + commands.listing()
    )
    return parser, runners


def program_name() -> str:
    """``pki-server`` when run as the installed command, else ``server_app.py``."""
    return INSTALLED_PROG if Path(sys.argv[0]).name == INSTALLED_PROG else PROG


def add_mode_arguments(parser: argparse.ArgumentParser, *, for_serve: bool) -> None:
    """The IRIS-strict and recording options (``serve`` overrides; ``settings`` stores)."""
    scope = "for this run (default: the stored setting, off)" if for_serve else "(stored)"
    strict = parser.add_mutually_exclusive_group()
    strict.add_argument(
        "--strict-iris",
        dest="strict_iris",
        action="store_true",
        default=None,
        help=f"behave as IRIS where this server deviates (README's table) {scope}",
    )
    strict.add_argument(
        "--no-strict-iris", dest="strict_iris", action="store_false", help="the lenient default"
    )
    record = parser.add_mutually_exclusive_group()
    record.add_argument(
        "--record",
        nargs="?",
        type=int,
        const=DEFAULT_KEEP,
        default=None,
        metavar="N",
        help=f"keep the last N SOAP exchanges in the store (N: {DEFAULT_KEEP}) {scope}",
    )
    record.add_argument(
        "--no-record", dest="record", action="store_const", const=0, help="record nothing"
    )
    parser.add_argument(
        "--record-bytes",
        type=int,
        metavar="BYTES",
        help="at most this much for all recorded exchanges (default 64 MiB)",
    )
    parser.add_argument(
        "--record-days",
        type=float,
        metavar="DAYS",
        help="drop a recorded exchange after this many days (default 7)",
    )


def mode_from_arguments(
    args: argparse.Namespace, stored: settings.ServeSettings
) -> settings.ServeSettings:
    """``stored`` with the options of ``add_mode_arguments`` applied.

    Raises:
        InvalidInput: a limit out of range, or a limit given while recording is off.
    """
    strict = stored.strict_iris if args.strict_iris is None else args.strict_iris
    limits = stored.record
    keep = args.record if args.record is not None else (limits.keep if limits else 0)
    if keep == 0:
        if args.record_bytes is not None or args.record_days is not None:
            raise InvalidInput("--record-bytes and --record-days need --record")
        return settings.ServeSettings(strict_iris=strict, record=None)
    base = limits or RecordLimits()
    record = RecordLimits(
        keep=keep,
        max_bytes=base.max_bytes if args.record_bytes is None else args.record_bytes,
        max_days=base.max_days if args.record_days is None else args.record_days,
    )
    return settings.ServeSettings(strict_iris=strict, record=record)


def _add_password_file(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"file holding {what} (or ${CA_PASSWORD_ENV}, or a prompt on a terminal)",
    )


def _certificate_number(text: str) -> int:
    if not text.isdigit() or len(text) > 49:
        raise argparse.ArgumentTypeError(f"{text!r} is not a certificate number")
    return int(text)


def _add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


# -- the commands -------------------------------------------------------------------------


def _configure(args: argparse.Namespace) -> int:
    subject = _subject(args)
    smtp_server, smtp_port = _smtp_address(args.smtp_server)
    if args.root is not None:
        # Check the root first: a bad one must not cost the administrator a password prompt.
        names.check_root(args.root)
    with _open(args, create=True) as opened:
        server = opened.server
        previous = server.store.server_config()
        waiting_before = len(server.store.undelivered())
        if previous is None:
            if args.root is None or args.directory is None or args.days is None:
                raise InvalidInput("a first configuration needs --root, --dir and --days")
            root, directory = args.root, args.directory
            paths = server.ca_paths(ServerConfig(root, directory, 1, "", ""))
            existing = paths.cer.exists() and paths.key.exists()
            if existing and subject is not None:
                _warn(f"{paths.cer} and .key exist and are used; the subject given is ignored")
            password: bytes | None = _password(
                args.password_file,
                env=CA_PASSWORD_ENV,
                what="CA key password" if existing else "new CA key password",
                confirm=not existing or not keys.key_file_encrypted(paths.key),
            )
        else:
            root = args.root or previous.root
            directory = args.directory or previous.directory
            server.check_files_unchanged(previous, root, directory)
            for given, flag in ((subject, "the subject"), (args.ca_days, "--ca-days")):
                if given is not None:
                    raise InvalidInput(
                        f"{flag} cannot change a configured CA certificate "
                        "(reinitialize first to configure another CA)"
                    )
            paths = server.ca_paths(previous)
            # The password is only needed to encrypt a CA key found unencrypted; one given
            # in a file is checked all the same.
            password = None
            if args.password_file is not None or (
                paths.key.exists() and not keys.key_file_encrypted(paths.key)
            ):
                password = _password(
                    args.password_file,
                    env=CA_PASSWORD_ENV,
                    what="password to encrypt the CA key",
                    confirm=True,
                )
        smtp_password = _smtp_password(args, previous)
        result = server.configure(
            root=root,
            directory=directory,
            password=password,
            days=args.days,
            subject=subject,
            ca_days=args.ca_days,
            key_type=KeyType(args.key_type or KeyType.RSA2048.value),
            smtp_server=smtp_server,
            smtp_port=smtp_port,
            smtp_user=args.smtp_user,
            smtp_password=smtp_password,
            admin_email=args.admin_email,
            instance=args.instance,
            node=args.node,
            public_url=args.public_url,
            revocation_urls=args.revocation_urls,
            crl_days=args.crl_days,
        )
        undelivered = result.mailed_to is not None and opened.notifier.last_error is not None
        if previous is not None:
            print(messages.server_reconfigured(result.changed))
        else:
            print(
                messages.server_configured(
                    created=result.created,
                    cer=result.paths.cer,
                    fingerprint=result.fingerprint,
                    mailed_to=None if undelivered else result.mailed_to,
                )
            )
        if result.encrypted_key:
            print(f"The CA key {result.paths.key} was not encrypted; it is now.")
        if undelivered and result.mailed_to is not None:
            print(messages.confirmation_queued(result.mailed_to, opened.notifier.last_error or ""))
        for path, old in result.moved_aside:
            print(messages.moved_aside(path, old))
    if waiting_before:
        print(_queued_mail_note(waiting_before))
    return 0


def _smtp_password(args: argparse.Namespace, previous: ServerConfig | None) -> str | None:
    """The SMTP password to store: asked when a user is given (or kept: None).

    Raises:
        InvalidInput: a password file without any SMTP user, or a password not UTF-8.
    """
    has_user = bool(args.smtp_user) or (
        args.smtp_user is None and previous is not None and bool(previous.smtp_user)
    )
    if not args.smtp_user and args.smtp_password_file is None:
        return "" if args.smtp_user == "" else None
    if not has_user:
        raise InvalidInput("--smtp-password-file needs --smtp-user")
    raw = _password(
        args.smtp_password_file, env=SMTP_PASSWORD_ENV, what="SMTP password", confirm=True
    )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the SMTP password is not UTF-8 text") from exc


def _reinitialize(args: argparse.Namespace) -> int:
    with _open(args) as opened:
        server = opened.server
        pending = server.store.count_requests()
        issued = server.store.count_certificates()
        question = (
            f"Reinitialize the CA server in {args.data_dir}? This deletes its configuration, "
            f"{pending} pending CSR(s) and the records of {issued} issued certificate(s); "
            "the key, certificate and serial files stay."
        )
        if not _confirm(question, args.yes):
            print("Cancelled; nothing was changed.")
            return 1
        server.reinitialize()
        waiting = len(server.store.undelivered())
    print(messages.server_reinitialized())
    if waiting:
        print(_queued_mail_note(waiting))
    return 0


def _pending(args: argparse.Namespace) -> int:
    with _open(args) as opened:
        server = opened.server
        requests = server.pending()
    if not requests:
        print("No pending Certificate Signing Requests.")
        return 0
    print(
        _table(
            ("Name", "Hostname", "Instance", "Filename", "Contact", "Received"),
            [
                (r.name, r.hostname, r.instance, r.filename, _contact(r), _when(r.received))
                for r in requests
            ],
        )
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    with _open(args) as opened:
        server = opened.server
        req = server.find_request(args.name)
        print(_describe_request(server, req))
    return 0


def _issue(args: argparse.Namespace) -> int:
    if args.all == (args.name is not None):
        raise InvalidInput("give either one request NAME or --all")
    usage = _USAGES[args.usage]
    # For --all the notices are only queued while issuing and sent together at the end:
    # one SMTP session instead of one per certificate.
    with _open(args, deliver_now=not args.all) as opened:
        server = opened.server
        server.config()
        if args.all:
            names_to_issue = [r.name for r in server.pending()]
        else:  # an unknown NAME fails before the password prompt
            names_to_issue = [server.find_request(args.name).name]
        if not names_to_issue:
            print("No pending Certificate Signing Requests.")
            return 0
        password = _password(
            args.password_file, env=CA_PASSWORD_ENV, what="CA key password", confirm=False
        )
        # Decrypted once (the slow step): a wrong password is one error, not one per request.
        key = server.authority().private_key(password)
        if not args.all:
            issued = server.issue(names_to_issue[0], usage, key=key)
            print(for_terminal(messages.certificate_issued(issued.number, names_to_issue[0])))
            return 0
        failures: list[PkiError] = []
        issued_count = 0

        def report(results: list[IssueResult]) -> None:
            # Called after each batch is committed: what is printed is on disk.
            nonlocal issued_count
            for result in results:
                if result.certificate is not None:
                    issued_count += 1
                    done = messages.certificate_issued(result.certificate.number, result.name)
                    print(for_terminal(done))
                elif result.error is not None:
                    _error(f'"{result.name}": {result.error.message}')
                    failures.append(result.error)
            sys.stdout.flush()

        try:
            server.issue_many(names_to_issue, usage, key=key, on_batch=report)
        finally:
            if issued_count:
                opened.notifier.deliver_due()
    if failures:
        return failures[0].exit_code
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _open(args) as opened:
        server = opened.server
        req = server.find_request(args.name)
        question = (
            f'Delete Certificate Signing Request "{req.name}" (host {req.hostname}, '
            f"instance {req.instance}, file {req.filename})? "
            + (
                f"Its contact ({req.contact_email}) is told it was not approved."
                if req.contact_email
                else "It has no contact e-mail to notify."
            )
        )
        if not _confirm(question, args.yes):
            print("Cancelled; nothing was changed.")
            return 1
        server.delete_request(req.name)
    print(for_terminal(messages.request_deleted(req.name)))
    return 0


def _certificates(args: argparse.Namespace) -> int:
    if args.export is not None:
        return _export_certificate(args)
    if args.chain or args.fullchain or args.out is not None or args.force:
        raise InvalidInput("--chain, --fullchain, --out and --force go with --export NUMBER")
    with _open(args) as opened:
        server = opened.server
        revoked = revocation.revoked_in_store(server.store)
        now = datetime.now(UTC)
        rows = [
            _certificate_row(cert, revoked.get(cert.number), now) for cert in server.certificates()
        ]
    if not rows:
        print("No certificates issued.")
        return 0
    print(
        _table(
            (
                "Number",
                "Hostname",
                "Instance",
                "Filename",
                "Subject",
                "Usage",
                "Not after",
                "State",
            ),
            rows,
        )
    )
    return 0


def _export_certificate(args: argparse.Namespace) -> int:
    from pki_soap.ca import export

    with _open(args) as opened:
        server = opened.server
        issued = server.certificate(args.export.strip())
        if issued is None:
            raise UnknownCertificate(f"no certificate number {args.export.strip()!r}")
        ca = server.authority().certificate
    cert = x509.load_pem_x509_certificate(issued.contents.encode("ascii"))
    if args.chain or args.fullchain:
        kind = export.ExportFormat.FULLCHAIN if args.fullchain else export.ExportFormat.CHAIN
        default_name = kind.file_name(issued.filename)
        cas = [] if cert == ca else export.issuers(cert, [ca])
        data = export.pem_bundle(export.chain(cert, cas, full=args.fullchain))
    else:
        default_name = f"{issued.filename}.cer"
        data = keys.cert_pem(cert).encode("ascii")
    if args.out == Path("-"):
        sys.stdout.write(data.decode("ascii"))
        return 0
    if args.out is None:
        names.check_root(issued.filename)  # a Filename a client sent: here it names a file
        target = Path(default_name)
    else:
        target = args.out
    if (target.exists() or target.is_symlink()) and not args.force:
        raise InvalidInput(f'file "{target}" already exists; use --force to replace it')
    files.write_public_file(target, data)
    print(f'Certificate number {issued.number} written to "{target}".')
    return 0


def _revoke(args: argparse.Namespace) -> int:
    reason = Reason.named(args.reason) if args.reason else Reason.UNSPECIFIED
    with _open(args) as opened:
        server = opened.server
        # Every mistake is found before the password prompt.
        cert, previous = server.revocations().check_revocable(args.number, reason)
        what = (
            f"certificate number {cert.number} (host {cert.hostname}, instance {cert.instance},"
            f" file {cert.filename}, subject {cert.subject or '(none)'})"
        )
        if reason is Reason.REMOVE_FROM_CRL:
            question = f"Release the hold on {what}? It becomes valid again."
        else:
            consequence = (
                "It can be released later with --reason removeFromCRL."
                if reason is Reason.CERTIFICATE_HOLD
                else "This cannot be undone."
            )
            made = " permanently" if previous is not None else ""
            question = f"Revoke {what}{made} ({reason.value})? {consequence}"
        if cert.contact_email:
            question += f" Its contact ({cert.contact_email}) is told by e-mail."
        if not _confirm(question, args.yes):
            print("Cancelled; nothing was changed.")
            return 1
        password = _password(
            args.password_file, env=CA_PASSWORD_ENV, what="CA key password", confirm=False
        )
        result = server.revoke(
            args.number, reason, password, revoked_by=revocation.command_line_user()
        )
    if result.revocation is None:
        print(messages.hold_released(args.number))
    else:
        print(messages.certificate_revoked(args.number, result.revocation.reason))
    print(_crl_line(result.crl))
    return 0


def _crl(args: argparse.Namespace) -> int:
    with _open(args) as opened:
        server = opened.server
        revocations = server.revocations()
        due = revocations.crl_due() or revocations.signer_due()
        if args.if_due and due is None:
            state = revocations.crl_state()
            print(messages.crl_current(state.number or 0, state.next_update))
        else:
            password = _password(
                args.password_file, env=CA_PASSWORD_ENV, what="CA key password", confirm=False
            )
            refreshed = server.refresh_revocation(password)
            if refreshed.crl is not None:
                print(_crl_line(refreshed.crl))
            if refreshed.signer_renewed:
                print(messages.ocsp_signer_issued(refreshed.signer.not_after))
        if args.out is not None:
            _write_crl(revocations, args.out)
    return 0


def _crl_line(crl: SignedCrl) -> str:
    line = messages.crl_signed(crl.number, crl.entries, crl.next_update)
    if not crl.current:
        line += " (another process signed a CRL with a higher number meanwhile; it is served)"
    return line


def _write_crl(revocations: Revocations, path: Path) -> None:
    latest = revocations.crl()
    if latest is None:
        raise NotConfigured("no CRL has been signed yet")
    data = latest.der
    if path.suffix.lower() == ".pem":
        data = SignedCrl(latest.number, latest.this_update, latest.next_update, 0, data, True).pem
    files.write_public_file(path, data)
    print(f'CRL number {latest.number} saved in file "{path}"')


def _status(args: argparse.Namespace) -> int:
    exit_code = 0
    with _open(args) as opened:
        server, notifier = opened.server, opened.notifier
        if args.retry:
            delivered = notifier.deliver_due(everything=True)
            print(f"Delivered {delivered} queued e-mail message(s).")
            print()
        cfg = server.store.server_config()
        lines: list[tuple[str, str]] = [("Data directory", str(args.data_dir))]
        if cfg is None:
            lines.append(("Configuration", "not configured (run `configure`)"))
        else:
            paths = server.ca_paths(cfg)
            lines += [
                ("CA certificate", str(paths.cer)),
                ("Instance", cfg.instance),
                ("Node", cfg.node),
                ("Issued certificates valid", f"{cfg.days} days"),
            ]
            try:
                authority = server.authority()
            except PkiError as exc:
                lines.append(("CA files", f"UNUSABLE: {exc.message}"))
                exit_code = exc.exit_code
            else:
                lines += [
                    ("CA subject", authority.subject_text),
                    ("CA SHA-1 fingerprint", authority.fingerprint),
                    (
                        "CA SHA-256 fingerprint",
                        names.sha256_fingerprint(authority.certificate),
                    ),
                    ("CA valid until", _when(authority.not_after)),
                    ("CA key", keys.describe_key(authority.certificate.public_key())),
                    ("Serial counter (.srl)", _serial_text(authority.serials.current)),
                ]
                lines += _revocation_lines(server)
            lines += _smtp_lines(cfg.smtp_server, cfg.smtp_port, cfg.smtp_user, cfg.smtp_password)
            lines.append(("Administrator e-mail", cfg.admin_email or "(none)"))
        lines += [
            ("Pending CSRs", str(server.store.count_requests())),
            ("Issued certificates", str(server.store.count_certificates())),
        ]
        lines += _mode_lines(server.store)
        waiting = server.store.undelivered()
    width = max(len(label) for label, _ in lines) + 2
    for label, value in lines:
        print(f"{label + ':':<{width}}{value}")
    print()
    if not waiting:
        print("Undelivered e-mail: none")
    else:
        print(f"Undelivered e-mail: {len(waiting)}")
        print(
            _table(
                ("Id", "To", "Subject", "Attempts", "Next attempt", "Last error"),
                _mail_rows(waiting),
            )
        )
        print(f"(`{program_name()} drop-mail ID... | --all` drops them unsent)")
    if exit_code:
        _error("the CA files are unusable (see above)")
    return exit_code


def _settings(args: argparse.Namespace) -> int:
    changes = (args.strict_iris, args.record, args.record_bytes, args.record_days)
    with _open(args, create=True) as opened:
        current = settings.load(opened.store)
        if any(value is not None for value in changes):
            current = mode_from_arguments(args, current)
            settings.save(opened.store, current)
    strict, recording = settings.describe(current)
    print(f"IRIS-strict mode:   {strict}")
    print(f"Exchange recording: {recording}")
    print("`serve` reads these when it starts; its options override them for one run.")
    return 0


def _mode_lines(store: Store) -> list[tuple[str, str]]:
    """IRIS-strict mode and exchange recording: the settings, the running server, the record."""
    strict, recording = settings.describe(settings.load(store))
    lines = [
        ("IRIS-strict mode", f"{strict} (setting)"),
        ("Exchange recording", f"{recording} (setting)"),
    ]
    last = settings.serving(store)
    if last is not None:
        run_strict, run_recording = settings.describe(last.settings)
        lines.append(
            (
                "Last `serve` start",
                f"{_when(last.started)} (pid {last.pid}): IRIS-strict {run_strict.split(':')[0]},"
                f" recording {run_recording}",
            )
        )
    count, size, newest = store.exchange_totals()
    kept = f"{count} ({size:,} bytes)" + (f", newest {_when(newest)}" if newest else "")
    lines.append(("Recorded exchanges", kept))
    return lines


def _exchanges(args: argparse.Namespace) -> int:
    with _open(args) as opened:
        store = opened.store
        if args.show is not None:
            exchange = store.exchange(args.show)
            if exchange is None:
                raise NotFound(
                    f"no recorded exchange {args.show} (never recorded, or dropped: only the"
                    " newest are kept; see `exchanges`)"
                )
            print(_describe_exchange(exchange))
            return 0
        if args.last < 1:
            raise InvalidInput("--last must be at least 1")
        listed = store.exchanges(args.last)
        last = settings.serving(store)
        recording = settings.load(store).record is not None or (
            last is not None and last.settings.record is not None
        )
    if not listed:
        print("No exchanges recorded.")
        if not recording:
            print(f"Recording is off: start the server with `{program_name()} serve --record [N]`.")
        return 0
    rows = [
        (
            str(e.id),
            _when(e.received),
            f"{e.duration_ms:.1f}",
            readable(e.client),
            e.method or "-",
            str(e.status),
            one_line(readable(e.fault), 60) if e.fault else "",
            str(e.note_count),
            one_line(readable(e.user_agent), 40) if e.user_agent else "(none)",
        )
        for e in listed
    ]
    print(
        _table(
            ("Id", "Received", "ms", "Client", "Method", "Status", "Fault", "Notes", "User-Agent"),
            rows,
        )
    )
    print(f"\n`{program_name()} exchanges --show ID` shows one with its bytes and notes.")
    return 0


def _describe_exchange(exchange: Exchange) -> str:
    """Everything recorded of one exchange, every stranger's byte escaped for a terminal."""
    lines: list[tuple[str, str]] = [
        ("Received", _when(exchange.received)),
        ("Duration", f"{exchange.duration_ms:.1f} ms"),
        ("Client", readable(exchange.client)),
        ("User-Agent", readable(exchange.user_agent) if exchange.user_agent else "(none)"),
        ("Routed to", exchange.method or "(not routed)"),
        ("Answer", f"HTTP {exchange.status}"),
        ("Fault", readable(exchange.fault) if exchange.fault else "(none)"),
        ("Mode", "IRIS-strict" if exchange.strict_iris else "lenient (the default)"),
    ]
    width = max(len(label) for label, _ in lines) + 2
    text = [f"Exchange {exchange.id}"]
    text += [f"{label + ':':<{width}}{value}" for label, value in lines]
    for kind, heading in (
        (IRIS, "What IRIS would have done differently:"),
        (TOOLKIT, "What is known of the client's toolkit:"),
    ):
        notes = [note.text for note in exchange.notes if note.kind == kind]
        text += ["", heading] + [f"  - {readable(note)}" for note in notes or ["nothing"]]
    for title, headers, body, size in (
        ("Request", exchange.request_headers, exchange.request, exchange.request_size),
        ("Answer", exchange.answer_headers, exchange.answer, exchange.answer_size),
    ):
        kept = "" if size == len(body) else f", the first {len(body):,} kept"
        order = " (their order is not recorded)" if title == "Request" else ""
        text += ["", f"{title} headers{order}:"]
        text += [f"  {readable(name)}: {readable(value)}" for name, value in headers]
        text += ["", f"{title} ({size:,} bytes{kept}; \\r marks a CR):", readable(body)]
    return "\n".join(text)


def _drop_mail(args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        raise InvalidInput("give the ids of the messages to drop (see `status`), or --all")
    with _open(args) as opened:
        store = opened.store
        waiting = {mail.id: mail for mail in store.undelivered()}
        unknown = sorted(set(args.ids) - set(waiting))
        if unknown:
            raise NotFound("no undelivered e-mail message with id " + ", ".join(map(str, unknown)))
        chosen = sorted(waiting) if args.all else sorted(set(args.ids))
        if not chosen:
            print("No undelivered e-mail.")
            return 0
        recipients = sorted({waiting[i].recipient for i in chosen})
        question = (
            f"Drop {len(chosen)} undelivered e-mail message(s) to {', '.join(recipients)}? "
            "They will never be sent."
        )
        if not _confirm(question, args.yes):
            print("Cancelled; nothing was changed.")
            return 1
        dropped = store.drop_mail(chosen)
    print(f"Dropped {len(dropped)} undelivered e-mail message(s): {', '.join(map(str, dropped))}")
    return 0


# -- what the commands show ---------------------------------------------------------------


def _queued_mail_note(count: int) -> str:
    return (
        f"{count} undelivered e-mail message(s) stay queued and are retried; "
        f"`{program_name()} status` lists them, `{program_name()} drop-mail --all` drops them."
    )


def _describe_request(server: CAServer, req: PendingRequest) -> str:
    lines: list[tuple[str, str]] = [
        ("Name", req.name),
        ("Received", _when(req.received)),
        ("Host name", req.hostname),
        ("Instance", req.instance),
        ("File name", req.filename),
        ("Subject (as sent)", req.subject or "(empty)"),
        ("Contact name", req.contact_name),
        ("Contact phone", req.contact_phone or "(none)"),
        ("Contact e-mail", _contact_email(req.contact_email)),
    ]
    previews: list[str] = []
    try:
        csr = keys.load_csr(req.contents)
    except PkiError as exc:
        lines.append(("Request", f"UNUSABLE: {exc.message}"))
    else:
        sans = keys.requested_sans(csr)
        lines += [
            ("Subject (in the CSR)", names.subject_text(csr.subject) or "(empty)"),
            ("Requested subjectAltNames", names.sans_text(sans) if sans else "(none)"),
            ("Key", keys.describe_key(csr.public_key())),
            ("SHA-1 fingerprint", names.fingerprint(csr)),
        ]
        previews = _previews(server, csr)
        if req.subject and req.subject != names.subject_text(csr.subject):
            # The certificate gets the CSR's subject; a differing label could mislead.
            lines.append(("Note", "the subject sent differs from the CSR's, which is used"))
        refused = policy.refusals(csr)
        lines.append(
            ("Issuance policy", "REFUSES it: " + "; ".join(refused) if refused else "no objection")
        )
    width = max(len(label) for label, _ in lines) + 2
    text = [f"{label + ':':<{width}}{value}" for label, value in lines]
    if previews:
        text += ["", *previews]
    text += [
        "",
        "Verify the fingerprint and the requester's identity with the contact before issuing.",
    ]
    # Each line is escaped whole: a value's own line break cannot start a line of its own.
    return "\n".join(for_terminal(line) for line in text)


def _previews(server: CAServer, csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        authority = server.authority()
    except PkiError as exc:
        return [f"Cannot preview the certificate: {exc.message}"]
    text: list[str] = []
    for usage in Usage:
        text.append(f"--usage {usage.value} ({usage.label}) would issue:")
        try:
            text += [f"  {line}" for line in authority.preview_extensions(csr, usage)]
        except PkiError as exc:
            text.append(f"  REFUSED: {exc.message}")
    return text


def _contact_email(value: str | None) -> str:
    if not value:
        return "(none)"
    if names.is_email_address(value):
        return value
    return f"{value} (not an e-mail address: no notice is sent to it)"


def _certificate_row(
    cert: IssuedCertificate, revoked: Revocation | None, now: datetime
) -> tuple[str, ...]:
    usage = _USAGES[cert.usage].label if cert.usage in _USAGES else (cert.usage or "")
    return (
        str(cert.number),
        cert.hostname,
        cert.instance,
        cert.filename,
        cert.subject,
        usage,
        _when(cert.not_after, date_only=True),
        _state_text(cert, revoked, now),
    )


def _state_text(cert: IssuedCertificate, revoked: Revocation | None, now: datetime) -> str:
    state = revocation.state_of(cert, revoked, now)
    if revoked is None:
        return state.value
    return f"{state.value} ({revoked.reason}, {_when(revoked.revoked, date_only=True)})"


def _revocation_lines(server: CAServer) -> list[tuple[str, str]]:
    """What ``status`` says about revocation: URLs, the CRL, the OCSP signer."""
    cfg = server.config()
    try:
        urls = revocation.revocation_urls(cfg)
    except PkiError as exc:
        urls_text = f"UNUSABLE: {exc.message}"
    else:
        urls_text = f"CRL {urls.crl}, OCSP {urls.ocsp}" if urls else "(none)"
    revocations = server.revocations()
    state = revocations.crl_state()
    if state.number is None or state.next_update is None:
        crl_text = "none signed yet (`crl`, `issue` or `revoke` signs one)"
    else:
        crl_text = (
            f"number {state.number}, next update {_when(state.next_update)}, "
            f"{server.store.count_revocations(revocations.issuer)} revoked"
        )
        due = revocations.crl_due()
        if due is not None:
            crl_text += f"; DUE: {due} (run `crl`)"
    stored = server.store.ocsp_signer(revocations.issuer)
    if stored is None:
        signer_text = "none yet (`crl`, `issue` or `revoke` issues one)"
    else:
        signer_text = f"valid until {_when(stored.not_after)}"
        due = revocations.signer_due()
        if due is not None:
            signer_text += f"; DUE: {due} (run `crl`)"
    return [
        ("Public URL", cfg.public_url or "(none)"),
        ("Revocation URLs in new certificates", urls_text),
        ("CRL validity", f"{cfg.crl_days} days"),
        ("CRL", crl_text),
        ("OCSP signing certificate", signer_text),
    ]


def _mail_rows(mails: list[Mail]) -> list[tuple[str, ...]]:
    return [
        (
            str(m.id),
            m.recipient,
            m.subject,
            str(m.attempts),
            _when(m.next_attempt) if m.next_attempt else "never",
            m.last_error or "(not tried yet)",
        )
        for m in mails
    ]


def _smtp_lines(
    server: str | None, port: int | None, user: str | None, password: str | None
) -> list[tuple[str, str]]:
    if not server:
        return [("SMTP server", "(none: no e-mail is sent)")]
    return [
        ("SMTP server", f"{server}:{port}" if port else server),
        ("SMTP user", user or "(none)"),
        ("SMTP password", "set" if password else "not set"),
    ]


def _serial_text(current: Callable[[], int]) -> str:
    try:
        value = current()
    except PkiError as exc:
        return f"UNUSABLE: {exc.message}"
    return f"{value:02X} (next certificate number {value + 1})"


def _contact(req: PendingRequest) -> str:
    details = ", ".join(x for x in (req.contact_phone, req.contact_email) if x)
    return f"{req.contact_name} ({details})" if details else req.contact_name


def _when(moment: datetime | None, *, date_only: bool = False) -> str:
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M:%S UTC")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns under a header and a rule; the last column is not padded.

    Every cell is escaped for the terminal (a stranger's text: see the module docstring).
    """
    shown = [[for_terminal(str(cell)) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in shown) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    headers, rows = shown[0], shown[1:]
    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


# -- input: subject, SMTP address, passwords, confirmations --------------------------------


def _subject(args: argparse.Namespace) -> x509.Name | None:
    fields = {
        "country": args.country,
        "state": args.state,
        "locality": args.locality,
        "organization": args.organization,
        "org_unit": args.org_unit,
        "common_name": args.common_name,
    }
    given = {key: value for key, value in fields.items() if value is not None}
    if args.subject is not None and given:
        raise InvalidInput("give the subject either as --subject or as separate fields, not both")
    if args.subject is not None:
        return names.subject_from_text(args.subject)
    if given:
        return names.subject_from_fields(**given)
    return None


def _smtp_address(text: str | None) -> tuple[str | None, int | None]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port or None).

    None (not given) gives (None, None); an empty text gives ("", None): remove the server.
    """
    if text is None:
        return None, None
    if not text.strip():
        return "", None
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise InvalidInput(f"SMTP server {text!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidInput(f"SMTP server {text!r} is not HOST[:PORT]")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise InvalidInput(f"SMTP server {text!r} has no host name")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidInput(f"SMTP port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _password(file: Path | None, *, env: str, what: str, confirm: bool) -> bytes:
    """A password from ``file``, the environment variable ``env``, or a prompt.

    Raises:
        InvalidInput: the file is unreadable or empty, the prompt answers differ or are
            empty, or there is no file, no variable and no terminal to ask on.
    """
    if file is not None:
        try:
            data = file.read_bytes()
            mode = file.stat().st_mode
        except OSError as exc:
            raise InvalidInput(f"cannot read the password file {file}: {exc.strerror}") from exc
        if stat.S_IMODE(mode) & 0o077:
            _warn(f"the password file {file} is readable by other users")
        password = data.removesuffix(b"\n").removesuffix(b"\r")
        if not password:
            raise InvalidInput(f"the password file {file} is empty")
        return password
    from_env = os.environb.get(env.encode())
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"the {what} is needed: use --password-file FILE or ${env}, "
            "or run on a terminal to be asked"
        )
    password = getpass.getpass(f"{what[0].upper()}{what[1:]}: ").encode("utf-8")
    if not password:
        raise InvalidInput(f"the {what} may not be empty")
    if confirm and getpass.getpass(f"{what[0].upper()}{what[1:]} (again): ").encode() != password:
        raise InvalidInput(f"the two {what}s differ")
    return password


def ca_password(file: Path | None) -> bytes:
    """The CA key password as every command asks it: ``file``, ``$PKI_CA_PASSWORD``, a prompt.

    Raises:
        InvalidInput: as the administration commands (see ``_password``).
    """
    return _password(file, env=CA_PASSWORD_ENV, what="CA key password", confirm=False)


def _confirm(question: str, yes: bool) -> bool:
    """True if ``yes`` or the administrator answers y.

    Raises:
        InvalidInput: no ``--yes`` and no terminal to ask on.
    """
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InvalidInput("confirmation needed: run on a terminal or add --yes")
    answer = input(f"{for_terminal(question)}\nContinue? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


# -- the server and its data directory ----------------------------------------------------


def _open(
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


def _explain_unconfigured(data_dir: Path) -> int:
    """What a newcomer needs when there is no CA to serve yet; NotConfigured's exit code."""
    prog = "python server_app.py" if program_name() == PROG else program_name()
    where = "" if data_dir == DEFAULT_DATA_DIR else f" --data-dir {data_dir}"
    print(
        f"No Certificate Authority is configured in {data_dir} yet. Configure one:\n"
        f'  {prog} configure{where} --root MyCA --dir CAServer --subject "/O=Example/CN=Example'
        ' CA" --ca-days 3650 --days 365\n'
        "(a new key and certificate; <root>.cer and <root>.key already in --dir are used), or\n"
        "start a throw-away demo CA, for testing only:\n"
        f"  {prog} serve{where} --demo\n"
        f"Then `{prog}{where}` serves it; `{prog} --help` lists every command."
    )
    _error(f"no Certificate Authority is configured in {data_dir}")
    return NotConfigured.exit_code


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return "warning: " + for_terminal(" ".join(super().format(record).split()))


@contextlib.contextmanager
def _warnings_after_result() -> Iterator[None]:
    """Hold the package's log warnings while a command runs; print them when it is done.

    A delivery failure is logged while the notice is sent, which is before the command prints
    what it did: held back, the result comes first and the warnings follow it.
    """
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(_OneLine())
    held = logging.handlers.MemoryHandler(
        capacity=10_000, flushLevel=logging.CRITICAL + 1, target=stream, flushOnClose=True
    )
    held.setLevel(logging.WARNING)
    logger = logging.getLogger("pki_soap")
    logger.addHandler(held)
    try:
        yield
    finally:
        logger.removeHandler(held)
        sys.stdout.flush()
        held.close()  # flushes what was held


def _error(message: str) -> None:
    one_line = " ".join(message.splitlines())
    print(f"error: {for_terminal(one_line)}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
