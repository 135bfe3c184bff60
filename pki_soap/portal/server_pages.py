"""The Certificate Authority server's pages: configure, reinitialize, pending CSRs, certificates,
and the recorded SOAP exchanges."""

from __future__ import annotations

import re
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from werkzeug.wrappers import Response

from pki_soap import messages
from pki_soap.ca import keys, names, policy
from pki_soap.ca.authority import CAPaths, Usage
from pki_soap.errors import (
    CAFileError,
    InvalidRoot,
    InvalidSubject,
    NotFound,
    PkiError,
    UnknownRequest,
    WrongPassword,
)
from pki_soap.portal import forms
from pki_soap.portal.app import FormErrors, Page, Portal, form_values
from pki_soap.server import revocation, settings
from pki_soap.server.crl import Reason
from pki_soap.server.exchanges import readable
from pki_soap.store import IRIS, TOOLKIT, Exchange, IssuedCertificate, PendingRequest

CONFIGURE_FIELDS = (
    "root", "directory", "days", "ca_days", "key_type", *forms.SUBJECT_NAMES,
    "smtp_server", "smtp_port", "smtp_user", "admin_email", "instance", "node",
    "public_url", "crl_days",
)  # fmt: skip
REVOKE_REASONS = [
    (reason.value, reason.value) for reason in Reason if reason is not Reason.REMOVE_FROM_CRL
]
SEARCH_FIELDS = ("number", "hostname", "instance", "filename", "subject")
MAX_LISTED = 1000
REQUESTS_PER_PAGE = 50
EXCHANGES_LISTED = 200


def register(portal: Portal) -> None:
    """Add the CA server's pages to ``portal``."""
    portal.add_page("/", "index", index, methods=("GET",))
    portal.add_page("/server/configure", "server_configure", configure, methods=("GET", "POST"))
    portal.add_page(
        "/server/reinitialize", "server_reinitialize", reinitialize, methods=("GET", "POST")
    )
    portal.add_page("/server/requests", "server_requests", pending, methods=("GET",))
    portal.add_page("/server/process", "server_process", process, methods=("GET", "POST"))
    portal.add_page("/server/delete", "server_delete", delete, methods=("GET", "POST"))
    portal.add_page("/server/certificates", "server_certificates", certificates, methods=("GET",))
    portal.add_page("/server/revoke", "server_revoke", revoke, methods=("GET", "POST"))
    portal.add_page(
        "/server/certificates/<int:number>.pem",
        "server_certificate_pem",
        certificate_pem,
        methods=("GET",),
    )
    portal.add_page("/server/exchanges", "server_exchanges", exchanges, methods=("GET",))
    portal.add_page(
        "/server/exchanges/<int:exchange_id>", "server_exchange", exchange, methods=("GET",)
    )


def index(page: Page) -> Response:
    """The start page: what is configured, what waits."""
    store = page.store
    server_config = store.server_config()
    client_config = store.client_config()
    authority = None
    if server_config is not None:
        try:
            authority = page.server.authority()
        except PkiError as exc:
            page.flash("error", forms.sentence(exc.message))
    return page.render(
        "index.html",
        server_config=server_config,
        authority=authority,
        pending_count=store.count_requests() if server_config else 0,
        issued_count=store.count_certificates() if server_config else 0,
        client_config=client_config,
    )


