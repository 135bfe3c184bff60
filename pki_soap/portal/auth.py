"""The portal's safety: administrator password, signed session cookies, CSRF tokens, networks.

The administrator password is kept as an Argon2id hash in ``portal.json`` (mode 0600) in the
data directory, beside the store.  Sessions live in a cookie signed by itsdangerous
(HMAC-SHA256 with a random key kept in ``portal-session.secret``, mode 0600) that names a
session id the store keeps while the session is open, so every gunicorn worker accepts every
other worker's sessions and a session ends on the server: at sign-out (a copied cookie stops
working too) and when a new password is set (every session).  The signature also covers a tag
of the password hash.

Failed sign-ins are counted in the store per client address and for the account
(:class:`LoginThrottle`): past a few, each further try must wait a delay that doubles.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import math
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeSerializer

from pki_soap.errors import InvalidInput, PkiError
from pki_soap.files import fsync_directory, write_private_file

if TYPE_CHECKING:
    from pki_soap.store import Store

PASSWORD_FILE = "portal.json"
# Not ".key": the data directory's *.key files are the client's keys, named by their root.
SECRET_FILE = "portal-session.secret"
PASSWORD_MIN_LENGTH = 8

_HASHER = PasswordHasher()
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def set_password(data_dir: Path, password: bytes, *, store: Store | None = None) -> Path:
    """Store the Argon2id hash of the portal administrator's ``password``; return the file.

    Every open session ends (their cookies carry a tag of the old hash); with ``store``,
    the data directory's open store, their server-side records are removed too.

    Raises:
        InvalidInput: the password is shorter than eight characters or not UTF-8.
        PkiError: the file could not be written.
    """
    try:
        text = password.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the portal password must be UTF-8 text") from exc
    if len(text) < PASSWORD_MIN_LENGTH:
        raise InvalidInput(
            f"the portal password must have at least {PASSWORD_MIN_LENGTH} characters"
        )
    path = Path(data_dir) / PASSWORD_FILE
    document = {"password_hash": _HASHER.hash(password)}
    try:
        Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private_file(path, (json.dumps(document, indent=2) + "\n").encode())
    except OSError as exc:
        raise PkiError(f"cannot write {path}: {exc.strerror}") from exc
    if store is not None:
        store.remove_portal_sessions()
    return path


def password_hash(data_dir: Path) -> str | None:
    """The stored hash, or None when no portal password has been set (or the file is unusable)."""
    try:
        document = json.loads((Path(data_dir) / PASSWORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = document.get("password_hash") if isinstance(document, dict) else None
    return value if isinstance(value, str) and value.startswith("$argon2") else None


def check_password(stored_hash: str, password: bytes) -> bool:
    """True when ``password`` matches ``stored_hash`` (never raises for a wrong password)."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def load_secret(data_dir: Path) -> bytes:
    """The session-signing key of this data directory, created (0600) on first use.

    Raises:
        PkiError: the key file cannot be read or created.
    """
    path = Path(data_dir) / SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        secret = b""
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}") from exc
    if len(secret) >= 32:
        return secret
    try:
        Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.exists():
            write_private_file(path, secrets.token_bytes(32))  # a short or empty leftover
        else:
            _create_once(path, secrets.token_bytes(32))
        secret = path.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot create {path}: {exc.strerror}") from exc
    return secret


