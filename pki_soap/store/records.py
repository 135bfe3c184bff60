"""What the store keeps, as records: configurations, requests, certificates, revocations, mail,
recorded SOAP exchanges.

Plain dataclasses with no database behind them: the store's methods take and return them, and
the layers above pass them along (PEM text as text, times as aware UTC datetimes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pki_soap.errors import InvalidInput

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


#: How many exchanges ``serve --record`` keeps when no number is given.
DEFAULT_KEEP = 1000
#: The most all kept exchanges may take together (request and answer bytes, headers, notes).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Exchanges hold contact names, e-mail addresses and CSRs: they expire after this many days.
DEFAULT_MAX_DAYS = 7.0
#: Of each request and answer, at most this much is kept (the rest is counted, not stored).
BODY_KEPT = 256 * 1024
#: The smallest total allowed: two whole bodies of one exchange always fit.
MIN_MAX_BYTES = 4 * BODY_KEPT
MAX_KEEP = 100_000

#: Kinds of :class:`Note`: what IRIS would have done differently, and what is known of the
#: client's toolkit (from its User-Agent).
IRIS = "IRIS"
TOOLKIT = "toolkit"


@dataclass(frozen=True)
class RecordLimits:
    """How much the recorder keeps; the oldest exchanges go first when any limit is passed."""

    keep: int = DEFAULT_KEEP
    max_bytes: int = DEFAULT_MAX_BYTES
    max_days: float = DEFAULT_MAX_DAYS

    def __post_init__(self) -> None:
        if isinstance(self.keep, bool) or not 1 <= self.keep <= MAX_KEEP:
            raise InvalidInput(f"the number of exchanges kept must be from 1 to {MAX_KEEP}")
        if self.max_bytes < MIN_MAX_BYTES:
            raise InvalidInput(f"the bytes kept for exchanges must be at least {MIN_MAX_BYTES}")
        if not 0 < self.max_days <= 3650:
            raise InvalidInput("exchanges must expire after more than 0 and at most 3650 days")


@dataclass(frozen=True)
class Note:
    """One annotation of an exchange: its kind (:data:`IRIS` or :data:`TOOLKIT`) and text."""

    kind: str
    text: str


@dataclass
class Exchange:
    """One SOAP request and its answer, as the server saw them."""

    received: datetime
    duration_ms: float
    client: str
    user_agent: str | None
    method: str | None
    """The web method the request was routed to (None when routing failed)."""
    status: int
    fault: str | None
    """``faultcode: faultstring`` of a fault answer, else None."""
    strict_iris: bool
    request_headers: list[tuple[str, str]]
    answer_headers: list[tuple[str, str]]
    request: bytes
    answer: bytes
    request_size: int
    """The whole request's length; ``request`` holds at most :data:`BODY_KEPT` of it."""
    answer_size: int
    notes: list[Note] = field(default_factory=list)
    id: int | None = None

    @property
    def size(self) -> int:
        """What this exchange counts against the byte limit."""
        headers = sum(len(k) + len(v) for k, v in self.request_headers + self.answer_headers)
        notes = sum(len(note.text) for note in self.notes)
        return len(self.request) + len(self.answer) + headers + notes


@dataclass(frozen=True)
class ExchangeSummary:
    """An exchange without its bytes, for listings."""

    id: int
    received: datetime
    duration_ms: float
    client: str
    user_agent: str | None
    method: str | None
    status: int
    fault: str | None
    strict_iris: bool
    request_size: int
    answer_size: int
    note_count: int
