"""Revocation records, each CA's CRL state, its OCSP signer and the cached OCSP responses."""

from __future__ import annotations

import sqlite3
from collections.abc import Generator
from datetime import datetime

from pki_soap.errors import PkiError
from pki_soap.store.database import Database, columns, from_row, from_text, to_text
from pki_soap.store.records import (
    MAX_NUMBER,
    CachedOcspResponse,
    CertId,
    CrlState,
    Revocation,
    StoredCrl,
    StoredOcspSigner,
)


class RevocationTables(Database):
    """``revocations``, ``crl_state``, ``ocsp_signers`` and ``ocsp_responses``, keyed by issuer."""

    _REVOCATION_COLUMNS = columns(Revocation)

    def _bump_revision(self, issuer: str) -> None:
        self._execute(
            "INSERT INTO crl_state (issuer, revision) VALUES (?, 1)"
            " ON CONFLICT (issuer) DO UPDATE SET revision = revision + 1",
            (issuer,),
        )

    def revocation(self, issuer: str, number: int) -> Revocation | None:
        """The revocation of certificate ``number`` of the CA ``issuer``, or None."""
        row = self._fetchone(
            f"SELECT {self._REVOCATION_COLUMNS} FROM revocations WHERE issuer = ? AND number = ?",
            (issuer, number),
        )
        return None if row is None else from_row(Revocation, row)

    def add_revocation(self, issuer: str, revocation: Revocation) -> None:
        """Record ``revocation`` for the CA ``issuer`` (and count it as a change for its CRL).

        Raises:
            PkiError: the certificate is already recorded as revoked.
        """
        with self.transaction():
            try:
                self._execute(
                    f"INSERT INTO revocations (issuer, {self._REVOCATION_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        issuer,
                        revocation.number,
                        to_text(revocation.revoked),
                        revocation.reason,
                        revocation.revoked_by,
                        None if revocation.not_after is None else to_text(revocation.not_after),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise PkiError(
                    f"certificate number {revocation.number} is already revoked"
                ) from exc
            self._bump_revision(issuer)

    def change_revocation_reason(
        self, issuer: str, number: int, reason: str, revoked_by: str
    ) -> None:
        """Give the recorded revocation of ``number`` a new reason (a hold made permanent)."""
        with self.transaction():
            self._execute(
                "UPDATE revocations SET reason = ?, revoked_by = ? WHERE issuer = ? AND number = ?",
                (reason, revoked_by, issuer, number),
            )
            self._bump_revision(issuer)

    def remove_revocation(self, issuer: str, number: int) -> None:
        """Forget the revocation of ``number`` (a certificateHold released)."""
        with self.transaction():
            self._execute(
                "DELETE FROM revocations WHERE issuer = ? AND number = ?", (issuer, number)
            )
            self._bump_revision(issuer)

    def revocations(self, issuer: str) -> Generator[Revocation, None, None]:
        """Every recorded revocation of the CA ``issuer``, in number order, streamed."""
        rows = self._stream(
            f"SELECT {self._REVOCATION_COLUMNS} FROM revocations WHERE issuer = ? ORDER BY number",
            (issuer,),
        )
        for row in rows:
            yield from_row(Revocation, row)

    def crl_records(
        self, issuer: str, not_expired_at: datetime
    ) -> tuple[int, list[tuple[int, datetime, str]]]:
        """What a CRL lists: the revision and ``(number, revoked, reason)`` of each revocation
        whose certificate has not expired at ``not_expired_at``, in number order.

        Read in one snapshot (a deferred transaction: no write lock is held while 100,000
        rows are read), so the revision counts exactly the records returned.
        """
        with self._connection() as conn:
            own = not conn.in_transaction
            if own:
                conn.execute("BEGIN")
            try:
                row = conn.execute(
                    "SELECT revision FROM crl_state WHERE issuer = ?", (issuer,)
                ).fetchone()
                rows = conn.execute(
                    "SELECT number, revoked, reason FROM revocations WHERE issuer = ?"
                    " AND (not_after IS NULL OR not_after >= ?) ORDER BY number",
                    (issuer, to_text(not_expired_at)),
                ).fetchall()
            finally:
                if own:
                    conn.execute("COMMIT")
        parse = datetime.fromisoformat
        return (row[0] if row else 0), [(n, parse(when), why) for n, when, why in rows]

    def count_revocations(self, issuer: str) -> int:
        """How many certificates of the CA ``issuer`` are recorded as revoked."""
        row = self._fetchone("SELECT count(*) FROM revocations WHERE issuer = ?", (issuer,))
        return int(row[0]) if row else 0

    def crl_state(self, issuer: str) -> CrlState:
        """The revision of the CA's revocations and the facts of its latest CRL."""
        row = self._fetchone(
            "SELECT revision, number, covers_revision, this_update, next_update"
            " FROM crl_state WHERE issuer = ?",
            (issuer,),
        )
        return CrlState(0, None, None, None, None) if row is None else from_row(CrlState, row)

    def save_crl(self, issuer: str, crl: StoredCrl, covers_revision: int) -> bool:
        """Keep ``crl`` as the CA's latest unless a CRL with a higher number is already kept.

        Returns:
            True when it was kept, False when a newer one (signed by another process) stays.
        """
        with self.transaction():
            self._execute(
                "INSERT INTO crl_state (issuer, revision) VALUES (?, 0)"
                " ON CONFLICT (issuer) DO NOTHING",
                (issuer,),
            )
            cursor = self._execute(
                "UPDATE crl_state SET number = ?, covers_revision = ?, this_update = ?,"
                " next_update = ?, der = ? WHERE issuer = ? AND (number IS NULL OR number < ?)",
                (
                    crl.number,
                    covers_revision,
                    to_text(crl.this_update),
                    to_text(crl.next_update),
                    crl.der,
                    issuer,
                    crl.number,
                ),
            )
            return cursor.rowcount == 1

    def crl_number(self, issuer: str) -> int | None:
        """The number of the CA's latest CRL (None before the first): a cheap freshness check."""
        row = self._fetchone("SELECT number FROM crl_state WHERE issuer = ?", (issuer,))
        return None if row is None else row[0]

    def crl(self, issuer: str) -> StoredCrl | None:
        """The CA's latest CRL, or None before the first one is signed."""
        row = self._fetchone(
            "SELECT number, this_update, next_update, der FROM crl_state"
            " WHERE issuer = ? AND der IS NOT NULL",
            (issuer,),
        )
        if row is None:
            return None
        this_update, next_update = from_text(row[1]), from_text(row[2])
        assert this_update is not None and next_update is not None  # written with der
        return StoredCrl(row[0], this_update, next_update, bytes(row[3]))

    def ocsp_signer(self, issuer: str) -> StoredOcspSigner | None:
        """The CA's delegated OCSP signer, or None before one was issued."""
        row = self._fetchone(
            "SELECT certificate, private_key, not_after FROM ocsp_signers WHERE issuer = ?",
            (issuer,),
        )
        if row is None:
            return None
        not_after = from_text(row[2])
        assert not_after is not None  # NOT NULL column
        return StoredOcspSigner(row[0], row[1], not_after)

    def save_ocsp_signer(self, issuer: str, signer: StoredOcspSigner) -> None:
        """Make ``signer`` the CA's OCSP signer, replacing the previous one."""
        self._execute(
            "INSERT OR REPLACE INTO ocsp_signers (issuer, certificate, private_key, not_after)"
            " VALUES (?, ?, ?, ?)",
            (issuer, signer.certificate, signer.private_key, to_text(signer.not_after)),
        )

    def ocsp_response(self, cert_id: CertId) -> CachedOcspResponse | None:
        """The cached response for exactly ``cert_id``, or None."""
        if not 0 <= cert_id.number <= MAX_NUMBER:
            return None
        row = self._fetchone(
            "SELECT der, this_update, refresh_after, next_update FROM ocsp_responses"
            " WHERE number = ? AND key_hash = ? AND name_hash = ? AND hash_algorithm = ?",
            (cert_id.number, cert_id.key_hash, cert_id.name_hash, cert_id.hash_algorithm),
        )
        if row is None:
            return None
        moments = [from_text(text) for text in row[1:]]
        this_update, refresh_after, next_update = moments
        assert this_update and refresh_after and next_update  # NOT NULL columns
        return CachedOcspResponse(bytes(row[0]), this_update, refresh_after, next_update)

    def save_ocsp_response(
        self, issuer: str, cert_id: CertId, response: CachedOcspResponse
    ) -> None:
        """Cache ``response`` for ``cert_id`` (replacing the one before)."""
        self._execute(
            "INSERT OR REPLACE INTO ocsp_responses (hash_algorithm, name_hash, key_hash,"
            " number, issuer, this_update, refresh_after, next_update, der)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cert_id.hash_algorithm,
                cert_id.name_hash,
                cert_id.key_hash,
                cert_id.number,
                issuer,
                to_text(response.this_update),
                to_text(response.refresh_after),
                to_text(response.next_update),
                response.der,
            ),
        )

    def forget_ocsp_responses(self, issuer: str, number: int) -> None:
        """Drop every cached response about certificate ``number`` of the CA ``issuer``."""
        self._execute(
            "DELETE FROM ocsp_responses WHERE issuer = ? AND number = ?", (issuer, number)
        )

    def due_ocsp_responses(self, issuer: str, now: datetime, limit: int) -> list[CertId]:
        """CertIDs whose cached response is due for re-signing at ``now``, oldest first."""
        rows = self._fetchall(
            "SELECT hash_algorithm, name_hash, key_hash, number FROM ocsp_responses"
            " WHERE issuer = ? AND refresh_after <= ? ORDER BY refresh_after LIMIT ?",
            (issuer, to_text(now), limit),
        )
        return [CertId(row[0], bytes(row[1]), bytes(row[2]), row[3]) for row in rows]

    def unanswered_certificates(
        self, issuer: str, hash_algorithm: str, key_hash: bytes, limit: int
    ) -> list[int]:
        """Numbers of issued certificates with no cached response by ``hash_algorithm`` yet."""
        rows = self._fetchall(
            "SELECT c.number FROM certificates c WHERE c.number <> 0 AND NOT EXISTS ("
            " SELECT 1 FROM ocsp_responses r WHERE r.number = c.number AND r.key_hash = ?"
            " AND r.hash_algorithm = ? AND r.issuer = ?) ORDER BY c.number LIMIT ?",
            (key_hash, hash_algorithm, issuer, limit),
        )
        return [row[0] for row in rows]
