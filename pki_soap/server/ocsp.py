"""The OCSP responder: good, revoked or unknown for the configured CA, signed ahead of time.

A request (RFC 6960; the HTTP side is :mod:`pki_soap.server.endpoints`) naming another issuer
gets ``unauthorized``, one that cannot be read ``malformedRequest``.  Answers come from the
store's cache of pre-signed responses (:mod:`pki_soap.server.ocsp_signer`); only a request
with a nonce (echoed), a serial not cached yet, or an answer due for re-signing costs a
signature.  A daemon thread per process (:class:`Refresher`) keeps the cache fresh.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from pki_soap.ca.authority import CertificateAuthority
from pki_soap.errors import CAFileError, NotConfigured, PkiError
from pki_soap.server.ocsp_signer import OCSP_HASHES, OcspSigner, issuer_hashes
from pki_soap.server.revocation import Revocations
from pki_soap.store import CertId

if TYPE_CHECKING:
    from pki_soap.server.tasks import CAServer

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024
"""An OCSP request for one certificate is about 100 bytes; a signed one a few KB."""
MAX_NONCE_BYTES = 32
"""RFC 8954: a nonce of 1 to 32 octets."""
REFRESH_INTERVAL = 60.0
"""Seconds between two passes of the thread that re-signs due answers."""
BATCH_PAUSE = 0.01


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


class Malformed(Exception):
    """The request cannot be read (answered ``malformedRequest``)."""


@dataclass(frozen=True)
class _Request:
    cert_id: CertId
    nonce: bytes | None


def _read_request(der: bytes) -> _Request:
    """The one CertID (and the nonce) of a DER OCSPRequest.

    Raises:
        Malformed: not an OCSPRequest, several CertIDs (RFC 5019 sends one), an
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
        raise Malformed(str(exc)) from exc
    if algorithm not in OCSP_HASHES:
        raise Malformed(f"unsupported CertID hash {algorithm}")
    nonce: bytes | None = None
    for extension in extensions:  # usually none: no exception raised for the common case
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_BYTES:
        raise Malformed(f"a nonce of {len(nonce)} octets")
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
        except Malformed as exc:
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


class Refresher:
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
                # Not configured yet: nothing to sign, ask again at the next pass.
                with contextlib.suppress(NotConfigured), _exclusive(self._lock_path) as mine:
                    if mine:
                        signed = responder.refresh()
                        if signed:
                            log.info("OCSP: %d answer(s) signed ahead", signed)
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
