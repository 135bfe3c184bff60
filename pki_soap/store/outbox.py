"""The mail outbox and the arrivals that wait for the administrator's next new-CSR digest."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pki_soap.store.database import Database, columns, from_row, from_text, to_text, utc_now
from pki_soap.store.records import Mail, PendingRequest


class MailTables(Database):
    """``mail`` (the outbox), ``arrivals`` and ``digest_state``."""

    _MAIL_COLUMNS = columns(Mail)

    def queue_mail(self, recipient: str, subject: str, body: str) -> int:
        """Put a message in the outbox, due at once; return its id."""
        now = to_text(utc_now())
        cursor = self._execute(
            "INSERT INTO mail (recipient, subject, body, created, next_attempt)"
            " VALUES (?, ?, ?, ?, ?)",
            (recipient, subject, body, now, now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def due_mail(self, now: datetime) -> list[Mail]:
        """Unsent messages whose next attempt is at or before ``now``, oldest first."""
        rows = self._fetchall(
            f"SELECT {self._MAIL_COLUMNS} FROM mail WHERE sent IS NULL"
            " AND next_attempt IS NOT NULL AND next_attempt <= ? ORDER BY id",
            (to_text(now),),
        )
        return [from_row(Mail, row) for row in rows]

    def mail_sent(self, id: int) -> None:
        """Record that message ``id`` was delivered (one more attempt, no next one)."""
        self._execute(
            "UPDATE mail SET sent = ?, attempts = attempts + 1, next_attempt = NULL,"
            " last_error = NULL WHERE id = ?",
            (to_text(utc_now()), id),
        )

    def mail_failed(self, id: int, error: str, next_attempt: datetime | None) -> None:
        """Record a failed attempt for message ``id``; ``next_attempt=None`` gives up on it."""
        self._execute(
            "UPDATE mail SET attempts = attempts + 1, last_error = ?, next_attempt = ?"
            " WHERE id = ?",
            (error, None if next_attempt is None else to_text(next_attempt), id),
        )

    def undelivered(self) -> list[Mail]:
        """Every message not delivered yet (pending retries and given-up ones), oldest first."""
        rows = self._fetchall(
            f"SELECT {self._MAIL_COLUMNS} FROM mail WHERE sent IS NULL ORDER BY id"
        )
        return [from_row(Mail, row) for row in rows]

    def drop_mail(self, ids: Iterable[int] | None = None) -> list[int]:
        """Delete undelivered messages from the outbox: those of ``ids``, or all when None.

        Delivered messages are never touched (they are the record of what was sent).
        Returns the ids dropped, in order; an id that is unknown or already delivered is
        simply not among them.
        """
        wanted = None if ids is None else set(ids)
        with self.transaction(), self._connection() as conn:
            rows = conn.execute("SELECT id FROM mail WHERE sent IS NULL ORDER BY id").fetchall()
            waiting = [int(row[0]) for row in rows]
            chosen = waiting if wanted is None else [i for i in waiting if i in wanted]
            conn.executemany(
                "DELETE FROM mail WHERE id = ? AND sent IS NULL", [(i,) for i in chosen]
            )
        return chosen

    # -- new-CSR digest -----------------------------------------------------------------------

    def add_arrival(self, req: PendingRequest, fingerprint: str) -> None:
        """Remember that ``req`` arrived, for the administrator's next new-CSR digest."""
        self._execute(
            "INSERT INTO arrivals (received, name, hostname, instance, filename, subject,"
            " contact_name, contact_phone, contact_email, fingerprint)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                to_text(req.received or utc_now()),
                req.name,
                req.hostname,
                req.instance,
                req.filename,
                req.subject,
                req.contact_name,
                req.contact_phone,
                req.contact_email,
                fingerprint,
            ),
        )

    def take_arrivals(self) -> list[tuple[PendingRequest, str]]:
        """Every arrival not yet in a digest, oldest first, as (request, fingerprint); removed.

        Call it inside the :meth:`transaction` that queues the digest, so that a digest
        that cannot be queued leaves its arrivals for the next one.
        """
        with self.transaction():
            # The columns of a PendingRequest (without its CSR), then the fingerprint and id.
            rows = self._fetchall(
                "SELECT name, hostname, instance, filename, '' AS contents, subject, contact_name,"
                " contact_phone, contact_email, received, fingerprint, id FROM arrivals ORDER BY id"
            )
            if rows:
                self._execute("DELETE FROM arrivals WHERE id <= ?", (rows[-1][11],))
        return [(from_row(PendingRequest, row[:10]), row[10]) for row in rows]

    def count_arrivals(self) -> int:
        """How many arrivals wait for the next digest."""
        row = self._fetchone("SELECT count(*) FROM arrivals")
        return int(row[0]) if row else 0

    def digest_sent(self) -> datetime | None:
        """When the last new-CSR digest was queued, or None."""
        row = self._fetchone("SELECT last_sent FROM digest_state WHERE id = 1")
        return None if row is None else from_text(row[0])

    def set_digest_sent(self, at: datetime) -> None:
        """Record that a new-CSR digest was queued at ``at``."""
        self._execute(
            "INSERT OR REPLACE INTO digest_state (id, last_sent) VALUES (1, ?)", (to_text(at),)
        )
