"""The exchange recorder (``serve --record [N]``): a WSGI middleware around the SOAP endpoint.

It keeps each POST's request and answer bytes (:data:`~pki_soap.store.records.BODY_KEPT` of
each at most), headers, client address, User-Agent, duration, the web method the protocol
routed it to (:data:`~pki_soap.soap.protocol.ROUTED_METHOD`) and the fault, notes on it
(:mod:`pki_soap.soap.annotations`: what IRIS would have done differently, what is known of the
toolkit) and
stores it, the oldest dropped first beyond the limits.  The request body is copied as the
application reads it and the answer as the server sends it: nothing else changes, and a
server started without ``--record`` has no recorder at all.  Recording never fails a request:
a recording that cannot be stored is logged and dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from pki_soap.soap.annotations import annotate, fault_parts
from pki_soap.soap.protocol import ROUTED_METHOD
from pki_soap.store import BODY_KEPT, Exchange, RecordLimits, Store

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Tee:
    """The request body stream, copying the first :data:`BODY_KEPT` bytes read from it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.kept = bytearray()
        self.size = 0

    def _keep(self, data: bytes) -> bytes:
        self.size += len(data)
        room = BODY_KEPT - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        return data

    def read(self, *args: Any) -> bytes:
        return self._keep(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._keep(self._stream.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        return [self._keep(line) for line in self._stream.readlines(*args)]

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            yield self._keep(line)


class _Answer:
    """What the application answered: status line, headers, and the bytes sent."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.kept = bytearray()
        self.size = 0

    def keep(self, data: bytes) -> None:
        self.size += len(data)
        room = BODY_KEPT - len(self.kept)
        if room > 0:
            self.kept += data[:room]


class _RecordingBody:
    """The application's answer, passed through and copied; recorded when it is closed."""

    def __init__(self, body: Iterable[bytes], answer: _Answer, record: Callable[[], None]):
        self._body = body
        self._answer = answer
        self._record: Callable[[], None] | None = record

    def __iter__(self) -> Iterator[bytes]:
        for block in self._body:
            self._answer.keep(block)
            yield block

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            record, self._record = self._record, None
            if record is not None:
                record()


class ExchangeRecorder:
    """WSGI middleware: records every POST that ``app`` answers (see the module docstring)."""

    def __init__(
        self,
        app: WsgiApp,
        store: Callable[[], Store],
        limits: RecordLimits,
        *,
        strict_iris: bool,
    ) -> None:
        """Record what ``app`` answers into ``store()`` (called in the serving process)."""
        self._app = app
        self._store = store
        self.limits = limits
        self.strict_iris = strict_iris

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("REQUEST_METHOD", "")).upper() != "POST":
            return self._app(environ, start_response)
        received = datetime.now(UTC)
        started = time.perf_counter()
        request = _Tee(environ["wsgi.input"])
        environ["wsgi.input"] = request
        answer = _Answer()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer.status, answer.headers = status, list(headers)
            return start_response(status, headers, exc_info)

        body = self._app(environ, start)

        def record() -> None:
            self._record(environ, request, answer, received, time.perf_counter() - started)

        return _RecordingBody(body, answer, record)

    def _record(
        self,
        environ: dict[str, Any],
        request: _Tee,
        answer: _Answer,
        received: datetime,
        seconds: float,
    ) -> None:
        try:
            store = self._store()
            exchange = build_exchange(
                environ,
                request=bytes(request.kept),
                request_size=request.size,
                status=answer.status,
                answer_headers=answer.headers,
                answer=bytes(answer.kept),
                answer_size=answer.size,
                received=received,
                seconds=seconds,
                strict_iris=self.strict_iris,
            )
            exchange.notes = annotate(exchange)
            store.record_exchange(exchange, self.limits)
        except Exception:
            # A debugging aid must never cost a client its answer.
            log.warning("could not record an exchange", exc_info=True)


def _request_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's headers, rebuilt from the WSGI environ (their order is not kept)."""
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key
        else:
            continue
        title = name.replace("_", "-").title()
        headers.append(("SOAPAction" if title == "Soapaction" else title, str(value)))
    return sorted(headers)


def _client(environ: dict[str, Any]) -> str:
    address = str(environ.get("REMOTE_ADDR") or "unknown")
    port = environ.get("REMOTE_PORT")
    if ":" in address:
        address = f"[{address}]"
    return f"{address}:{port}" if port else address


def build_exchange(
    environ: dict[str, Any],
    *,
    request: bytes,
    request_size: int,
    status: str,
    answer_headers: list[tuple[str, str]],
    answer: bytes,
    answer_size: int,
    received: datetime,
    seconds: float,
    strict_iris: bool,
) -> Exchange:
    """The :class:`Exchange` of one request (not annotated yet)."""
    code = int(status.split(" ", 1)[0]) if status[:3].isdigit() else 0
    fault = fault_parts(answer)
    method = environ.get(ROUTED_METHOD)
    return Exchange(
        received=received,
        duration_ms=seconds * 1000.0,
        client=_client(environ),
        user_agent=environ.get("HTTP_USER_AGENT"),
        method=method if isinstance(method, str) else None,
        status=code,
        fault=None if fault is None else f"{fault.code}: {fault.string}",
        strict_iris=strict_iris,
        request_headers=_request_headers(environ),
        answer_headers=[(str(k), str(v)) for k, v in answer_headers],
        request=request,
        answer=answer,
        request_size=request_size,
        answer_size=answer_size,
    )


__all__ = ["ExchangeRecorder", "build_exchange"]
