"""HTTPS for ``serve --tls``: the TLS settings, the server's own certificate and its renewal.

* **Protocols and ciphers**: TLS 1.2 and 1.3 only.  TLS 1.2 gets ECDHE key exchange with AEAD
  ciphers only (Mozilla's "intermediate" list without the DHE suites); TLS 1.3's suites are all
  AEAD and stay as OpenSSL orders them.  No compression, no renegotiation.
* **The server's certificate** (unless ``--certfile/--keyfile`` give one): ``<data-dir>/tls/``
  holds ``server.key`` (EC P-256, mode 0600, unencrypted because every worker must read it
  without a password) and ``server.cer`` (the certificate, then the CA certificate).  The
  server's own CA issues it for the public host name (and any ``--tls-name``), records it like
  any issued certificate (Filename ``https``) and makes it valid for the configured validity
  of issued certificates, at most 397 days.
* **Renewal**: due once two thirds of its life have passed, or at once when the names, the CA
  or the files no longer fit.  Issuing needs the CA key password, which the running server
  does not keep: ``serve --tls`` checks at start (and asks for the password only when it must
  issue); while it runs, :class:`Renewer` re-checks every hour and has the certificate
  renewed (``server_app.py https-certificate``, in a process of its own) when the password
  can be read again without a person (a password file, the environment), else it warns.
* **Hot reload**: workers build their ``SSLContext`` from the files and rebuild it when the
  files change (:class:`ReloadingContext`, gunicorn's ``ssl_context`` hook), so a renewed or
  replaced certificate is served from the next connection on, without a restart.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from pki_soap.ca import keys, names
from pki_soap.ca.csr import build_csr
from pki_soap.errors import InvalidInput, PkiError
from pki_soap.files import write_private_file, write_public_file
from pki_soap.server.tasks import CAServer
from pki_soap.store import IssuedCertificate

TLS_DIRECTORY = "tls"
SERVER_FILENAME = "https"
"""The Filename the server's own certificate is listed under."""
MAX_SERVER_DAYS = 397
"""The longest validity browsers accept for a TLS server certificate."""
RENEW_CHECK_SECONDS = 3600.0
CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
"""The TLS 1.2 cipher suites offered (TLS 1.3 suites are not set by this list)."""


# -- the TLS settings ----------------------------------------------------------------------


def server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A server SSLContext with our settings and the certificate chain of ``certfile``.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: the files are not a PEM certificate chain and its matching key.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(certfile, keyfile)
    return context


