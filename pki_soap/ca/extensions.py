"""The extensions a certificate gets from this CA, built here and never copied from a CSR.

Only a TLS certificate's requested DNS and IP subjectAltNames come from the request, after
validation (:func:`tls_sans`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

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


def ski_text(ski: x509.SubjectKeyIdentifier) -> str:
    return ":".join(f"{byte:02X}" for byte in ski.digest)


_NO_KEY_USAGE = dict.fromkeys(
    (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ),
    False,
)


def key_usage(**wanted: bool) -> x509.KeyUsage:
    """A keyUsage with exactly the ``wanted`` bits set (``key_cert_sign=True``, ...).

    Raises:
        TypeError: a name that is not a keyUsage bit.
    """
    return x509.KeyUsage(**(_NO_KEY_USAGE | wanted))


def revocation_extensions(urls: RevocationUrls) -> list[PlannedExtension]:
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
    return isinstance(name, x509.DNSName | x509.IPAddress)


def tls_sans(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """The CSR's DNS and IP names (validated), else one for the CN if it is a host or IP."""
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
        try:
            return [x509.IPAddress(ipaddress.ip_address(cn))]
        except ValueError:
            pass
        if names.is_hostname(cn):
            return [x509.DNSName(cn)]
    return []
