"""Certificate fingerprints: SHA-1 as the original shows them, SHA-256, and as people type them."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from pki_soap.errors import InvalidInput


def fingerprint(obj: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """SHA-1 fingerprint of the DER encoding, as the original shows it: ``E3:FB:...``."""
    return _colon_hex(_digest(obj, hashes.SHA1()))


def sha256_fingerprint(obj: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """SHA-256 fingerprint of the DER encoding in the same form: ``AB:CD:...`` (32 bytes)."""
    return _colon_hex(_digest(obj, hashes.SHA256()))


def _digest(
    obj: x509.Certificate | x509.CertificateSigningRequest, algorithm: hashes.HashAlgorithm
) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(obj.public_bytes(Encoding.DER))
    return digest.finalize()


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)


_FINGERPRINT_HASHES: dict[str, type[hashes.SHA1] | type[hashes.SHA256]] = {
    "SHA-1": hashes.SHA1,
    "SHA-256": hashes.SHA256,
}
_FINGERPRINT_PREFIX = re.compile(r"(?i)\s*(sha-?(?:1|256))\s*[:=]?\s*")
_HEX_SEPARATORS = re.compile(r"[\s:]")


@dataclass(frozen=True)
class Fingerprint:
    """A certificate fingerprint given by a person: SHA-1 (as the original shows) or SHA-256."""

    algorithm: str
    """``"SHA-1"`` or ``"SHA-256"``."""
    digest: bytes

    def of(self, cert: x509.Certificate) -> str:
        """``cert``'s fingerprint with this algorithm, in the ``AB:CD:...`` form."""
        return sha256_fingerprint(cert) if self.algorithm == "SHA-256" else fingerprint(cert)

    def matches(self, cert: x509.Certificate) -> bool:
        """True when ``cert``'s DER encoding has this digest (compared in constant time)."""
        return hmac.compare_digest(
            _digest(cert, _FINGERPRINT_HASHES[self.algorithm]()), self.digest
        )

    def __str__(self) -> str:
        prefix = "SHA256:" if self.algorithm == "SHA-256" else "SHA1:"
        return prefix + _colon_hex(self.digest)


def parse_fingerprint(text: str) -> Fingerprint:
    """Read a fingerprint as people copy it: ``SHA256:AB:CD:...``, ``sha256:abcd...``, or the
    SHA-1 form the original shows (``E3:FB:...``, 20 bytes); without a prefix the length
    (20 or 32 bytes) says which.

    Raises:
        InvalidInput: not hexadecimal, or not the length of its algorithm.
    """
    rest = text.strip()
    algorithm: str | None = None
    prefix = _FINGERPRINT_PREFIX.match(rest)
    if prefix:
        algorithm = "SHA-256" if prefix.group(1).endswith("256") else "SHA-1"
        rest = rest[prefix.end() :]
    hex_text = _HEX_SEPARATORS.sub("", rest)
    if not hex_text or not re.fullmatch(r"[0-9A-Fa-f]+", hex_text) or len(hex_text) % 2:
        raise InvalidInput(
            f"fingerprint {text.strip()!r} is not hexadecimal (SHA256:AB:CD:... or the SHA-1 "
            "form E3:FB:...)"
        )
    digest = bytes.fromhex(hex_text)
    sizes = {"SHA-1": 20, "SHA-256": 32}
    if algorithm is None:
        algorithm = {20: "SHA-1", 32: "SHA-256"}.get(len(digest))
        if algorithm is None:
            raise InvalidInput(
                f"fingerprint {text.strip()!r} has {len(digest)} bytes: a SHA-1 fingerprint "
                "has 20, a SHA-256 one 32"
            )
    elif len(digest) != sizes[algorithm]:
        raise InvalidInput(
            f"fingerprint {text.strip()!r} has {len(digest)} bytes; a {algorithm} fingerprint "
            f"has {sizes[algorithm]}"
        )
    return Fingerprint(algorithm, digest)
