"""The CA server's pending CSRs: the list, one request read in full and issued, deletion."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from werkzeug.wrappers import Response

from pki_soap import messages
from pki_soap.ca import fingerprints, keys, names, policy
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import load_csr, requested_sans
from pki_soap.ca.extensions import KEY_USAGE_BITS
from pki_soap.errors import (
    PkiError,
    UnknownRequest,
    WrongPassword,
)
from pki_soap.portal import forms
from pki_soap.portal.app import FormErrors, Page, Portal
from pki_soap.store import PendingRequest

REQUESTS_PER_PAGE = 50


def register(portal: Portal) -> None:
    """Add the pending-request pages to ``portal``."""
    portal.add_page("/server/requests", "server_requests", pending, methods=("GET",))
    portal.add_page("/server/process", "server_process", process, methods=("GET", "POST"))
    portal.add_page("/server/delete", "server_delete", delete, methods=("GET", "POST"))


def pending(page: Page) -> Response:
    """The pending CSRs, oldest first, a page at a time, each with Process and Delete."""
    configured = page.store.server_config() is not None
    total = page.store.count_requests() if configured else 0
    pages = max(1, -(-total // REQUESTS_PER_PAGE))
    try:
        number = int(page.request.args.get("page", "1"))
    except ValueError:
        number = 1
    number = min(max(number, 1), pages)
    offset = (number - 1) * REQUESTS_PER_PAGE
    requests = page.store.requests_page(offset, REQUESTS_PER_PAGE) if configured else []
    return page.render(
        "server_requests.html",
        requests=requests,
        configured=configured,
        total=total,
        page_number=number,
        pages=pages,
        first=offset + 1,
    )


@dataclass
class _RequestView:
    """Everything the administrator reads before issuing (``server_app.py show``)."""

    request: PendingRequest
    subject: str
    sans: str
    fingerprint: str
    key: str
    requested: list[str]
    previews: list[tuple[Usage, list[str], str | None]]
    problem: str | None
    refused: list[str]
    """What the issuance policy refuses in this request (empty: nothing)."""


def _view(page: Page, request: PendingRequest) -> _RequestView:
    try:
        csr = load_csr(request.contents)
    except PkiError as exc:
        return _RequestView(request, request.subject, "", "", "", [], [], exc.message, [])
    try:
        authority = page.server.authority()
    except PkiError as exc:
        authority = None
        problem: str | None = exc.message
    else:
        problem = None
    previews: list[tuple[Usage, list[str], str | None]] = []
    for usage in Usage:
        if authority is None:
            break
        try:
            previews.append((usage, authority.preview_extensions(csr, usage), None))
        except PkiError as exc:
            previews.append((usage, [], forms.sentence(exc.message)))
    return _RequestView(
        request=request,
        subject=names.subject_text(csr.subject),
        sans=names.sans_text(requested_sans(csr)),
        fingerprint=fingerprints.fingerprint(csr),
        key=keys.describe_key(csr.public_key()),
        requested=requested_extensions(csr),
        previews=previews,
        problem=problem,
        refused=policy.refusals(csr),
    )


def requested_extensions(csr: x509.CertificateSigningRequest) -> list[str]:
    """The extensions a CSR asks for, one readable line each."""
    lines = []
    try:
        extensions = list(csr.extensions)
    except ValueError as exc:
        return [f"(unreadable: {exc})"]
    for extension in extensions:
        value = extension.value
        critical = " (critical)" if extension.critical else ""
        if isinstance(value, x509.SubjectAlternativeName):
            text = names.sans_text(value)
        elif isinstance(value, x509.BasicConstraints):
            text = f"CA:{'TRUE' if value.ca else 'FALSE'}"
            if value.path_length is not None:
                text += f", pathlen:{value.path_length}"
        elif isinstance(value, x509.ExtendedKeyUsage):
            text = ", ".join(getattr(oid, "_name", oid.dotted_string) for oid in value)
        elif isinstance(value, x509.KeyUsage):
            flags = [name.replace("_", " ") for name in KEY_USAGE_BITS if getattr(value, name)]
            text = ", ".join(flags)
        else:
            text = type(value).__name__
        name = getattr(extension.oid, "_name", extension.oid.dotted_string)
        lines.append(f"{name}{critical}: {text}")
    return lines


def process(page: Page) -> Response:
    """Show one pending CSR completely; on POST issue it with the chosen usage."""
    name = page.request.values.get("name", "")
    request = _pending_request(page, name)
    if request is None:
        return page.redirect("server_requests")
    errors = FormErrors()
    usage_value = page.request.form.get("usage", "")
    if page.request.method == "POST":
        try:
            usage = Usage(usage_value)
        except ValueError:
            errors.add("usage", "Choose the certificate usage.")
        password = page.secret("password")
        if password is None:
            errors.add("password", "Enter the CA private key password.")
        if not errors and password is not None:
            try:
                issued = page.server.issue(name, usage, password)
            except WrongPassword as exc:
                errors.add("password", forms.sentence(exc.message))
            except UnknownRequest:
                _no_such_request(page, name)
                return page.redirect("server_requests")
            except PkiError as exc:
                errors.add(None, forms.sentence(exc.message))
            else:
                page.flash("success", messages.certificate_issued(issued.number, name))
                return page.redirect("server_certificates", number=str(issued.number))
    return page.render_form(
        "server_process.html",
        errors,
        view=_view(page, request),
        usages=list(Usage),
        usage_value=usage_value,
    )


def delete(page: Page) -> Response:
    """Delete (reject) a pending CSR after a confirmation."""
    name = page.request.values.get("name", "")
    request = _pending_request(page, name)
    if request is None:
        return page.redirect("server_requests")
    if page.request.method == "POST":
        try:
            page.server.delete_request(name)
        except UnknownRequest:
            # Issued or deleted by someone else meanwhile: never report a deletion that
            # did not happen here (it may have been issued).
            page.flash("error", f'"{name}" is no longer pending (issued or deleted meanwhile).')
        else:
            page.flash("success", messages.request_deleted(name))
        return page.redirect("server_requests")
    return page.render("server_delete.html", request=request)


def _pending_request(page: Page, name: str) -> PendingRequest | None:
    """The pending request ``name``; None, with a message for the next page, if there is none."""
    try:
        return page.server.request(name)
    except UnknownRequest:
        _no_such_request(page, name)
        return None


def _no_such_request(page: Page, name: str) -> None:
    page.flash("error", f'No pending Certificate Signing Request is named "{name}".')
