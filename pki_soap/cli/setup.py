"""``configure`` and ``reinitialize``: setting up the CA server on the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography import x509

from pki_soap import messages
from pki_soap.ca import keys, names
from pki_soap.ca.keys import KeyType
from pki_soap.cli import Commands, admin, terminal
from pki_soap.errors import InvalidInput
from pki_soap.server import revocation
from pki_soap.store import ServerConfig

_PASSED_AS_GIVEN = (
    "days",
    "ca_days",
    "smtp_user",
    "admin_email",
    "instance",
    "node",
    "public_url",
    "revocation_urls",
    "crl_days",
)
"""The options handed to ``CAServer.configure`` unchanged (None: not given, kept)."""

_SUBJECT_FIELDS = (
    ("--country", "two-letter country code (C)"),
    ("--state", "state or province (ST)"),
    ("--locality", "locality (L)"),
    ("--organization", "organization (O)"),
    ("--org-unit", "organizational unit (OU)"),
    ("--common-name", "common name (CN)"),
)


def add_commands(commands: Commands) -> None:
    """Add ``configure`` and ``reinitialize``."""
    configure = commands.add(
        "configure", "configure the CA (a new key and certificate, or yours)", _configure
    )
    configure.add_argument("--root", help="file name root of <root>.cer/.key (first time)")
    configure.add_argument(
        "--dir",
        dest="directory",
        metavar="DIR",
        help="directory of the CA files (relative: inside the data directory)",
    )
    configure.add_argument("--subject", help='CA subject, e.g. "/C=US/O=Example/CN=Example CA"')
    for flag, help_text in _SUBJECT_FIELDS:
        configure.add_argument(flag, help=help_text)
    configure.add_argument("--ca-days", type=int, help="validity of a new CA certificate (days)")
    configure.add_argument("--days", type=int, help="validity of issued certificates (days)")
    configure.add_argument(
        "--key-type",
        choices=[kind.value for kind in KeyType],
        help="key type of a new CA key (default: rsa2048)",
    )
    admin.add_password_file(configure)
    configure.add_argument("--smtp-server", metavar="HOST[:PORT]", help="SMTP server for e-mail")
    configure.add_argument("--smtp-user", help="SMTP user name (login after STARTTLS)")
    configure.add_argument(
        "--smtp-password-file",
        type=Path,
        metavar="FILE",
        help=f"file holding the SMTP password (or ${admin.SMTP_PASSWORD_ENV}, or a prompt)",
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

    reinitialize = commands.add(
        "reinitialize", "forget configuration, CSRs and records (files stay)", _reinitialize
    )
    admin.add_yes(reinitialize)


def _configure(args: argparse.Namespace) -> int:
    """Configure the CA server. If <root>.cer and <root>.key both exist in the directory they
    are used (an unencrypted key is encrypted with the password); otherwise a new key and
    self-signed CA certificate are created. On a configured CA the root and directory are
    fixed (reinitialize first) and only the settings given change: --days, the SMTP settings,
    --admin-email, --instance, --node (an empty value, e.g. --smtp-server "", removes an
    optional setting).
    """
    subject = _subject(args)
    smtp_server, smtp_port = _smtp_address(args.smtp_server)
    if args.root is not None:
        # Check the root first: a bad one must not cost the administrator a password prompt.
        names.check_root(args.root)
    with admin.open_data_dir(args, create=True) as opened:
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
                terminal.warn(
                    f"{paths.cer} and .key exist and are used; the subject given is ignored"
                )
            password: bytes | None = admin.password(
                args.password_file,
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
                password = admin.password(
                    args.password_file, what="password to encrypt the CA key", confirm=True
                )
        smtp_password = _smtp_password(args, previous)
        result = server.configure(
            root=root,
            directory=directory,
            password=password,
            subject=subject,
            key_type=KeyType(args.key_type or KeyType.RSA2048.value),
            smtp_server=smtp_server,
            smtp_port=smtp_port,
            smtp_password=smtp_password,
            **{name: getattr(args, name) for name in _PASSED_AS_GIVEN},
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
        print(admin.queued_mail_note(waiting_before))
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
    raw = admin.password(
        args.smtp_password_file, what="SMTP password", env=admin.SMTP_PASSWORD_ENV, confirm=True
    )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the SMTP password is not UTF-8 text") from exc


def _reinitialize(args: argparse.Namespace) -> int:
    with admin.open_data_dir(args) as opened:
        server = opened.server
        pending = server.store.count_requests()
        issued = server.store.count_certificates()
        question = (
            f"Reinitialize the CA server in {args.data_dir}? This deletes its configuration, "
            f"{pending} pending CSR(s) and the records of {issued} issued certificate(s); "
            "the key, certificate and serial files stay."
        )
        if not terminal.confirm(question, args.yes):
            print("Cancelled; nothing was changed.")
            return 1
        server.reinitialize()
        waiting = len(server.store.undelivered())
    print(messages.server_reinitialized())
    if waiting:
        print(admin.queued_mail_note(waiting))
    return 0


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
