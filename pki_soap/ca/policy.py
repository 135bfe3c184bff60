"""The issuance policy: what this CA never signs, whoever asks and whatever the usage.

Rules from RFC 5280 and the CA/Browser Forum Baseline Requirements, where they fit a test CA:

* a wildcard only as the whole left-most label, with at least two labels after it
  (``*.example.com``; never ``*``, ``*.com``, ``a*.example.com`` or ``www.*.example.com``);
* no unspecified (``0.0.0.0``, ``::``), broadcast (``255.255.255.255``) or multicast address;
* no DNS name with a trailing dot (``example.com.``): refused, so the certificate says
  exactly what was asked for;
* at most one CN, and each subject attribute within its RFC 5280 upper bound (CN 64);
* no control, bidi or other invisible character in any subject attribute;
* (the CSR's signature hash, MD5 or SHA-1, is checked with the signature: check_csr).

:func:`refusals` lists every reason (for ``show`` and the portal, before the administrator
chooses); :func:`check` raises on the first pass through them.  Both the submission and the
issue call :func:`check`, so a request stored as received is still checked when it is signed.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID

from pki_soap import escaping
from pki_soap.ca import names
from pki_soap.ca.csr import requested_sans
from pki_soap.errors import InvalidCsr, PolicyViolation

# RFC 5280 Appendix A upper bounds (ub-*) of the attributes the original knows, in characters.
SUBJECT_UPPER_BOUNDS = {
    NameOID.COMMON_NAME: ("CN", 64),
    NameOID.ORGANIZATION_NAME: ("O", 64),
    NameOID.ORGANIZATIONAL_UNIT_NAME: ("OU", 64),
    NameOID.LOCALITY_NAME: ("L", 128),
    NameOID.STATE_OR_PROVINCE_NAME: ("ST", 128),
    NameOID.COUNTRY_NAME: ("C", 2),
    NameOID.EMAIL_ADDRESS: ("emailAddress", 255),
}


def refusals(csr: x509.CertificateSigningRequest) -> list[str]:
    """Every reason the policy refuses ``csr``; empty when it may be signed.

    The texts quote the stranger's values with :func:`escaping.for_terminal`, so they are
    safe to print and to mail.
    """
    reasons = _subject_refusals(csr.subject)
    try:
        requested = requested_sans(csr)
    except InvalidCsr as exc:
        return [*reasons, exc.message]
    for name in requested:
        if isinstance(name, x509.DNSName):
            reasons += _dns_refusals(name.value, "requested subjectAltName DNS:")
        elif isinstance(name, x509.IPAddress):
            reasons += _ip_refusals(name.value, "requested subjectAltName IP:")
    cn = names.common_name(csr.subject)
    if cn is not None:
        try:
            reasons += _ip_refusals(ipaddress.ip_address(cn), "CN ")
        except ValueError:
            if _looks_like_a_host(cn):
                reasons += _dns_refusals(cn, "CN ")
    return list(dict.fromkeys(reasons))


def check(csr: x509.CertificateSigningRequest) -> None:
    """Refuse ``csr`` if the policy forbids signing it.

    Raises:
        PolicyViolation: the reasons of :func:`refusals`, joined by ``"; "``.
    """
    reasons = refusals(csr)
    if reasons:
        raise PolicyViolation("the issuance policy refuses this request: " + "; ".join(reasons))


def _shown(value: str) -> str:
    return f"'{escaping.for_terminal(value)}'"


def _subject_refusals(subject: x509.Name) -> list[str]:
    reasons: list[str] = []
    if len(subject.get_attributes_for_oid(NameOID.COMMON_NAME)) > 1:
        reasons.append("the subject has more than one CN")
    for attribute in subject:
        value = attribute.value
        if not isinstance(value, str):
            continue
        keyword, bound = SUBJECT_UPPER_BOUNDS.get(
            attribute.oid, (attribute.oid.dotted_string, None)
        )
        if bound is not None and len(value) > bound:
            reasons.append(
                f"subject attribute {keyword} is longer than {bound} characters ({len(value)})"
            )
        if escaping.has_invisible(value):
            reasons.append(
                f"subject attribute {keyword} holds a control or bidi character: {_shown(value)}"
            )
    return reasons


def _looks_like_a_host(cn: str) -> bool:
    """A CN the TLS usage turns into a DNS name, or one that pretends to be a wildcard."""
    return "*" in cn or (names.is_hostname(cn) and "." in cn)


def _dns_refusals(value: str, label: str) -> list[str]:
    shown = f"{label}{_shown(value)}"
    if value.endswith("."):
        return [f"{shown} ends with a dot; ask for the name without it"]
    labels = value.split(".")
    if "*" not in value:
        return []
    if labels[0] != "*" or any("*" in part for part in labels[1:]):
        return [f"{shown}: a wildcard may only be the whole left-most label (*.example.com)"]
    if len(labels) < 3:
        return [f"{shown}: a wildcard needs at least two labels after it (*.example.com)"]
    return []


def _ip_refusals(
    address: ipaddress.IPv4Address
    | ipaddress.IPv6Address
    | ipaddress.IPv4Network
    | ipaddress.IPv6Network,
    label: str,
) -> list[str]:
    if isinstance(address, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return []  # not an address at all: the signing checks refuse it with their reason
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return [f"{label}{address} is the unspecified address"]
    if address.is_multicast:
        return [f"{label}{address} is a multicast address"]
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return [f"{label}{address} is the broadcast address"]
    return []
