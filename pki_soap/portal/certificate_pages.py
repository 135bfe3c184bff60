"""The CA server's issued certificates: search, PEM download, revocation and hold release."""

from __future__ import annotations

import re
from contextlib import closing
from datetime import UTC, datetime

from werkzeug.wrappers import Response

from pki_soap import messages
from pki_soap.ca.authority import Usage
from pki_soap.errors import (
    NotFound,
    PkiError,
    WrongPassword,
)
from pki_soap.portal import forms
from pki_soap.portal.app import FormErrors, Page, Portal
from pki_soap.server import revocation
from pki_soap.server.crl import Reason
from pki_soap.store import IssuedCertificate

REVOKE_REASONS = [
    (reason.value, reason.value) for reason in Reason if reason is not Reason.REMOVE_FROM_CRL
]
SEARCH_FIELDS = ("number", "hostname", "instance", "filename", "subject")
MAX_LISTED = 1000


def register(portal: Portal) -> None:
    """Add the issued-certificate pages to ``portal``."""
    portal.add_page("/server/certificates", "server_certificates", certificates, methods=("GET",))
    portal.add_page("/server/revoke", "server_revoke", revoke, methods=("GET", "POST"))
    portal.add_page(
        "/server/certificates/<int:number>.pem",
        "server_certificate_pem",
        certificate_pem,
        methods=("GET",),
    )


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
    return page.render_form(
        "server_revoke.html",
        errors,
        cert=cert,
        previous=previous,
        reasons=reasons,
        reason_value=reason_value or Reason.UNSPECIFIED.value,
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
