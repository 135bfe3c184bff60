"""What every task of the CA server stands on: the store, the CA's files, the notifier.

:class:`TaskBase` holds the data directory's store and notifier and loads the configured CA;
the task modules beside it (configure, submit, issue, listing, revoke) add their methods to
:class:`~pki_soap.server.tasks.CAServer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self, TypeVar

from pki_soap.ca.authority import CertificateAuthority
from pki_soap.ca.ca_files import CAPaths
from pki_soap.ca.keys import PrivateKey
from pki_soap.ca.names import CSR_FIELD_LIMITS
from pki_soap.errors import InvalidField, InvalidInput, NotConfigured, PkiError
from pki_soap.escaping import has_control
from pki_soap.server import revocation
from pki_soap.server.crl import check_ca_key
from pki_soap.server.revocation import Revocations
from pki_soap.store import IssuedCertificate, PendingRequest, Revocation, ServerConfig, Store

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Notifications(Protocol):
    """What the CA server tells people (pki_soap.server.mail.Notifier implements it).

    A seam of its own so that the tasks never depend on how notices are delivered.
    """

    def ca_configured(self, cfg: ServerConfig, fingerprint: str) -> str | None:
        """Confirm a configuration to the administrator; return the recipient or None."""

    def request_received(self, req: PendingRequest, fingerprint: str) -> None:
        """Tell the administrator a CSR arrived (``fingerprint``: the CSR's SHA-1)."""

    def certificate_issued(self, cert: IssuedCertificate, req: PendingRequest) -> None:
        """Tell the request's contact the certificate is ready."""

    def request_deleted(self, req: PendingRequest) -> None:
        """Tell the request's contact the request was deleted."""

    def certificate_revoked(self, cert: IssuedCertificate, revocation: Revocation) -> None:
        """Tell the certificate's contact it was revoked (or put on hold)."""

    def hold_released(self, cert: IssuedCertificate) -> None:
        """Tell the certificate's contact its hold was released (removeFromCRL)."""


def check_text(field: str, value: str, *, allowed: str = "") -> None:
    """Refuse a value longer than its MAXLEN or holding control characters.

    Raises:
        InvalidField: too long, or a control character (other than ``allowed``).
    """
    limit = CSR_FIELD_LIMITS[field]
    if len(value) > limit:
        raise InvalidField(f"{field} is longer than {limit} characters ({len(value)})")
    if has_control(value, allowed):
        raise InvalidField(f"{field} holds a control character")


def is_given(value: str | None) -> bool:
    """True for a value that is not None and not only blanks."""
    return value is not None and value.strip() != ""


def given_or_none(value: str | None) -> str | None:
    """``value`` when it is given (see :func:`is_given`), else None."""
    return value if is_given(value) else None


class TaskBase:
    """The store, data directory and notifier of one CA server, and its configured CA."""

    def __init__(self, store: Store, data_dir: Path, notifier: Notifications | None = None) -> None:
        """Serve from ``store``; CA files in relative directories live under ``data_dir``.

        ``notifier`` receives the notices; None sends none.  A notifier that raises never
        fails the operation (the failure is logged).
        """
        self.store = store
        self.data_dir = Path(data_dir)
        self.notifier = notifier

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _notify(self, what: str, call: Callable[[Notifications], _T]) -> _T | None:
        if self.notifier is None:
            return None
        try:
            return call(self.notifier)
        except Exception as exc:
            # Only the kind and text of the failure: never the message body or SMTP settings.
            log.warning("notification %s failed: %s: %s", what, type(exc).__name__, exc)
            return None

    def ca_paths(self, cfg: ServerConfig) -> CAPaths:
        """Where the CA files of ``cfg`` are (a relative directory is under the data directory).

        Raises:
            InvalidRoot: the configured root is not valid.
        """
        directory = Path(cfg.directory).expanduser()
        if not directory.is_absolute():
            directory = self.data_dir / directory
        return CAPaths(directory, cfg.root)

    def config(self) -> ServerConfig:
        """The stored configuration.

        Raises:
            NotConfigured: the CA server has not been configured.
        """
        cfg = self.store.server_config()
        if cfg is None:
            raise NotConfigured("the Certificate Authority server is not configured")
        return cfg

    def authority(self) -> CertificateAuthority:
        """The configured CA, loaded from its files (the key stays encrypted on disk).

        What it signs carries the revocation URLs of the configuration, if any.

        Raises:
            NotConfigured: the CA server has not been configured.
            CAFileError: the CA files are missing or unusable.
            InvalidInput: the configured public URL is not usable.
        """
        cfg = self.config()
        authority = CertificateAuthority.load(self.ca_paths(cfg))
        authority.revocation_urls = revocation.revocation_urls(cfg)
        return authority

    def revocations(self, authority: CertificateAuthority | None = None) -> Revocations:
        """The revocation side (records, CRLs, OCSP signer) of the configured CA.

        Raises:
            NotConfigured: the CA server has not been configured.
            CAFileError: the CA files are missing or unusable.
        """
        return Revocations(
            self.store, authority or self.authority(), crl_days=self.config().crl_days
        )

    def _refresh_revocation(self, authority: CertificateAuthority, key: PrivateKey) -> None:
        """While the CA key is at hand: renew the OCSP signer and the CRL if they are due.

        A failure is logged and never fails the issue (``status`` shows what is overdue).
        """
        try:
            self.revocations(authority).refresh(key)
        except PkiError as exc:
            log.warning("CRL or OCSP signer not renewed: %s: %s", type(exc).__name__, exc.message)

    def _signing_key(
        self, authority: CertificateAuthority, password: bytes | None, key: PrivateKey | None
    ) -> PrivateKey:
        if (password is None) == (key is None):
            raise InvalidInput("give exactly one of the CA key password and the CA key")
        if key is None:
            return authority.private_key(password)
        check_ca_key(authority, key)
        return key
