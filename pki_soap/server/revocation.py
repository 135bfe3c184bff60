"""Revocation: the records, the CRLs, the delegated OCSP signer and the answers it pre-signs.

Who signs what (docs/architecture.md, "Revocation", has the trade-offs):

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
relying party depends on.  CRL numbers come from ``<root>.crlnumber`` beside the serial
file, taken under the same kind of lock and written durably before use: two processes never
sign two CRLs with one number, and numbers never go back.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import getpass
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import CRLEntryExtensionOID, ExtendedKeyUsageOID, NameOID

from pki_soap.ca import keys
from pki_soap.ca.authority import CLOCK_SKEW, CertificateAuthority
from pki_soap.ca.csr import cert_pem
from pki_soap.ca.extensions import RevocationUrls
from pki_soap.ca.keys import KeyType, PrivateKey
from pki_soap.ca.serial import SerialCounter
from pki_soap.errors import CAFileError, InvalidInput, UnknownCertificate
from pki_soap.store import (
    MAX_NUMBER,
    CachedOcspResponse,
    CertId,
    CrlState,
    IssuedCertificate,
    Revocation,
    ServerConfig,
    Store,
    StoredCrl,
    StoredOcspSigner,
)

CRL_PATH = "/isc/pki/crl/"
"""``GET CRL_PATH + <root>.crl`` (DER) or ``<root>.crl.pem`` serves the latest CRL."""
OCSP_PATH = "/isc/pki/ocsp"
"""The OCSP responder: ``POST`` (RFC 6960) or ``GET OCSP_PATH/<base64 request>`` (RFC 5019)."""

DEFAULT_CRL_DAYS = 30
MAX_CRL_DAYS = 366
OCSP_SIGNER_LIFETIME = datetime.timedelta(days=90)
OCSP_SIGNER_RENEWAL = datetime.timedelta(days=30)
"""An OCSP signer with less than this left is replaced by the next command holding the CA key."""
OCSP_VALIDITY = datetime.timedelta(hours=24)
OCSP_REFRESH = datetime.timedelta(hours=12)
"""A cached answer older than this is signed again (by the server) before it expires."""
OCSP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
"""The CertID hash algorithms we answer for, by their cryptography names."""
PRESIGN_HASH = "sha1"
"""The CertID hash answers are signed ahead for: RFC 5019 clients and OpenSSL use SHA-1."""


class Reason(enum.Enum):
    """Why a certificate is revoked: RFC 5280's CRLReason names (``unspecified``: none given)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    REMOVE_FROM_CRL = "removeFromCRL"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"

    @property
    def flag(self) -> x509.ReasonFlags | None:
        """The reasonCode to write; None for unspecified (RFC 5280 5.3.1: leave it out)."""
        return None if self is Reason.UNSPECIFIED else x509.ReasonFlags(self.value)

    @classmethod
    def named(cls, name: str) -> Reason:
        """The reason called ``name`` (RFC 5280 spelling, e.g. ``keyCompromise``).

        Raises:
            InvalidInput: no reason has that name.
        """
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(reason.value for reason in cls if reason is not Reason.UNSPECIFIED)
            raise InvalidInput(f"unknown revocation reason {name!r}; use one of {known}") from None


def issuer_id(ca_certificate: x509.Certificate) -> str:
    """The key under which a CA's revocation data is stored: hex SHA-1 of its public key.

    The same bytes as an OCSP issuerKeyHash made with SHA-1 (and the usual key identifier).
    """
    digest = x509.SubjectKeyIdentifier.from_public_key(ca_certificate.public_key()).digest
    return digest.hex()


