"""Pending certificate signing requests and issued certificates."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Generator, Iterable, Sequence
from typing import Any

from pki_soap.errors import DuplicateRequest, MissingField, PkiError, UnknownRequest
from pki_soap.store.database import Database, columns, from_row, to_text, utc_now
from pki_soap.store.records import MAX_NUMBER, IssuedCertificate, PendingRequest

_OWNER_MATCH = "upper(rtrim({column})) = upper(rtrim(?))"
"""How ListCertificates matches Hostname and Instance: as IRIS does, most likely.

IRIS compares ``%String`` properties under their default collation, SQLUPPER, which upper-cases
and drops trailing blanks, so a real server lists the certificates of ``IRIS`` for ``iris``
(wire-protocol.md §3.2, Q18: inferred, no capture).  A client that spells its own name in
another case (a node name from the OS, an instance typed by hand) still finds its certificates.
SQLite's upper() folds ASCII letters only; host names are ASCII, and IRIS instance names are
too in practice, so the rare non-ASCII name matches only in its exact case.
"""
_NAMES_PER_QUERY = 500


class CertificateTables(Database):
    """``requests`` (IRIS ``PKI.CSR``) and ``certificates`` (IRIS ``PKI.Certificate``)."""

    _REQUEST_COLUMNS = columns(PendingRequest)

    def add_request(self, req: PendingRequest) -> PendingRequest:
        """Store a pending CSR; ``received`` is set to now when None.  Returns what was stored.

        Raises:
            DuplicateRequest: a pending CSR with the same name exists (IRIS's wording).
            MissingField: a required field is None.
        """
        received = req.received or utc_now()
        try:
            self._execute(
                f"INSERT INTO requests ({self._REQUEST_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    req.name,
                    req.hostname,
                    req.instance,
                    req.filename,
                    req.contents,
                    req.subject,
                    req.contact_name,
                    req.contact_phone,
                    req.contact_email,
                    to_text(received),
                ),
            )
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise MissingField(f"pending request {req.name!r} lacks a required field") from exc
            raise DuplicateRequest(
                f"ID key not unique for extent 'PKI.CSR' : '{req.name}' exists."
            ) from exc
        return dataclasses.replace(req, received=received)

    def request(self, name: str) -> PendingRequest:
        """The pending CSR called ``name``.

        Raises:
            UnknownRequest: no pending CSR has that name.
        """
        row = self._fetchone(
            f"SELECT {self._REQUEST_COLUMNS} FROM requests WHERE name = ?", (name,)
        )
        if row is None:
            raise UnknownRequest(f'no pending Certificate Signing Request "{name}"')
        return from_row(PendingRequest, row)

    def requests(self) -> list[PendingRequest]:
        """All pending CSRs, oldest first (ties by name)."""
        rows = self._fetchall(
            f"SELECT {self._REQUEST_COLUMNS} FROM requests ORDER BY received, name"
        )
        return [from_row(PendingRequest, row) for row in rows]

    def requests_named(self, names: Iterable[str]) -> dict[str, PendingRequest]:
        """The pending CSRs among ``names``, keyed by name; names not pending are left out.

        Read inside a :meth:`transaction` to act on what is pending at that moment (another
        process may have issued or deleted some of them since they were listed).
        """
        wanted = list(dict.fromkeys(names))
        found: dict[str, PendingRequest] = {}
        with self._connection() as conn:
            # Chunks keep every statement under SQLite's limit on bound parameters.
            for first in range(0, len(wanted), _NAMES_PER_QUERY):
                chunk = wanted[first : first + _NAMES_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT {self._REQUEST_COLUMNS} FROM requests WHERE name IN ({marks})",
                    chunk,
                ).fetchall()
                for row in rows:
                    found[row[0]] = from_row(PendingRequest, row)
        return found

    def remove_request(self, name: str) -> PendingRequest:
        """Remove the pending CSR called ``name`` and return it.

        Raises:
            UnknownRequest: no pending CSR has that name.
        """
        with self.transaction():
            req = self.request(name)
            self._execute("DELETE FROM requests WHERE name = ?", (name,))
        return req

    def count_requests(self, hostname: str | None = None) -> int:
        """How many CSRs are pending (with this ``hostname``, when given)."""
        if hostname is None:
            row = self._fetchone("SELECT count(*) FROM requests")
        else:
            row = self._fetchone("SELECT count(*) FROM requests WHERE hostname = ?", (hostname,))
        return int(row[0]) if row else 0

    def requests_page(self, offset: int, limit: int) -> list[PendingRequest]:
        """``limit`` pending CSRs from position ``offset`` in :meth:`requests`' order."""
        rows = self._fetchall(
            f"SELECT {self._REQUEST_COLUMNS} FROM requests ORDER BY received, name"
            " LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [from_row(PendingRequest, row) for row in rows]

    # -- certificates -------------------------------------------------------------------------

    _CERTIFICATE_COLUMNS = columns(IssuedCertificate)

    @staticmethod
    def _certificate_values(cert: IssuedCertificate) -> tuple[Any, ...]:
        return (
            cert.number,
            cert.hostname,
            cert.instance,
            cert.filename,
            cert.contents,
            cert.subject,
            cert.usage,
            to_text(cert.issued),
            None if cert.not_after is None else to_text(cert.not_after),
            cert.contact_name,
            cert.contact_email,
        )

    def add_certificate(self, cert: IssuedCertificate, *, replace: bool = False) -> None:
        """Store an issued certificate under ``cert.number``.

        ``replace=True`` overwrites an existing row with that number (used for the CA's own
        certificate, number 0, when the CA is configured again).

        Raises:
            PkiError: the number is already taken (the SRL file was reset or edited by hand)
                or negative.
        """
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            self._execute(
                f"{verb} INTO certificates ({self._CERTIFICATE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._certificate_values(cert),
            )
        except sqlite3.IntegrityError as exc:
            raise PkiError(
                f"certificate number {cert.number} already exists; is the serial file"
                " behind the database?"
            ) from exc

    def record_issued(self, issued: Sequence[tuple[str, IssuedCertificate]]) -> None:
        """Store each certificate and remove the pending CSR it was issued for, atomically.

        ``issued`` pairs a request name with its certificate.  One transaction (a SAVEPOINT
        inside the caller's): either every certificate is stored and every request removed,
        or nothing changes, so a request is never both issued and pending, nor lost.

        Raises:
            UnknownRequest: a named request is not pending (issued or deleted meanwhile).
            PkiError: a number is already taken (the SRL file is behind the database) or
                negative.
        """
        if not issued:
            return
        with self.transaction(), self._connection() as conn:
            try:
                # A savepoint of its own: a failure part-way undoes the rows already in,
                # so the culprit can be found among the numbers that remain.
                with self.transaction():
                    conn.executemany(
                        f"INSERT INTO certificates ({self._CERTIFICATE_COLUMNS})"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [self._certificate_values(cert) for _, cert in issued],
                    )
            except sqlite3.IntegrityError as exc:
                taken = self._first_taken([cert.number for _, cert in issued], conn)
                if taken is None:
                    raise PkiError(f"the certificates cannot be stored: {exc}") from exc
                raise PkiError(
                    f"certificate number {taken} already exists; is the serial file"
                    " behind the database?"
                ) from exc
            for name, _ in issued:
                deleted = conn.execute("DELETE FROM requests WHERE name = ?", (name,))
                if deleted.rowcount != 1:
                    raise UnknownRequest(f'no pending Certificate Signing Request "{name}"')

    @staticmethod
    def _first_taken(numbers: list[int], conn: sqlite3.Connection) -> int | None:
        """The first of ``numbers`` that is negative, repeated or already in the store."""
        seen: set[int] = set()
        for number in numbers:
            if number < 0 or number in seen:
                return number
            if conn.execute("SELECT 1 FROM certificates WHERE number = ?", (number,)).fetchone():
                return number
            seen.add(number)
        return None

    def highest_number(self) -> int:
        """The highest certificate number stored (0 when only the CA's own, or none)."""
        row = self._fetchone("SELECT max(number) FROM certificates")
        return int(row[0]) if row is not None and row[0] is not None else 0

    def certificate(self, number: int) -> IssuedCertificate | None:
        """The certificate numbered ``number`` (0 is the CA's own), or None.

        A number outside SQLite's 64-bit integers cannot be stored, so it matches nothing.
        """
        if not 0 <= number <= MAX_NUMBER:
            return None
        row = self._fetchone(
            f"SELECT {self._CERTIFICATE_COLUMNS} FROM certificates WHERE number = ?", (number,)
        )
        return None if row is None else from_row(IssuedCertificate, row)

    @staticmethod
    def _certificates_query(
        columns: str, hostname: str | None, instance: str | None, iris_order: bool = False
    ) -> tuple[str, tuple[str, ...]]:
        where = ["number <> 0"]
        params: list[str] = []
        if hostname is not None:
            where.append(_OWNER_MATCH.format(column="hostname"))
            params.append(hostname)
        if instance is not None:
            where.append(_OWNER_MATCH.format(column="instance"))
            params.append(instance)
        # IRIS sorts Number, a %String under SQLUPPER, as text: "10" before "9".
        order = "CAST(number AS TEXT)" if iris_order else "number"
        sql = f"SELECT {columns} FROM certificates WHERE {' AND '.join(where)} ORDER BY {order}"
        return sql, tuple(params)

    def certificates(
        self,
        hostname: str | None = None,
        instance: str | None = None,
        *,
        iris_order: bool = False,
    ) -> Generator[IssuedCertificate, None, None]:
        """Issued certificates in number order, never number 0, streamed from one cursor.

        ``None`` leaves that column unfiltered; a string matches regardless of case and
        trailing blanks, as IRIS's SQLUPPER collation does (:data:`_OWNER_MATCH`).  With
        ``iris_order`` the numbers sort as IRIS sorts them, as text ("10" before "9").  The
        iterator holds a pooled connection (a consistent snapshot) until it is exhausted or
        closed.
        """
        sql, params = self._certificates_query(
            self._CERTIFICATE_COLUMNS, hostname, instance, iris_order
        )
        for row in self._stream(sql, params):
            yield from_row(IssuedCertificate, row)

    def certificate_rows(
        self,
        hostname: str | None = None,
        instance: str | None = None,
        *,
        iris_order: bool = False,
    ) -> Generator[tuple[int, str, str, str], None, None]:
        """``(number, hostname, instance, filename)`` of issued certificates, lean and streamed.

        What a listing needs and nothing more (no PEM, no dates to parse): same rows, order
        and filters as :meth:`certificates` (number order, never number 0; ``None`` leaves
        that column unfiltered; ``iris_order`` as there).  The iterator holds a pooled
        connection (a consistent snapshot) until it is exhausted or closed.
        """
        sql, params = self._certificates_query(
            "number, hostname, instance, filename", hostname, instance, iris_order
        )
        yield from self._stream(sql, params)

    def count_certificates(self) -> int:
        """How many certificates were issued (the CA's own, number 0, not counted)."""
        row = self._fetchone("SELECT count(*) FROM certificates WHERE number <> 0")
        return int(row[0]) if row else 0

    def reinitialize(self) -> None:
        """Delete the server configuration, every pending CSR and every certificate (0 too).

        One transaction.  The client configuration and the mail outbox stay; the CA files are
        not the store's business (numbering continues from the SRL file).  Revocations, CRL
        state and OCSP signers stay too (keyed by their CA); cached OCSP answers go.
        """
        with self.transaction():
            self._execute("DELETE FROM server_config")
            self._execute("DELETE FROM requests")
            self._execute("DELETE FROM certificates")
            self._execute("DELETE FROM ocsp_responses")
