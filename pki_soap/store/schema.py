"""The database schema: the migrations that bring ``PRAGMA user_version`` up to date.

Migration i brings the schema from version i to i + 1, inside the transaction that opens the
store.  A shipped migration is never edited: databases in the field ran it as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

from pki_soap.errors import PkiError


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script``, each complete as SQLite's own parser sees it.

    A ``;`` ends a statement only where :func:`sqlite3.complete_statement` agrees, so a
    semicolon inside a string literal or a trigger's body never splits one.
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece
        if sqlite3.complete_statement(pending + ";"):
            if pending.strip():
                yield pending
            pending = ""
        else:
            pending += ";"
    if pending.strip():
        raise ValueError(f"an incomplete SQL statement: {pending.strip()[:60]!r}")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, and migrations must stay inside our transaction
    # (the one that takes the write lock, so two processes never both migrate).
    for statement in _statements(script):
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


def migrate(conn: sqlite3.Connection) -> int:
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