def issuer_hashes(ca_certificate: x509.Certificate, algorithm: str) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA for a CertID made with ``algorithm``.

    cryptography computes them when it builds a request; we build one for that alone.
    """
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(ca_certificate, ca_certificate, OCSP_HASHES[algorithm]())
        .build()
    )
    return request.issuer_name_hash, request.issuer_key_hash


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


# -- state of one certificate -----------------------------------------------------------------


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
class CertificateStatus:
    """What an OCSP answer says about one serial number."""

    kind: ocsp.OCSPCertStatus
    revoked: datetime.datetime | None = None
    reason: Reason | None = None

    @classmethod
    def of(cls, revocation: Revocation | None) -> CertificateStatus:
        """Revoked (with time and reason) for a recorded revocation, else good."""
        if revocation is None:
            return GOOD
        return cls(ocsp.OCSPCertStatus.REVOKED, revocation.revoked, Reason(revocation.reason))


GOOD = CertificateStatus(ocsp.OCSPCertStatus.GOOD)
UNKNOWN = CertificateStatus(ocsp.OCSPCertStatus.UNKNOWN)


def certificate_status(store: Store, issuer: str, number: int) -> CertificateStatus:
    """The OCSP status of serial ``number`` of the CA ``issuer`` (configured CA: ``issuer``).

    Revoked when a revocation is recorded (even after a reinitialisation), good when the
    store holds a certificate with that number, unknown otherwise.
    """
    if not 0 < number <= MAX_NUMBER:
        return UNKNOWN
    revocation = store.revocation(issuer, number)
    if revocation is not None:
        return CertificateStatus.of(revocation)
    return GOOD if store.certificate(number) is not None else UNKNOWN


# -- the OCSP signer ----------------------------------------------------------------------


class OcspSigner:
    """The delegated OCSP signer of one CA, ready to sign answers."""

    def __init__(
        self, ca_certificate: x509.Certificate, certificate: x509.Certificate, key: PrivateKey
    ) -> None:
        self.ca_certificate = ca_certificate
        self.certificate = certificate
        self.key = key

    @classmethod
    def from_stored(cls, ca_certificate: x509.Certificate, stored: StoredOcspSigner) -> OcspSigner:
        """Load a signer kept in the store.

        Raises:
            CAFileError: the stored certificate or key is unreadable or they do not match.
        """
        try:
            certificate = x509.load_pem_x509_certificate(stored.certificate.encode("ascii"))
            key = keys.load_key(stored.private_key.encode("ascii"), None)
        except (ValueError, UnicodeEncodeError) as exc:
            raise CAFileError(f"the stored OCSP signer is unreadable: {exc}") from exc
        if not keys.same_public_key(key.public_key(), certificate.public_key()):
            raise CAFileError("the stored OCSP signer's key does not match its certificate")
        return cls(ca_certificate, certificate, key)

    @property
    def not_after(self) -> datetime.datetime:
        """When the signing certificate expires; no answer is valid past it."""
        return self.certificate.not_valid_after_utc

    def sign(
        self,
        cert_id: CertId,
        status: CertificateStatus,
        *,
        now: datetime.datetime,
        nonce: bytes | None = None,
    ) -> CachedOcspResponse:
        """A signed, successful OCSP response about ``cert_id``, valid from ``now``.

        nextUpdate is :data:`OCSP_VALIDITY` later, never past the signer's own end; the
        answer is due for re-signing half way.  ``nonce`` is echoed when given.

        Raises:
            CAFileError: the signing certificate has expired.
        """
        this_update = now.replace(microsecond=0)
        next_update = min(this_update + OCSP_VALIDITY, self.not_after)
        if next_update <= this_update:
            raise CAFileError(
                f"the OCSP signing certificate expired on {self.not_after:%Y-%m-%d %H:%M} UTC"
            )
        reason = status.reason.flag if status.reason is not None else None
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=cert_id.name_hash,
                issuer_key_hash=cert_id.key_hash,
                serial_number=cert_id.number,
                algorithm=OCSP_HASHES[cert_id.hash_algorithm](),
                cert_status=status.kind,
                this_update=this_update,
                next_update=next_update,
                revocation_time=status.revoked,
                revocation_reason=reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.certificate)
            .certificates([self.certificate])
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(self.key, keys.signature_hash(self.key))
        refresh_after = min(
            this_update + OCSP_REFRESH, this_update + (next_update - this_update) / 2
        )
        return CachedOcspResponse(
            der=response.public_bytes(serialization.Encoding.DER),
            this_update=this_update,
            refresh_after=refresh_after,
            next_update=next_update,
        )


def _ocsp_signer_certificate(
    authority: CertificateAuthority,
    key: PrivateKey,
    public_key: keys.PublicKey,
    now: datetime.datetime,
) -> x509.Certificate:
    """The CA's certificate for its own OCSP responder (RFC 6960 4.2.2.2, 4.2.2.2.1)."""
    kept = [attr for attr in authority.certificate.subject if attr.oid != NameOID.COMMON_NAME]
    subject = x509.Name([*kept, x509.NameAttribute(NameOID.COMMON_NAME, "OCSP Responder")])
    not_after = min(now + OCSP_SIGNER_LIFETIME, authority.not_after)
    if not_after <= now:
        raise CAFileError(f"the CA certificate expired on {authority.not_after:%Y-%m-%d}")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.certificate.subject)
        .public_key(public_key)
        # Random, like the CA's own: the SRL numbers stay those of certificates people asked for.
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - CLOCK_SKEW, authority.certificate.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        # Relying parties do not check the responder's own revocation status: hence short-lived.
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority.authority_key_identifier, critical=False)
        .sign(key, keys.signature_hash(key))
    )


