"""The Certificate Authority: its files (``.cer``, ``.key``, ``.srl``) and signing certificates."""

from __future__ import annotations

import datetime
import enum
import logging
import os

from cryptography import x509

from pki_soap import files
from pki_soap.ca import ca_files, extensions, fingerprints, keys, names, policy
from pki_soap.ca.ca_files import CAPaths
from pki_soap.ca.csr import cert_pem, check_csr, requested_sans
from pki_soap.ca.extensions import PlannedExtension, RevocationUrls
from pki_soap.ca.keys import KeyType, PrivateKey
from pki_soap.ca.serial import MAX_SERIAL, SerialCounter
from pki_soap.errors import CAFileError, InvalidInput

log = logging.getLogger(__name__)

# Issued certificates start a little in the past so that a relying party whose
# clock is slightly behind ours does not see a "not yet valid" certificate.
CLOCK_SKEW = datetime.timedelta(minutes=1)
# Far enough for any CA; keeps dates well inside what X.509 GeneralizedTime holds.
MAX_DAYS = 100 * 366


class Usage(enum.Enum):
    """What an issued certificate is for (the original's "Certificate Usage", certType 1..3)."""

    TLS = "tls"
    INTERMEDIATE = "intermediate"
    CODESIGN = "codesign"

    @property
    def label(self) -> str:
        """The original's portal label."""
        return _USAGE_LABELS[self]


