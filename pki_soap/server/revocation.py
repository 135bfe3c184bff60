"""Revocation: the records and the states they give, the public URLs, and :class:`Revocations`.

:class:`Revocations` is one CA's revocation side: it records revocations here, and takes its
CRLs from :mod:`pki_soap.server.crl` and its OCSP signer and answers from
:mod:`pki_soap.server.ocsp_signer`.

Who signs what (docs/decisions.md, "Revocation", has the trade-offs):

* A **CRL** is signed with the CA key, which only the administrator's password opens, so only
  a command given that password makes one: ``revoke`` (a new CRL at every revocation),
  ``crl`` (by hand or from a timer), and ``issue`` (CLI or portal), which renews a CRL past
  half its validity on the way.  The running server never holds the CA key; it serves the
  latest CRL from the store and warns in its log when nobody renewed it in time.
* **OCSP** answers are signed by a delegated OCSP signer (id-kp-OCSPSigning,
  id-pkix-ocsp-nocheck) that the CA issues to itself.  Its key is kept unencrypted in the
  store (mode 0600), so the running server signs with it; the certificate is short-lived and
  renewed by the same commands as the CRL.  Answers are signed ahead of time and cached in
  the store, so answering a request costs a lookup, not a signature.

Revocations, CRL state and the signer are keyed by the CA (``issuer``: the hex SHA-1 of its
public key), so a CA configured anew starts clean and a reinitialisation forgets nothing a
relying party depends on.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import getpass
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from pki_soap.ca.authority import CertificateAuthority
from pki_soap.ca.extensions import RevocationUrls
from pki_soap.ca.keys import PrivateKey
from pki_soap.ca.serial import SerialCounter
from pki_soap.errors import InvalidInput, UnknownCertificate
from pki_soap.server.crl import CrlSigning, Reason, SignedCrl, check_ca_key
from pki_soap.server.ocsp_signer import CertificateStatus, OcspAnswers, OcspSigner
from pki_soap.store import (
    MAX_NUMBER,
    IssuedCertificate,
    Revocation,
    ServerConfig,
    Store,
)

CRL_PATH = "/isc/pki/crl/"
"""``GET CRL_PATH + <root>.crl`` (DER) or ``<root>.crl.pem`` serves the latest CRL."""
OCSP_PATH = "/isc/pki/ocsp"
"""The OCSP responder: ``POST`` (RFC 6960) or ``GET OCSP_PATH/<base64 request>`` (RFC 5019)."""

DEFAULT_CRL_DAYS = 30
MAX_CRL_DAYS = 366


def issuer_id(ca_certificate: x509.Certificate) -> str:
    """The key under which a CA's revocation data is stored: hex SHA-1 of its public key.

    The same bytes as an OCSP issuerKeyHash made with SHA-1 (and the usual key identifier).
    """
    digest = x509.SubjectKeyIdentifier.from_public_key(ca_certificate.public_key()).digest
    return digest.hex()


def current_issuer(store: Store) -> str | None:
    """The :func:`issuer_id` of the configured CA, from its certificate in the store (no files).

    None when no CA is configured or its stored certificate is unreadable.
    """
    own = store.certificate(0)
    if own is None:
        return None
    try:
        return issuer_id(x509.load_pem_x509_certificate(own.contents.encode("ascii")))
    except (ValueError, UnicodeEncodeError):
        return None


def revoked_in_store(store: Store) -> dict[int, Revocation]:
    """The configured CA's recorded revocations by number (empty when none is configured)."""
    issuer = current_issuer(store)
    if issuer is None:
        return {}
    return {revocation.number: revocation for revocation in store.revocations(issuer)}


