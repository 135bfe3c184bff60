"""Private keys, key files and certificate signing requests: generate, write, load, check."""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from pki_soap.errors import (
    CAFileError,
    InvalidCsr,
    InvalidInput,
    PolicyViolation,
    UnacceptableKey,
    WrongPassword,
)


class KeyType(enum.Enum):
    """The kinds of key pki-soap generates (for the CA and for clients)."""

    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"
    EC256 = "ec256"
    EC384 = "ec384"

    @property
    def label(self) -> str:
        """How the key type reads in prompts and pages: ``RSA 2048``, ``EC P-256``."""
        return _KEY_TYPE_LABELS[self]


_KEY_TYPE_LABELS = {
    KeyType.RSA2048: "RSA 2048",
    KeyType.RSA3072: "RSA 3072",
    KeyType.RSA4096: "RSA 4096",
    KeyType.EC256: "EC P-256",
    KeyType.EC384: "EC P-384",
}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

RSA_MIN_BITS = 2048
# Verifying with a huge RSA key costs the CA real time; nobody needs more than this.
RSA_MAX_BITS = 16384
_ACCEPTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_ACCEPTED_TEXT = "RSA of at least 2048 bits, EC P-256/P-384/P-521 or Ed25519"

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>.*?)-----END (?P=label)-----", re.DOTALL
)
_PEM_BEGIN = re.compile(r"-----BEGIN [^-]*-----")
_CSR_LABEL = "CERTIFICATE REQUEST"


