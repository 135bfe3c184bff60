"""Names as the original PKI writes them: file-name roots, subject DNs, subjectAltNames.

Shared by the CA server and the client so both sides apply the same rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID

from pki_soap.errors import InvalidInput, InvalidRoot, InvalidSubject

_ROOT_RE = re.compile(r"[A-Za-z0-9_-]+")
ROOT_MAX_LENGTH = 50  # PKI.CSR.Filename MAXLEN

# MAXLEN of each PKI.CSR field (wire-protocol.md §4.1): the server refuses longer values and
# the client checks before sending.
CSR_FIELD_LIMITS = {
    "Name": 200,
    "Hostname": 100,
    "Instance": 50,
    "Filename": ROOT_MAX_LENGTH,
    "Contents": 5000,
    "Subject": 200,
    "ContactName": 50,
    "ContactPhone": 50,
    "ContactEmail": 50,
}

DEFAULT_INSTANCE = "PKI"
"""The instance name used when none is configured (an IRIS instance has one; we have none)."""

# The six attributes of the original, in its order (AttributeType "C,ST,L,O,OU,CN").
SUBJECT_ATTRIBUTES: tuple[tuple[str, x509.ObjectIdentifier, str], ...] = (
    ("C", NameOID.COUNTRY_NAME, "country"),
    ("ST", NameOID.STATE_OR_PROVINCE_NAME, "state"),
    ("L", NameOID.LOCALITY_NAME, "locality"),
    ("O", NameOID.ORGANIZATION_NAME, "organization"),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME, "org_unit"),
    ("CN", NameOID.COMMON_NAME, "common_name"),
)
_OID_BY_KEYWORD = {keyword: oid for keyword, oid, _ in SUBJECT_ATTRIBUTES}
_KEYWORD_BY_OID = {oid: keyword for keyword, oid, _ in SUBJECT_ATTRIBUTES}
_EXTRA_KEYWORDS = {
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
}
_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_root(root: str) -> str:
    """Return ``root`` if it is a valid file-name root for ``<root>.cer``/``.key``.

    Raises:
        InvalidRoot: empty, too long, a character other than letters, digits,
            ``-`` and ``_`` (so never a path), or ``cache`` in any letter case.
    """
    if not root:
        raise InvalidRoot("file name root is required")
    if len(root) > ROOT_MAX_LENGTH:
        raise InvalidRoot(f"file name root is longer than {ROOT_MAX_LENGTH} characters")
    if not _ROOT_RE.fullmatch(root):
        raise InvalidRoot(f"file name root {root!r} may contain only letters, digits, '-' and '_'")
    if root.lower() == "cache":
        raise InvalidRoot("file name root may not be 'cache'")
    return root


def subject_from_fields(
    country: str | None = None,
    state: str | None = None,
    locality: str | None = None,
    organization: str | None = None,
    org_unit: str | None = None,
    common_name: str | None = None,
) -> x509.Name:
    """Build a subject from the original's six fields, skipping empty ones.

    Raises:
        InvalidSubject: no field given, a country that is not two letters, or
            a value cryptography refuses (too long for its attribute).
    """
    values = (country, state, locality, organization, org_unit, common_name)
    pairs = [
        (keyword, value.strip())
        for (keyword, _, _), value in zip(SUBJECT_ATTRIBUTES, values, strict=True)
        if value and value.strip()
    ]
    return _build_name(pairs)


def subject_from_text(text: str) -> x509.Name:
    """Parse an OpenSSL ``-subj`` string such as ``/C=US/O=Example/CN=host``.

    ``\\/`` escapes a slash inside a value.

    Raises:
        InvalidSubject: not of the form ``/KEY=value/...``, an unknown key,
            or the rules of :func:`subject_from_fields`.
    """
    text = text.strip()
    if not text.startswith("/"):
        raise InvalidSubject("subject must look like /C=US/O=Example/CN=host")
    parts = re.split(r"(?<!\\)/", text[1:])
    pairs: list[tuple[str, str]] = []
    for part in parts:
        if not part:
            continue
        keyword, sep, value = part.partition("=")
        if not sep:
            raise InvalidSubject(f"subject part {part!r} has no '='")
        keyword = keyword.strip()
        if keyword not in _OID_BY_KEYWORD:
            raise InvalidSubject(f"unknown subject attribute {keyword!r} (use C, ST, L, O, OU, CN)")
        value = value.replace("\\/", "/").strip()
        if value:
            pairs.append((keyword, value))
    return _build_name(pairs)


def _build_name(pairs: list[tuple[str, str]]) -> x509.Name:
    if not pairs:
        raise InvalidSubject("subject needs at least one attribute (C, ST, L, O, OU, CN)")
    attributes = []
    for keyword, value in pairs:
        if keyword == "C" and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise InvalidSubject(f"country must be a two-letter code, not {value!r}")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise InvalidSubject(f"subject attribute {keyword} holds a control character")
        if keyword == "C":
            value = value.upper()
        try:
            attributes.append(x509.NameAttribute(_OID_BY_KEYWORD[keyword], value))
        except ValueError as exc:
            raise InvalidSubject(f"subject attribute {keyword}: {exc}") from exc
    return x509.Name(attributes)


def subject_text(name: x509.Name) -> str:
    """The OpenSSL one-line form ``/C=US/O=Example/CN=host`` (the wire's ``Subject``)."""
    parts = []
    for attribute in name:
        keyword = _KEYWORD_BY_OID.get(attribute.oid) or _EXTRA_KEYWORDS.get(
            attribute.oid, attribute.oid.dotted_string
        )
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        parts.append(f"/{keyword}={value.replace('/', chr(92) + '/')}")
    return "".join(parts)


def common_name(name: x509.Name) -> str | None:
    """The last CN of ``name``, or None."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[-1].value
    return value if isinstance(value, str) else None


def is_hostname(text: str) -> bool:
    """True for a DNS host name (labels of letters, digits, '-'; a leading ``*.`` allowed)."""
    if not text or len(text) > 253:
        return False
    labels = text.rstrip(".").split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    return all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)


_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def is_email_address(text: str) -> bool:
    """True for exactly one plain address ``local@host.domain``: no name, no list, no comment.

    ASCII only; the domain is a host name (no wildcard, no trailing dot).  A list such as
    ``a@example.com, b@example.org`` is not one address and is refused.
    """
    local, sep, domain = text.rpartition("@")
    return (
        bool(sep)
        and len(text) <= 254
        and len(local) <= 64
        and _EMAIL_LOCAL.fullmatch(local) is not None
        and "*" not in domain
        and not domain.endswith(".")
        and is_hostname(domain)
    )


def parse_sans(text: str | Iterable[str]) -> list[x509.GeneralName]:
    """Parse subjectAltNames given as ``DNS:x,IP:y`` (or a list of such items).

    Raises:
        InvalidInput: an item that is not ``DNS:<host name>`` or ``IP:<address>``.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names: list[x509.GeneralName] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        kind, sep, value = item.partition(":")
        kind = kind.strip().upper()
        value = value.strip()
        if kind == "DNS" and sep and is_hostname(value):
            names.append(x509.DNSName(value))
        elif kind in ("IP", "IP ADDRESS") and sep:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(value)))
            except ValueError as exc:
                raise InvalidInput(f"subjectAltName {item!r}: not an IP address") from exc
        else:
            raise InvalidInput(f"subjectAltName {item!r} must be DNS:<host name> or IP:<address>")
    return names


def sans_text(names: Iterable[x509.GeneralName]) -> str:
    """``DNS:x, IP:y`` for display."""
    parts = []
    for name in names:
        if isinstance(name, x509.DNSName):
            parts.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            parts.append(f"IP:{name.value}")
        else:
            parts.append(str(name.value))
    return ", ".join(parts)
