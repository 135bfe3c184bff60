"""The database file of a store: its connection pool, transactions and error translation.

``pki.sqlite3`` in the data directory (mode 0600: it holds the SMTP password), in WAL mode
with foreign keys on and a busy timeout, migrated by :mod:`pki_soap.store.schema` when opened.
:class:`Database` is the base the store's tables are built on (:mod:`pki_soap.store`).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import threading
import typing
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from pki_soap.errors import PkiError, StoreUnavailable
from pki_soap.store.schema import migrate

DATABASE_NAME = "pki.sqlite3"
BUSY_TIMEOUT_SECONDS = 30.0
_IDLE_CONNECTIONS = 4
_R = TypeVar("_R")


def to_text(moment: datetime) -> str:
    """``moment`` as the store keeps times: UTC ISO-8601 text with microseconds."""
    # Naive datetimes are taken as UTC: every caller in the package passes aware UTC times.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_text(text: str | None) -> datetime | None:
    """A time as :func:`to_text` wrote it (None stays None)."""
    return None if text is None else datetime.fromisoformat(text)


def utc_now() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def columns(record: type[Any]) -> str:
    """The columns of a table named as the fields of the dataclass ``record``, in its order."""
    return ", ".join(field.name for field in dataclasses.fields(record))


_TIMES: dict[type[Any], tuple[bool, ...]] = {}


def _times(record: type[Any]) -> tuple[bool, ...]:
    """Which fields of ``record`` are times (``datetime`` or ``datetime | None``)."""
    if record not in _TIMES:
        hints = typing.get_type_hints(record)
        _TIMES[record] = tuple(
            datetime in (hints[field.name], *typing.get_args(hints[field.name]))
            for field in dataclasses.fields(record)
        )
    return _TIMES[record]


def from_row(record: type[_R], row: Sequence[Any]) -> _R:
    """The ``record`` a row of its :func:`columns` holds, its times read back from text."""
    return record(
        *(
            from_text(value) if is_time else value
            for value, is_time in zip(row, _times(record), strict=True)
        )
    )


def _prepare_private_database(path: Path) -> None:
    """Make ``path`` and its -wal/-shm files 0600, by path only.

    Never through a file descriptor: closing any descriptor of a database file drops every
    POSIX lock this process holds on it (SQLite's "How To Corrupt", 2.2), and another process
    may then delete the WAL under our live connections.  A new database is created by SQLite
    itself under a 077 umask (its journal files copy the database file's mode).
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        os.chmod(path, 0o600)


def translated(exc: sqlite3.Error, what: str) -> PkiError:
    """Our error for an SQLite failure; a full or read-only disk says so, without paths."""
    text = str(exc)
    if any(mark in text for mark in ("full", "readonly", "read-only", "disk I/O")):
        return StoreUnavailable(
            "the CA server cannot write its database now (disk full or not writable); "
            "nothing was changed, try again later"
        )
    if "locked" in text or "busy" in text:
        return PkiError(f"{what}: the database stayed busy (another process holds it)")
    return PkiError(f"{what}: {text}")


class Database:
    """The connections to one database file, shared by the store's tables.

    Every public method of the store is atomic.  :meth:`transaction` groups several of them
    into one ``BEGIN IMMEDIATE`` transaction; it is reentrant: a nested ``transaction()`` in
    the same thread becomes a SAVEPOINT inside the outer one (rolled back alone if its block
    raises, committed only when the outermost block commits).  All store calls a thread makes
    inside a transaction use the transaction's connection.
    """

    def __init__(self, path: Path) -> None:
        """Open (and create or migrate) the database file ``path``.

        Raises:
            PkiError: the file cannot be created, is not a usable SQLite database, or its
                schema is newer.
        """
        self.path = path
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        try:
            _prepare_private_database(path)
        except OSError as exc:
            raise PkiError(f"cannot use the database {path}: {exc.strerror}") from exc
        created = not path.exists()
        previous_umask = os.umask(0o077) if created else None
        try:
            conn = self._connect()
        except PkiError as exc:
            if created:
                raise PkiError(f"cannot create the database {path}: {exc.message}") from exc
            raise
        finally:
            if previous_umask is not None:
                os.umask(previous_umask)
        try:
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise PkiError(f"cannot use the database {path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._pool.append(conn)

    @classmethod
    def open(cls, data_dir: Path) -> Self:
        """Open ``data_dir/pki.sqlite3``, creating the directory (0700) and database if needed.

        Raises:
            PkiError: the database cannot be opened or has a newer schema.
        """
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(data_dir / DATABASE_NAME)

    def close(self) -> None:
        """Close the idle connections; connections still in use close when given back."""
        with self._pool_lock:
            self._closed = True
            idle, self._pool = self._pool, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections and transactions ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.  A pooled connection moves
            # between threads but is used by one thread at a time, hence check_same_thread=False.
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise translated(exc, f"cannot open the database {self.path}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed issue survives power loss; the SRL file is fsynced as well.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise translated(exc, f"cannot use the database {self.path}") from exc
        return conn

    def _checkout(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise PkiError("the store is closed")
            if self._pool:
                return self._pool.pop()
        return self._connect()

    def _checkin(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            # Only an abandoned cursor can leave one open (autocommit otherwise): end it.
            conn.execute("ROLLBACK")
        with self._pool_lock:
            if not self._closed and len(self._pool) < _IDLE_CONNECTIONS:
                self._pool.append(conn)
                return
        conn.close()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        current: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises.

        Nested use in the same thread makes a SAVEPOINT (see the class docstring).  The write
        lock is taken at once, so two processes doing read-then-write never deadlock; a
        writer waits up to :data:`BUSY_TIMEOUT_SECONDS` for another.

        Raises:
            PkiError: the database stayed locked longer than the busy timeout.
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            depth: int = self._local.depth
            savepoint = f"nested_{depth}"
            conn.execute(f"SAVEPOINT {savepoint}")
            self._local.depth = depth + 1
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO {savepoint}")
                    conn.execute(f"RELEASE {savepoint}")
                raise
            else:
                conn.execute(f"RELEASE {savepoint}")
            finally:
                self._local.depth = depth
            return
        conn = self._checkout()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise translated(exc, "cannot start a database transaction") from exc
            self._local.conn, self._local.depth = conn, 1
            try:
                yield
            except BaseException as exc:
                if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    conn.execute("ROLLBACK")
                # Constraint errors stay sqlite3's: the store's methods translate them.
                if isinstance(exc, sqlite3.OperationalError):
                    raise translated(exc, "a database change failed") from exc
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise translated(exc, "a database change could not be committed") from exc
            finally:
                self._local.conn = None
        finally:
            self._checkin(conn)

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self.transaction(), self._connection() as conn:
            return conn.execute(sql, params)

    def _fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._connection() as conn:
            try:
                row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            except sqlite3.OperationalError as exc:
                raise translated(exc, "the database cannot be read") from exc
            return row

    def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise translated(exc, "the database cannot be read") from exc

    def _stream(self, sql: str, params: tuple[Any, ...] = ()) -> Generator[Any, None, None]:
        """The rows of ``sql`` from one cursor, holding a pooled connection (a consistent
        snapshot) until they are exhausted or the generator is closed."""
        with self._connection() as conn:
            cursor = conn.execute(sql, params)
            try:
                yield from cursor
            finally:
                cursor.close()