def public_base(public_url: str) -> str:
    """The scheme, host and port of ``public_url``, plus any path before ``/isc/pki/``.

    Raises:
        InvalidInput: not an ASCII ``http://`` or ``https://`` URL with a host, or one with
            a query, fragment, user name or white space.
    """
    text = public_url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidInput(f"public URL {public_url!r} is not a URL: {exc}") from exc
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not text.isascii()
        or any(ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" for ch in text)
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise InvalidInput(f"public URL {public_url!r} is not an http:// or https:// URL")
    prefix = parts.path.split("/isc/pki/", 1)[0] if "/isc/pki/" in parts.path else ""
    return f"{parts.scheme}://{parts.netloc}{prefix.rstrip('/')}"


def revocation_urls(cfg: ServerConfig) -> RevocationUrls | None:
    """The CRL and OCSP URLs new certificates carry, or None (no public URL, or turned off).

    Raises:
        InvalidInput: the configured public URL is not usable.
    """
    if not cfg.public_url or not cfg.revocation_urls:
        return None
    base = public_base(cfg.public_url)
    return RevocationUrls(crl=f"{base}{CRL_PATH}{cfg.root}.crl", ocsp=f"{base}{OCSP_PATH}")


def check_crl_days(days: int) -> int:
    """``days`` when it is a whole number of days a CRL may be valid.

    Raises:
        InvalidInput: not a whole number from 1 to :data:`MAX_CRL_DAYS`.
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_CRL_DAYS:
        raise InvalidInput(
            f"the CRL validity must be a whole number of days from 1 to {MAX_CRL_DAYS}"
        )
    return days


def command_line_user() -> str:
    """Who revokes from the command line: the login name, as recorded with the revocation."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown user"
    return f"{name} (command line)"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _clean_actor(text: str) -> str:
    # Recorded and shown again later: one line, bounded.
    return " ".join(text.split())[:200] or "unknown"


class State(enum.Enum):
    """What ``certificates`` and the portal show for each certificate."""

    VALID = "valid"
    REVOKED = "revoked"
    EXPIRED = "expired"


def state_of(
    cert: IssuedCertificate, revocation: Revocation | None, now: datetime.datetime
) -> State:
    """Revoked (whatever its dates), else expired after notAfter, else valid."""
    if revocation is not None:
        return State.REVOKED
    if cert.not_after is not None and cert.not_after < now:
        return State.EXPIRED
    return State.VALID


@dataclass(frozen=True)
class RevokeResult:
    """What :meth:`Revocations.revoke` did."""

    certificate: IssuedCertificate
    revocation: Revocation | None
    """The revocation as recorded now; None when a hold was released (removeFromCRL)."""
    previous: Revocation | None
    """The revocation recorded before (a hold), if any."""
    crl: SignedCrl


@dataclass(frozen=True)
class Refreshed:
    """What :meth:`Revocations.refresh` renewed."""

    signer: OcspSigner
    signer_renewed: bool
    crl: SignedCrl | None


class Revocations(CrlSigning, OcspAnswers):
    """The revocation side of one CA: records, CRLs, its OCSP signer and cached answers.

    Reading needs nothing secret; revoking and signing a CRL take the CA ``key`` (decrypted
    by the caller with the administrator's password).
    """

    def __init__(
        self,
        store: Store,
        authority: CertificateAuthority,
        *,
        crl_days: int = DEFAULT_CRL_DAYS,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self.store = store
        self.authority = authority
        self.crl_days = crl_days
        self.clock = clock
        self.issuer = issuer_id(authority.certificate)
        self.crl_numbers = SerialCounter(authority.paths.crlnumber)

    def revocation(self, number: int) -> Revocation | None:
        """The recorded revocation of certificate ``number``, or None."""
        if not 0 < number <= MAX_NUMBER:
            return None
        return self.store.revocation(self.issuer, number)

    def revoked(self) -> dict[int, Revocation]:
        """Every recorded revocation of this CA, by certificate number."""
        return {revocation.number: revocation for revocation in self.store.revocations(self.issuer)}

    def refresh(self, key: PrivateKey, *, force_crl: bool = False) -> Refreshed:
        """Issue the OCSP signer if due, and sign a CRL if one is due (or ``force_crl``).

        Raises:
            CAFileError: as :meth:`ensure_signer` and :meth:`sign_crl`.
        """
        signer, renewed = self.ensure_signer(key)
        crl = self.sign_crl(key) if force_crl or self.crl_due() is not None else None
        return Refreshed(signer, renewed, crl)

    def revoke(
        self, number: int, reason: Reason, *, revoked_by: str, key: PrivateKey
    ) -> RevokeResult:
        """Revoke certificate ``number`` for ``reason``, then sign a new CRL.

        One store transaction checks the certificate, records the revocation and replaces
        its cached OCSP answers by a freshly signed one, so from the commit on the responder
        says revoked.  ``certificateHold`` can later be made permanent (revoke again with
        another reason) or released (``removeFromCRL``).  The CRL is signed after the
        commit; should that fail, the revocation stands and the next ``crl`` covers it.

        Raises:
            UnknownCertificate: this CA issued no certificate with that number.
            InvalidInput: number 0 (the CA's own), already revoked, or removeFromCRL for a
                certificate not on hold.
            CAFileError: ``key`` is not the CA's, or a CRL or signer cannot be made.
        """
        check_ca_key(self.authority, key)
        signer, _ = self.ensure_signer(key)
        actor = _clean_actor(revoked_by)
        now = self.clock()
        with self.store.transaction():
            certificate, previous = self.check_revocable(number, reason)
            recorded: Revocation | None
            if reason is Reason.REMOVE_FROM_CRL:
                self.store.remove_revocation(self.issuer, number)
                recorded = None
            elif previous is not None:
                # A hold made permanent keeps its original revocation time.
                self.store.change_revocation_reason(self.issuer, number, reason.value, actor)
                recorded = dataclasses.replace(previous, reason=reason.value, revoked_by=actor)
            else:
                recorded = Revocation(number, now, reason.value, actor, certificate.not_after)
                self.store.add_revocation(self.issuer, recorded)
            self.store.forget_ocsp_responses(self.issuer, number)
            cert_id = self.cert_id(number)
            answer = signer.sign(cert_id, CertificateStatus.of(recorded), now=now)
            self.store.save_ocsp_response(self.issuer, cert_id, answer)
        crl = self.sign_crl(key)
        return RevokeResult(certificate, recorded, previous, crl)

    def check_revocable(
        self, number: int, reason: Reason
    ) -> tuple[IssuedCertificate, Revocation | None]:
        """The certificate ``number`` and its revocation so far, if ``reason`` may apply now.

        :meth:`revoke` checks again inside its transaction; the command line checks first
        so that a mistake costs no password prompt.

        Raises:
            UnknownCertificate: this CA issued no certificate with that number.
            InvalidInput: number 0 (the CA's own), already revoked (a hold may be made
                permanent), or removeFromCRL for a certificate not on hold.
        """
        if number == 0:
            raise InvalidInput(
                "certificate number 0 is the CA's own certificate; it cannot be revoked here"
            )
        certificate = self.store.certificate(number) if 0 < number <= MAX_NUMBER else None
        if certificate is None:
            raise UnknownCertificate(f"no certificate number {number} was issued by this CA")
        previous = self.store.revocation(self.issuer, number)
        on_hold = previous is not None and previous.reason == Reason.CERTIFICATE_HOLD.value
        if reason is Reason.REMOVE_FROM_CRL and not on_hold:
            raise InvalidInput(
                f"certificate number {number} is not on hold: removeFromCRL only "
                "releases a certificate revoked with certificateHold"
            )
        if previous is not None and (not on_hold or reason is Reason.CERTIFICATE_HOLD):
            raise InvalidInput(
                f"certificate number {number} is already revoked "
                f"({previous.reason}, {previous.revoked:%Y-%m-%d %H:%M:%S} UTC)"
            )
        return certificate, previous
