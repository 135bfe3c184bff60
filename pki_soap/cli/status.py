"""``status`` and ``drop-mail``: the server's state at a glance, and the e-mail outbox."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pki_soap.ca import fingerprints, keys
from pki_soap.cli import Commands, admin, terminal
from pki_soap.cli.recording import mode_lines
from pki_soap.errors import InvalidInput, NotFound, PkiError
from pki_soap.server import revocation
from pki_soap.server.tasks import CAServer
from pki_soap.store import Mail, ServerConfig


def add_commands(commands: Commands) -> None:
    """Add ``status`` and ``drop-mail``."""
    status = commands.add(
        "status", "configuration, counts, serial counter, CRL, e-mail outbox", _status
    )
    status.add_argument(
        "--retry", action="store_true", help="try to send every undelivered e-mail now"
    )

    drop_mail = commands.add("drop-mail", "drop undelivered e-mail from the outbox", _drop_mail)
    drop_mail.add_argument(
        "ids", metavar="ID", type=int, nargs="*", help="message ids (`status` lists them)"
    )
    drop_mail.add_argument("--all", action="store_true", help="every undelivered message")
    admin.add_yes(drop_mail)


def _status(args: argparse.Namespace) -> int:
    exit_code = 0
    with admin.open_data_dir(args) as opened:
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
            lines += [
                ("CA certificate", str(server.ca_paths(cfg).cer)),
                ("Instance", cfg.instance),
                ("Node", cfg.node),
                ("Issued certificates valid", f"{cfg.days} days"),
            ]
            try:
                lines += _ca_lines(server)
            except PkiError as exc:
                lines.append(("CA files", f"UNUSABLE: {exc.message}"))
                exit_code = exc.exit_code
            lines += _smtp_lines(cfg)
            lines.append(("Administrator e-mail", cfg.admin_email or "(none)"))
        lines += [
            ("Pending CSRs", str(server.store.count_requests())),
            ("Issued certificates", str(server.store.count_certificates())),
        ]
        lines += mode_lines(server.store)
        waiting = server.store.undelivered()
    for line in terminal.labelled(lines):
        print(line)
    print()
    if not waiting:
        print("Undelivered e-mail: none")
    else:
        print(f"Undelivered e-mail: {len(waiting)}")
        print(
            terminal.table(
                ("Id", "To", "Subject", "Attempts", "Next attempt", "Last error"),
                _mail_rows(waiting),
            )
        )
        print(f"(`{admin.program_name()} drop-mail ID... | --all` drops them unsent)")
    if exit_code:
        terminal.error("the CA files are unusable (see above)")
    return exit_code


def _ca_lines(server: CAServer) -> list[tuple[str, str]]:
    """The CA's certificate, key, serial counter and revocation state.

    Raises:
        PkiError: the CA files are unusable.
    """
    authority = server.authority()
    return [
        ("CA subject", authority.subject_text),
        ("CA SHA-1 fingerprint", authority.fingerprint),
        ("CA SHA-256 fingerprint", fingerprints.sha256_fingerprint(authority.certificate)),
        ("CA valid until", terminal.when(authority.not_after)),
        ("CA key", keys.describe_key(authority.certificate.public_key())),
        ("Serial counter (.srl)", _serial_text(authority.serials.current)),
        *_revocation_lines(server),
    ]


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
            f"number {state.number}, next update {terminal.when(state.next_update)}, "
            f"{server.store.count_revocations(revocations.issuer)} revoked"
        )
        due = revocations.crl_due()
        if due is not None:
            crl_text += f"; DUE: {due} (run `crl`)"
    stored = server.store.ocsp_signer(revocations.issuer)
    if stored is None:
        signer_text = "none yet (`crl`, `issue` or `revoke` issues one)"
    else:
        signer_text = f"valid until {terminal.when(stored.not_after)}"
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
            terminal.when(m.next_attempt) if m.next_attempt else "never",
            m.last_error or "(not tried yet)",
        )
        for m in mails
    ]


def _smtp_lines(cfg: ServerConfig) -> list[tuple[str, str]]:
    if not cfg.smtp_server:
        return [("SMTP server", "(none: no e-mail is sent)")]
    return [
        ("SMTP server", f"{cfg.smtp_server}:{cfg.smtp_port}" if cfg.smtp_port else cfg.smtp_server),
        ("SMTP user", cfg.smtp_user or "(none)"),
        ("SMTP password", "set" if cfg.smtp_password else "not set"),
    ]


def _serial_text(current: Callable[[], int]) -> str:
    try:
        value = current()
    except PkiError as exc:
        return f"UNUSABLE: {exc.message}"
    return f"{value:02X} (next certificate number {value + 1})"


def _drop_mail(args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        raise InvalidInput("give the ids of the messages to drop (see `status`), or --all")
    with admin.open_data_dir(args) as opened:
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
        if not terminal.confirm(question, args.yes):
            print("Cancelled; nothing was changed.")
            return 1
        dropped = store.drop_mail(chosen)
    print(f"Dropped {len(dropped)} undelivered e-mail message(s): {', '.join(map(str, dropped))}")
    return 0
