"""The one SQLite database: server and client configuration, pending CSRs, certificates, mail.

``pki.sqlite3`` in the data directory (mode 0600: it holds the SMTP password), in WAL mode with
foreign keys on and a busy timeout, its schema version kept in ``PRAGMA user_version`` and
brought up to date by :mod:`~pki_soap.store.schema` when the store opens.

Connections come from a small pool inside each :class:`Store`, so that a threaded WSGI server
can read while another thread writes, and a listing can stream from its own cursor.  Processes
(gunicorn workers, a CLI next to the server) each open their own store; SQLite's locking and the
busy timeout serialise their writers.

Times are stored as UTC ISO-8601 text with microseconds, so text order is time order.

The package is the store's contract: :class:`Store` and the records it takes and returns are
imported from here.  Inside, :mod:`~pki_soap.store.database` holds the connections and
transactions, and one module per family of tables adds its methods to the store.
"""

from __future__ import annotations

from pki_soap.store.access import AccessTables
from pki_soap.store.certificates import CertificateTables
from pki_soap.store.config import ConfigTables
from pki_soap.store.database import BUSY_TIMEOUT_SECONDS, DATABASE_NAME
from pki_soap.store.exchanges import ExchangeTables
from pki_soap.store.outbox import MailTables
from pki_soap.store.records import (
    BODY_KEPT,
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DAYS,
    IRIS,
    MAX_NUMBER,
    TOOLKIT,
    CachedOcspResponse,
    CertId,
    ClientConfig,
    CrlState,
    Exchange,
    ExchangeSummary,
    IssuedCertificate,
    Mail,
    Note,
    PendingRequest,
    RecordLimits,
    Revocation,
    ServerConfig,
    StoredCrl,
    StoredOcspSigner,
)
from pki_soap.store.revocations import RevocationTables
from pki_soap.store.schema import SCHEMA_VERSION


class Store(
    ConfigTables, CertificateTables, MailTables, RevocationTables, ExchangeTables, AccessTables
):
    """The SQLite store of one data directory: every table family over one pool of connections.

    See :class:`~pki_soap.store.database.Database` for its transactions.
    """


__all__ = [
    "BODY_KEPT",
    "BUSY_TIMEOUT_SECONDS",
    "DATABASE_NAME",
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DAYS",
    "IRIS",
    "MAX_NUMBER",
    "SCHEMA_VERSION",
    "TOOLKIT",
    "CachedOcspResponse",
    "CertId",
    "ClientConfig",
    "CrlState",
    "Exchange",
    "ExchangeSummary",
    "IssuedCertificate",
    "Mail",
    "Note",
    "PendingRequest",
    "RecordLimits",
    "Revocation",
    "ServerConfig",
    "Store",
    "StoredCrl",
    "StoredOcspSigner",
]
