"""Private keys: the types pki-soap generates, PEM key files, loading and checking keys."""

from __future__ import annotations

import enum
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from pki_soap.errors import (
    CAFileError,
    InvalidInput,
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


def same_public_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    """True when ``a`` and ``b`` are the same public key (compared as SubjectPublicKeyInfo)."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(*spki) == b.public_bytes(*spki)
