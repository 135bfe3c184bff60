"""The extensions a certificate gets from this CA, built here and never copied from a CSR.

Only a TLS certificate's requested DNS and IP subjectAltNames come from the request, after
validation (:func:`tls_sans`).
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from pki_soap.ca import names
from pki_soap.ca.csr import requested_sans
from pki_soap.errors import InvalidCsr


@dataclass(frozen=True)
class RevocationUrls:
    """Where relying parties check an issued certificate: its CRL and the OCSP responder."""

    crl: str
    ocsp: str


@dataclass(frozen=True)
class PlannedExtension:
    """One extension ``sign`` will add, and how it reads for a person."""

    value: x509.ExtensionType
    critical: bool
    text: str


_END_ENTITY = PlannedExtension(
    x509.BasicConstraints(ca=False, path_length=None),
    True,
    "Basic constraints (critical): CA:FALSE",
)


def ski_text(ski: x509.SubjectKeyIdentifier) -> str:
    """A key identifier as openssl shows it: ``AB:CD:...``."""
    return ":".join(f"{byte:02X}" for byte in ski.digest)


KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
"""The keyUsage bits that stand on their own (encipher/decipher only qualify key_agreement)."""


def key_usage(**wanted: bool) -> x509.KeyUsage:
    """A keyUsage with exactly the ``wanted`` bits set (``key_cert_sign=True``, ...).

    Raises:
        TypeError: a name that is not a keyUsage bit.
    """
    cleared = dict.fromkeys((*KEY_USAGE_BITS, "encipher_only", "decipher_only"), False)
    return x509.KeyUsage(**(cleared | wanted))


def intermediate_ca() -> list[PlannedExtension]:
    """An intermediate CA's constraints and key usage: it may sign certificates and CRLs."""
    return [
        PlannedExtension(
            x509.BasicConstraints(ca=True, path_length=0),
            True,
            "Basic constraints (critical): CA:TRUE, pathlen:0",
        ),
        PlannedExtension(
            key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
            True,
            "Key usage (critical): Digital Signature, Certificate Sign, CRL Sign",
        ),
    ]


def tls_endpoint(csr: x509.CertificateSigningRequest) -> list[PlannedExtension]:
    """A TLS server and client certificate's extensions, with the names of :func:`tls_sans`.

    Key encipherment only for an RSA key (RSA key exchange); other keys only sign.

    Raises:
        InvalidCsr: as :func:`tls_sans`.
    """
    encipherment = isinstance(csr.public_key(), rsa.RSAPublicKey)
    planned = [
        _END_ENTITY,
        PlannedExtension(
            key_usage(digital_signature=True, key_encipherment=encipherment),
            True,
            "Key usage (critical): Digital Signature"
            + (", Key Encipherment" if encipherment else ""),
        ),
        PlannedExtension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
            "Extended key usage: TLS Web Server Authentication, TLS Web Client Authentication",
        ),
    ]
    sans = tls_sans(csr)
    if sans:
        planned.append(
            PlannedExtension(
                x509.SubjectAlternativeName(sans),
                False,
                f"Subject alternative name: {names.sans_text(sans)}",
            )
        )
    return planned


def code_signing() -> list[PlannedExtension]:
    """A code-signing certificate's extensions."""
    return [
        _END_ENTITY,
        PlannedExtension(
            key_usage(digital_signature=True), True, "Key usage (critical): Digital Signature"
        ),
        PlannedExtension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
            False,
            "Extended key usage: Code Signing",
        ),
    ]


def revocation_extensions(urls: RevocationUrls) -> list[PlannedExtension]:
    """The CRL distribution point and the OCSP address (authorityInfoAccess) for ``urls``."""
    crl = x509.UniformResourceIdentifier(urls.crl)
    ocsp = x509.UniformResourceIdentifier(urls.ocsp)
    return [
        PlannedExtension(
            x509.CRLDistributionPoints([x509.DistributionPoint([crl], None, None, None)]),
            False,
            f"CRL distribution point: {urls.crl}",
        ),
        PlannedExtension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, ocsp)]
            ),
            False,
            f"Authority information access: OCSP {urls.ocsp}",
        ),
    ]


def copyable_san(name: x509.GeneralName) -> bool:
    """True for the requested names a TLS certificate may carry: DNS names and IP addresses."""
    return isinstance(name, x509.DNSName | x509.IPAddress)


def tls_sans(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """The CSR's DNS and IP names (validated), else one for the CN if it is a host or IP.

    Raises:
        InvalidCsr: a requested DNS name that is not a host name, or an IP network.
    """
    sans: list[x509.GeneralName] = []
    for name in requested_sans(csr):
        if isinstance(name, x509.DNSName) and not names.is_hostname(name.value):
            raise InvalidCsr(f"requested subjectAltName DNS:{name.value!r} is not a host name")
        if isinstance(name, x509.IPAddress) and not isinstance(
            name.value, ipaddress.IPv4Address | ipaddress.IPv6Address
        ):
            # IP networks are for name constraints, never for a subjectAltName.
            raise InvalidCsr(f"requested subjectAltName IP:{name.value} is not an address")
        if copyable_san(name) and name not in sans:
            sans.append(name)
    if sans:
        return sans
    cn = names.common_name(csr.subject)
    if cn:
        with contextlib.suppress(ValueError):  # not an IP address: perhaps a host name
            return [x509.IPAddress(ipaddress.ip_address(cn))]
        if names.is_hostname(cn):
            return [x509.DNSName(cn)]
    return []
