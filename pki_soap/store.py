"""The one SQLite database: server and client configuration, pending CSRs, certificates, mail.

``pki.sqlite3`` in the data directory (mode 0600: it holds the SMTP password), in WAL mode with
foreign keys on and a busy timeout, its schema version kept in ``PRAGMA user_version`` and
brought up to date by :func:`_migrate` when the store opens.

Connections come from a small pool inside each :class:`Store`, so that a threaded WSGI server
can read while another thread writes, and a listing can stream from its own cursor.  Processes
(gunicorn workers, a CLI next to the server) each open their own store; SQLite's locking and the
busy timeout serialise their writers.

Times are stored as UTC ISO-8601 text with microseconds, so text order is time order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pki_soap.errors import (
    DuplicateRequest,
    MissingField,
    PkiError,
    StoreUnavailable,
    UnknownRequest,
)
from pki_soap.server.exchanges import Exchange, ExchangeSummary, Note, RecordLimits

DATABASE_NAME = "pki.sqlite3"
_OWNER_MATCH = "upper(rtrim({column})) = upper(rtrim(?))"
"""How ListCertificates matches Hostname and Instance: as IRIS does, most likely.

IRIS compares ``%String`` properties under their default collation, SQLUPPER, which upper-cases
and drops trailing blanks, so a real server lists the certificates of ``IRIS`` for ``iris``
(wire-protocol.md §3.2, Q18: inferred, no capture).  A client that spells its own name in
another case (a node name from the OS, an instance typed by hand) still finds its certificates.
SQLite's upper() folds ASCII letters only; host names are ASCII, and IRIS instance names are
too in practice, so the rare non-ASCII name matches only in its exact case.
"""
BUSY_TIMEOUT_SECONDS = 30.0
_IDLE_CONNECTIONS = 4
_NAMES_PER_QUERY = 500
MAX_NUMBER = 2**63 - 1
"""The largest certificate number the store can hold (an SQLite INTEGER)."""


@dataclass
class ServerConfig:
    """The CA server's configuration (IRIS ``PKI.CAServer``); one row at most."""

    root: str
    directory: str
    days: int
    instance: str
    node: str
    smtp_server: str | None = None
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_password: str | None = None
    admin_email: str | None = None
    public_url: str | None = None
    """The URL clients reach the server at; revocation URLs in certificates are built from it."""
    revocation_urls: bool = True
    """Whether newly issued certificates carry the CRL and OCSP URLs (when public_url is set)."""
    crl_days: int = 30
    """How long a CRL is valid: its nextUpdate is thisUpdate plus this many days."""


@dataclass
class ClientConfig:
    """The CA client's configuration (IRIS ``PKI.CAClient``); one row at most."""

    server: str
    port: int
    path: str
    contact_name: str
    contact_phone: str | None
    contact_email: str | None
    hostname: str
    instance: str
    tls: bool = False
    """True: the CA server is reached over HTTPS (verified against the pinned CA)."""


@dataclass
class PendingRequest:
    """A CSR received and neither issued nor deleted yet (IRIS ``PKI.CSR``), keyed by ``name``."""

    name: str
    hostname: str
    instance: str
    filename: str
    contents: str
    subject: str
    contact_name: str
    contact_phone: str | None = None
    contact_email: str | None = None
    received: datetime | None = None


@dataclass
class IssuedCertificate:
    """A certificate the CA issued (IRIS ``PKI.Certificate``); number 0 is the CA's own."""

    number: int
    hostname: str
    instance: str
    filename: str
    contents: str
    subject: str
    usage: str | None
    issued: datetime
    not_after: datetime | None
    contact_name: str | None = None
    """The request's contact, kept to tell them of a revocation (None before schema 3)."""
    contact_email: str | None = None


@dataclass(frozen=True)
class Revocation:
    """One certificate's revocation as recorded (``reason``: an RFC 5280 name, or unspecified)."""

    number: int
    revoked: datetime
    reason: str
    revoked_by: str
    not_after: datetime | None


@dataclass(frozen=True)
class CrlState:
    """Where one CA's revocations and its latest CRL stand (without the CRL's bytes).

    ``revision`` grows with every change to the CA's revocations; ``covers_revision`` is the
    revision the latest CRL was made from, so a CRL is behind when it is smaller.
    """

    revision: int
    number: int | None
    covers_revision: int | None
    this_update: datetime | None
    next_update: datetime | None


