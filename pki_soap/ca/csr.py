"""Certificate signing requests: build, load and check them, read the names they request.

Also the PEM text of CSRs and certificates: the one place the package turns them into text.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from pki_soap.ca.keys import PrivateKey, check_public_key, signature_hash
from pki_soap.errors import InvalidCsr, PolicyViolation, UnacceptableKey

_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>.*?)-----END (?P=label)-----", re.DOTALL
)
_PEM_BEGIN = re.compile(r"-----BEGIN [^-]*-----")
_CSR_LABEL = "CERTIFICATE REQUEST"


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
