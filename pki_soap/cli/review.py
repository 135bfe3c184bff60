"""``pending``, ``show``, ``issue`` and ``delete``: the administrator reviews the CSRs sent in.

Every field of a request is a SOAP client's text: it reaches the terminal escaped
(pki_soap/cli/terminal.py).
"""

from __future__ import annotations

import argparse
import sys

from cryptography import x509

from pki_soap import messages
from pki_soap.ca import fingerprints, keys, names, policy
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import load_csr, requested_sans
from pki_soap.cli import Commands, admin, terminal
from pki_soap.errors import InvalidInput, PkiError
from pki_soap.escaping import for_terminal
from pki_soap.server.tasks import CAServer
from pki_soap.server.tasks.issue import IssueResult
from pki_soap.store import PendingRequest

USAGES = {usage.value: usage for usage in Usage}
"""The ``--usage`` names, and the usage each one issues."""

_NAME_HELP = "the request's Name, its Filename, or the start of its Name"


def add_commands(commands: Commands) -> None:
    """Add ``pending``, ``show``, ``issue`` and ``delete``."""
    commands.add("pending", "list the pending CSRs", _pending)
    show = commands.add("show", "show a pending CSR and what each usage would issue", _show)
    show.add_argument("name", metavar="NAME", help=_NAME_HELP)

    issue = commands.add("issue", "issue a certificate for a pending CSR (or --all)", _issue)
    issue.add_argument("name", metavar="NAME", nargs="?", help=_NAME_HELP)
    issue.add_argument("--all", action="store_true", help="issue every pending CSR")
    issue.add_argument(
        "--usage",
        required=True,
        choices=list(USAGES),
        help="tls: TLS/SSL and XML security; intermediate: intermediate CA; codesign",
    )
    admin.add_password_file(issue)

    delete = commands.add("delete", "delete (reject) a pending CSR", _delete)
    delete.add_argument("name", metavar="NAME", help=_NAME_HELP)
    admin.add_yes(delete)


def _pending(args: argparse.Namespace) -> int:
    with admin.open_data_dir(args) as opened:
        requests = opened.server.pending()
    if not requests:
        print("No pending Certificate Signing Requests.")
        return 0
    print(
        terminal.table(
            ("Name", "Hostname", "Instance", "Filename", "Contact", "Received"),
            [
                (r.name, r.hostname, r.instance, r.filename, _contact(r), terminal.when(r.received))
                for r in requests
            ],
        )
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    with admin.open_data_dir(args) as opened:
        server = opened.server
        print(_describe_request(server, server.find_request(args.name)))
    return 0


def _issue(args: argparse.Namespace) -> int:
    if args.all == (args.name is not None):
        raise InvalidInput("give either one request NAME or --all")
    usage = USAGES[args.usage]
    # For --all the notices are only queued while issuing and sent together at the end:
    # one SMTP session instead of one per certificate.
    with admin.open_data_dir(args, deliver_now=not args.all) as opened:
        server = opened.server
        server.config()
        if args.all:
            names_to_issue = [r.name for r in server.pending()]
        else:  # an unknown NAME fails before the password prompt
            names_to_issue = [server.find_request(args.name).name]
        if not names_to_issue:
            print("No pending Certificate Signing Requests.")
            return 0
        password = admin.ca_password(args.password_file)
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
                    terminal.error(f'"{result.name}": {result.error.message}')
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
    with admin.open_data_dir(args) as opened:
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
        if not terminal.confirm(question, args.yes):
            print("Cancelled; nothing was changed.")
            return 1
        server.delete_request(req.name)
    print(for_terminal(messages.request_deleted(req.name)))
    return 0


def _describe_request(server: CAServer, req: PendingRequest) -> str:
    lines: list[tuple[str, str]] = [
        ("Name", req.name),
        ("Received", terminal.when(req.received)),
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
        csr = load_csr(req.contents)
    except PkiError as exc:
        lines.append(("Request", f"UNUSABLE: {exc.message}"))
    else:
        sans = requested_sans(csr)
        lines += [
            ("Subject (in the CSR)", names.subject_text(csr.subject) or "(empty)"),
            ("Requested subjectAltNames", names.sans_text(sans) if sans else "(none)"),
            ("Key", keys.describe_key(csr.public_key())),
            ("SHA-1 fingerprint", fingerprints.fingerprint(csr)),
        ]
        previews = _previews(server, csr)
        if req.subject and req.subject != names.subject_text(csr.subject):
            # The certificate gets the CSR's subject; a differing label could mislead.
            lines.append(("Note", "the subject sent differs from the CSR's, which is used"))
        refused = policy.refusals(csr)
        lines.append(
            ("Issuance policy", "REFUSES it: " + "; ".join(refused) if refused else "no objection")
        )
    text = terminal.labelled(lines)
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


def _contact(req: PendingRequest) -> str:
    details = ", ".join(x for x in (req.contact_phone, req.contact_email) if x)
    return f"{req.contact_name} ({details})" if details else req.contact_name