# -- one CA's revocation side ---------------------------------------------------------------


@dataclass(frozen=True)
class SignedCrl:
    """A CRL just signed: its facts and bytes, and whether it is the one now served."""

    number: int
    this_update: datetime.datetime
    next_update: datetime.datetime
    entries: int
    der: bytes
    current: bool
    """False when another process kept a CRL with a higher number meanwhile (served instead)."""

    @property
    def pem(self) -> bytes:
        """The CRL as PEM."""
        crl = x509.load_der_x509_crl(self.der)
        return crl.public_bytes(serialization.Encoding.PEM)


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


class Revocations:
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

    @functools.cached_property
    def _presign_hashes(self) -> tuple[bytes, bytes]:
        return issuer_hashes(self.authority.certificate, PRESIGN_HASH)

    def cert_id(self, number: int, algorithm: str = PRESIGN_HASH) -> CertId:
        """The CertID of serial ``number`` of this CA with ``algorithm``'s hashes."""
        if algorithm == PRESIGN_HASH:
            name_hash, key_hash = self._presign_hashes
        else:
            name_hash, key_hash = issuer_hashes(self.authority.certificate, algorithm)
        return CertId(algorithm, name_hash, key_hash, number)

    # -- reading ------------------------------------------------------------------------

    def revocation(self, number: int) -> Revocation | None:
        """The recorded revocation of certificate ``number``, or None."""
        if not 0 < number <= MAX_NUMBER:
            return None
        return self.store.revocation(self.issuer, number)

    def revoked(self) -> dict[int, Revocation]:
        """Every recorded revocation of this CA, by certificate number."""
        return {revocation.number: revocation for revocation in self.store.revocations(self.issuer)}

    def crl_state(self) -> CrlState:
        """The revision of the records and the facts of the latest CRL."""
        return self.store.crl_state(self.issuer)

    def crl(self) -> StoredCrl | None:
        """The latest CRL, or None before the first."""
        return self.store.crl(self.issuer)

    def crl_due(self, now: datetime.datetime | None = None) -> str | None:
        """Why a new CRL is needed now, or None while the latest one is fine."""
        now = now or self.clock()
        state = self.crl_state()
        if state.number is None or state.this_update is None or state.next_update is None:
            return "no CRL has been signed yet"
        if (state.covers_revision or 0) < state.revision:
            return f"revocations were recorded after CRL number {state.number}"
        period = state.next_update - state.this_update
        if abs(period - datetime.timedelta(days=self.crl_days)) > datetime.timedelta(minutes=1):
            return f"the CRL validity is now {self.crl_days} days"
        if now >= state.this_update + period / 2:
            return f"CRL number {state.number} is past half its validity"
        return None

    def signer(self) -> OcspSigner | None:
        """The current OCSP signer, or None before one was issued.

        Raises:
            CAFileError: the stored signer is unusable.
        """
        stored = self.store.ocsp_signer(self.issuer)
        if stored is None:
            return None
        return OcspSigner.from_stored(self.authority.certificate, stored)

    def signer_due(self, now: datetime.datetime | None = None) -> str | None:
        """Why the OCSP signer must be (re)issued now, or None."""
        now = now or self.clock()
        stored = self.store.ocsp_signer(self.issuer)
        if stored is None:
            return "no OCSP signing certificate has been issued yet"
        if stored.not_after - now < OCSP_SIGNER_RENEWAL:
            return f"the OCSP signing certificate expires on {stored.not_after:%Y-%m-%d}"
        return None

    # -- acts that need the CA key ----------------------------------------------------------

    def _check_key(self, key: PrivateKey) -> None:
        if not keys.same_public_key(key.public_key(), self.authority.certificate.public_key()):
            raise CAFileError("the private key given is not the CA certificate's key")

    def ensure_signer(self, key: PrivateKey) -> tuple[OcspSigner, bool]:
        """The OCSP signer, issued first when there is none or it is close to its end.

        Returns:
            (the signer, True when it was just issued).

        Raises:
            CAFileError: ``key`` is not the CA's, the CA certificate has expired, or the
                stored signer is unusable.
        """
        self._check_key(key)
        now = self.clock()
        if self.signer_due(now) is None:
            signer = self.signer()
            assert signer is not None  # not due means one is stored
            return signer, False
        signer_key = keys.generate_key(KeyType.EC256)
        certificate = _ocsp_signer_certificate(self.authority, key, signer_key.public_key(), now)
        stored = StoredOcspSigner(
            certificate=cert_pem(certificate),
            private_key=keys.key_pem(signer_key, None).decode("ascii"),
            not_after=certificate.not_valid_after_utc,
        )
        self.store.save_ocsp_signer(self.issuer, stored)
        return OcspSigner(self.authority.certificate, certificate, signer_key), True

    def sign_crl(self, key: PrivateKey) -> SignedCrl:
        """Sign a CRL of every recorded revocation and keep it as the latest.

        The number is taken from ``<root>.crlnumber`` (durably, under its lock) before the
        records are read, so whichever CRL ends up with the highest number covers every
        revocation recorded before its number was taken.  Entries of certificates already
        expired are left out (RFC 5280 3.3).  No store lock is held while the CRL is built.

        Raises:
            CAFileError: ``key`` is not the CA's, or the CRL number file cannot be written.
        """
        self._check_key(key)
        self.crl_numbers.create()
        # A number file behind the latest CRL (restored from a backup) never repeats a number.
        number = self.crl_numbers.take(after=self.crl_state().number or 0)
        this_update = self.clock()
        next_update = this_update + datetime.timedelta(days=self.crl_days)
        revision, records = self.store.crl_records(self.issuer, this_update)
        reasons: dict[str, list[x509.Extension[x509.ExtensionType]]] = {
            reason.value: [
                x509.Extension(CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(reason.flag))
            ]
            for reason in Reason
            if reason.flag is not None
        }
        # The builders' constructors, not their chained setters: half the time per entry.
        entries = [
            x509.RevokedCertificateBuilder(serial, revoked, reasons.get(reason, [])).build()
            for serial, revoked, reason in records
        ]
        # All entries at once: add_revoked_certificate() copies the list on every call,
        # which makes 100,000 entries take half a minute instead of a second.
        builder = (
            x509.CertificateRevocationListBuilder(revoked_certificates=entries)
            .issuer_name(self.authority.certificate.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(self.authority.authority_key_identifier, critical=False)
        )
        der = builder.sign(key, keys.signature_hash(key)).public_bytes(serialization.Encoding.DER)
        kept = self.store.save_crl(
            self.issuer, StoredCrl(number, this_update, next_update, der), revision
        )
        return SignedCrl(number, this_update, next_update, len(entries), der, kept)

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
        self._check_key(key)
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

    # -- answers the server keeps fresh (no CA key needed) ----------------------------------

    def answer(
        self, signer: OcspSigner, cert_id: CertId, *, nonce: bytes | None = None
    ) -> CachedOcspResponse:
        """Sign an answer about ``cert_id`` from the records as they are now, and cache it.

        Status and signature happen in one store transaction, so a revocation committed by
        another process is never overwritten by a stale "good"; an answer someone else cached
        meanwhile and not yet due is returned as it is.  Unknown serials are not
        cached (anyone may ask about any number), nor is an answer echoing a ``nonce``.

        Raises:
            CAFileError: the signer has expired.
        """
        if nonce is not None:
            status = certificate_status(self.store, self.issuer, cert_id.number)
            return signer.sign(cert_id, status, now=self.clock(), nonce=nonce)
        with self.store.transaction():
            # Another worker (or the refresher) may have signed it while we waited.
            cached = self.store.ocsp_response(cert_id)
            if cached is not None and self.clock() < cached.refresh_after:
                return cached
            status = certificate_status(self.store, self.issuer, cert_id.number)
            answer = signer.sign(cert_id, status, now=self.clock())
            if status.kind is ocsp.OCSPCertStatus.UNKNOWN:
                self.store.forget_ocsp_responses(self.issuer, cert_id.number)
            else:
                self.store.save_ocsp_response(self.issuer, cert_id, answer)
        return answer

    def refresh_answers(self, signer: OcspSigner, *, batch: int = 200) -> int:
        """Re-sign one batch of cached answers due for it, else pre-sign one batch of
        certificates that have none yet; return how many were signed (0: nothing to do)."""
        due = self.store.due_ocsp_responses(self.issuer, self.clock(), batch)
        if not due:
            name_hash, key_hash = self._presign_hashes
            numbers = self.store.unanswered_certificates(self.issuer, PRESIGN_HASH, key_hash, batch)
            due = [CertId(PRESIGN_HASH, name_hash, key_hash, number) for number in numbers]
        with self.store.transaction():
            for cert_id in due:
                self.answer(signer, cert_id)
        return len(due)
