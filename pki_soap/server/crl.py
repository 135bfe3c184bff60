"""Signing a CRL: the revocation reasons it states, and the CRL side of one CA's revocations.

A CRL is signed with the CA key, which only the administrator's password opens: see
:mod:`pki_soap.server.revocation` for who signs what.  CRL numbers come from
``<root>.crlnumber`` beside the serial file, taken under its lock and written durably before
use: two processes never sign two CRLs with one number, and numbers never go back.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import CRLEntryExtensionOID

from pki_soap.ca import keys
from pki_soap.ca.authority import CertificateAuthority
from pki_soap.ca.keys import PrivateKey
from pki_soap.ca.serial import SerialCounter
from pki_soap.errors import CAFileError, InvalidInput
from pki_soap.store import CrlState, Store, StoredCrl


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


def check_ca_key(authority: CertificateAuthority, key: PrivateKey) -> None:
    """Refuse a private key that is not the CA certificate's own.

    Raises:
        CAFileError: ``key`` does not match the CA certificate.
    """
    if not keys.same_public_key(key.public_key(), authority.certificate.public_key()):
        raise CAFileError("the private key given is not the CA certificate's key")


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


class RevocationBase:
    """What one CA's revocation side holds: :class:`~pki_soap.server.revocation.Revocations`
    sets it, and its CRL part (here) and OCSP part (:mod:`pki_soap.server.ocsp_signer`) read it.
    """

    store: Store
    authority: CertificateAuthority
    issuer: str
    clock: Callable[[], datetime.datetime]


class CrlSigning(RevocationBase):
    """The CRLs of one CA: their state in the store, when a new one is due, signing one."""

    crl_days: int
    crl_numbers: SerialCounter

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

    def sign_crl(self, key: PrivateKey) -> SignedCrl:
        """Sign a CRL of every recorded revocation and keep it as the latest.

        The number is taken from ``<root>.crlnumber`` (durably, under its lock) before the
        records are read, so whichever CRL ends up with the highest number covers every
        revocation recorded before its number was taken.  Entries of certificates already
        expired are left out (RFC 5280 3.3).  No store lock is held while the CRL is built.

        Raises:
            CAFileError: ``key`` is not the CA's, or the CRL number file cannot be written.
        """
        check_ca_key(self.authority, key)
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
