"""The text of each e-mail notice: who is told what, with a stranger's text made safe.

Everything a SOAP client chose is a stranger's text here: each value is written with
:func:`pki_soap.escaping.for_mail_body` / ``for_mail_header``, and each command we suggest
quotes it with ``for_shell``, so a pasted line runs exactly the command shown.  Each function
returns ``(subject, body)``; :class:`pki_soap.server.mail.Notifier` queues and sends them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeGuard

from pki_soap.ca import names
from pki_soap.escaping import for_mail_body, for_mail_header, for_shell
from pki_soap.store import IssuedCertificate, PendingRequest, Revocation, ServerConfig

log = logging.getLogger(__name__)

DIGEST_DETAILED = 20
"""Requests a digest describes in full; the next ones get one line each."""
DIGEST_LISTED = 200
"""Requests a digest names at all; beyond, it only counts them."""


def configured(cfg: ServerConfig, fingerprint: str) -> tuple[str, str]:
    """The administrator's confirmation that the CA is configured, with its fingerprint."""
    body = "\n".join(
        [
            f"The Certificate Authority server {_where(cfg)} has been configured.",
            "",
            f"CA certificate file:   {_ca_file(cfg)}",
            "Certificate Authority Certificate SHA-1 fingerprint:",
            f"  {fingerprint}",
            f"Issued certificates are valid for {cfg.days} days.",
            "",
            "This address receives a notice for every new Certificate Signing Request.",
            "Compare the fingerprint above with the one CA clients report when they",
            "download the CA certificate.",
        ]
    )
    return "Certificate Authority server configured", body


def issued(cfg: ServerConfig, cert: IssuedCertificate, req: PendingRequest) -> tuple[str, str]:
    """Tell a request's contact that the certificate is ready for download."""
    body = "\n".join(
        [
            *_to_contact(req, "was approved by the Certificate Authority"),
            f"{_where(cfg)}.",
            "",
            f"Certificate number: {cert.number}",
            f"File name:          {for_mail_body(cert.filename)}",
            f"Subject:            {for_mail_body(cert.subject or req.subject or '(none)')}",
            "",
            "Download it with the CA client:",
            f"  client_app.py get {cert.number}",
            "(or with the GetCertificate web method, number "
            f"{cert.number}), and the CA certificate with",
            "  client_app.py get-ca",
        ]
    )
    subject = for_mail_header(f'Certificate number {cert.number} issued for "{req.filename}"')
    return subject, body


def deleted(cfg: ServerConfig, req: PendingRequest) -> tuple[str, str]:
    """Tell a request's contact that the request was not approved."""
    body = "\n".join(
        [
            *_to_contact(req, "was not approved: the Certificate Authority"),
            f"{_where(cfg)} deleted it without issuing a certificate.",
            "",
            "Please contact the Certificate Authority administrator"
            + (f" ({cfg.admin_email})" if cfg.admin_email else "")
            + " before submitting a new request.",
        ]
    )
    subject = for_mail_header(f'Certificate Signing Request "{req.filename}" not approved')
    return subject, body


def revoked(cfg: ServerConfig, cert: IssuedCertificate, revocation: Revocation) -> tuple[str, str]:
    """Tell a certificate's contact it was revoked (or put on hold), when and why."""
    hold = revocation.reason == "certificateHold"
    body = "\n".join(
        [
            f"Dear {cert.contact_name or 'certificate holder'},",
            "",
            f"Certificate number {cert.number} (file name {cert.filename}, host "
            f"{cert.hostname}, instance {cert.instance})",
            f"was {'put on hold' if hold else 'revoked'} by the Certificate Authority "
            f"{_where(cfg)}.",
            "",
            f"Subject:         {cert.subject or '(none)'}",
            f"Revoked at:      {revocation.revoked:%Y-%m-%d %H:%M:%S} UTC",
            f"Reason:          {revocation.reason}",
            "",
            "Relying parties that check the CRL or ask the OCSP responder now refuse it."
            if not hold
            else "Relying parties refuse it until the hold is released.",
            "Please contact the Certificate Authority administrator"
            + (f" ({cfg.admin_email})" if cfg.admin_email else "")
            + " with any question, and submit a new request if you need a certificate.",
        ]
    )
    verb = "put on hold" if hold else "revoked"
    return f"Certificate number {cert.number} {verb}", body


