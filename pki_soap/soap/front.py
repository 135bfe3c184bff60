"""The SOAP endpoint over HTTP: ``GET ?WSDL``, and each POST run through spyne's pipeline.

werkzeug reads the request: the whole body, within the limit, with or without a
Content-Length (:func:`pki_soap.web.read_body`), so spyne never sees a cut body; a body over
the limit is a 413 Client fault, one that did not arrive in time (``serve --body-timeout``) a
408.  :class:`SoapTransport` is the transport that hands the body to spyne, built on
``ServerBase``'s pipeline as spyne's own transports are.  Every answer is complete before its
headers go out and is sent with a Content-Length; a long one comes from its temporary file
(``wsgi.file_wrapper`` where the server has one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from spyne import Application
from spyne.const.http import HTTP_200
from spyne.server import ServerBase
from spyne.server.wsgi import WsgiMethodContext
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import LimitedStream, get_content_length, wrap_file

from pki_soap.errors import BadSoapRequest, PkiError
from pki_soap.soap.envelope import CONTENT_TYPE, fault_bytes, fault_status
from pki_soap.soap.protocol import (
    NO_SOAPACTION_CONTENT_TYPE,
    NO_SOAPACTION_PAGE,
    NO_SOAPACTION_STATUS,
    SERVER_APPLICATION_ERROR,
    QuietEventManager,
    is_soap_request,
)
from pki_soap.web import deadline_kept, plain, read_body

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 256 * 1024
"""The request body limit (``serve --max-body``): a CSR is a few KB."""

# An oversized body is read and thrown away up to this much, so the client, still sending,
# gets the 413 instead of a reset connection; beyond it the connection is simply closed.
_DRAIN_LIMIT = 1024 * 1024
_BLOCK = 64 * 1024
_ALLOW = ("Allow", "GET, HEAD, POST")
_LATE = BadSoapRequest("the request body did not arrive in time")

StartResponse = Callable[..., Any]
Answer = tuple[str, list[tuple[str, str]], list[bytes] | IO[bytes]]


class SoapTransport(ServerBase):  # type: ignore[misc]  # spyne has no type information
    """spyne's transport for one SOAP POST whose body werkzeug has read.

    As ``spyne.server.wsgi`` and ``spyne.server.null`` do: a ``WsgiMethodContext`` for the
    request, then ``ServerBase``'s ``generate_contexts``, ``get_in_object``,
    ``get_out_object`` and ``get_out_string``, and ``close()``.  The service binds no
    auxiliary methods, so there is one context.  ``udc`` is handed to every web method
    call as ``ctx.udc``.
    """

    transport = "http://schemas.xmlsoap.org/soap/http"

    def __init__(self, app: Application, udc: object) -> None:
        super().__init__(app)
        self.event_manager = QuietEventManager(self)
        self.udc = udc

    def answer(self, environ: dict[str, Any], body: bytes) -> Answer:
        """(status, headers, body) of the SOAP answer to ``body``: a response or a fault.

        The body is a list of bytes, or the answer's rewound temporary file (a long answer;
        its Content-Length header is set).

        Raises:
            Exception: only what spyne itself lets escape; the caller answers it.
        """
        ctx = WsgiMethodContext(self, environ, self.app.out_protocol.mime_type)
        ctx.udc = self.udc
        ctx.in_string = [body]
        ctx = self.generate_contexts(ctx)[0]
        try:
            if ctx.in_error is None:
                self.get_in_object(ctx)
            if ctx.in_error is None:
                self.get_out_object(ctx)
            transport = ctx.transport
            # A fault's status follows its code; IrisSoap11 sets it again if writing fails.
            error = ctx.out_error
            transport.resp_code = (
                HTTP_200 if error is None else ctx.out_protocol.fault_to_http_response_code(error)
            )
            self.get_out_string(ctx)
            headers = transport.resp_headers
            parts = ctx.out_string
            if isinstance(parts, list | tuple):
                parts = list(parts)
                headers["Content-Length"] = str(sum(len(part) for part in parts))
            return transport.resp_code, list(headers.items()), parts
        finally:
            ctx.close()


@dataclass(frozen=True)
class SoapEndpoint:
    """The WSGI application of the service path: ``?WSDL`` and SOAP POSTs.

    ``wsdl`` is what ``?WSDL`` answers; ``max_body`` bounds request bodies; ``strict_iris``
    answers a POST without SOAPAction as IRIS does (its test page's error).
    """

    transport: SoapTransport
    wsdl: bytes
    max_body: int
    strict_iris: bool

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method in ("GET", "HEAD"):
            response = self._wsdl(Request(environ))
        elif method != "POST":
            response = plain(
                "405 Method Not Allowed",
                f"{method} is not supported here: SOAP requests use POST\n",
                [_ALLOW],
            )
        else:
            try:
                body = read_body(environ, self.max_body)
            except TimeoutError:
                # The server's read deadline (serve --body-timeout) cut a body that trickled.
                response = _fault(_LATE, status="408 Request Timeout", close=True)
            except RequestEntityTooLarge:
                response = self._too_large(environ)
            except BadRequest as refused:
                response = _fault(
                    BadSoapRequest(str(refused.description)), status="400 Bad Request"
                )
            else:
                return self._post(environ, body, start_response)
        return response(environ, start_response)

    def _wsdl(self, request: Request) -> Response:
        if not any(key.lower() == "wsdl" for key in request.args):
            return plain(
                "405 Method Not Allowed", "SOAP requests use POST; the WSDL is at ?WSDL\n", [_ALLOW]
            )
        return Response(
            self.wsdl,
            "200 OK",
            [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(self.wsdl)))],
        )

    def _too_large(self, environ: dict[str, Any]) -> Response:
        """The 413 fault, after draining what is left of the body if that is not too much."""
        try:
            with deadline_kept():
                drained = _drain(environ, self.max_body)
        except TimeoutError:
            return _fault(_LATE, status="408 Request Timeout", close=True)
        too_large = BadSoapRequest(f"the request body is larger than {self.max_body} bytes")
        return _fault(too_large, status="413 Request Entity Too Large", close=not drained)

    def _post(
        self, environ: dict[str, Any], body: bytes, start_response: StartResponse
    ) -> Iterable[bytes]:
        if self.strict_iris and not is_soap_request(environ):
            # IRIS takes a POST without SOAPAction for its test page: an HTML error.
            start_response(
                NO_SOAPACTION_STATUS,
                [
                    ("Content-Type", NO_SOAPACTION_CONTENT_TYPE),
                    ("Content-Length", str(len(NO_SOAPACTION_PAGE))),
                ],
            )
            return [NO_SOAPACTION_PAGE]
        try:
            status, headers, parts = self.transport.answer(environ, body)
        except Exception:
            log.exception("the SOAP request failed outside the web method")
            return _fault(PkiError(SERVER_APPLICATION_ERROR))(environ, start_response)
        start_response(status, headers)
        if isinstance(parts, list):
            return parts
        # A long answer, complete in its temporary file: the server may sendfile(2) it.
        return wrap_file(environ, parts, _BLOCK)


def _drain(environ: dict[str, Any], limit: int) -> bool:
    """Read and drop the rest of an oversized body; True when it ended within the drain limit.

    A body with a Content-Length was refused unread; a chunked one after ``limit + 1`` bytes.
    """
    length = get_content_length(environ)
    if length is not None and length > limit + _DRAIN_LIMIT:
        return False
    size = _DRAIN_LIMIT if length is None else length
    stream = LimitedStream(environ["wsgi.input"], size + 1, is_max=True)
    dropped = 0
    while not stream.is_exhausted and (block := stream.read(_BLOCK)):
        dropped += len(block)
    return dropped <= size


def _fault(error: PkiError, *, status: str | None = None, close: bool = False) -> Response:
    body = fault_bytes(error.fault_side, error.message, [error.detail_text])
    headers = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))]
    if close:
        headers.append(("Connection", "close"))
    return Response(body, status or fault_status(error.fault_side), headers)
