"""The Certificate Authority server's pages: the start page, configure and reinitialize.

The pending CSRs, the issued certificates and the recorded exchanges have modules of their own
(request_pages, certificate_pages, exchange_pages); :func:`register` adds them all.
"""

from __future__ import annotations

from pathlib import Path

from werkzeug.wrappers import Response

from pki_soap import messages
from pki_soap.ca import names
from pki_soap.ca.ca_files import CAPaths
from pki_soap.errors import (
    CAFileError,
    InvalidRoot,
    InvalidSubject,
    PkiError,
    WrongPassword,
)
from pki_soap.portal import certificate_pages, exchange_pages, forms, request_pages
from pki_soap.portal.app import FormErrors, Page, Portal, form_values
from pki_soap.server import revocation

CONFIGURE_FIELDS = (
    "root", "directory", "days", "ca_days", "key_type", *forms.SUBJECT_NAMES,
    "smtp_server", "smtp_port", "smtp_user", "admin_email", "instance", "node",
    "public_url", "crl_days",
)  # fmt: skip


def register(portal: Portal) -> None:
    """Add the CA server's pages to ``portal``."""
    portal.add_page("/", "index", index, methods=("GET",))
    portal.add_page("/server/configure", "server_configure", configure, methods=("GET", "POST"))
    portal.add_page(
        "/server/reinitialize", "server_reinitialize", reinitialize, methods=("GET", "POST")
    )
    request_pages.register(portal)
    certificate_pages.register(portal)
    exchange_pages.register(portal)


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
    return page.render_form(
        "server_configure.html",
        errors,
        values=values,
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
