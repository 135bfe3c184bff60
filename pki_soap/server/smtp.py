"""One SMTP session: connect (implicit TLS, STARTTLS, AUTH only when encrypted), write a
message, and say in one line what went wrong.

SMTP on the configured port (25 by default; 465 means TLS from the first byte), STARTTLS
whenever the server offers it (the default SSL context, optionally trusting an extra CA file),
and ``AUTH`` when a user and password are configured: never over an unencrypted connection.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from pki_soap.store import Mail, ServerConfig

DEFAULT_SMTP_PORT = 25
IMPLICIT_TLS_PORT = 465


class DeliveryFailed(Exception):
    """One SMTP attempt failed before any message was sent; the text is what `status` shows."""


def message(cfg: ServerConfig, mail: Mail) -> EmailMessage:
    """The outbox message ``mail`` as it is sent, From the administrator."""
    email = EmailMessage()
    email["From"] = _sender(cfg)
    email["To"] = mail.recipient
    email["Subject"] = mail.subject
    email["Date"] = format_datetime(datetime.now(UTC))
    # Stable across retries, so a receiving system can drop a rare duplicate.
    email["Message-ID"] = f"<pki-soap.{mail.id}.{_created_stamp(mail)}@{_mail_domain(cfg)}>"
    email.set_content(mail.body)
    return email


@contextmanager
def session(cfg: ServerConfig, *, cafile: str | None, timeout: float) -> Iterator[smtplib.SMTP]:
    """An SMTP session with the configured server, encrypted and signed in when it can be.

    Raises:
        DeliveryFailed: no connection, or a password that would go unencrypted.
        smtplib.SMTPException, OSError: the server refused or the connection broke.
    """
    host = cfg.smtp_server or ""
    port = cfg.smtp_port or DEFAULT_SMTP_PORT
    context = ssl.create_default_context(cafile=cafile)
    smtp: smtplib.SMTP
    try:
        if port == IMPLICIT_TLS_PORT:
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"cannot connect to SMTP server {host}:{port}: {exc}") from exc
    try:
        smtp.ehlo()
        encrypted = port == IMPLICIT_TLS_PORT
        if not encrypted and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
            encrypted = True
        if cfg.smtp_user and cfg.smtp_password:
            if not encrypted:
                raise DeliveryFailed(
                    f"SMTP server {host}:{port} does not offer STARTTLS; "
                    "refusing to send the SMTP password unencrypted"
                )
            smtp.login(cfg.smtp_user, cfg.smtp_password)
        yield smtp
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _mail_domain(cfg: ServerConfig) -> str:
    if cfg.admin_email and "@" in cfg.admin_email:
        return cfg.admin_email.rsplit("@", 1)[1]
    return cfg.node or socket.getfqdn()


def _sender(cfg: ServerConfig) -> str:
    # Replies to a notice should reach the CA administrator.
    if cfg.admin_email:
        return cfg.admin_email
    return f"pki-ca@{_mail_domain(cfg)}"


def _created_stamp(mail: Mail) -> str:
    created = mail.created
    return created.strftime("%Y%m%d%H%M%S") if isinstance(created, datetime) else "0"


def error_text(exc: BaseException) -> str:
    """One line for `status`: what went wrong, with the SMTP reply when there is one."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [
            f"{recipient}: {code} {_decode(reply)}"
            for recipient, (code, reply) in exc.recipients.items()
        ]
        return "recipient refused: " + "; ".join(parts)
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP error {exc.smtp_code}: {_decode(exc.smtp_error)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of the SMTP server not trusted: {exc.verify_message}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "SMTP server did not answer in time"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _decode(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())