@dataclass(frozen=True)
class StoredCrl:
    """The latest CRL of one CA, DER-encoded."""

    number: int
    this_update: datetime
    next_update: datetime
    der: bytes


@dataclass(frozen=True)
class StoredOcspSigner:
    """The delegated OCSP signing certificate of one CA and its (unencrypted) key, as PEM."""

    certificate: str
    private_key: str
    not_after: datetime


@dataclass(frozen=True)
class CertId:
    """An OCSP CertID: the hash algorithm's name, the issuer's name and key hashes, a serial."""

    hash_algorithm: str
    name_hash: bytes
    key_hash: bytes
    number: int


@dataclass(frozen=True)
class CachedOcspResponse:
    """A signed OCSP response kept for its CertID, and when it is due for re-signing."""

    der: bytes
    this_update: datetime
    refresh_after: datetime
    next_update: datetime


@dataclass
class Mail:
    """One message of the outbox and its delivery state."""

    id: int
    recipient: str
    subject: str
    body: str
    created: datetime
    attempts: int
    next_attempt: datetime | None
    last_error: str | None
    sent: datetime | None


def _to_text(moment: datetime) -> str:
    # Naive datetimes are taken as UTC: every caller in the package passes aware UTC times.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _from_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _now() -> datetime:
    return datetime.now(UTC)


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, and migrations must stay inside our transaction.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _schema_v1(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE server_config (
            id            INTEGER PRIMARY KEY CHECK (id = 1),
            root          TEXT NOT NULL,
            directory     TEXT NOT NULL,
            days          INTEGER NOT NULL,
            instance      TEXT NOT NULL,
            node          TEXT NOT NULL,
            smtp_server   TEXT,
            smtp_port     INTEGER,
            smtp_user     TEXT,
            smtp_password TEXT,
            admin_email   TEXT
        );
        CREATE TABLE client_config (
            id            INTEGER PRIMARY KEY CHECK (id = 1),
            server        TEXT NOT NULL,
            port          INTEGER NOT NULL,
            path          TEXT NOT NULL,
            contact_name  TEXT NOT NULL,
            contact_phone TEXT,
            contact_email TEXT,
            hostname      TEXT NOT NULL,
            instance      TEXT NOT NULL
        );
        CREATE TABLE requests (
            name          TEXT PRIMARY KEY,
            hostname      TEXT NOT NULL,
            instance      TEXT NOT NULL,
            filename      TEXT NOT NULL,
            contents      TEXT NOT NULL,
            subject       TEXT NOT NULL,
            contact_name  TEXT NOT NULL,
            contact_phone TEXT,
            contact_email TEXT,
            received      TEXT NOT NULL
        );
        CREATE TABLE certificates (
            number        INTEGER PRIMARY KEY CHECK (number >= 0),
            hostname      TEXT NOT NULL,
            instance      TEXT NOT NULL,
            filename      TEXT NOT NULL,
            contents      TEXT NOT NULL,
            subject       TEXT NOT NULL,
            usage         TEXT,
            issued        TEXT NOT NULL,
            not_after     TEXT
        );
        CREATE INDEX certificates_by_owner ON certificates (hostname, instance, number);
        CREATE TABLE mail (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            recipient     TEXT NOT NULL,
            subject       TEXT NOT NULL,
            body          TEXT NOT NULL,
            created       TEXT NOT NULL,
            attempts      INTEGER NOT NULL DEFAULT 0,
            next_attempt  TEXT,
            last_error    TEXT,
            sent          TEXT
        );
        CREATE INDEX mail_due ON mail (sent, next_attempt);
        """,
    )


def _schema_v2(conn: sqlite3.Connection) -> None:
    # ListCertificates matches host name and instance as IRIS's SQLUPPER collation does (see
    # _OWNER_MATCH); the index is on the same expressions, so the query can use it.
    _run_script(
        conn,
        """
        DROP INDEX certificates_by_owner;
        CREATE INDEX certificates_by_owner_upper
            ON certificates (upper(rtrim(hostname)), upper(rtrim(instance)), number);
        """,
    )


def _schema_v3(conn: sqlite3.Connection) -> None:
    """Revocation: records, CRL state, the OCSP signer and its cached responses; settings.

    Revocations, CRL state and the OCSP signer are keyed by ``issuer`` (the hex SHA-1 of the
    CA's public key), so a CA configured anew never inherits another CA's revocations, and
    they survive a reinitialisation (RFC 5280 keeps an entry on the CRL until the
    certificate expires; the CRL number never goes back).
    """
    _run_script(
        conn,
        """
        ALTER TABLE server_config ADD COLUMN public_url TEXT;
        ALTER TABLE server_config ADD COLUMN revocation_urls INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE server_config ADD COLUMN crl_days INTEGER NOT NULL DEFAULT 30;
        ALTER TABLE certificates ADD COLUMN contact_name TEXT;
        ALTER TABLE certificates ADD COLUMN contact_email TEXT;
        CREATE TABLE revocations (
            issuer        TEXT NOT NULL,
            number        INTEGER NOT NULL,
            revoked       TEXT NOT NULL,
            reason        TEXT NOT NULL,
            revoked_by    TEXT NOT NULL,
            not_after     TEXT,
            PRIMARY KEY (issuer, number)
        );
        CREATE TABLE crl_state (
            issuer          TEXT PRIMARY KEY,
            revision        INTEGER NOT NULL DEFAULT 0,
            number          INTEGER,
            covers_revision INTEGER,
            this_update     TEXT,
            next_update     TEXT,
            der             BLOB
        );
        CREATE TABLE ocsp_signers (
            issuer        TEXT PRIMARY KEY,
            certificate   TEXT NOT NULL,
            private_key   TEXT NOT NULL,
            not_after     TEXT NOT NULL
        );
        CREATE TABLE ocsp_responses (
            hash_algorithm TEXT NOT NULL,
            name_hash      BLOB NOT NULL,
            key_hash       BLOB NOT NULL,
            number         INTEGER NOT NULL,
            issuer         TEXT NOT NULL,
            this_update    TEXT NOT NULL,
            refresh_after  TEXT NOT NULL,
            next_update    TEXT NOT NULL,
            der            BLOB NOT NULL,
            PRIMARY KEY (number, key_hash, name_hash, hash_algorithm)
        ) WITHOUT ROWID;
        CREATE INDEX ocsp_responses_due ON ocsp_responses (issuer, refresh_after);
        CREATE INDEX ocsp_responses_by_number ON ocsp_responses (issuer, number);
        """,
    )


def _schema_v4_client_tls(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE client_config ADD COLUMN tls INTEGER NOT NULL DEFAULT 0")


def _schema_v5(conn: sqlite3.Connection) -> None:
    """Settings (IRIS-strict mode, exchange recording) and the recorded SOAP exchanges."""
    _run_script(
        conn,
        """
        CREATE TABLE settings (
            name          TEXT PRIMARY KEY,
            value         TEXT NOT NULL
        );
        CREATE TABLE exchanges (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            received      TEXT NOT NULL,
            size          INTEGER NOT NULL,
            duration_ms   REAL NOT NULL,
            client        TEXT NOT NULL,
            user_agent    TEXT,
            method        TEXT,
            status        INTEGER NOT NULL,
            fault         TEXT,
            strict_iris   INTEGER NOT NULL,
            request_size  INTEGER NOT NULL,
            answer_size   INTEGER NOT NULL,
            notes         TEXT NOT NULL,
            request_headers TEXT NOT NULL,
            answer_headers  TEXT NOT NULL,
            request       BLOB NOT NULL,
            answer        BLOB NOT NULL
        );
        CREATE INDEX exchanges_by_time ON exchanges (received);
        CREATE INDEX exchanges_sizes ON exchanges (id, size);
        CREATE TABLE exchange_bytes (
            id            INTEGER PRIMARY KEY CHECK (id = 1),
            total         INTEGER NOT NULL
        );
        INSERT INTO exchange_bytes (id, total) VALUES (1, 0);
        """,
    )
    # exchanges_sizes lets the limits walk ids and sizes without reading the bodies;
    # exchange_bytes keeps the total size, so the byte limit is checked without a scan.
    # (One statement each: their bodies hold semicolons.)
    conn.execute(
        "CREATE TRIGGER exchange_added AFTER INSERT ON exchanges BEGIN"
        " UPDATE exchange_bytes SET total = total + NEW.size WHERE id = 1; END"
    )
    conn.execute(
        "CREATE TRIGGER exchange_dropped AFTER DELETE ON exchanges BEGIN"
        " UPDATE exchange_bytes SET total = total - OLD.size WHERE id = 1; END"
    )


def _schema_v6(conn: sqlite3.Connection) -> None:
    """Limits against hostile clients: submission rate, the new-CSR digest, portal sessions."""
    _run_script(
        conn,
        """
        CREATE INDEX requests_by_hostname ON requests (hostname);
        CREATE TABLE submissions (
            address       TEXT NOT NULL,
            at            TEXT NOT NULL
        );
        CREATE INDEX submissions_by_address ON submissions (address, at);
        CREATE INDEX submissions_by_time ON submissions (at);
        CREATE TABLE arrivals (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            received      TEXT NOT NULL,
            name          TEXT NOT NULL,
            hostname      TEXT NOT NULL,
            instance      TEXT NOT NULL,
            filename      TEXT NOT NULL,
            subject       TEXT NOT NULL,
            contact_name  TEXT NOT NULL,
            contact_phone TEXT,
            contact_email TEXT,
            fingerprint   TEXT NOT NULL
        );
        CREATE TABLE digest_state (
            id            INTEGER PRIMARY KEY CHECK (id = 1),
            last_sent     TEXT NOT NULL
        );
        CREATE TABLE portal_sessions (
            id            TEXT PRIMARY KEY,
            started       TEXT NOT NULL
        );
        CREATE TABLE login_failures (
            key           TEXT PRIMARY KEY,
            failures      INTEGER NOT NULL,
            last          TEXT NOT NULL
        );
        """,
    )


# Migration i brings the schema from version i to i + 1; never edit one that has shipped.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _schema_v1,
    _schema_v2,
    _schema_v3,
    _schema_v4_client_tls,
    _schema_v5,
    _schema_v6,
)
SCHEMA_VERSION = len(_MIGRATIONS)


def _migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION`; return the version found before.

    Runs inside ``BEGIN IMMEDIATE`` so two processes opening a fresh store do not both create
    the tables.

    Raises:
        PkiError: the database was written by a newer pki-soap (a higher schema version).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise PkiError(
                f"the database schema version {found} is newer than this program's "
                f"({SCHEMA_VERSION}); upgrade pki-soap"
            )
        for version in range(found, SCHEMA_VERSION):
            _MIGRATIONS[version](conn)
        if found != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


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


def _translated(exc: sqlite3.Error, what: str) -> PkiError:
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


class Store:
    """The SQLite store of one data directory.

    Every public method is atomic.  :meth:`transaction` groups several of them into one
    ``BEGIN IMMEDIATE`` transaction; it is reentrant: a nested ``transaction()`` in the same
    thread becomes a SAVEPOINT inside the outer one (rolled back alone if its block raises,
    committed only when the outermost block commits).  All store calls a thread makes inside a
    transaction use the transaction's connection.
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
            _migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise PkiError(f"cannot use the database {path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._pool.append(conn)

    @classmethod
    def open(cls, data_dir: Path) -> Store:
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

    def __enter__(self) -> Store:
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
            raise _translated(exc, f"cannot open the database {self.path}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed issue survives power loss; the SRL file is fsynced as well.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _translated(exc, f"cannot use the database {self.path}") from exc
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
                raise _translated(exc, "cannot start a database transaction") from exc
            self._local.conn, self._local.depth = conn, 1
            try:
                yield
            except BaseException as exc:
                if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    conn.execute("ROLLBACK")
                # Constraint errors stay sqlite3's: the store's methods translate them.
                if isinstance(exc, sqlite3.OperationalError):
                    raise _translated(exc, "a database change failed") from exc
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise _translated(exc, "a database change could not be committed") from exc
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
                raise _translated(exc, "the database cannot be read") from exc
            return row

    def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise _translated(exc, "the database cannot be read") from exc

    # -- configuration ------------------------------------------------------------------------

    def server_config(self) -> ServerConfig | None:
        """The CA server's configuration, or None before it is configured."""
        row = self._fetchone(
            "SELECT root, directory, days, instance, node, smtp_server, smtp_port, smtp_user,"
            " smtp_password, admin_email, public_url, revocation_urls, crl_days"
            " FROM server_config WHERE id = 1"
        )
        if row is None:
            return None
        cfg = ServerConfig(*row[:11])
        cfg.revocation_urls, cfg.crl_days = bool(row[11]), row[12]
        return cfg

    def save_server_config(self, cfg: ServerConfig) -> None:
        """Store ``cfg`` as the CA server's configuration, replacing any previous one."""
        self._execute(
            "INSERT OR REPLACE INTO server_config (id, root, directory, days, instance, node,"
            " smtp_server, smtp_port, smtp_user, smtp_password, admin_email, public_url,"
            " revocation_urls, crl_days) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cfg.root,
                cfg.directory,
                cfg.days,
                cfg.instance,
                cfg.node,
                cfg.smtp_server,
                cfg.smtp_port,
                cfg.smtp_user,
                cfg.smtp_password,
                cfg.admin_email,
                cfg.public_url,
                int(cfg.revocation_urls),
                cfg.crl_days,
            ),
        )

    def client_config(self) -> ClientConfig | None:
        """The CA client's configuration, or None before it is configured."""
        row = self._fetchone(
            "SELECT server, port, path, contact_name, contact_phone, contact_email, hostname,"
            " instance, tls FROM client_config WHERE id = 1"
        )
        if row is None:
            return None
        *fields, tls = row
        cfg = ClientConfig(*fields)
        cfg.tls = bool(tls)
        return cfg

    def save_client_config(self, cfg: ClientConfig) -> None:
        """Store ``cfg`` as the CA client's configuration, replacing any previous one."""
        self._execute(
            "INSERT OR REPLACE INTO client_config (id, server, port, path, contact_name,"
            " contact_phone, contact_email, hostname, instance, tls)"
            " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cfg.server,
                cfg.port,
                cfg.path,
                cfg.contact_name,
                cfg.contact_phone,
                cfg.contact_email,
                cfg.hostname,
                cfg.instance,
                int(cfg.tls),
            ),
        )

    # -- pending requests ---------------------------------------------------------------------

    _REQUEST_COLUMNS = (
        "name, hostname, instance, filename, contents, subject, contact_name, contact_phone,"
        " contact_email, received"
    )

    @staticmethod
    def _request(row: tuple[Any, ...]) -> PendingRequest:
        return PendingRequest(
            name=row[0],
            hostname=row[1],
            instance=row[2],
            filename=row[3],
            contents=row[4],
            subject=row[5],
            contact_name=row[6],
            contact_phone=row[7],
            contact_email=row[8],
            received=_from_text(row[9]),
        )

    def add_request(self, req: PendingRequest) -> PendingRequest:
        """Store a pending CSR; ``received`` is set to now when None.  Returns what was stored.

        Raises:
            DuplicateRequest: a pending CSR with the same name exists (IRIS's wording).
            MissingField: a required field is None.
        """
        received = req.received or _now()
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
                    _to_text(received),
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
        return self._request(row)

    def requests(self) -> list[PendingRequest]:
        """All pending CSRs, oldest first (ties by name)."""
        rows = self._fetchall(
            f"SELECT {self._REQUEST_COLUMNS} FROM requests ORDER BY received, name"
        )
        return [self._request(row) for row in rows]

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
                    found[row[0]] = self._request(row)
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
        return [self._request(row) for row in rows]

    # -- submission rate ----------------------------------------------------------------------

    def count_submissions(self, address: str, since: datetime) -> int:
        """Submissions recorded for client ``address`` at or after ``since``."""
        row = self._fetchone(
            "SELECT count(*) FROM submissions WHERE address = ? AND at >= ?",
            (address, _to_text(since)),
        )
        return int(row[0]) if row else 0

    def record_submission(self, address: str, at: datetime, *, forget_before: datetime) -> None:
        """Record a submission from ``address``; drop every record older than ``forget_before``."""
        with self.transaction():
            self._execute("DELETE FROM submissions WHERE at < ?", (_to_text(forget_before),))
            self._execute(
                "INSERT INTO submissions (address, at) VALUES (?, ?)", (address, _to_text(at))
            )

    # -- new-CSR digest -----------------------------------------------------------------------

    def add_arrival(self, req: PendingRequest, fingerprint: str) -> None:
        """Remember that ``req`` arrived, for the administrator's next new-CSR digest."""
        self._execute(
            "INSERT INTO arrivals (received, name, hostname, instance, filename, subject,"
            " contact_name, contact_phone, contact_email, fingerprint)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _to_text(req.received or _now()),
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
            rows = self._fetchall(
                "SELECT received, name, hostname, instance, filename, subject, contact_name,"
                " contact_phone, contact_email, fingerprint, id FROM arrivals ORDER BY id"
            )
            if rows:
                self._execute("DELETE FROM arrivals WHERE id <= ?", (rows[-1][10],))
        return [
            (
                PendingRequest(
                    name=row[1],
                    hostname=row[2],
                    instance=row[3],
                    filename=row[4],
                    contents="",
                    subject=row[5],
                    contact_name=row[6],
                    contact_phone=row[7],
                    contact_email=row[8],
                    received=_from_text(row[0]),
                ),
                row[9],
            )
            for row in rows
        ]

    def count_arrivals(self) -> int:
        """How many arrivals wait for the next digest."""
        row = self._fetchone("SELECT count(*) FROM arrivals")
        return int(row[0]) if row else 0

    def digest_sent(self) -> datetime | None:
        """When the last new-CSR digest was queued, or None."""
        row = self._fetchone("SELECT last_sent FROM digest_state WHERE id = 1")
        return None if row is None else _from_text(row[0])

    def set_digest_sent(self, at: datetime) -> None:
        """Record that a new-CSR digest was queued at ``at``."""
        self._execute(
            "INSERT OR REPLACE INTO digest_state (id, last_sent) VALUES (1, ?)", (_to_text(at),)
        )

    # -- portal sessions and sign-in failures -------------------------------------------------

    def add_portal_session(self, session_id: str, started: datetime) -> None:
        """Record a signed-in portal session (a cookie is honoured only while its id is here)."""
        self._execute(
            "INSERT OR REPLACE INTO portal_sessions (id, started) VALUES (?, ?)",
            (session_id, _to_text(started)),
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
                "DELETE FROM portal_sessions WHERE started < ?", (_to_text(started_before),)
            )

    def login_failures(self, key: str) -> tuple[int, datetime] | None:
        """(failed sign-ins in a row, time of the last) for ``key``, or None."""
        row = self._fetchone("SELECT failures, last FROM login_failures WHERE key = ?", (key,))
        if row is None:
            return None
        last = _from_text(row[1])
        assert last is not None  # NOT NULL column
        return int(row[0]), last

    def record_login_failure(self, key: str, at: datetime) -> int:
        """Count one more failed sign-in for ``key``; return the count."""
        with self.transaction():
            self._execute(
                "INSERT INTO login_failures (key, failures, last) VALUES (?, 1, ?)"
                " ON CONFLICT (key) DO UPDATE SET failures = failures + 1, last = excluded.last",
                (key, _to_text(at)),
            )
            row = self._fetchone("SELECT failures FROM login_failures WHERE key = ?", (key,))
        return int(row[0]) if row else 1

    def clear_login_failures(self, key: str) -> None:
        """Forget the failed sign-ins of ``key`` (after a successful one)."""
        self._execute("DELETE FROM login_failures WHERE key = ?", (key,))

    # -- certificates -------------------------------------------------------------------------

    _CERTIFICATE_COLUMNS = (
        "number, hostname, instance, filename, contents, subject, usage, issued, not_after,"
        " contact_name, contact_email"
    )

    @staticmethod
    def _certificate(row: tuple[Any, ...]) -> IssuedCertificate:
        issued = _from_text(row[7])
        assert issued is not None  # NOT NULL column
        return IssuedCertificate(
            number=row[0],
            hostname=row[1],
            instance=row[2],
            filename=row[3],
            contents=row[4],
            subject=row[5],
            usage=row[6],
            issued=issued,
            not_after=_from_text(row[8]),
            contact_name=row[9],
            contact_email=row[10],
        )

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
            _to_text(cert.issued),
            None if cert.not_after is None else _to_text(cert.not_after),
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
        return None if row is None else self._certificate(row)

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
        with self._connection() as conn:
            cursor = conn.execute(sql, params)
            try:
                for row in cursor:
                    yield self._certificate(row)
            finally:
                cursor.close()

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
        with self._connection() as conn:
            cursor = conn.execute(sql, params)
            try:
                yield from cursor
            finally:
                cursor.close()

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

    # -- mail outbox --------------------------------------------------------------------------

    _MAIL_COLUMNS = (
        "id, recipient, subject, body, created, attempts, next_attempt, last_error, sent"
    )

    @staticmethod
    def _mail(row: tuple[Any, ...]) -> Mail:
        created = _from_text(row[4])
        assert created is not None  # NOT NULL column
        return Mail(
            id=row[0],
            recipient=row[1],
            subject=row[2],
            body=row[3],
            created=created,
            attempts=row[5],
            next_attempt=_from_text(row[6]),
            last_error=row[7],
            sent=_from_text(row[8]),
        )

    def queue_mail(self, recipient: str, subject: str, body: str) -> int:
        """Put a message in the outbox, due at once; return its id."""
        now = _to_text(_now())
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
            (_to_text(now),),
        )
        return [self._mail(row) for row in rows]

    def claim_mail(self, id: int, until: datetime) -> None:
        """Hide unsent message ``id`` from :meth:`due_mail` until ``until`` (a sender's lease).

        Call it inside the :meth:`transaction` that read the message as due, so two senders
        never claim the same one.
        """
        self._execute(
            "UPDATE mail SET next_attempt = ? WHERE id = ? AND sent IS NULL",
            (_to_text(until), id),
        )

    def mail_sent(self, id: int) -> None:
        """Record that message ``id`` was delivered (one more attempt, no next one)."""
        self._execute(
            "UPDATE mail SET sent = ?, attempts = attempts + 1, next_attempt = NULL,"
            " last_error = NULL WHERE id = ?",
            (_to_text(_now()), id),
        )

    def mail_failed(self, id: int, error: str, next_attempt: datetime | None) -> None:
        """Record a failed attempt for message ``id``; ``next_attempt=None`` gives up on it."""
        self._execute(
            "UPDATE mail SET attempts = attempts + 1, last_error = ?, next_attempt = ?"
            " WHERE id = ?",
            (error, None if next_attempt is None else _to_text(next_attempt), id),
        )

    def undelivered(self) -> list[Mail]:
        """Every message not delivered yet (pending retries and given-up ones), oldest first."""
        rows = self._fetchall(
            f"SELECT {self._MAIL_COLUMNS} FROM mail WHERE sent IS NULL ORDER BY id"
        )
        return [self._mail(row) for row in rows]

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

    # -- revocation ---------------------------------------------------------------------------

    _REVOCATION_COLUMNS = "number, revoked, reason, revoked_by, not_after"

    @staticmethod
    def _revocation(row: tuple[Any, ...]) -> Revocation:
        revoked = _from_text(row[1])
        assert revoked is not None  # NOT NULL column
        return Revocation(row[0], revoked, row[2], row[3], _from_text(row[4]))

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
        return None if row is None else self._revocation(row)

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
                        _to_text(revocation.revoked),
                        revocation.reason,
                        revocation.revoked_by,
                        None if revocation.not_after is None else _to_text(revocation.not_after),
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
        with self._connection() as conn:
            cursor = conn.execute(
                f"SELECT {self._REVOCATION_COLUMNS} FROM revocations WHERE issuer = ?"
                " ORDER BY number",
                (issuer,),
            )
            try:
                for row in cursor:
                    yield self._revocation(row)
            finally:
                cursor.close()

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
                    (issuer, _to_text(not_expired_at)),
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
        if row is None:
            return CrlState(0, None, None, None, None)
        return CrlState(row[0], row[1], row[2], _from_text(row[3]), _from_text(row[4]))

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
                    _to_text(crl.this_update),
                    _to_text(crl.next_update),
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
        this_update, next_update = _from_text(row[1]), _from_text(row[2])
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
        not_after = _from_text(row[2])
        assert not_after is not None  # NOT NULL column
        return StoredOcspSigner(row[0], row[1], not_after)

    def save_ocsp_signer(self, issuer: str, signer: StoredOcspSigner) -> None:
        """Make ``signer`` the CA's OCSP signer, replacing the previous one."""
        self._execute(
            "INSERT OR REPLACE INTO ocsp_signers (issuer, certificate, private_key, not_after)"
            " VALUES (?, ?, ?, ?)",
            (issuer, signer.certificate, signer.private_key, _to_text(signer.not_after)),
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
        moments = [_from_text(text) for text in row[1:]]
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
                _to_text(response.this_update),
                _to_text(response.refresh_after),
                _to_text(response.next_update),
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
            (issuer, _to_text(now), limit),
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

    # -- settings -----------------------------------------------------------------------------

    def setting(self, name: str) -> str | None:
        """The setting ``name`` (see pki_soap.cli.server_app ``settings``), or None when unset."""
        row = self._fetchone("SELECT value FROM settings WHERE name = ?", (name,))
        return None if row is None else str(row[0])

    def save_setting(self, name: str, value: str | None) -> None:
        """Set the setting ``name``; None removes it (back to its default)."""
        if value is None:
            self._execute("DELETE FROM settings WHERE name = ?", (name,))
        else:
            self._execute(
                "INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", (name, value)
            )

    # -- recorded exchanges -------------------------------------------------------------------

    _EXCHANGE_SUMMARY_COLUMNS = (
        "id, received, duration_ms, client, user_agent, method, status, fault, strict_iris,"
        " request_size, answer_size, notes"
    )

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
            _to_text(exchange.received),
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
        cutoff = _to_text(exchange.received - timedelta(days=limits.max_days))
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
            raise _translated(exc, "the exchange cannot be recorded") from exc
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
    def _exchange_summary(row: tuple[Any, ...]) -> ExchangeSummary:
        received = _from_text(row[1])
        assert received is not None  # NOT NULL column
        return ExchangeSummary(
            id=row[0],
            received=received,
            duration_ms=row[2],
            client=row[3],
            user_agent=row[4],
            method=row[5],
            status=row[6],
            fault=row[7],
            strict_iris=bool(row[8]),
            request_size=row[9],
            answer_size=row[10],
            note_count=len(json.loads(row[11])),
        )

    def exchanges(self, last: int = 20) -> list[ExchangeSummary]:
        """The newest ``last`` recorded exchanges, newest first, without their bytes."""
        rows = self._fetchall(
            f"SELECT {self._EXCHANGE_SUMMARY_COLUMNS} FROM exchanges ORDER BY id DESC LIMIT ?",
            (max(0, last),),
        )
        return [self._exchange_summary(row) for row in rows]

    def exchange(self, id: int) -> Exchange | None:
        """The recorded exchange ``id`` with its bytes, or None (never recorded or dropped)."""
        row = self._fetchone(
            "SELECT id, received, duration_ms, client, user_agent, method, status, fault,"
            " strict_iris, request_headers, answer_headers, request, answer, request_size,"
            " answer_size, notes FROM exchanges WHERE id = ?",
            (id,),
        )
        if row is None:
            return None
        received = _from_text(row[1])
        assert received is not None  # NOT NULL column
        return Exchange(
            id=row[0],
            received=received,
            duration_ms=row[2],
            client=row[3],
            user_agent=row[4],
            method=row[5],
            status=row[6],
            fault=row[7],
            strict_iris=bool(row[8]),
            request_headers=[(str(k), str(v)) for k, v in json.loads(row[9])],
            answer_headers=[(str(k), str(v)) for k, v in json.loads(row[10])],
            request=bytes(row[11]),
            answer=bytes(row[12]),
            request_size=row[13],
            answer_size=row[14],
            notes=[Note(str(kind), str(text)) for kind, text in json.loads(row[15])],
        )

    def exchange_totals(self) -> tuple[int, int, datetime | None]:
        """(how many exchanges are kept, their total size, when the newest was received)."""
        row = self._fetchone(
            "SELECT count(*), (SELECT total FROM exchange_bytes), max(received) FROM exchanges"
        )
        if row is None:
            return 0, 0, None
        return int(row[0]), int(row[1]), _from_text(row[2])