def released(cfg: ServerConfig, cert: IssuedCertificate) -> tuple[str, str]:
    """Tell a certificate's contact that its hold was released: it is valid again."""
    body = "\n".join(
        [
            f"Dear {cert.contact_name or 'certificate holder'},",
            "",
            f"The hold on certificate number {cert.number} (file name {cert.filename}, host",
            f"{cert.hostname}, instance {cert.instance}) was released by the Certificate",
            f"Authority {_where(cfg)}: it is valid again.",
        ]
    )
    subject = f"Certificate number {cert.number} valid again"
    return subject, body


def _to_contact(req: PendingRequest, verdict: str) -> list[str]:
    """The opening lines of a notice to a request's contact: greeting, which request, verdict."""
    filename, hostname = for_mail_body(req.filename), for_mail_body(req.hostname)
    return [
        f"Dear {for_mail_body(req.contact_name)},",
        "",
        f'Your Certificate Signing Request "{filename}" (host {hostname},',
        f"instance {for_mail_body(req.instance)}) {verdict}",
    ]


def mailable(address: str | None) -> TypeGuard[str]:
    """A contact address we send to: exactly one valid address (a list, or a name, never)."""
    if not address:
        return False
    if names.is_email_address(address):
        return True
    log.info("no notice to %s: not one e-mail address", for_mail_header(address))
    return False


def digest(cfg: ServerConfig, arrivals: list[tuple[PendingRequest, str]]) -> tuple[str, str]:
    """Subject and body of the administrator's new-CSR message for ``arrivals``."""
    if len(arrivals) == 1:
        req = arrivals[0][0]
        subject = f'New Certificate Signing Request "{req.filename}" from {req.hostname}'
        lines = [
            "A Certificate Signing Request was submitted to the Certificate Authority",
            f"{_where(cfg)}.",
        ]
    else:
        subject = f"{len(arrivals)} new Certificate Signing Requests"
        lines = [
            f"{len(arrivals)} Certificate Signing Requests were submitted to the Certificate",
            f"Authority {_where(cfg)} since the last notice.",
        ]
    lines += [
        "",
        "Verify each requester's identity and fingerprint with the contact (by phone or",
        "in person) before issuing a certificate.",
    ]
    for req, fingerprint in arrivals[:DIGEST_DETAILED]:
        name = for_shell(req.name)
        lines += [
            "",
            f"Request name:   {for_mail_body(req.name)}",
            f"Host name:      {for_mail_body(req.hostname)}",
            f"Instance:       {for_mail_body(req.instance)}",
            f"File name:      {for_mail_body(req.filename)}",
            f"Subject:        {for_mail_body(req.subject or '(none given)')}",
            f"Contact name:   {for_mail_body(req.contact_name)}",
            f"Contact phone:  {for_mail_body(req.contact_phone or '(none given)')}",
            f"Contact e-mail: {for_mail_body(req.contact_email or '(none given)')}",
            "SHA-1 fingerprint of the request:",
            f"  {for_mail_body(fingerprint)}",
            "Show it, issue it (or --usage intermediate, --usage codesign), or reject it:",
            for_mail_body(f"  server_app.py show {name}"),
            for_mail_body(f"  server_app.py issue {name} --usage tls"),
            for_mail_body(f"  server_app.py delete {name}"),
        ]
    rest = arrivals[DIGEST_DETAILED:]
    if rest:
        lines += ["", f"Also received ({len(rest)}; `server_app.py pending` lists them all):"]
        for req, fingerprint in rest[: DIGEST_LISTED - DIGEST_DETAILED]:
            lines.append(
                f"  {for_mail_body(req.name)}  from {for_mail_body(req.hostname)}"
                f"  SHA-1 {for_mail_body(fingerprint)}"
            )
        unnamed = len(rest) - (DIGEST_LISTED - DIGEST_DETAILED)
        if unnamed > 0:
            lines.append(f"  ... and {unnamed} more.")
    return for_mail_header(subject), "\n".join(lines)


def _where(cfg: ServerConfig) -> str:
    return f"at instance {cfg.instance} on node {cfg.node}"


def _ca_file(cfg: ServerConfig) -> str:
    return str(Path(cfg.directory) / f"{cfg.root}.cer")
    return str(Path(cfg.directory) / f"{cfg.root}.cer")
