"""Recorded SOAP exchanges, trimmed to their limits as each new one is stored."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from pki_soap.store.database import Database, from_text, to_text, translated
from pki_soap.store.records import Exchange, ExchangeSummary, Note, RecordLimits


class ExchangeTables(Database):
    """``exchanges`` and ``exchange_bytes`` (their total size, kept by triggers)."""

    # A summary's columns; an exchange's are the same followed by its headers and bytes.
    _SUMMARY_COLUMNS = (
        "id, received, duration_ms, client, user_agent, method, status, fault, strict_iris,"
        " request_size, answer_size, notes"
    )
    _EXCHANGE_COLUMNS = f"{_SUMMARY_COLUMNS}, request_headers, answer_headers, request, answer"

    def record_exchange(self, exchange: Exchange, limits: RecordLimits) -> int:
        """Store ``exchange`` and drop what the limits no longer allow; return its id.

        In the same transaction, oldest first: exchanges received more than
        ``limits.max_days`` before this one, those beyond the newest ``limits.keep``, and
        as many of the oldest as it takes to bring their total size under
        ``limits.max_bytes``.  Several processes may record at once: each transaction sees
        the others', so the limits hold for all of them together.  A record is a debugging
        aid: it is committed without waiting for the disk (``synchronous = NORMAL``; WAL
        keeps the database consistent, a power cut may lose the last few).
        """
        values = (
            to_text(exchange.received),
            exchange.size,
            exchange.duration_ms,
            exchange.client,
            exchange.user_agent,
            exchange.method,
            exchange.status,
            exchange.fault,
            int(exchange.strict_iris),
            exchange.request_size,
            exchange.answer_size,
            json.dumps([[note.kind, note.text] for note in exchange.notes]),
            json.dumps(exchange.request_headers),
            json.dumps(exchange.answer_headers),
            exchange.request,
            exchange.answer,
        )
        cutoff = to_text(exchange.received - timedelta(days=limits.max_days))
        conn = self._checkout()
        try:
            # The safety level cannot change inside a transaction: set it around this one.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                new_id = self._record_and_trim(conn, values, cutoff, limits)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return new_id
        except sqlite3.Error as exc:
            raise translated(exc, "the exchange cannot be recorded") from exc
        finally:
            try:
                conn.execute("PRAGMA synchronous = FULL")
            finally:
                self._checkin(conn)

    @staticmethod
    def _record_and_trim(
        conn: sqlite3.Connection, values: tuple[Any, ...], cutoff: str, limits: RecordLimits
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO exchanges (received, size, duration_ms, client, user_agent, method,"
            " status, fault, strict_iris, request_size, answer_size, notes, request_headers,"
            " answer_headers, request, answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?)",
            values,
        )
        new_id = cursor.lastrowid
        assert new_id is not None
        conn.execute("DELETE FROM exchanges WHERE received < ?", (cutoff,))
        conn.execute(
            "DELETE FROM exchanges WHERE id < (SELECT id FROM exchanges"
            " ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (limits.keep - 1,),
        )
        total = conn.execute("SELECT total FROM exchange_bytes").fetchone()[0]
        if total > limits.max_bytes:
            # Walk from the oldest until what remains fits.
            last = None
            for row_id, size in conn.execute("SELECT id, size FROM exchanges ORDER BY id"):
                last, total = row_id, total - size
                if total <= limits.max_bytes:
                    break
            conn.execute("DELETE FROM exchanges WHERE id <= ?", (last,))
        return new_id

    @staticmethod
    def _summary_fields(row: tuple[Any, ...]) -> dict[str, Any]:
        """The fields a summary and an exchange share: the first of :attr:`_SUMMARY_COLUMNS`."""
        received = from_text(row[1])
        assert received is not None  # NOT NULL column
        return {
            "id": row[0],
            "received": received,
            "duration_ms": row[2],
            "client": row[3],
            "user_agent": row[4],
            "method": row[5],
            "status": row[6],
            "fault": row[7],
            "strict_iris": bool(row[8]),
            "request_size": row[9],
            "answer_size": row[10],
        }

    def exchanges(self, last: int = 20) -> list[ExchangeSummary]:
        """The newest ``last`` recorded exchanges, newest first, without their bytes."""
        rows = self._fetchall(
            f"SELECT {self._SUMMARY_COLUMNS} FROM exchanges ORDER BY id DESC LIMIT ?",
            (max(0, last),),
        )
        return [
            ExchangeSummary(**self._summary_fields(row), note_count=len(json.loads(row[11])))
            for row in rows
        ]

    def exchange(self, id: int) -> Exchange | None:
        """The recorded exchange ``id`` with its bytes, or None (never recorded or dropped)."""
        row = self._fetchone(f"SELECT {self._EXCHANGE_COLUMNS} FROM exchanges WHERE id = ?", (id,))
        if row is None:
            return None
        return Exchange(
            **self._summary_fields(row),
            notes=[Note(str(kind), str(text)) for kind, text in json.loads(row[11])],
            request_headers=[(str(k), str(v)) for k, v in json.loads(row[12])],
            answer_headers=[(str(k), str(v)) for k, v in json.loads(row[13])],
            request=bytes(row[14]),
            answer=bytes(row[15]),
        )

    def exchange_totals(self) -> tuple[int, int, datetime | None]:
        """(how many exchanges are kept, their total size, when the newest was received)."""
        row = self._fetchone(
            "SELECT count(*), (SELECT total FROM exchange_bytes), max(received) FROM exchanges"
        )
        if row is None:
            return 0, 0, None
        return int(row[0]), int(row[1]), from_text(row[2])
