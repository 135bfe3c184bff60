"""A real SMTP server (aiosmtpd) on loopback for the notification tests.

``MailServer`` records every message it accepts.  It listens on a fixed free
port chosen once, so that ``stop()`` then ``start()`` simulates "the SMTP
server was down and came back" at the same address.  ``tls=True`` makes it
offer STARTTLS with a self-signed certificate (``cafile`` is that certificate,
for the client to trust) and require AUTH after STARTTLS with ``USER`` /
``PASSWORD``.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
USER = "ca-mailer"
PASSWORD = "s3cret mail password"


@dataclass(frozen=True)
class Received:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated_as: str | None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        content: str = part.get_content()
        return content


@dataclass
class _Recorder:
    """The aiosmtpd handler: keeps what arrives, optionally answers 451 to everything."""

    messages: list[Received] = field(default_factory=list)
    refuse_with: str | None = None
    refused_recipients: frozenset[str] | None = None  # None: refuse every recipient
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_with and (
            self.refused_recipients is None or address in self.refused_recipients
        ):
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        with self.lock:
            self.messages.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message,
                    authenticated_as=login,
                )
            )
        return "250 Message accepted for delivery"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    if (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    ):
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write ``smtp.pem`` (certificate for 127.0.0.1/localhost) and ``smtp.key``; return both."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "smtp.pem"
    key_path = directory / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class MailServer:
    """A recording SMTP server on ``HOST:port``; ``stop()``/``start()`` keep the port."""

    def __init__(self, directory: Path, *, tls: bool = False) -> None:
        self.port = free_port()
        self.tls = tls
        self.cafile: Path | None = None
        self._tls_context: ssl.SSLContext | None = None
        if tls:
            cert_path, key_path = self_signed_certificate(directory)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert_path, key_path)
            self.cafile = cert_path
            self._tls_context = context
        self._recorder = _Recorder()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        with self._recorder.lock:
            return list(self._recorder.messages)

    def refuse(
        self, reply: str | None = "451 4.3.0 Try again later", *, only: set[str] | None = None
    ) -> None:
        """Answer RCPT with ``reply`` (for the addresses in ``only``, or all); None accepts."""
        self._recorder.refused_recipients = None if only is None else frozenset(only)
        self._recorder.refuse_with = reply

    def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if self._tls_context is not None:
            kwargs = {
                "tls_context": self._tls_context,
                "require_starttls": True,
                "authenticator": _authenticate,
                "auth_require_tls": True,
            }
        self._controller = Controller(self._recorder, hostname=HOST, port=self.port, **kwargs)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
