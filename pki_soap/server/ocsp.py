"""The public revocation endpoints: the OCSP responder and the CRL download.

``POST /isc/pki/ocsp`` (RFC 6960, body: a DER OCSPRequest) and ``GET /isc/pki/ocsp/<base64
of the DER request, URL-encoded>`` (RFC 5019) answer good, revoked (time and reason) or
unknown for the configured CA; a request naming another issuer gets ``unauthorized``, one
that cannot be read ``malformedRequest``, a body over :data:`MAX_REQUEST_BYTES` HTTP 413
(read through werkzeug's request limits, :func:`pki_soap.web.read_body`).
Answers come from the store's cache of pre-signed responses (pki_soap.server.revocation); only a
request with a nonce (echoed), a serial not cached yet, or an answer due for re-signing
costs a signature.  A daemon thread per process keeps the cache fresh.

``GET /isc/pki/crl/<root>.crl`` (DER, ``application/pkix-crl``) and ``<root>.crl.pem`` serve
the latest CRL the administrator's commands signed.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import fcntl
import functools
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from pki_soap.ca.authority import CertificateAuthority
from pki_soap.errors import CAFileError, NotConfigured, PkiError
from pki_soap.server.ocsp_signer import OCSP_HASHES, OcspSigner, issuer_hashes
from pki_soap.server.revocation import OCSP_PATH, Revocations
from pki_soap.store import CertId, StoredCrl
from pki_soap.web import not_found, plain, read_body

if TYPE_CHECKING:
    from pki_soap.server.tasks import CAServer

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024
"""An OCSP request for one certificate is about 100 bytes; a signed one a few KB."""
MAX_NONCE_BYTES = 32
"""RFC 8954: a nonce of 1 to 32 octets."""
REFRESH_INTERVAL = 60.0
"""Seconds between two passes of the thread that re-signs due answers."""
MAX_HTTP_CACHE_SECONDS = 3600
"""An HTTP cache keeps an answer at most this long (and never past its nextUpdate)."""
CRL_HTTP_CACHE_SECONDS = 60
BATCH_PAUSE = 0.01

StartResponse = Callable[..., Any]


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


MALFORMED = _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
UNAUTHORIZED = _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
TRY_LATER = _unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
INTERNAL_ERROR = _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)


@dataclass(frozen=True)
class Answer:
    """An OCSP response to send; the dates only for a successful one (HTTP caching)."""

    der: bytes
    this_update: datetime.datetime | None = None
    next_update: datetime.datetime | None = None


class _Malformed(Exception):
    """The request cannot be read (answered ``malformedRequest``)."""


@dataclass(frozen=True)
class _Request:
    cert_id: CertId
    nonce: bytes | None


def _read_request(der: bytes) -> _Request:
    """The one CertID (and the nonce) of a DER OCSPRequest.

    Raises:
        _Malformed: not an OCSPRequest, several CertIDs (RFC 5019 sends one), an
            unsupported hash algorithm, a bad extension or a nonce of a wrong length.
    """
    try:
        request = ocsp.load_der_ocsp_request(der)
        algorithm = request.hash_algorithm.name
        cert_id = CertId(
            algorithm, request.issuer_name_hash, request.issuer_key_hash, request.serial_number
        )
        extensions = request.extensions
    except (ValueError, NotImplementedError, UnsupportedAlgorithm) as exc:
        raise _Malformed(str(exc)) from exc
    if algorithm not in OCSP_HASHES:
        raise _Malformed(f"unsupported CertID hash {algorithm}")
    nonce: bytes | None = None
    for extension in extensions:  # usually none: no exception raised for the common case
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_BYTES:
        raise _Malformed(f"a nonce of {len(nonce)} octets")
    return _Request(cert_id, nonce)


class _Context:
    """The configured CA as the responder needs it, and its current OCSP signer."""

    def __init__(self, revocations: Revocations) -> None:
        self.revocations = revocations
        self.hashes = {
            name: issuer_hashes(revocations.authority.certificate, name) for name in OCSP_HASHES
        }
        self.signer: OcspSigner | None = None

    def ours(self, cert_id: CertId) -> bool:
        return self.hashes[cert_id.hash_algorithm] == (cert_id.name_hash, cert_id.key_hash)

    def current_signer(self) -> OcspSigner | None:
        """The stored signer, loaded again only when another process replaced it."""
        stored = self.revocations.store.ocsp_signer(self.revocations.issuer)
        if stored is None:
            return None
        if self.signer is None or stored.certificate != _pem(self.signer.certificate):
            self.signer = OcspSigner.from_stored(self.revocations.authority.certificate, stored)
        return self.signer


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


class OcspResponder:
    """Answers OCSP requests for the configured CA of one process's CAServer."""

    def __init__(
        self,
        server: Callable[[], CAServer],
        *,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._server = server
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._lock = threading.Lock()
        self._context: _Context | None = None
        self._context_key: tuple[object, ...] = ()

    def context(self) -> _Context:
        """The CA as configured now, rebuilt only when the configuration or CA changed.

        Read from the store (the configuration and the CA certificate kept as number 0),
        not from the CA files: two lookups instead of reading and parsing files.

        Raises:
            NotConfigured: no CA is configured.
            CAFileError: the stored CA certificate is unreadable.
        """
        server = self._server()
        cfg = server.config()
        own = server.store.certificate(0)
        if own is None:
            raise NotConfigured("the Certificate Authority server is not configured")
        key = (cfg.root, cfg.directory, cfg.crl_days, own.contents)
        with self._lock:
            if self._context is not None and self._context_key == key:
                return self._context
            try:
                certificate = x509.load_pem_x509_certificate(own.contents.encode("ascii"))
            except (ValueError, UnicodeEncodeError) as exc:
                raise CAFileError(f"the stored CA certificate is unreadable: {exc}") from exc
            authority = CertificateAuthority(server.ca_paths(cfg), certificate)
            revocations = Revocations(server.store, authority, crl_days=cfg.crl_days)
            self._context, self._context_key = _Context(revocations), key
            return self._context

    def respond(self, der: bytes) -> Answer:
        """The OCSP response to the DER request ``der`` (never raises for bad input)."""
        try:
            request = _read_request(der)
        except _Malformed as exc:
            log.info("malformed OCSP request: %s", exc)
            return Answer(MALFORMED)
        try:
            if request.nonce is None:
                cached = self._server().store.ocsp_response(request.cert_id)
                if cached is not None and self._clock() < cached.refresh_after:
                    return Answer(cached.der, cached.this_update, cached.next_update)
            return self._sign(request)
        except NotConfigured:
            return Answer(UNAUTHORIZED)
        except PkiError as exc:
            log.error("OCSP answer failed: %s: %s", type(exc).__name__, exc.message)
            return Answer(TRY_LATER)
        except Exception:
            log.exception("OCSP answer failed")
            return Answer(INTERNAL_ERROR)

    def _sign(self, request: _Request) -> Answer:
        context = self.context()
        if not context.ours(request.cert_id):
            return Answer(UNAUTHORIZED)
        signer = context.current_signer()
        if signer is None:
            log.error(
                "no OCSP signing certificate yet: issue a certificate or run "
                "`server_app.py crl` with the CA key password"
            )
            return Answer(TRY_LATER)
        if signer.not_after <= self._clock():
            log.error("the OCSP signing certificate has expired: run `server_app.py crl`")
            return Answer(TRY_LATER)
        answer = context.revocations.answer(signer, request.cert_id, nonce=request.nonce)
        if request.nonce is not None:
            return Answer(answer.der)
        return Answer(answer.der, answer.this_update, answer.next_update)

    def refresh(self) -> int:
        """Re-sign due answers and pre-sign missing ones, batch by batch; return how many.

        Raises:
            PkiError: no usable CA or signer.
        """
        context = self.context()
        signer = context.current_signer()
        if signer is None or signer.not_after <= self._clock():
            return 0
        total = 0
        while True:
            done = context.revocations.refresh_answers(signer)
            total += done
            if not done:
                return total
            time.sleep(BATCH_PAUSE)  # the store's writers get their turn between batches


class _Refresher:
    """One daemon thread per process re-signing answers; one process at a time does it.

    The thread holds its responder weakly: it ends once the application is gone.
    """

    def __init__(self, responder: OcspResponder, lock_path: Path, interval: float) -> None:
        self._responder = weakref.ref(responder)
        self._lock_path = lock_path
        self._interval = interval
        self._pid = 0
        self._guard = threading.Lock()

    def ensure_running(self) -> None:
        with self._guard:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()  # after a fork the parent's thread is not ours
            threading.Thread(target=self._run, name="pki-ocsp-refresh", daemon=True).start()

    def _run(self) -> None:
        pause = threading.Event()
        while True:
            responder = self._responder()
            if responder is None:
                return
            try:
                with _exclusive(self._lock_path) as mine:
                    if mine:
                        signed = responder.refresh()
                        if signed:
                            log.info("OCSP: %d answer(s) signed ahead", signed)
            except NotConfigured:
                pass
            except Exception as exc:  # the thread must survive anything
                log.warning("OCSP refresh failed: %s: %s", type(exc).__name__, exc)
            del responder
            pause.wait(self._interval)


@contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """A non-blocking flock on ``path``: yields whether this process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


# -- HTTP -----------------------------------------------------------------------------------


def _http_date(moment: datetime.datetime) -> str:
    return format_datetime(moment.astimezone(datetime.UTC), usegmt=True)


@functools.lru_cache(maxsize=1024)
def _answer_headers(
    this_update: datetime.datetime, next_update: datetime.datetime, der: bytes
) -> tuple[str, str, str]:
    """Last-Modified, Expires and ETag of a cached answer: the same for every request of it."""
    etag = '"' + hashlib.sha1(der).hexdigest() + '"'
    return _http_date(this_update), _http_date(next_update), etag


def _decode_get(encoded: str) -> bytes:
    """The DER request of an RFC 5019 GET path (base64, URL-decoded by the server already).

    Raises:
        _Malformed: not base64.
    """
    text = encoded.strip()
    try:
        if "-" in text or "_" in text:  # some clients use the URL-safe alphabet
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Malformed(f"the GET path is not base64: {exc}") from exc


class RevocationEndpoints:
    """The WSGI applications mounted at ``OCSP_PATH`` and ``CRL_PATH``.

    Mounted (pki_soap.wsgi): ``PATH_INFO`` is what follows the mount point.
    """

    def __init__(self, server: Callable[[], CAServer], *, refresh: bool = True) -> None:
        self._server = server
        self.responder = OcspResponder(server)
        self._refresh = refresh
        self._refresher: _Refresher | None = None
        self._crl_lock = threading.Lock()
        self._crl: dict[str, StoredCrl] = {}

    def ocsp(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The OCSP responder (GET and POST), mounted at ``OCSP_PATH``."""
        self._start_refresher()
        request = Request(environ)
        return self._ocsp_answer(request, request.environ.get("PATH_INFO") or "")(
            environ, start_response
        )

    def crl(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The CRL download, mounted at ``CRL_PATH`` without its slash."""
        path = environ.get("PATH_INFO") or ""
        if not path.startswith("/"):
            return not_found(environ, start_response)
        return self._crl_answer(Request(environ), path[1:])(environ, start_response)

    def _start_refresher(self) -> None:
        if not self._refresh:
            return
        if self._refresher is None:
            store_path = self._server().store.path
            self._refresher = _Refresher(
                self.responder, Path(str(store_path) + ".ocsp.lock"), REFRESH_INTERVAL
            )
        self._refresher.ensure_running()

    # -- OCSP ---------------------------------------------------------------------------

    def _ocsp_answer(self, request: Request, rest: str) -> Response:
        method = request.method
        if method == "POST":
            if rest not in ("", "/"):
                return plain("404 Not Found", "POST OCSP requests to " + OCSP_PATH + "\n")
            try:
                der = read_body(request.environ, MAX_REQUEST_BYTES)
            except RequestEntityTooLarge:
                return plain(
                    "413 Request Entity Too Large",
                    f"an OCSP request is at most {MAX_REQUEST_BYTES} bytes\n",
                    [("Connection", "close")],
                )
            except BadRequest as exc:
                return plain("400 Bad Request", f"{exc.description}\n")
            return self._send(self.responder.respond(der), cacheable=False)
        if method == "GET":
            encoded = rest[1:] if rest.startswith("/") else rest
            if len(encoded) > 2 * MAX_REQUEST_BYTES:
                return plain("413 Request Entity Too Large", "the OCSP request is too long\n")
            try:
                der = _decode_get(encoded)
            except _Malformed:
                return self._send(Answer(MALFORMED), cacheable=False)
            return self._send(self.responder.respond(der), cacheable=True)
        return plain(
            "405 Method Not Allowed",
            "OCSP requests use POST, or GET with the base64 request in the path\n",
            [("Allow", "GET, POST")],
        )

    def _send(self, answer: Answer, *, cacheable: bool) -> Response:
        headers = [
            ("Content-Type", "application/ocsp-response"),
            ("Content-Length", str(len(answer.der))),
        ]
        if cacheable and answer.this_update is not None and answer.next_update is not None:
            # RFC 5019 6.2: caches may keep the answer, never past its nextUpdate.
            left = (answer.next_update - datetime.datetime.now(datetime.UTC)).total_seconds()
            max_age = max(0, min(int(left), MAX_HTTP_CACHE_SECONDS))
            last_modified, expires, etag = _answer_headers(
                answer.this_update, answer.next_update, answer.der
            )
            headers += [
                ("Cache-Control", f"max-age={max_age}, public, no-transform, must-revalidate"),
                ("Last-Modified", last_modified),
                ("Expires", expires),
                ("ETag", etag),
            ]
        else:
            headers.append(("Cache-Control", "no-store"))
        return Response(answer.der, "200 OK", headers)

    # -- CRL ----------------------------------------------------------------------------

    def _crl_answer(self, request: Request, name: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            return plain(
                "405 Method Not Allowed",
                "the CRL is downloaded with GET\n",
                [("Allow", "GET, HEAD")],
            )
        if name.endswith(".crl.pem"):
            root, pem = name[: -len(".crl.pem")], True
        elif name.endswith(".crl"):
            root, pem = name[: -len(".crl")], False
        else:
            return plain("404 Not Found", "CRLs are at <root>.crl or <root>.crl.pem\n")
        try:
            server = self._server()
            cfg = server.store.server_config()
            if cfg is None or cfg.root != root:
                return plain("404 Not Found", "no CA by that name\n")
            revocations = self.responder.context().revocations
            crl = self._latest_crl(revocations)
        except PkiError as exc:
            log.error("CRL download failed: %s: %s", type(exc).__name__, exc.message)
            return plain("503 Service Unavailable", "the CRL is not available\n")
        if crl is None:
            return plain(
                "404 Not Found",
                "no CRL has been signed yet (the administrator's `server_app.py crl` signs one)\n",
            )
        now = datetime.datetime.now(datetime.UTC)
        if crl.next_update <= now:
            log.warning(
                "CRL number %d expired at %s: run `server_app.py crl`", crl.number, crl.next_update
            )
        if pem:
            body = x509.load_der_x509_crl(crl.der).public_bytes(serialization.Encoding.PEM)
            content_type = "application/x-pem-file"
        else:
            body, content_type = crl.der, "application/pkix-crl"
        return Response(
            body,
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Last-Modified", _http_date(crl.this_update)),
                ("Cache-Control", f"max-age={CRL_HTTP_CACHE_SECONDS}, public, no-transform"),
                ("ETag", f'"{revocations.issuer[:16]}-{crl.number}{"-pem" if pem else ""}"'),
            ],
        )

    def _latest_crl(self, revocations: Revocations) -> StoredCrl | None:
        """The latest CRL, from this process's copy while its number is still the latest."""
        number = revocations.store.crl_number(revocations.issuer)
        if number is None:
            return None
        with self._crl_lock:
            kept = self._crl.get(revocations.issuer)
            if kept is not None and kept.number == number:
                return kept
        crl = revocations.crl()
        if crl is not None:
            with self._crl_lock:
                self._crl = {revocations.issuer: crl}
        return crl
