"""The public revocation endpoints over HTTP: the OCSP responder and the CRL download.

``POST /isc/pki/ocsp`` (RFC 6960, body: a DER OCSPRequest) and ``GET /isc/pki/ocsp/<base64
of the DER request, URL-encoded>`` (RFC 5019) are answered by :class:`~pki_soap.server.ocsp.
OcspResponder`; a body over :data:`~pki_soap.server.ocsp.MAX_REQUEST_BYTES` gets HTTP 413
(read through werkzeug's request limits, :func:`pki_soap.web.read_body`).  Cached answers
carry Last-Modified, Expires and an ETag.  ``GET /isc/pki/crl/<root>.crl`` (DER,
``application/pkix-crl``) and ``<root>.crl.pem`` serve the latest CRL the administrator's
commands signed.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from pki_soap.errors import PkiError
from pki_soap.server.revocation import OCSP_PATH, Revocations
from pki_soap.store import StoredCrl
from pki_soap.web import not_found, plain, read_body

if TYPE_CHECKING:
    from pki_soap.server.tasks import CAServer

from pki_soap.server.ocsp import (
    MALFORMED,
    MAX_REQUEST_BYTES,
    REFRESH_INTERVAL,
    Answer,
    Malformed,
    OcspResponder,
    Refresher,
)
from pki_soap.web import StartResponse

log = logging.getLogger(__name__)

MAX_HTTP_CACHE_SECONDS = 3600
"""An HTTP cache keeps an answer at most this long (and never past its nextUpdate)."""
CRL_HTTP_CACHE_SECONDS = 60


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
        Malformed: not base64.
    """
    text = encoded.strip()
    try:
        if "-" in text or "_" in text:  # some clients use the URL-safe alphabet
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Malformed(f"the GET path is not base64: {exc}") from exc


class RevocationEndpoints:
    """The WSGI applications mounted at ``OCSP_PATH`` and ``CRL_PATH``.

    Mounted (pki_soap.wsgi): ``PATH_INFO`` is what follows the mount point.
    """

    def __init__(self, server: Callable[[], CAServer], *, refresh: bool = True) -> None:
        self._server = server
        self.responder = OcspResponder(server)
        self._refresh = refresh
        self._refresher: Refresher | None = None
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
            self._refresher = Refresher(
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
            except Malformed:
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