def configure(page: Page) -> Response:
    """Configure the CA server: a new key pair and certificate, or the existing files."""
    store = page.store
    current = store.server_config()
    if page.request.method == "GET":
        values = _configure_defaults(current)
        return page.render(
            "server_configure.html",
            values=values,
            errors=FormErrors(),
            current=current,
            result=None,
            revocation_urls=current.revocation_urls if current is not None else True,
        )
    form = page.request.form
    values = form_values(form, CONFIGURE_FIELDS)
    errors = FormErrors()
    root = forms.read_root(form, "root", errors)
    directory = values["directory"]
    if not directory:
        errors.add("directory", "Required.")
    password = forms.read_new_password(form, "password", errors, required=True)
    days = forms.read_number(form, "days", errors, required=True)
    existing = False
    if root and directory:
        base = Path(directory).expanduser()
        if not base.is_absolute():
            base = page.data_dir / base
        try:
            paths = CAPaths(base, root)
            existing = paths.cer.exists() and paths.key.exists()
        except PkiError:
            existing = False
    subject = forms.read_subject(form, errors, required=not existing)
    ca_days = forms.read_number(form, "ca_days", errors, required=not existing)
    key_type = forms.read_key_type(form, "key_type", errors)
    smtp_port = forms.read_number(
        form, "smtp_port", errors, required=False, high=65535, what="a port number"
    )
    smtp_password = forms.read_new_password(form, "smtp_password", errors, required=False)
    if values["admin_email"] and not names.is_email_address(values["admin_email"]):
        errors.add("admin_email", "Enter an e-mail address such as ca-admin@example.com.")
    crl_days = forms.read_number(
        form, "crl_days", errors, required=False, high=revocation.MAX_CRL_DAYS
    )
    if values["public_url"]:
        try:
            revocation.public_base(values["public_url"])
        except PkiError as exc:
            errors.add("public_url", forms.sentence(exc.message))
    revocation_urls = form.get("revocation_urls") == "yes"
    result = None
    if not errors and root and password and days:
        try:
            outcome = page.server.configure(
                root=root,
                directory=directory,
                password=password,
                days=days,
                subject=subject,
                ca_days=ca_days,
                key_type=key_type,
                smtp_server=values["smtp_server"] or None,
                smtp_port=smtp_port,
                smtp_user=values["smtp_user"] or None,
                smtp_password=smtp_password.decode("utf-8") if smtp_password else None,
                admin_email=values["admin_email"] or None,
                instance=values["instance"] or None,
                node=values["node"] or None,
                # The form shows the current URL: an emptied field removes it.
                public_url=values["public_url"],
                revocation_urls=revocation_urls,
                crl_days=crl_days,
            )
        except PkiError as exc:
            errors.add(_configure_error_field(exc), forms.sentence(exc.message))
        else:
            result = messages.server_configured(
                created=outcome.created,
                cer=outcome.paths.cer,
                fingerprint=outcome.fingerprint,
                mailed_to=outcome.mailed_to,
            )
            current = store.server_config()
    return page.render(
        "server_configure.html",
        status=200 if not errors else 400,
        values=values,
        errors=errors,
        current=current,
        result=result,
        revocation_urls=revocation_urls,
    )


def _configure_defaults(current: object) -> dict[str, str]:
    values = dict.fromkeys(CONFIGURE_FIELDS, "")
    values.update(
        directory="CAServer",
        days="365",
        ca_days="3650",
        key_type="rsa2048",
        crl_days=str(revocation.DEFAULT_CRL_DAYS),
    )
    if current is not None:
        for name in (
            "root",
            "directory",
            "days",
            "smtp_server",
            "smtp_port",
            "smtp_user",
            "admin_email",
            "instance",
            "node",
            "public_url",
            "crl_days",
        ):
            value = getattr(current, name, None)
            values[name] = "" if value is None else str(value)
    return values


def _configure_error_field(exc: PkiError) -> str | None:
    if isinstance(exc, InvalidRoot):
        return "root"
    if isinstance(exc, InvalidSubject):
        return "subject"
    if isinstance(exc, WrongPassword):
        return "password"
    if isinstance(exc, CAFileError):
        return "directory"
    return None


def reinitialize(page: Page) -> Response:
    """Forget the configuration, pending CSRs and issued certificates, after a confirmation."""
    store = page.store
    if page.request.method == "POST":
        if page.request.form.get("confirm") != "yes":
            errors = FormErrors()
            errors.add("confirm", "Tick the box to confirm.")
            return page.render(
                "server_reinitialize.html",
                status=400,
                errors=errors,
                config=store.server_config(),
                pending_count=store.count_requests(),
                issued_count=store.count_certificates(),
            )
        page.server.reinitialize()
        page.flash("success", messages.server_reinitialized())
        return page.redirect("server_configure")
    return page.render(
        "server_reinitialize.html",
        errors=FormErrors(),
        config=store.server_config(),
        pending_count=store.count_requests(),
        issued_count=store.count_certificates(),
    )


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
        csr = keys.load_csr(request.contents)
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
        sans=names.sans_text(keys.requested_sans(csr)),
        fingerprint=names.fingerprint(csr),
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
            flags = [
                name.replace("_", " ")
                for name in (
                    "digital_signature",
                    "content_commitment",
                    "key_encipherment",
                    "data_encipherment",
                    "key_agreement",
                    "key_cert_sign",
                    "crl_sign",
                )
                if getattr(value, name)
            ]
            text = ", ".join(flags)
        else:
            text = type(value).__name__
        name = getattr(extension.oid, "_name", extension.oid.dotted_string)
        lines.append(f"{name}{critical}: {text}")
    return lines