def generate_key(key_type: KeyType = KeyType.RSA2048) -> PrivateKey:
    """A new private key of ``key_type`` (RSA with public exponent 65537)."""
    if key_type is KeyType.EC256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.EC384:
        return ec.generate_private_key(ec.SECP384R1())
    bits = {KeyType.RSA2048: 2048, KeyType.RSA3072: 3072, KeyType.RSA4096: 4096}[key_type]
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_pem(key: PrivateKey, password: bytes | None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with ``password`` unless it is None.

    Raises:
        InvalidInput: ``password`` is empty (an empty password would silently
            mean "unencrypted" to some readers; say None for that).
    """
    if password is None:
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    elif not password:
        raise InvalidInput("a key password may not be empty")
    else:
        encryption = serialization.BestAvailableEncryption(password)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_key(pem: bytes, password: bytes | None) -> PrivateKey:
    """Load a PEM private key, encrypted with ``password`` or unencrypted.

    An unencrypted key loads whatever the password (existing-key mode accepts both).

    Raises:
        WrongPassword: the key is encrypted and ``password`` is None or does not decrypt it.
        CAFileError: not a PEM private key, or a kind of key pki-soap cannot sign with.
    """
    encrypted = key_is_encrypted(pem)
    try:
        key = serialization.load_pem_private_key(pem, password if encrypted else None)
    except TypeError as exc:
        # Raised when an encrypted key gets no password.
        raise WrongPassword("the private key is encrypted and no password was given") from exc
    except ValueError as exc:
        if encrypted:
            raise WrongPassword("the password does not decrypt the private key") from exc
        raise CAFileError(f"the private key file is not a readable PEM key: {exc}") from exc
    except UnsupportedAlgorithm as exc:
        raise CAFileError(f"the private key uses an unsupported algorithm: {exc}") from exc
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CAFileError(f"cannot sign with a {describe_key(key.public_key())} key")
    return key


def key_file_encrypted(path: Path) -> bool:
    """True when the PEM key file ``path`` is password-protected; False if unreadable."""
    try:
        return key_is_encrypted(Path(path).read_bytes())
    except OSError:
        return False


def key_is_encrypted(pem: bytes) -> bool:
    """True when a PEM private key is password-protected (PKCS#8 or OpenSSL traditional)."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem


def describe_key(public_key: PublicKeyTypes) -> str:
    """``RSA 2048``, ``EC P-256``, ``Ed25519``, ... for messages and pages."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        name = public_key.curve.name
        return f"EC {_ACCEPTED_CURVES.get(name, name)}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(public_key, dsa.DSAPublicKey):
        return f"DSA {public_key.key_size}"
    return type(public_key).__name__.removeprefix("_").removesuffix("PublicKey") or "unknown"


def check_public_key(public_key: PublicKeyTypes) -> None:
    """Refuse keys the CA does not certify.

    Raises:
        UnacceptableKey: not RSA >= 2048 bits (odd exponent >= 3), EC P-256/P-384/P-521
            or Ed25519; the message names the key and what is accepted.
    """
    described = describe_key(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < RSA_MIN_BITS:
            raise UnacceptableKey(f"{described} keys are too weak; use {_ACCEPTED_TEXT}")
        if public_key.key_size > RSA_MAX_BITS:
            raise UnacceptableKey(f"RSA keys over {RSA_MAX_BITS} bits are not accepted")
        exponent = public_key.public_numbers().e
        if exponent < 3 or exponent % 2 == 0:
            raise UnacceptableKey(f"RSA public exponent {exponent} is not acceptable")
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _ACCEPTED_CURVES:
            raise UnacceptableKey(f"{described} keys are not accepted; use {_ACCEPTED_TEXT}")
        return
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return
    raise UnacceptableKey(f"{described} keys are not accepted; use {_ACCEPTED_TEXT}")


def signature_hash(key: PrivateKey) -> hashes.SHA256 | None:
    """The hash to sign with: SHA-256, or None for Ed25519 (which hashes internally)."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def build_csr(
    key: PrivateKey, subject: x509.Name, sans: Sequence[x509.GeneralName] = ()
) -> x509.CertificateSigningRequest:
    """A CSR for ``subject`` signed with ``key`` (SHA-256), requesting ``sans`` if any."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(key, signature_hash(key))


def load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    """Parse and check a CSR given as PEM text: exactly one ``CERTIFICATE REQUEST`` block.

    Raises:
        InvalidCsr: not ASCII text, no PEM block, more than one block, another kind of
            block, text outside the block, bad base64, not a DER CSR, an empty subject,
            or a signature that does not verify.
        UnacceptableKey: the CSR's key is not one the CA certifies (see check_public_key).
    """
    if isinstance(pem, bytes):
        try:
            text = pem.decode("ascii")
        except UnicodeDecodeError as exc:
            raise InvalidCsr("the CSR is not PEM text (DER or non-ASCII bytes)") from exc
    else:
        text = pem
    if not text.isascii():
        raise InvalidCsr("the CSR holds non-ASCII characters")
    blocks = list(_PEM_BLOCK.finditer(text))
    if not blocks:
        raise InvalidCsr("no PEM block '-----BEGIN CERTIFICATE REQUEST-----' found")
    if len(blocks) > 1 or len(_PEM_BEGIN.findall(text)) > 1:
        raise InvalidCsr("the text holds more than one PEM block; send exactly one CSR")
    block = blocks[0]
    if block.group("label") != _CSR_LABEL:
        raise InvalidCsr(
            f"the PEM block is a {block.group('label')!r}, not a 'CERTIFICATE REQUEST'"
        )
    if text[: block.start()].strip() or text[block.end() :].strip():
        raise InvalidCsr("the CSR has text outside its PEM block")
    body = "".join(block.group("body").split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCsr("the CSR's PEM block is not valid base64") from exc
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise InvalidCsr(f"the PEM block is not a DER certificate signing request: {exc}") from exc
    check_csr(csr)
    return csr


def check_csr(csr: x509.CertificateSigningRequest) -> None:
    """Check a parsed CSR: a subject, a valid self-signature, an acceptable key.

    Raises:
        PolicyViolation: the CSR is signed with MD5 or SHA-1.
        InvalidCsr: empty subject, unreadable extensions, or a signature that does not verify.
        UnacceptableKey: the key is not one the CA certifies.
    """
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnacceptableKey(f"the CSR's public key is not supported: {exc}") from exc
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise InvalidCsr(f"the CSR's signature algorithm is not supported: {exc}") from exc
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        # Checked before the signature: such a signature may not even be verifiable here.
        weak = "MD5" if isinstance(algorithm, hashes.MD5) else "SHA-1"
        raise PolicyViolation(
            f"the CSR is signed with {weak}, which is not accepted; sign it with SHA-256"
        )
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidCsr(f"CSR signature cannot be checked: {exc}") from exc
    if not valid:
        raise InvalidCsr("CSR signature is not valid")
    check_public_key(public_key)
    if len(csr.subject) == 0:
        raise InvalidCsr("the CSR's subject is empty")
    requested_sans(csr)  # refuse unreadable or duplicate extensions now, not at issue time


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    """The CSR as PEM text (LF line ends, trailing LF)."""
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def cert_pem(cert: x509.Certificate) -> str:
    """The certificate as PEM text (LF line ends, trailing LF)."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def requested_sans(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """The subjectAltNames the CSR's extensionRequest asks for; [] if none.

    Raises:
        InvalidCsr: the requested extensions cannot be parsed (or repeat an extension).
    """
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise InvalidCsr(f"the CSR's requested extensions cannot be read: {exc}") from exc
    return list(extension.value)


def same_public_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    """True when ``a`` and ``b`` are the same public key (compared as SubjectPublicKeyInfo)."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(*spki) == b.public_bytes(*spki)