def check_files(certfile: Path, keyfile: Path) -> None:
    """Make sure the certificate chain and key of ``--certfile/--keyfile`` can be served.

    Raises:
        InvalidInput: a file is missing or unreadable, or they are not a chain and its key.
    """
    try:
        server_context(certfile, keyfile)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {exc.filename or certfile}: {exc.strerror or exc}"
        ) from exc
    except ssl.SSLError as exc:
        raise InvalidInput(
            f"{certfile} and {keyfile} are not a PEM certificate chain and its unencrypted "
            f"key: {exc.reason or exc}"
        ) from exc


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        info = path.stat()
    except OSError:
        return (0, 0, 0)
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class ReloadingContext:
    """gunicorn's ``ssl_context`` hook: one SSLContext per process, rebuilt on file changes.

    gunicorn calls the hook for every connection (sync and gthread workers) or once (async
    workers, serve's gevent); the context is built at the first call and again only when the
    certificate or key file changed.  Every handshake also asks (the SNI callback, which
    OpenSSL calls with or without a server name), so a connection of an async worker gets
    the rebuilt context too.  While a renewal is half written (new key, old certificate) the
    build fails: the previous context is kept and the next connection tries again.
    """

    def __init__(self, certfile: Path, keyfile: Path) -> None:
        self.certfile = Path(certfile)
        self.keyfile = Path(keyfile)
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._stamps: tuple[tuple[int, int, int], ...] = ()

    def __call__(
        self, config: Any, default_factory: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        """The SSLContext for the next connection (gunicorn's factory is not used)."""
        return self._current()

    def _current(self) -> ssl.SSLContext:
        stamps = (_stamp(self.certfile), _stamp(self.keyfile))
        with self._lock:
            if self._context is None or stamps != self._stamps:
                try:
                    context = server_context(self.certfile, self.keyfile)
                except (OSError, ssl.SSLError):
                    if self._context is None:
                        raise
                    return self._context
                context.sni_callback = self._switch
                self._context, self._stamps = context, stamps
            return self._context

    def _switch(self, connection: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        """At each handshake: serve the current certificate, rebuilt if its files changed."""
        current = self._current()
        if current is not context:
            connection.context = current


def gunicorn_settings(certfile: Path, keyfile: Path) -> dict[str, Any]:
    """The gunicorn settings that serve HTTPS with these files (any worker class)."""
    return {
        "certfile": str(certfile),
        "keyfile": str(keyfile),
        "ssl_context": ReloadingContext(certfile, keyfile),
    }


# -- the server's own certificate -----------------------------------------------------------


@dataclass(frozen=True)
class ServerFiles:
    """Where the server's own HTTPS certificate and key are: ``<data-dir>/tls/``."""

    directory: Path

    @classmethod
    def of(cls, data_dir: Path) -> ServerFiles:
        """The files of the data directory ``data_dir``."""
        return cls(Path(data_dir) / TLS_DIRECTORY)

    @property
    def cer(self) -> Path:
        """The certificate chain: the server's certificate, then the CA certificate."""
        return self.directory / "server.cer"

    @property
    def key(self) -> Path:
        """The server's private key (mode 0600)."""
        return self.directory / "server.key"


def server_names(host: str, extra: Sequence[str] = ()) -> list[x509.GeneralName]:
    """The subjectAltNames of the server's certificate: ``host`` first, then ``extra``.

    Raises:
        InvalidInput: a name that is neither a host name nor an IP address.
    """
    wanted: list[x509.GeneralName] = []
    for text in (host, *extra):
        value = text.strip().strip("[]")
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            if not names.is_hostname(value) or value.startswith("*"):
                raise InvalidInput(f"{text!r} is not a host name or IP address") from None
            name = x509.DNSName(value.lower().rstrip("."))
        if name not in wanted:
            wanted.append(name)
    return wanted


def renewal_time(cert: x509.Certificate) -> datetime.datetime:
    """When two thirds of ``cert``'s life have passed: from then on it is renewed."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * 2 / 3


def _certificate_names(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value)


def read_server_certificate(files: ServerFiles) -> x509.Certificate | None:
    """The server's certificate (the first of ``server.cer``), or None if absent or unreadable."""
    try:
        return x509.load_pem_x509_certificates(files.cer.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None


def problem(
    files: ServerFiles,
    ca_certificate: x509.Certificate,
    wanted: Sequence[x509.GeneralName],
    now: datetime.datetime | None = None,
) -> str | None:
    """Why the server's certificate must be issued (anew), or None while it is good.

    Good means: both files readable, the key is the certificate's, the CA of
    ``ca_certificate`` issued it, it names exactly ``wanted`` and its renewal time
    (:func:`renewal_time`) has not come.  Only the two files are read (no database).
    """
    now = now or datetime.datetime.now(datetime.UTC)
    if not files.cer.exists() or not files.key.exists():
        return "there is none yet"
    cert = read_server_certificate(files)
    if cert is None:
        return f"{files.cer} is unreadable"
    try:
        key = keys.load_key(files.key.read_bytes(), None)
    except (OSError, PkiError):
        return f"{files.key} is unreadable"
    if not keys.same_public_key(key.public_key(), cert.public_key()):
        return f"{files.key} is not the key of {files.cer}"
    try:
        cert.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "it was not issued by this CA"
    have = _certificate_names(cert)
    if set(have) != set(wanted):
        return f"it names {names.sans_text(have) or 'nothing'}, not {names.sans_text(wanted)}"
    expires = cert.not_valid_after_utc
    if now >= expires:
        return f"it expired on {expires:%Y-%m-%d %H:%M} UTC"
    if now >= renewal_time(cert):
        return f"it expires on {expires:%Y-%m-%d %H:%M} UTC (renewed after two thirds of its life)"
    return None


def issue(
    server: CAServer,
    files: ServerFiles,
    wanted: Sequence[x509.GeneralName],
    password: bytes,
) -> IssuedCertificate:
    """Issue the server's certificate for ``wanted`` with a new key and write both files.

    The key is written first, then the chain: a worker that reads the files in between
    finds them not matching and keeps serving the previous pair.

    Raises:
        WrongPassword: ``password`` does not decrypt the CA key.
        NotConfigured, CAFileError, InvalidInput: as :meth:`CAServer.issue_own`.
        OSError: the files cannot be written.
    """
    if not wanted:
        raise InvalidInput("the server's certificate needs at least one host name")
    cfg = server.config()
    host = str(wanted[0].value)
    # A CN holds at most 64 characters; clients match the subjectAltNames anyway.
    common_name = host if len(host) <= 64 else "pki-soap HTTPS"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    key = keys.generate_key(keys.KeyType.EC256)
    csr = build_csr(key, subject, list(wanted))
    issued = server.issue_own(
        csr,
        hostname=host[:100],
        filename=SERVER_FILENAME,
        days=min(cfg.days, MAX_SERVER_DAYS),
        password=password,
    )
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_file(files.key, keys.key_pem(key, None))
    chain = issued.contents + server.authority().certificate_pem
    write_public_file(files.cer, chain.encode("ascii"))
    return issued


class Renewer:
    """Keeps the server's certificate fresh while ``serve --tls`` runs (a thread of its own).

    Every ``interval`` seconds it checks the files (:func:`problem`); when the certificate is
    due it calls ``renew`` with the reason.  It never opens the database itself: it runs in
    gunicorn's master process, which forks workers at any time, and a database connection
    open across a fork can corrupt the database; ``renew`` does the work in a process of its
    own.
    """

    def __init__(
        self,
        files: ServerFiles,
        ca_certificate: x509.Certificate,
        wanted: Sequence[x509.GeneralName],
        renew: Callable[[str], None],
        *,
        interval: float = RENEW_CHECK_SECONDS,
    ) -> None:
        self.files = files
        self.ca_certificate = ca_certificate
        self.wanted = list(wanted)
        self._renew = renew
        self.interval = interval
        self._stop = threading.Event()

    def check(self, now: datetime.datetime | None = None) -> bool:
        """Call ``renew`` if the certificate is due at ``now``; True when it was."""
        why = problem(self.files, self.ca_certificate, self.wanted, now)
        if why is None:
            return False
        self._renew(why)
        return True

    def start(self) -> threading.Thread:
        """Check every ``interval`` seconds in a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.check()

        thread = threading.Thread(target=loop, name="https-renewal", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """End the checking thread after its current check."""
        self._stop.set()
