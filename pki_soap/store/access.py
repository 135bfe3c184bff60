"""Who may come in: portal sessions, failed sign-ins, and the submission rate per client."""

from __future__ import annotations

from datetime import datetime

from pki_soap.store.database import Database, from_text, to_text


class AccessTables(Database):
    """``portal_sessions``, ``login_failures`` and ``submissions``."""

    def add_portal_session(self, session_id: str, started: datetime) -> None:
        """Record a signed-in portal session (a cookie is honoured only while its id is here)."""
        self._execute(
            "INSERT OR REPLACE INTO portal_sessions (id, started) VALUES (?, ?)",
            (session_id, to_text(started)),
        )

    def portal_session_exists(self, session_id: str) -> bool:
        """True while the portal session ``session_id`` has not been ended."""
        row = self._fetchone("SELECT 1 FROM portal_sessions WHERE id = ?", (session_id,))
        return row is not None

    def remove_portal_session(self, session_id: str) -> None:
        """End one portal session (sign-out): its cookie, even copied, no longer works."""
        self._execute("DELETE FROM portal_sessions WHERE id = ?", (session_id,))

    def remove_portal_sessions(self, *, started_before: datetime | None = None) -> None:
        """End every portal session (a new password), or those started before a moment."""
        if started_before is None:
            self._execute("DELETE FROM portal_sessions")
        else:
            self._execute(
                "DELETE FROM portal_sessions WHERE started < ?", (to_text(started_before),)
            )

    def login_failures(self, key: str) -> tuple[int, datetime] | None:
        """(failed sign-ins in a row, time of the last) for ``key``, or None."""
        row = self._fetchone("SELECT failures, last FROM login_failures WHERE key = ?", (key,))
        if row is None:
            return None
        last = from_text(row[1])
        assert last is not None  # NOT NULL column
        return int(row[0]), last

    def record_login_failure(self, key: str, at: datetime) -> int:
        """Count one more failed sign-in for ``key``; return the count."""
        with self.transaction():
            self._execute(
                "INSERT INTO login_failures (key, failures, last) VALUES (?, 1, ?)"
                " ON CONFLICT (key) DO UPDATE SET failures = failures + 1, last = excluded.last",
                (key, to_text(at)),
            )
            row = self._fetchone("SELECT failures FROM login_failures WHERE key = ?", (key,))
        return int(row[0]) if row else 1

    def clear_login_failures(self, key: str) -> None:
        """Forget the failed sign-ins of ``key`` (after a successful one)."""
        self._execute("DELETE FROM login_failures WHERE key = ?", (key,))

    # -- submission rate ----------------------------------------------------------------------

    def count_submissions(self, address: str, since: datetime) -> int:
        """Submissions recorded for client ``address`` at or after ``since``."""
        row = self._fetchone(
            "SELECT count(*) FROM submissions WHERE address = ? AND at >= ?",
            (address, to_text(since)),
        )
        return int(row[0]) if row else 0

    def record_submission(self, address: str, at: datetime, *, forget_before: datetime) -> None:
        """Record a submission from ``address``; drop every record older than ``forget_before``."""
        with self.transaction():
            self._execute("DELETE FROM submissions WHERE at < ?", (to_text(forget_before),))
            self._execute(
                "INSERT INTO submissions (address, at) VALUES (?, ?)", (address, to_text(at))
            )
