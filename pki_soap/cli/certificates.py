"""``certificates``, ``revoke`` and ``crl``: the issued certificates and their revocation."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from pki_soap import files, messages
from pki_soap.ca import export, names
from pki_soap.ca.csr import cert_pem
from pki_soap.cli import Commands, admin, terminal
from pki_soap.cli.review import USAGES
from pki_soap.errors import InvalidInput, NotConfigured, UnknownCertificate
from pki_soap.server import revocation
from pki_soap.server.crl import Reason, SignedCrl
from pki_soap.server.revocation import Revocations
from pki_soap.store import IssuedCertificate, Revocation


def add_commands(commands: Commands) -> None:
    """Add ``certificates``, ``revoke`` and ``crl``."""
    listing = commands.add(
        "certificates", "list the issued certificates, or export one (--export NUMBER)", _listing
    )
    listing.add_argument(
        "--export",
        metavar="NUMBER",
        help="write certificate NUMBER as PEM: <Filename>.cer (with --chain or --fullchain: "
        "<Filename>-chain.pem, <Filename>-fullchain.pem)",
    )
    shape = listing.add_mutually_exclusive_group()
    shape.add_argument(
        "--chain", action="store_true", help="with --export: add the intermediate CA certificates"
    )
    shape.add_argument(
        "--fullchain", action="store_true", help="with --export: add every CA up to the root"
    )
    listing.add_argument(
        "--out", type=Path, metavar="FILE", help="with --export: the file to write ('-': stdout)"
    )
    listing.add_argument(
        "--force", action="store_true", help="with --export: replace an existing file"
    )

    revoke = commands.add("revoke", "revoke an issued certificate and sign a new CRL", _revoke)
    revoke.add_argument("number", type=_certificate_number, metavar="NUMBER")
    revoke.add_argument(
        "--reason",
        choices=[reason.value for reason in Reason if reason is not Reason.UNSPECIFIED],
        help="RFC 5280 reason code (default: none, i.e. unspecified)",
    )
    admin.add_password_file(revoke)
    admin.add_yes(revoke)

    crl = commands.add("crl", "sign a new CRL (and renew the OCSP signer when due)", _crl)
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
    admin.add_password_file(crl)


def _certificate_number(text: str) -> int:
    if not text.isdigit() or len(text) > 49:
        raise argparse.ArgumentTypeError(f"{text!r} is not a certificate number")
    return int(text)


def _listing(args: argparse.Namespace) -> int:
    if args.export is not None:
        return _export_certificate(args)
    if args.chain or args.fullchain or args.out is not None or args.force:
        raise InvalidInput("--chain, --fullchain, --out and --force go with --export NUMBER")
    with admin.open_data_dir(args) as opened:
        server = opened.server
        revoked = revocation.revoked_in_store(server.store)
        now = datetime.now(UTC)
        rows = [
            _certificate_row(cert, revoked.get(cert.number), now) for cert in server.certificates()
        ]
    if not rows:
        print("No certificates issued.")
        return 0
    headers = ("Number", "Hostname", "Instance", "Filename", "Subject", "Usage", "Not after")
    print(terminal.table((*headers, "State"), rows))
    return 0


def _export_certificate(args: argparse.Namespace) -> int:
    with admin.open_data_dir(args) as opened:
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
        data = cert_pem(cert).encode("ascii")
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
    """Revoke certificate NUMBER: the OCSP responder says so at once, and a new CRL is
    signed. certificateHold can later be made permanent (revoke again with another reason)
    or released (--reason removeFromCRL).
    """
    reason = Reason.named(args.reason) if args.reason else Reason.UNSPECIFIED
    with admin.open_data_dir(args) as opened:
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
        if not terminal.confirm(question, args.yes):
            print("Cancelled; nothing was changed.")
            return 1
        password = admin.ca_password(args.password_file)
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
    """Sign a new CRL with the CA key. The running server cannot (it never holds the CA
    key): run this before the CRL's next update, by hand or from a timer with --if-due.
    """
    with admin.open_data_dir(args) as opened:
        server = opened.server
        revocations = server.revocations()
        due = revocations.crl_due() or revocations.signer_due()
        if args.if_due and due is None:
            state = revocations.crl_state()
            print(messages.crl_current(state.number or 0, state.next_update))
        else:
            refreshed = server.refresh_revocation(admin.ca_password(args.password_file))
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


def _certificate_row(
    cert: IssuedCertificate, revoked: Revocation | None, now: datetime
) -> tuple[str, ...]:
    usage = USAGES[cert.usage].label if cert.usage in USAGES else (cert.usage or "")
    return (
        str(cert.number),
        cert.hostname,
        cert.instance,
        cert.filename,
        cert.subject,
        usage,
        terminal.when(cert.not_after, date_only=True),
        _state_text(cert, revoked, now),
    )


def _state_text(cert: IssuedCertificate, revoked: Revocation | None, now: datetime) -> str:
    state = revocation.state_of(cert, revoked, now)
    if revoked is None:
        return state.value
    return f"{state.value} ({revoked.reason}, {terminal.when(revoked.revoked, date_only=True)})"
