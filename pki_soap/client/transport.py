"""The HTTP side of CAClient: verification exactly as told, wire tracing, failures in words.

Kept apart from the SOAP reading in soap_client.py: this part knows requests, urllib3 and
ssl, and turns their exceptions into one sentence a person can act on.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters


@dataclass(frozen=True)
class WireExchange:
    """One HTTP request the client sent and the answer it got, as bytes (for ``--trace``)."""

    method: str
    url: str
    request_headers: list[tuple[str, str]]
    request: bytes
    status: int
    reason: str
    answer_headers: list[tuple[str, str]]
    answer: bytes


class VerifyingAdapter(requests.adapters.HTTPAdapter):
    """HTTPS that verifies exactly as the CAClient was told.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override a session's ``verify``
    (psf/requests#3829), which would quietly trade the pinned CA for the system's; the
    transport adapter has the last word on every request.
    """

    def __init__(self, verify: str | bool) -> None:
        super().__init__()
        self._verify = verify

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Send ``request`` with this adapter's verification, whatever was asked."""
        return super().send(
            request, stream=stream, timeout=timeout, verify=self._verify, cert=cert, proxies=proxies
        )


def tracer(trace: Callable[[WireExchange], object]) -> Callable[..., None]:
    """A requests response hook handing each exchange's bytes to ``trace``."""

    def hook(response: requests.Response, *args: object, **kwargs: object) -> None:
        request = response.request
        body = request.body or b""
        sent = body.encode("utf-8") if isinstance(body, str) else body
        trace(
            WireExchange(
                method=str(request.method),
                url=str(request.url),
                request_headers=[(k, _text(v)) for k, v in request.headers.items()],
                request=sent if isinstance(sent, bytes) else b"(a streamed body)",
                status=response.status_code,
                reason=response.reason or "",
                answer_headers=list(response.headers.items()),
                answer=response.content,
            )
        )

    return hook


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach the server (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        reason = getattr(current, "reason", None)
        nested = reason if isinstance(reason, BaseException) else None
        args = [arg for arg in current.args if isinstance(arg, BaseException)]
        current = current.__cause__ or current.__context__ or nested or (args[0] if args else None)
    return False


def network_reason(exc: BaseException, timeout: float) -> str:
    """A short human reason for a requests failure (the OS error deep in the chain)."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} seconds"
    for current in _causes(exc):
        # An HTTPS server closes a plain-HTTP connection; one that has not read all of the
        # request yet (gevent workers) resets it: the same cause either way.
        if isinstance(current, http.client.RemoteDisconnected | ConnectionResetError):
            return (
                "the server closed the connection without an answer (as an HTTPS server does "
                "to plain HTTP: is the client configured for TLS?)"
            )
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror)
    return type(exc).__name__


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (causes, contexts, reasons, arguments)."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(current.args)


# OpenSSL's X509_V_ERR_* codes that mean "not issued by a CA we trust".
_UNTRUSTED_ISSUER = {2, 18, 19, 20, 21}
_HOST_MISMATCH = {62, 64}  # host name, IP address
_NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}


def tls_reason(exc: BaseException) -> str | None:
    """Why a TLS handshake failed, in words; None when ``exc`` is not a TLS failure."""
    for current in _causes(exc):
        if isinstance(current, ssl.SSLCertVerificationError):
            code, detail = current.verify_code, current.verify_message
            if code in _HOST_MISMATCH:
                return f"its certificate does not name the host connected to ({detail})"
            if code in _UNTRUSTED_ISSUER:
                return f"its certificate was not issued by the trusted CA certificate ({detail})"
            if code == 10:
                return "its certificate has expired"
            return f"its certificate does not verify ({detail})"
        if isinstance(current, ssl.SSLError):
            if current.reason in _NOT_TLS:
                return "it does not speak TLS on this port (plain HTTP? then configure without TLS)"
            return f"the TLS handshake failed ({current.reason or current})"
    return None