def process(page: Page) -> Response:
    """Show one pending CSR completely; on POST issue it with the chosen usage."""
    name = page.request.values.get("name", "")
    try:
        request = page.server.request(name)
    except UnknownRequest:
        page.flash("error", f'No pending Certificate Signing Request is named "{name}".')
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
                page.flash("error", f'No pending Certificate Signing Request is named "{name}".')
                return page.redirect("server_requests")
            except PkiError as exc:
                errors.add(None, forms.sentence(exc.message))
            else:
                page.flash("success", messages.certificate_issued(issued.number, name))
                return page.redirect("server_certificates", number=str(issued.number))
    return page.render(
        "server_process.html",
        status=200 if not errors else 400,
        view=_view(page, request),
        usages=list(Usage),
        usage_value=usage_value,
        errors=errors,
    )


def delete(page: Page) -> Response:
    """Delete (reject) a pending CSR after a confirmation."""
    name = page.request.values.get("name", "")
    try:
        request = page.server.request(name)
    except UnknownRequest:
        page.flash("error", f'No pending Certificate Signing Request is named "{name}".')
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


def certificates(page: Page) -> Response:
    """Issued certificates, filtered by number, host, instance, file name or subject."""
    query = {name: page.request.args.get(name, "").strip() for name in SEARCH_FIELDS}
    rows: list[IssuedCertificate] = []
    truncated = False
    configured = page.store.server_config() is not None
    if configured:
        ca_own = page.store.certificate(0)
        if ca_own is not None and _matches(ca_own, query):
            rows.append(ca_own)
        with closing(page.store.certificates()) as issued:
            for cert in issued:
                if _matches(cert, query):
                    if len(rows) >= MAX_LISTED:
                        truncated = True
                        break
                    rows.append(cert)
    revoked = revocation.revoked_in_store(page.store) if configured else {}
    now = datetime.now(UTC)
    states = {
        cert.number: revocation.state_of(cert, revoked.get(cert.number), now).value for cert in rows
    }
    return page.render(
        "server_certificates.html",
        query=query,
        rows=rows,
        truncated=truncated,
        configured=configured,
        max_listed=MAX_LISTED,
        usage_labels={usage.value: usage.label for usage in Usage},
        states=states,
        revoked=revoked,
    )


def revoke(page: Page) -> Response:
    """Revoke an issued certificate, or release a hold, after a confirmation and the CA key
    password (a new CRL is signed with it)."""
    text = page.request.values.get("number", "")
    number = int(text) if text.isdigit() and len(text) <= 18 else -1
    try:
        revocations = page.server.revocations()
        # Whether revoking is possible at all; the reason is checked when it is chosen.
        cert, previous = revocations.check_revocable(number, Reason.UNSPECIFIED)
    except NotFound:
        page.flash("error", f"No certificate number {text} was issued by this CA.")
        return page.redirect("server_certificates")
    except PkiError as exc:  # number 0, already revoked (a hold may be made permanent)
        page.flash("error", forms.sentence(exc.message))
        return page.redirect("server_certificates")
    on_hold = previous is not None
    reasons = [(value, label) for value, label in REVOKE_REASONS]
    if on_hold:
        reasons = [item for item in reasons if item[0] != Reason.CERTIFICATE_HOLD.value]
        reasons.append((Reason.REMOVE_FROM_CRL.value, "removeFromCRL (release the hold)"))
    reason_value = page.request.form.get("reason", "")
    errors = FormErrors()
    if page.request.method == "POST":
        if reason_value not in [value for value, _ in reasons]:
            errors.add("reason", "Choose one of the reasons offered.")
        password = page.secret("password")
        if password is None:
            errors.add("password", "Enter the CA private key password.")
        if page.request.form.get("confirm") != "yes":
            errors.add("confirm", "Tick the box to confirm.")
        if not errors and password is not None:
            actor = f"portal administrator at {page.request.remote_addr or 'unknown address'}"
            try:
                result = page.server.revoke(
                    number, Reason(reason_value), password, revoked_by=actor
                )
            except WrongPassword as exc:
                errors.add("password", forms.sentence(exc.message))
            except PkiError as exc:
                errors.add(None, forms.sentence(exc.message))
            else:
                if result.revocation is None:
                    done = messages.hold_released(number)
                else:
                    done = messages.certificate_revoked(number, result.revocation.reason)
                crl = result.crl
                signed = messages.crl_signed(crl.number, crl.entries, crl.next_update)
                page.flash("success", f"{done}\n{signed}")
                return page.redirect("server_certificates", number=str(number))
    return page.render(
        "server_revoke.html",
        status=200 if not errors else 400,
        cert=cert,
        previous=previous,
        reasons=reasons,
        reason_value=reason_value or Reason.UNSPECIFIED.value,
        errors=errors,
        usage_labels={usage.value: usage.label for usage in Usage},
    )


