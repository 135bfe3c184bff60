"""The delegated OCSP signer: its certificate, the answers it signs, and the cached answers.

OCSP answers are signed by a signer (id-kp-OCSPSigning, id-pkix-ocsp-nocheck) that the CA
issues to itself; its key is kept unencrypted in the store (mode 0600), so the running server
signs with it.  Answers are signed ahead of time and cached in the store, so answering a
request costs a lookup, not a signature.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki_soap.ca import keys
from pki_soap.ca.authority import CLOCK_SKEW, CertificateAuthority
from pki_soap.ca.csr import cert_pem
from pki_soap.ca.keys import KeyType, PrivateKey
from pki_soap.errors import CAFileError
from pki_soap.server.crl import Reason, RevocationBase, check_ca_key
from pki_soap.store import (
    MAX_NUMBER,
    CachedOcspResponse,
    CertId,
    Revocation,
    Store,
    StoredOcspSigner,
)

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


class OcspAnswers(RevocationBase):
    """The OCSP side of one CA: its signer, and the answers it signs and keeps fresh."""

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

    def ensure_signer(self, key: PrivateKey) -> tuple[OcspSigner, bool]:
        """The OCSP signer, issued first when there is none or it is close to its end.

        Returns:
            (the signer, True when it was just issued).

        Raises:
            CAFileError: ``key`` is not the CA's, the CA certificate has expired, or the
                stored signer is unusable.
        """
        check_ca_key(self.authority, key)
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
