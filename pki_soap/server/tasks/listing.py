"""ListCertificates and GetCertificate: the issued certificates, as the wire asks for them."""

from __future__ import annotations

import re
from collections.abc import Generator

from pki_soap.server.tasks.base import TaskBase
from pki_soap.store import IssuedCertificate

# A certificate Number is at most 20 octets: 49 decimal digits.
_NUMBER = re.compile(r"0|[1-9][0-9]{0,48}")


class ListingTasks(TaskBase):
    """The issued certificates, filtered and ordered as IRIS does (wire-protocol.md §3.2, §3.3)."""

    def certificates(
        self,
        hostname: str | None = "",
        instance: str | None = "",
        *,
        iris_order: bool = False,
    ) -> Generator[IssuedCertificate, None, None]:
        """ListCertificates' rows (wire-protocol.md §3.2), in number order, never number 0.

        Both empty (or None) lists every certificate; otherwise both must match, ignoring case
        and trailing blanks as IRIS's SQLUPPER collation does (the store's ``_OWNER_MATCH``
        says why), so one empty and one given lists nothing (IRIS SQL compares with NULL).
        With ``iris_order`` (IRIS-strict mode) the numbers sort as IRIS sorts them, as text
        ("10" before "9").  The rows stream from the store; ``close()`` the generator to stop
        early.
        """
        owner = _owner(hostname, instance)
        if owner is None:
            return _no_certificates()
        return self.store.certificates(*owner, iris_order=iris_order)

    def certificate_rows(
        self,
        hostname: str | None = "",
        instance: str | None = "",
        *,
        iris_order: bool = False,
    ) -> Generator[tuple[int, str, str, str], None, None]:
        """ListCertificates' rows as ``(number, hostname, instance, filename)``, lean.

        Exactly the rows, order and wire semantics of :meth:`certificates` (§3.2: both
        empty lists every certificate, one empty lists nothing; ``iris_order`` as
        there), without the PEM text or dates.  The rows stream from the store;
        ``close()`` the generator to stop early.
        """
        owner = _owner(hostname, instance)
        if owner is None:
            return _no_rows()
        return self.store.certificate_rows(*owner, iris_order=iris_order)

    def certificate(self, number: str | int) -> IssuedCertificate | None:
        """GetCertificate (wire-protocol.md §3.3): the certificate whose Number is ``number``.

        ``number`` is matched as IRIS's ``%OpenId`` matches the stored decimal string:
        ``"0"`` is the CA certificate; ``"00"``, ``" 0"``, ``"+1"`` or ``"abc"`` match nothing.
        """
        text = str(number)
        if not _NUMBER.fullmatch(text):
            return None
        return self.store.certificate(int(text))


def _no_certificates() -> Generator[IssuedCertificate, None, None]:
    yield from ()


def _no_rows() -> Generator[tuple[int, str, str, str], None, None]:
    yield from ()


def _owner(hostname: str | None, instance: str | None) -> tuple[str | None, str | None] | None:
    """The store's filter for ListCertificates' arguments: (None, None) lists every
    certificate, None lists nothing (one given, one empty: IRIS SQL compares with NULL)."""
    hostname, instance = hostname or "", instance or ""
    if not hostname and not instance:
        return None, None
    if not hostname or not instance:
        return None
    return hostname, instance
