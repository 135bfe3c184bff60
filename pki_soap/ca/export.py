"""Certificates in the files other stacks read: PEM chains and PKCS#12.

* **chain** (PEM): the certificate, then the intermediate CA certificates above it - what a
  TLS server sends (nginx ``ssl_certificate``, Apache ``SSLCertificateFile``, HAProxy);
* **fullchain** (PEM): the same, then the root CA certificate (self-signed) as well;
* **PKCS#12** (``.p12``): the private key, its certificate and every CA certificate above it,
  under a password: PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA-256, and an HMAC-SHA-256 MAC,
  as OpenSSL 3 writes by default.  Java's ``keytool`` (JDK 11.0.12 and later) and .NET Core
  3.0 and later read it; the entry's alias (friendly name) is the file-name root.

A chain is built from the certificates at hand (the issuer's subject and signature must fit),
nearest CA first.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from pki_soap.ca import keys, names
from pki_soap.ca.csr import cert_pem
from pki_soap.errors import InvalidInput, NotFound

PKCS12_KDF_ROUNDS = 100_000
_MAX_DEPTH = 10


class ExportFormat(enum.Enum):
    """What ``export`` writes."""

    P12 = "p12"
    CHAIN = "chain"
    FULLCHAIN = "fullchain"

    def file_name(self, stem: str) -> str:
        """The default file name for ``stem``: ``web.p12``, ``web-chain.pem``, ..."""
        return f"{stem}.p12" if self is ExportFormat.P12 else f"{stem}-{self.value}.pem"


def is_self_signed(cert: x509.Certificate) -> bool:
    """True for a certificate that issued itself (a root CA)."""
    return _issued_by(cert, cert)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issuers(leaf: x509.Certificate, known: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """The CA certificates above ``leaf``, nearest first, as far as ``known`` reaches.

    Raises:
        NotFound: not even ``leaf``'s own issuer is among ``known``.
    """
    candidates = [cert for cert in known if _is_ca(cert)]
    found: list[x509.Certificate] = []
    current = leaf
    while not is_self_signed(current) and len(found) < _MAX_DEPTH:
        issuer = next(
            (c for c in candidates if c not in found and c != current and _issued_by(current, c)),
            None,
        )
        if issuer is None:
            break
        found.append(issuer)
        current = issuer
    if not found and not is_self_signed(leaf):
        raise NotFound(
            f"the certificate of its issuer ({names.subject_text(leaf.issuer) or 'no name'}) "
            "is not at hand"
        )
    return found


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return is_self_signed(cert)  # an old v1 root
    return constraints.ca


def chain(
    leaf: x509.Certificate, cas: Sequence[x509.Certificate], *, full: bool
) -> list[x509.Certificate]:
    """``leaf`` and the intermediates of ``cas`` (with ``full``, the root as well).

    Raises:
        NotFound: ``full`` and ``cas`` do not reach a root certificate.
    """
    top = cas[-1] if cas else leaf
    if full and not is_self_signed(top):
        raise NotFound(
            f"the chain ends at {names.subject_text(top.subject) or 'a certificate'}, whose "
            f"issuer ({names.subject_text(top.issuer)}) is not at hand: no full chain"
        )
    return [leaf, *(ca for ca in cas if full or not is_self_signed(ca))]


def pem_bundle(certs: Sequence[x509.Certificate]) -> bytes:
    """The certificates as concatenated PEM blocks."""
    return "".join(cert_pem(cert) for cert in certs).encode("ascii")


def pkcs12_bytes(
    name: str,
    key: keys.PrivateKey,
    cert: x509.Certificate,
    cas: Sequence[x509.Certificate],
    password: bytes,
) -> bytes:
    """A PKCS#12 file holding ``key``, ``cert`` (alias ``name``) and ``cas``, under ``password``.

    Raises:
        InvalidInput: an empty password, or ``key`` is not the key of ``cert``.
    """
    if not password:
        raise InvalidInput("the PKCS#12 password may not be empty")
    if not keys.same_public_key(key.public_key(), cert.public_key()):
        raise InvalidInput("the private key is not the key of the certificate")
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(PKCS12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"), key, cert, list(cas) or None, encryption
    )