_USAGE_LABELS = {
    Usage.TLS: "TLS/SSL and XML security",
    Usage.INTERMEDIATE: "Intermediate Certificate Authority",
    Usage.CODESIGN: "Code signing",
}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def check_days(days: int, what: str) -> None:
    """Refuse a validity that is not a whole number of days from 1 to MAX_DAYS (InvalidInput)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"{what} must be a whole number of days from 1 to {MAX_DAYS}")


class CertificateAuthority:
    """A CA backed by its three files; signs CSRs for the three usages of the original.

    The private key stays on disk, encrypted; :meth:`private_key` decrypts it
    for one operation when the administrator gives the password.
    """

    def __init__(self, paths: CAPaths, certificate: x509.Certificate) -> None:
        self.paths = paths
        self.certificate = certificate
        self.serials = SerialCounter(paths.srl)
        self.revocation_urls: RevocationUrls | None = None
        """When set, :meth:`sign` adds a CRL distribution point and an OCSP address."""

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.subject_text!r}, {str(self.paths.cer)!r})"

    # -- the CA files -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        paths: CAPaths,
        *,
        subject: x509.Name,
        password: bytes,
        ca_days: int,
        key_type: KeyType = KeyType.RSA2048,
    ) -> CertificateAuthority:
        """Make a new CA: key (encrypted, 0600), self-signed certificate, serial file.

        The directory is created with mode 0700 if missing.  An existing serial
        file is kept, so numbers never restart.

        Raises:
            InvalidInput: empty password, empty subject, or ``ca_days`` out of range.
            CAFileError: ``<root>.cer`` or ``<root>.key`` already exists (a CA key
                is never overwritten), or the directory cannot be written.
        """
        if not password:
            raise InvalidInput("the CA key password is required")
        if len(subject) == 0:
            raise InvalidInput("the CA subject needs at least one attribute")
        check_days(ca_days, "the CA certificate's validity")
        for existing in (paths.cer, paths.key):
            if existing.exists() or existing.is_symlink():
                raise CAFileError(f"{existing} already exists; it is never overwritten")
        ca_files.make_private_directory(paths.directory)

        key = keys.generate_key(key_type)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=ca_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(extensions.key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, keys.signature_hash(key))
        )
        try:
            # Key first: a crash between the two writes leaves a lone key, which the
            # next configure moves aside to <root>.key.old rather than losing.
            files.write_private_file(paths.key, keys.key_pem(key, password))
            files.write_public_file(paths.cer, cert_pem(certificate).encode("ascii"))
        except OSError as exc:
            raise CAFileError(f"cannot write the CA files in {paths.directory}: {exc}") from exc
        authority = cls(paths, certificate)
        authority.serials.create()
        return authority

    @classmethod
    def load(cls, paths: CAPaths, *, password: bytes | None = None) -> CertificateAuthority:
        """Open an existing CA from ``<root>.cer`` and ``<root>.key``; create ``.srl`` if absent.

        The certificate must be a CA certificate.  When ``password`` is given (or
        the key is unencrypted) the key is decrypted and must match the certificate.

        Raises:
            CAFileError: a file is missing or unreadable, the certificate is not a CA
                certificate, or the key and certificate do not belong together.
            WrongPassword: ``password`` does not decrypt the key.
        """
        certificate = ca_files.read_ca_certificate(paths.cer)
        key_pem = ca_files.read_key_file(paths.key)
        if password is not None or not keys.key_is_encrypted(key_pem):
            key = keys.load_key(key_pem, password)
            ca_files.check_pair(paths, certificate, key)
        authority = cls(paths, certificate)
        authority.serials.create()
        return authority

    @classmethod
    def configure(
        cls,
        paths: CAPaths,
        *,
        password: bytes,
        subject: x509.Name | None = None,
        ca_days: int | None = None,
        key_type: KeyType = KeyType.RSA2048,
    ) -> tuple[CertificateAuthority, bool]:
        """Use the CA files in ``paths`` if both exist, else make a new pair.

        If only one of ``<root>.cer`` / ``<root>.key`` exists it is renamed to
        ``<name>.old`` first (see :meth:`CAPaths.old`).

        Returns:
            (the CA, True if new files were created).

        Raises:
            InvalidInput: a new pair is needed and ``subject`` or ``ca_days`` is missing
                or invalid, or the password is empty (checked before anything is renamed).
            CAFileError, WrongPassword: as for :meth:`load` and :meth:`create`.
        """
        cer_exists, key_exists = paths.cer.exists(), paths.key.exists()
        if cer_exists and key_exists:
            authority = cls.load(paths, password=password)
            if not authority.key_encrypted:
                authority.encrypt_key(password)
            return authority, False
        if not password:
            raise InvalidInput("the CA key password is required")
        if subject is None or len(subject) == 0:
            raise InvalidInput("a new CA certificate needs a subject (C, ST, L, O, OU, CN)")
        if ca_days is None:
            raise InvalidInput("a new CA certificate needs its validity in days")
        check_days(ca_days, "the CA certificate's validity")
        for lone, exists in ((paths.cer, cer_exists), (paths.key, key_exists)):
            if exists:
                try:
                    os.rename(lone, paths.old(lone))
                except OSError as exc:
                    raise CAFileError(f"cannot move {lone} aside: {exc}") from exc
        authority = cls.create(
            paths, subject=subject, password=password, ca_days=ca_days, key_type=key_type
        )
        return authority, True

    def private_key(self, password: bytes | None) -> PrivateKey:
        """Decrypt the CA key with ``password``.

        Raises:
            WrongPassword: the password does not decrypt the key.
            CAFileError: the key file is missing, unreadable, not the certificate's key, or
                not encrypted (a CA key that any password opens is refused).
        """
        key_pem = ca_files.read_key_file(self.paths.key)
        if not keys.key_is_encrypted(key_pem):
            raise CAFileError(
                f"the CA key {self.paths.key} is not encrypted; encrypt it with "
                "`server_app.py configure --root ROOT --dir DIR --password-file FILE`"
            )
        key = keys.load_key(key_pem, password)
        ca_files.check_pair(self.paths, self.certificate, key)
        return key

    @property
    def key_encrypted(self) -> bool:
        """True when ``<root>.key`` is password-protected on disk.

        Raises:
            CAFileError: the key file is missing or unreadable.
        """
        return keys.key_is_encrypted(ca_files.read_key_file(self.paths.key))

    def encrypt_key(self, password: bytes | None) -> bool:
        """Encrypt an unencrypted ``<root>.key`` in place with ``password``.

        The encrypted key is written to a temporary 0600 file and fsynced, then renamed over
        the plaintext (and the directory fsynced): the plaintext is gone only once the
        encrypted copy is durable.  Returns False when the key was already encrypted.

        Raises:
            InvalidInput: no password (or an empty one).
            CAFileError: the key is unreadable, not the certificate's, or cannot be rewritten.
        """
        key_pem = ca_files.read_key_file(self.paths.key)
        if keys.key_is_encrypted(key_pem):
            return False
        if not password:
            raise InvalidInput(
                f"the CA key {self.paths.key} is not encrypted: give a password to encrypt it"
            )
        key = keys.load_key(key_pem, None)
        ca_files.check_pair(self.paths, self.certificate, key)
        try:
            files.write_private_file(self.paths.key, keys.key_pem(key, password))
        except OSError as exc:
            raise CAFileError(f"cannot rewrite the CA key {self.paths.key}: {exc}") from exc
        log.warning("the CA key %s was not encrypted; it is now encrypted", self.paths.key)
        return True

    # -- facts about the CA -------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """SHA-1 fingerprint of the CA certificate, ``E3:FB:...``."""
        return fingerprints.fingerprint(self.certificate)

    @property
    def subject_text(self) -> str:
        """The CA's subject as ``/C=US/O=Example/CN=Example CA``."""
        return names.subject_text(self.certificate.subject)

    @property
    def certificate_pem(self) -> str:
        """The CA certificate as PEM text."""
        return cert_pem(self.certificate)

    @property
    def not_after(self) -> datetime.datetime:
        """When the CA certificate expires (UTC); no issued certificate outlives it."""
        return self.certificate.not_valid_after_utc

    # -- signing ------------------------------------------------------------------------

    def sign(
        self,
        csr: x509.CertificateSigningRequest,
        usage: Usage,
        *,
        key: PrivateKey,
        days: int,
        serial_number: int,
    ) -> x509.Certificate:
        """Issue a certificate for ``csr`` with the extensions of ``usage``.

        Only the subject and the public key come from the CSR (plus, for TLS, its
        requested DNS/IP subjectAltNames after validation); every other extension is
        decided here.  Validity starts a minute ago and lasts ``days`` days, but never
        past the CA certificate's own end.

        Raises:
            PolicyViolation: the issuance policy refuses the CSR (pki_soap.ca.policy).
            InvalidCsr: bad CSR signature, empty subject, or an invalid requested DNS name.
            UnacceptableKey: the CSR's key is not one the CA certifies.
            InvalidInput: ``days`` or ``serial_number`` out of range, or an intermediate
                CA requested from a CA whose path length forbids it.
            CAFileError: ``key`` is not this CA's key, or the CA certificate has expired.
        """
        check_days(days, "the certificate's validity")
        if not 1 <= serial_number <= MAX_SERIAL:
            raise InvalidInput(f"serial number {serial_number} is out of range")
        if not keys.same_public_key(key.public_key(), self.certificate.public_key()):
            raise CAFileError("the private key given is not the CA certificate's key")
        planned = self._plan(csr, usage)
        now = _now()
        not_before = max(now - CLOCK_SKEW, self.certificate.not_valid_before_utc)
        not_after = min(now + datetime.timedelta(days=days), self.not_after)
        if not_after <= now:
            raise CAFileError(f"the CA certificate expired on {self.not_after:%Y-%m-%d}")
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.certificate.subject)
            .public_key(csr.public_key())
            .serial_number(serial_number)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        for extension in planned:
            builder = builder.add_extension(extension.value, critical=extension.critical)
        return builder.sign(key, keys.signature_hash(key))

    def preview_extensions(self, csr: x509.CertificateSigningRequest, usage: Usage) -> list[str]:
        """What :meth:`sign` would put in a certificate for ``csr`` and ``usage``, one line each.

        Raises:
            InvalidCsr, UnacceptableKey, InvalidInput: as :meth:`sign` would.
        """
        lines = [item.text for item in self._plan(csr, usage)]
        ignored = [name for name in requested_sans(csr) if not extensions.copyable_san(name)]
        if usage is Usage.TLS and ignored:
            lines.append(f"Not copied from the request: {names.sans_text(ignored)}")
        return lines

    def _plan(self, csr: x509.CertificateSigningRequest, usage: Usage) -> list[PlannedExtension]:
        check_csr(csr)
        # Also here, not only at submission: a request may have been stored as received.
        policy.check(csr)
        public_key = csr.public_key()
        if usage is Usage.INTERMEDIATE:
            own = self._basic_constraints()
            if own is not None and own.path_length == 0:
                raise InvalidInput(
                    "this CA's path length constraint is 0: it cannot issue intermediate CAs"
                )
            planned = extensions.intermediate_ca()
        elif usage is Usage.TLS:
            planned = extensions.tls_endpoint(csr)
        else:
            planned = extensions.code_signing()
        ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
        planned.append(
            PlannedExtension(ski, False, f"Subject key identifier: {extensions.ski_text(ski)}")
        )
        aki, aki_text = self._authority_key_identifier()
        planned.append(PlannedExtension(aki, False, f"Authority key identifier: {aki_text}"))
        if self.revocation_urls is not None:
            planned += extensions.revocation_extensions(self.revocation_urls)
        return planned

    @property
    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        """The authorityKeyIdentifier of everything this CA signs (certificates, CRLs)."""
        return self._authority_key_identifier()[0]

    def _basic_constraints(self) -> x509.BasicConstraints | None:
        try:
            return self.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return None

    def _authority_key_identifier(self) -> tuple[x509.AuthorityKeyIdentifier, str]:
        try:
            ski = self.certificate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            ).value
        except x509.ExtensionNotFound:
            # A CA certificate from elsewhere without an SKI: derive the usual one.
            ski = x509.SubjectKeyIdentifier.from_public_key(self.certificate.public_key())
        return (
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            extensions.ski_text(ski),
        )
