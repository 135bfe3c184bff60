"""Reading the portal's forms: each field checked alone, so its error shows next to it."""

from __future__ import annotations

from collections.abc import Mapping

from cryptography import x509

from pki_soap.ca import names
from pki_soap.ca.authority import MAX_DAYS
from pki_soap.ca.keys import KeyType
from pki_soap.errors import PkiError
from pki_soap.portal.app import FormErrors

# (form field, label, keyword argument of names.subject_from_fields), in the original's order.
SUBJECT_FIELDS: tuple[tuple[str, str], ...] = (
    ("country", "Country (two-letter code)"),
    ("state", "State or province"),
    ("locality", "Locality"),
    ("organization", "Organization"),
    ("org_unit", "Organizational unit"),
    ("common_name", "Common name"),
)
SUBJECT_NAMES = tuple(name for name, _ in SUBJECT_FIELDS)
KEY_TYPES = tuple((key_type.value, key_type.label) for key_type in KeyType)


def read_subject(
    form: Mapping[str, str], errors: FormErrors, *, required: bool
) -> x509.Name | None:
    """The subject from the six fields; None (with errors noted) when unusable or all empty."""
    values = {name: form.get(name, "").strip() for name in SUBJECT_NAMES}
    usable = True
    for name, value in values.items():
        if not value:
            continue
        try:
            names.subject_from_fields(**{name: value})
        except PkiError as exc:
            errors.add(name, _sentence(exc.message))
            usable = False
    if not any(values.values()):
        if required:
            errors.add("subject", "Fill in at least one subject field (C, ST, L, O, OU, CN).")
        return None
    if not usable:
        return None
    try:
        return names.subject_from_fields(**values)
    except PkiError as exc:
        errors.add("subject", _sentence(exc.message))
        return None


def read_number(
    form: Mapping[str, str],
    name: str,
    errors: FormErrors,
    *,
    required: bool,
    low: int = 1,
    high: int = MAX_DAYS,
    what: str = "a number of days",
) -> int | None:
    """A whole number within ``low``..``high`` from ``name``; None (error noted) otherwise."""
    text = form.get(name, "").strip()
    if not text:
        if required:
            errors.add(name, "Required.")
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        errors.add(name, f"Enter {what} from {low} to {high}.")
        return None
    return int(text)


def read_root(form: Mapping[str, str], name: str, errors: FormErrors) -> str | None:
    """A file-name root checked by the original's rules; None (error noted) otherwise."""
    try:
        return names.check_root(form.get(name, "").strip())
    except PkiError as exc:
        errors.add(name, _sentence(exc.message))
        return None


def read_key_type(form: Mapping[str, str], name: str, errors: FormErrors) -> KeyType:
    """The chosen key type (RSA 2048 when absent)."""
    try:
        return KeyType(form.get(name) or KeyType.RSA2048.value)
    except ValueError:
        errors.add(name, "Choose one of the key types offered.")
        return KeyType.RSA2048


def read_new_password(
    form: Mapping[str, str], name: str, errors: FormErrors, *, required: bool
) -> bytes | None:
    """A password typed twice (``name`` and ``name_confirm``); None when empty or mismatched."""
    value = form.get(name, "")
    again = form.get(f"{name}_confirm", "")
    if not value:
        if required:
            errors.add(name, "Required.")
        elif again:
            errors.add(name, "Type the password in both fields.")
        return None
    if value != again:
        errors.add(f"{name}_confirm", "The two passwords differ.")
        return None
    return value.encode("utf-8")


def _sentence(message: str) -> str:
    """An error message as a sentence on a page: capitalised, with a full stop."""
    text = message[:1].upper() + message[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def sentence(message: str) -> str:
    """Public form of :func:`_sentence` for the page modules."""
    return _sentence(message)