def _create_once(path: Path, data: bytes) -> None:
    """Create ``path`` (0600) holding ``data`` unless another process created it first.

    write_private_file replaces whatever is there, which would let two workers starting
    together each keep a key of their own; link() refuses to overwrite, so one key wins
    and both read it.  The file to link is written, 0600 and fsynced, by write_private_file.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    try:
        write_private_file(temp, data)
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def parse_networks(networks: Iterable[str] | None) -> list[IPNetwork]:
    """Parse ``--portal-network`` values such as ``192.0.2.0/24`` or ``2001:db8::1``.

    Raises:
        InvalidInput: a value that is not an IP address or network.
    """
    parsed: list[IPNetwork] = []
    for text in networks or ():
        try:
            parsed.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise InvalidInput(f"portal network {text!r} is not an IP address or network") from exc
    return parsed


def client_allowed(remote_addr: str | None, allowed: list[IPNetwork]) -> bool:
    """True for a loopback client, or one inside an allowed network."""
    if not remote_addr:
        return False
    try:
        address = ipaddress.ip_address(remote_addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return True
    return any(address in network for network in allowed)


def password_tag(stored_hash: str | None) -> str:
    """A short digest of the password hash: a session is valid only for the hash it began with."""
    return hashlib.sha256((stored_hash or "").encode()).hexdigest()[:16]


@dataclass
class Session:
    """What the signed cookie carries: login state, CSRF token, times, pending messages.

    ``id`` names the server-side record of a signed-in session (Store.portal_sessions).
    """

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    authenticated: bool = False
    password_tag: str = ""
    started: float = 0.0
    seen: float = 0.0
    flashes: list[tuple[str, str]] = field(default_factory=list)
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        """The session with one-letter keys: the cookie stays far below browsers' 4 KB."""
        return {
            "c": self.csrf,
            "a": self.authenticated,
            "p": self.password_tag,
            "s": self.started,
            "t": self.seen,
            "f": [list(item) for item in self.flashes],
            "i": self.id,
        }

    @classmethod
    def from_json(cls, data: Any) -> Session | None:
        """The session :meth:`to_json` wrote; None for anything else."""
        try:
            return cls(
                csrf=str(data["c"]),
                authenticated=bool(data["a"]),
                password_tag=str(data["p"]),
                started=float(data["s"]),
                seen=float(data["t"]),
                flashes=[(str(kind), str(text)) for kind, text in data["f"]],
                id=str(data["i"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def new_session_id() -> str:
    """A fresh, unguessable session id."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class ThrottleRule:
    """``free`` failed sign-ins in a row cost nothing; then each further try waits
    ``first`` seconds after the last failure, doubling, at most ``longest``."""

    free: int
    first: float
    longest: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after the last of ``failures`` failed sign-ins in a row."""
        if failures < self.free:
            return 0.0
        return min(self.first * 2.0 ** (failures - self.free), self.longest)


# Per address: a person mistyping is never slowed; a guesser soon waits 15 minutes a try.
ADDRESS_RULE = ThrottleRule(free=5, first=1.0, longest=15 * 60.0)
# For the account, whatever the address: more room, shorter delays, so that guessing from
# many addresses crawls while the administrator is never locked out for long.
ACCOUNT_RULE = ThrottleRule(free=20, first=1.0, longest=5 * 60.0)
_ACCOUNT_KEY = "account:admin"


class LoginThrottle:
    """Growing delays after failed sign-ins, per client address and for the account.

    The counts live in the store, so every gunicorn worker sees the same ones.
    """

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @staticmethod
    def _keys(address: str | None) -> list[tuple[str, ThrottleRule]]:
        from pki_soap.server.tasks.submit import client_key

        by_address = f"address:{client_key(address) or '?'}"
        return [(by_address, ADDRESS_RULE), (_ACCOUNT_KEY, ACCOUNT_RULE)]

    def wait(self, address: str | None) -> int:
        """Whole seconds ``address`` must still wait before its next try (0: may try now)."""
        longest = 0.0
        now = self._now()
        for key, rule in self._keys(address):
            found = self._store.login_failures(key)
            if found is None:
                continue
            failures, last = found
            until = last + timedelta(seconds=rule.delay(failures))
            longest = max(longest, (until - now).total_seconds())
        return math.ceil(longest) if longest > 0 else 0

    def failed(self, address: str | None) -> None:
        """Count a failed sign-in from ``address`` (and for the account)."""
        now = self._now()
        for key, _ in self._keys(address):
            self._store.record_login_failure(key, now)

    def succeeded(self, address: str | None) -> None:
        """Forget the failures of ``address`` and of the account."""
        for key, _ in self._keys(address):
            self._store.clear_login_failures(key)


class SessionSigner:
    """Turns a :class:`Session` into a tamper-proof cookie value and back.

    itsdangerous signs the JSON with HMAC-SHA256 under a key derived from the data
    directory's secret and a salt that is the cookie's purpose.
    """

    def __init__(self, secret: bytes) -> None:
        self._serializer = URLSafeSerializer(
            secret,
            salt="pki-soap portal session",
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def dumps(self, session: Session) -> str:
        """The signed cookie value holding ``session``."""
        return self._serializer.dumps(session.to_json())

    def loads(self, value: str | None) -> Session | None:
        """The session in ``value``, or None if absent, forged or malformed."""
        if not value or len(value) > 3800:
            return None
        try:
            data = self._serializer.loads(value)
        except BadSignature:
            return None
        return Session.from_json(data)