def _matches(cert: IssuedCertificate, query: dict[str, str]) -> bool:
    if query["number"] and query["number"] != str(cert.number):
        return False
    for name in ("hostname", "instance", "filename", "subject"):
        wanted = query[name].casefold()
        if wanted and wanted not in (getattr(cert, name) or "").casefold():
            return False
    return True


_SAFE_FILENAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


def certificate_pem(page: Page, number: int) -> Response:
    """One issued certificate as a PEM file download."""
    cert = page.store.certificate(number)
    if cert is None:
        return Response(f"No certificate number {number}.\n", status=404, mimetype="text/plain")
    stem = cert.filename if _SAFE_FILENAME.fullmatch(cert.filename or "") else f"cert{number}"
    response = Response(cert.contents, mimetype="application/x-pem-file")
    response.headers["Content-Disposition"] = f'attachment; filename="{stem}.cer"'
    return response


def exchanges(page: Page) -> Response:
    """The recorded SOAP exchanges, newest first (``serve --record``)."""
    store = page.store
    strict, recording = settings.describe(settings.load(store))
    last = settings.serving(store)
    return page.render(
        "server_exchanges.html",
        rows=store.exchanges(EXCHANGES_LISTED),
        totals=store.exchange_totals(),
        strict=strict,
        recording=recording,
        serving=None if last is None else settings.describe(last.settings),
        serving_started=None if last is None else last.started,
        listed=EXCHANGES_LISTED,
        readable=readable,
    )


@dataclass
class _ExchangeView:
    """One exchange as the page shows it: every recorded text made readable (and the
    template escapes it for HTML)."""

    exchange: Exchange
    client: str
    user_agent: str
    fault: str
    iris_notes: list[str]
    toolkit_notes: list[str]
    request_headers: list[tuple[str, str]]
    answer_headers: list[tuple[str, str]]
    request: str
    answer: str


def exchange(page: Page, exchange_id: int) -> Response:
    """One recorded exchange: notes, headers, request and answer bytes."""
    found = page.store.exchange(exchange_id)
    if found is None:
        return page.render(
            "error.html",
            status=404,
            heading="No such exchange",
            message=f"Exchange {exchange_id} was never recorded or has been dropped.",
        )
    view = _ExchangeView(
        exchange=found,
        client=readable(found.client),
        user_agent=readable(found.user_agent) if found.user_agent else "(none)",
        fault=readable(found.fault) if found.fault else "",
        iris_notes=[readable(n.text) for n in found.notes if n.kind == IRIS],
        toolkit_notes=[readable(n.text) for n in found.notes if n.kind == TOOLKIT],
        request_headers=[(readable(k), readable(v)) for k, v in found.request_headers],
        answer_headers=[(readable(k), readable(v)) for k, v in found.answer_headers],
        request=readable(found.request),
        answer=readable(found.answer),
    )
    return page.render("server_exchange.html", view=view)
