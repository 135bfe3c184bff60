"""The spyne service ``CAServer`` (IRIS ``PKI.CAServer``'s three web methods) and its WSGI app.

:func:`make_app` answers ``POST /isc/pki/PKI.CAServer.cls`` (SOAP, spoken by
:class:`~pki_soap.soap.protocol.IrisSoap11`), ``GET /isc/pki/PKI.CAServer.cls?WSDL`` (the
static, IRIS-faithful ``wire/CAServer.wsdl``; spyne's generated WSDL is never served) and, when
asked, the portal under ``/pki/``; the OCSP responder and the CRL (pki_soap.server.ocsp) answer
beside them.  The request body is read here, up to a limit, whether or
not a Content-Length is sent, so spyne never sees a truncated body.  Every answer is written
whole before its headers go out (a long one into a temporary file, see
:class:`~pki_soap.soap.envelope.SpooledAnswer`) and sent with a Content-Length.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import spyne.const
from spyne import Application, ComplexModel, ServiceBase, Unicode, rpc
from spyne.const.http import HTTP_200
from spyne.evmgr import EventManager
from spyne.model.fault import Fault
from spyne.model.primitive import AnyXml
from spyne.server.wsgi import WsgiApplication, WsgiMethodContext

from pki_soap.errors import (
    BadSoapRequest,
    DuplicateRequest,
    InvalidInput,
    MissingField,
    NotConfigured,
    NotFound,
    PkiError,
    StoreUnavailable,
    TooManyRequests,
)
from pki_soap.server.datadir import ServerDataDirectory
from pki_soap.server.ocsp import RevocationEndpoints, is_revocation_path
from pki_soap.server.tasks import CAServer
from pki_soap.server.tasks.submit import SubmissionLimits
from pki_soap.soap import WSDL_FILE
from pki_soap.soap.dataset import LIST_ALL_COLUMNS, LIST_MY_COLUMNS, DataSet
from pki_soap.soap.envelope import (
    CONTENT_TYPE,
    SERVICE_NS,
    SpooledAnswer,
    fault_bytes,
    fault_status,
)
from pki_soap.soap.protocol import (
    NO_SOAPACTION_CONTENT_TYPE,
    NO_SOAPACTION_PAGE,
    NO_SOAPACTION_STATUS,
    SERVER_APPLICATION_ERROR,
    IrisFault,
    IrisSoap11,
    is_soap_request,
    quiet_spyne_loggers,
)
from pki_soap.store import IssuedCertificate, PendingRequest, RecordLimits

log = logging.getLogger(__name__)

SERVICE_PATH = "/isc/pki/PKI.CAServer.cls"
PORTAL_PREFIX = "/pki"
DEFAULT_PORT = 52773
DEFAULT_MAX_BODY = 256 * 1024

# An oversized body is read and thrown away up to this much, so the client, still sending,
# gets the 413 instead of a reset connection; beyond it the connection is simply closed.
_DISCARD_LIMIT = 1024 * 1024
_READ_BLOCK = 64 * 1024
_ADDRESS = re.compile(r'(<soap:address location=")[^"]*(")')

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


# -- the spyne model: names and order are IRIS's (wire-protocol.md §4) ------------------------


class CSR(ComplexModel):  # type: ignore[misc]  # spyne has no type information
    """``PKI.CSR`` as a request carries it, properties in definition order."""

    __namespace__ = SERVICE_NS
    __type_name__ = "CSR"
    _type_info = [
        ("Name", Unicode),
        ("Hostname", Unicode),
        ("Instance", Unicode),
        ("Filename", Unicode),
        ("Contents", Unicode),
        ("Subject", Unicode),
        ("ContactName", Unicode),
        ("ContactPhone", Unicode),
        ("ContactEmail", Unicode),
    ]


class Certificate(ComplexModel):  # type: ignore[misc]  # spyne has no type information
    """``PKI.Certificate`` as GetCertificate returns it: exactly these six elements."""

    __namespace__ = SERVICE_NS
    __type_name__ = "Certificate"
    _type_info = [
        ("Number", Unicode),
        ("Hostname", Unicode),
        ("Instance", Unicode),
        ("Filename", Unicode),
        ("Contents", Unicode),
        ("Subject", Unicode),
    ]


class CertificateAnswer(NamedTuple):
    """What GetCertificate returns: :class:`Certificate`'s fields, cheaper to build.

    The protocol writes any object carrying the model's field names, so the answer needs
    no spyne object.
    """

    Number: str
    Hostname: str
    Instance: str
    Filename: str
    Contents: str
    Subject: str


class DataSetResult(AnyXml):  # type: ignore[misc]  # spyne has no type information
    """Stands for ``%XML.DataSet`` in spyne's model; IrisSoap11 writes the real thing."""


@dataclass(frozen=True)
class _ServiceData:
    """What every web method call gets (as spyne's ``ctx.udc``)."""

    data: ServerDataDirectory
    limits: SubmissionLimits


def _engine(ctx: Any) -> CAServer:
    # Opened here, inside call_wrapper, so a store that cannot be opened is translated too.
    service: _ServiceData = ctx.udc
    return service.data.get().server


def _strict_iris(ctx: Any) -> bool:
    """True when the service runs in IRIS-strict mode (``serve --strict-iris``)."""
    return bool(ctx.app.in_protocol.strict_iris)


# Server-side errors whose message is meant for the caller; any other one (a store or CA
# file problem) may name paths on this machine and is answered without its message.
_TOLD_SERVER_ERRORS = (DuplicateRequest, NotConfigured, NotFound, StoreUnavailable, TooManyRequests)


class CAServerService(ServiceBase):  # type: ignore[misc]  # spyne has no type information
    """The web methods of ``PKI.CAServer``; the service name on the wire is ``CAServer``."""

    __service_name__ = "CAServer"

    @classmethod
    def call_wrapper(cls, ctx: Any, args: Any = None) -> Any:
        """Run a web method; the one place where our errors become SOAP faults.

        A :class:`PkiError` becomes a fault of its side carrying its message and
        ``ERROR #n`` detail - except a server-side problem of our own (store, CA files),
        which keeps its class and number but says only ``Server Application Error``; anything
        unexpected is logged here and answered with that and ``ERROR #5001``.
        """
        try:
            return super().call_wrapper(ctx, args)
        except PkiError as exc:
            if exc.fault_side == "Client" or isinstance(exc, _TOLD_SERVER_ERRORS):
                raise IrisFault(exc) from exc
            log.error("%s failed: %s: %s", ctx.descriptor.name, type(exc).__name__, exc.message)
            raise IrisFault(type(exc)(SERVER_APPLICATION_ERROR)) from exc
        except Fault:
            raise
        except Exception as exc:
            log.exception("%s failed", ctx.descriptor.name)
            raise IrisFault(PkiError(SERVER_APPLICATION_ERROR)) from exc

    @rpc(CSR, _returns=Unicode, _body_style="wrapped")  # type: ignore[untyped-decorator]
    def SubmitCSR(ctx: Any, csr: Any) -> str:  # noqa: N802, N805 - IRIS names
        """Store a CSR as a pending request; the answer says it was successfully submitted."""
        if csr is None:
            raise MissingField("the csr element is required")
        request = PendingRequest(
            name=csr.Name or "",
            hostname=csr.Hostname or "",
            instance=csr.Instance or "",
            filename=csr.Filename or "",
            contents=csr.Contents or "",
            subject=csr.Subject or "",
            contact_name=csr.ContactName or "",
            contact_phone=csr.ContactPhone,
            contact_email=csr.ContactEmail,
        )
        client = ctx.transport.req_env.get("REMOTE_ADDR")
        return _engine(ctx).submit(
            request, as_received=_strict_iris(ctx), client_address=client, limits=ctx.udc.limits
        )

    @rpc(Unicode, Unicode, _returns=DataSetResult, _body_style="wrapped")  # type: ignore[untyped-decorator]
    def ListCertificates(ctx: Any, hostname: str | None, instance: str | None) -> DataSet:  # noqa: N802, N805
        """ListAll (4 columns) when both arguments are empty or omitted, else ListMy (2)."""
        rows = _engine(ctx).certificate_rows(
            hostname or "", instance or "", iris_order=_strict_iris(ctx)
        )
        if not hostname and not instance:
            return DataSet("ListAll", LIST_ALL_COLUMNS, _list_all_rows(rows))
        return DataSet("ListMy", LIST_MY_COLUMNS, _list_my_rows(rows))

    @rpc(Unicode, _returns=Certificate, _body_style="wrapped")  # type: ignore[untyped-decorator]
    def GetCertificate(ctx: Any, number: str | None) -> CertificateAnswer | None:  # noqa: N802, N805
        """The certificate numbered ``number`` ("0": the CA's), or the empty answer (Q4)."""
        issued = _engine(ctx).certificate(number or "")
        return None if issued is None else _wire_certificate(issued)


_Rows = Generator[tuple[int, str, str, str], None, None]


def _list_all_rows(rows: _Rows) -> Iterator[tuple[str, str, str, str]]:
    try:
        for number, hostname, instance, filename in rows:
            yield str(number), hostname, instance, filename
    finally:
        rows.close()  # the store's cursor, also when writing stops early


def _list_my_rows(rows: _Rows) -> Iterator[tuple[str, str]]:
    try:
        for number, _, _, filename in rows:
            yield str(number), filename
    finally:
        rows.close()


def _wire_certificate(issued: IssuedCertificate) -> CertificateAnswer:
    # The wget client cuts the PEM out between the <Contents> line and the </Contents>
    # line: the value must start with the BEGIN line and end with a line break.
    contents = (issued.contents or "").lstrip()
    if not contents.endswith("\n"):
        contents += "\n"
    return CertificateAnswer(
        Number=str(issued.number),
        Hostname=issued.hostname or "",
        Instance=issued.instance or "",
        Filename=issued.filename or "",
        Contents=contents,
        Subject=issued.subject or "",
    )


class _LeanEvents(EventManager):  # type: ignore[misc]  # spyne has no type information
    """spyne's EventManager, minus the empty handler set it builds for every event fired.

    spyne fires about sixteen events per request, almost all without a listener; the
    behaviour (handlers run in the order they were added) is the same.
    """

    def fire_event(self, event_name: str, ctx: Any, *args: Any, **kwargs: Any) -> None:
        """Run the handlers of ``event_name``, if any, in the order they were added."""
        handlers = self.handlers.get(event_name)
        if handlers:
            for handler in handlers:
                handler(ctx, *args, **kwargs)


def _lean_events(*owners: Any) -> None:
    # Switched in place: spyne keeps references to these managers (method descriptors list
    # the service class's), so replacing the attribute would miss them.
    for owner in owners:
        manager = owner.event_manager
        if type(manager) is EventManager:
            manager.__class__ = _LeanEvents


class _LeanContext(WsgiMethodContext):  # type: ignore[misc]  # spyne has no type information
    """spyne's WSGI method context without its guard against unknown attributes.

    ``MethodContext.__setattr__`` refuses attribute names it does not know - a debugging
    aid that costs a Python call for each of the ~60 attributes set per request.  spyne
    and this module set only known ones (our own data goes in ``udc``).
    """

    __setattr__ = object.__setattr__


class _SoapServer(WsgiApplication):  # type: ignore[misc]  # spyne has no type information
    """spyne's WSGI server, handed the request body that :class:`PkiSoapApp` has read."""

    def answer(
        self, environ: dict[str, Any], body: bytes, start_response: StartResponse
    ) -> Iterable[Any]:
        """spyne's request pipeline for ``body``: parse, route, validate, call, write.

        What ``WsgiApplication.handle_rpc`` does for this service, without the parts it
        never uses (its ``?wsdl`` dispatch, reading the body again, MTOM, HttpRpc headers,
        auxiliary methods, results streamed from a generator).  Faults go through spyne's
        ``handle_error``.  The answer is complete (a list) before ``start_response``.

        Raises:
            Exception: only what spyne itself lets escape; the caller answers it.
        """
        ctx = _LeanContext(self, environ, self.app.out_protocol.mime_type)
        self.event_manager.fire_event("wsgi_call", ctx)
        ctx.in_string = [body]
        contexts = self.generate_contexts(ctx)
        p_ctx, others = contexts[0], contexts[1:]
        p_ctx.active = True
        if p_ctx.in_error is None:
            self.get_in_object(p_ctx)
        if p_ctx.in_error is not None:
            return self._fault(p_ctx, others, p_ctx.in_error, start_response)
        self.get_out_object(p_ctx)
        if p_ctx.out_error is not None:
            return self._fault(p_ctx, others, p_ctx.out_error, start_response)
        transport = p_ctx.transport
        if transport.resp_code is None:
            transport.resp_code = HTTP_200
        try:
            # IrisSoap11 writes the whole answer here (or a fault, with its status).
            self.get_out_string(p_ctx)
        except Exception as exc:
            log.exception("could not write the answer")
            p_ctx.out_error = Fault("Server", str(exc))
            return self._fault(p_ctx, others, p_ctx.out_error, start_response)
        self.event_manager.fire_event("wsgi_return", p_ctx)
        parts = list(p_ctx.out_string)
        transport.resp_headers["Content-Length"] = str(sum(len(part) for part in parts))
        start_response(transport.resp_code, _header_list(transport.resp_headers))
        p_ctx.close()
        self.event_manager.fire_event("wsgi_close", p_ctx)
        return parts

    def _fault(
        self, p_ctx: Any, others: Any, error: Any, start_response: StartResponse
    ) -> Iterable[Any]:
        answer: Iterable[Any] = self.handle_error(p_ctx, others, error, start_response)
        return answer


def _header_list(headers: dict[str, Any]) -> list[tuple[str, str]]:
    # spyne keeps a header as a string or as a list of values.
    listed: list[tuple[str, str]] = []
    for name, value in headers.items():
        if isinstance(value, list | tuple):
            listed.extend((name, str(item)) for item in value)
        else:
            listed.append((name, str(value)))
    return listed


# -- the WSGI application ---------------------------------------------------------------------


def endpoint_url(public_url: str | None) -> str:
    """The ``soap:address`` written into the WSDL for ``public_url``.

    ``None`` means this host's name on the default port; a URL without a path (or with
    ``/``) gets the service path appended; any other path is used as given.

    Raises:
        InvalidInput: ``public_url`` is not an ``http://`` or ``https://`` URL with a host.
    """
    if public_url is None:
        return f"http://{socket.gethostname()}:{DEFAULT_PORT}{SERVICE_PATH}"
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"public URL {public_url!r} is not an http:// or https:// URL")
    if parts.path in ("", "/"):
        return public_url.rstrip("/") + SERVICE_PATH
    return public_url


def _xml_attribute(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def load_wsdl(public_url: str | None = None) -> bytes:
    """The packaged WSDL (:data:`WSDL_FILE`) with its ``soap:address`` set from ``public_url``.

    Raises:
        InvalidInput: ``public_url`` is not usable (see :func:`endpoint_url`).
        PkiError: the WSDL file cannot be read.
    """
    location = _xml_attribute(endpoint_url(public_url))
    try:
        text = WSDL_FILE.read_text(encoding="utf-8")
    except OSError as exc:
        raise PkiError(f"cannot read the WSDL file {WSDL_FILE}: {exc.strerror}") from exc
    text, count = _ADDRESS.subn(lambda m: m.group(1) + location + m.group(2), text)
    if count != 1:
        raise PkiError(f"the WSDL file {WSDL_FILE} has no single soap:address")
    return text.encode("utf-8")


def _plain(
    start_response: StartResponse,
    status: str,
    text: str,
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    body = text.encode("utf-8")
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )
    return [body]


def _fault_answer(
    start_response: StartResponse,
    error: PkiError,
    *,
    status: str | None = None,
    close: bool = False,
    exc_info: Any = None,
) -> list[bytes]:
    body = fault_bytes(error.fault_side, error.message, [error.detail_text])
    headers = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))]
    if close:
        headers.append(("Connection", "close"))
    start_response(status or fault_status(error.fault_side), headers, exc_info)
    return [body]


class _Refused(Exception):
    """A request body the front refuses before spyne sees it."""

    def __init__(self, status: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


def _read(stream: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes, fewer only at the end of the stream."""
    parts: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = stream.read(min(_READ_BLOCK, remaining))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _discard(stream: Any, limit: int) -> bool:
    """Read and drop up to ``limit`` bytes; True when the stream ended within it."""
    remaining = limit
    while remaining > 0:
        chunk = stream.read(min(_READ_BLOCK, remaining))
        if not chunk:
            return True
        remaining -= len(chunk)
    return not stream.read(1)


class PkiSoapApp:
    """The WSGI application of :func:`make_app` (SOAP endpoint, ``?WSDL``, portal)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        public_url: str | None,
        max_body: int,
        portal: bool,
        portal_networks: list[str] | None = None,
        smtp_cafile: Path | str | None = None,
        strict_iris: bool = False,
        record: RecordLimits | None = None,
        limits: SubmissionLimits | None = None,
    ) -> None:
        if max_body < 1:
            raise InvalidInput("the request body limit must be at least one byte")
        self.data_dir = Path(data_dir)
        self.max_body = max_body
        self.strict_iris = strict_iris
        self.wsdl = load_wsdl(public_url)
        quiet_spyne_loggers()
        # spyne runs a full gc.collect() from the request path at most once a second to
        # close its contexts' files (10-20 ms in a worker, an outlier in every second's
        # latencies); our contexts hold none, and Python's own collector still runs.
        spyne.const.MIN_GC_INTERVAL = math.inf
        application = Application(
            [CAServerService],
            tns=SERVICE_NS,
            name="CAServer",
            in_protocol=IrisSoap11(strict_iris=strict_iris),
            out_protocol=IrisSoap11(strict_iris=strict_iris),
        )
        # One open data directory per process, shared by the SOAP service and the portal.
        self.data = ServerDataDirectory(self.data_dir, smtp_cafile=smtp_cafile)
        service = _ServiceData(self.data, limits if limits is not None else SubmissionLimits())

        def _attach_engine(ctx: Any) -> None:
            ctx.udc = service

        application.event_manager.add_listener("method_call", _attach_engine)
        # The OCSP responder and the CRL download, on the same per-process CAServer.
        self.revocation = RevocationEndpoints(lambda: self.data.get().server)
        self.soap = _SoapServer(application, max_content_length=max_body)
        _lean_events(
            application,
            application.in_protocol,
            application.out_protocol,
            CAServerService,
            self.soap,
        )
        # The SOAP endpoint, behind the exchange recorder when recording (none otherwise).
        self.endpoint: WsgiApp = self._service
        if record is not None:
            from pki_soap.soap.recorder import ExchangeRecorder

            self.endpoint = ExchangeRecorder(
                self._service, lambda: self.data.get().store, record, strict_iris=strict_iris
            )
        self.portal: WsgiApp | None = None
        if portal:
            # Behind an https:// public URL: Secure session cookie and HSTS.
            secure = endpoint_url(public_url).startswith("https://")
            self.portal = _load_portal(self.data, portal_networks, secure)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == SERVICE_PATH:
            return self.endpoint(environ, start_response)
        if is_revocation_path(path):
            return self.revocation(environ, start_response)
        if self.portal is not None and (
            path == PORTAL_PREFIX or path.startswith(PORTAL_PREFIX + "/")
        ):
            return self._portal(environ, start_response)
        return _plain(start_response, "404 Not Found", "Not Found\n")

    def _portal(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        assert self.portal is not None
        path = environ.get("PATH_INFO") or "/"
        if path == PORTAL_PREFIX:
            target = environ.get("SCRIPT_NAME", "") + PORTAL_PREFIX + "/"
            return _plain(start_response, "308 Permanent Redirect", "", [("Location", target)])
        inner = dict(environ)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + PORTAL_PREFIX
        inner["PATH_INFO"] = path[len(PORTAL_PREFIX) :]
        return self.portal(inner, start_response)

    def _wants_wsdl(self, environ: dict[str, Any]) -> bool:
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        return any(key.lower() == "wsdl" for key, _ in query)

    def _service(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method in ("GET", "HEAD"):
            if not self._wants_wsdl(environ):
                return _plain(
                    start_response,
                    "405 Method Not Allowed",
                    "SOAP requests use POST; the WSDL is at ?WSDL\n",
                    [("Allow", "GET, HEAD, POST")],
                )
            start_response(
                "200 OK",
                [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(self.wsdl)))],
            )
            return [b""] if method == "HEAD" else [self.wsdl]
        if method != "POST":
            return _plain(
                start_response,
                "405 Method Not Allowed",
                f"{method} is not supported here: SOAP requests use POST\n",
                [("Allow", "GET, HEAD, POST")],
            )
        try:
            body = self._body(environ)
        except TimeoutError:
            # The server's read deadline (serve --body-timeout) cut a body that trickled.
            return _fault_answer(
                start_response,
                BadSoapRequest("the request body did not arrive in time"),
                status="408 Request Timeout",
                close=True,
            )
        except _Refused as refused:
            return _fault_answer(
                start_response,
                BadSoapRequest(refused.message),
                status=refused.status,
                close=refused.close,
            )
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
            # spyne's fault answers are lazy chains; materialise them so nothing fails
            # after the headers are out.
            parts = list(self.soap.answer(environ, body, start_response))
        except Exception:
            log.exception("the SOAP request failed outside the web method")
            return _fault_answer(
                start_response, PkiError(SERVER_APPLICATION_ERROR), exc_info=sys.exc_info()
            )
        if len(parts) == 1 and isinstance(parts[0], SpooledAnswer):
            # A long answer, already complete in a temporary file (its length was sent).
            return _spooled_body(environ, parts[0])
        return parts

    def _body(self, environ: dict[str, Any]) -> bytes:
        """The whole request body, or :class:`_Refused` (never a silently cut body)."""
        stream = environ["wsgi.input"]
        length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
        too_large = f"the request body is larger than {self.max_body} bytes"
        if length_text:
            if not length_text.isdigit():
                raise _Refused("400 Bad Request", "the Content-Length header is not a number")
            length = int(length_text)
            if length > self.max_body:
                drained = length <= self.max_body + _DISCARD_LIMIT and _discard(stream, length)
                raise _Refused("413 Request Entity Too Large", too_large, close=not drained)
            body = _read(stream, length)
            if len(body) < length:
                raise _Refused(
                    "400 Bad Request", "the request body is shorter than its Content-Length"
                )
            return body
        if environ.get("wsgi.input_terminated"):
            # Chunked (or otherwise self-delimited) body: read one byte past the limit.
            body = _read(stream, self.max_body + 1)
            if len(body) > self.max_body:
                drained = _discard(stream, _DISCARD_LIMIT)
                raise _Refused("413 Request Entity Too Large", too_large, close=not drained)
            return body
        # No length and not chunked: HTTP/1.1 says there is no body.
        return b""


class _SpooledBody:
    """A spooled answer as a WSGI body: its blocks, and its file removed on ``close()``."""

    def __init__(self, answer: SpooledAnswer) -> None:
        self._answer = answer

    def __iter__(self) -> Iterator[bytes]:
        return self._answer.blocks(_READ_BLOCK)

    def close(self) -> None:
        self._answer.close()


def _spooled_body(environ: dict[str, Any], answer: SpooledAnswer) -> Iterable[bytes]:
    # The server's file wrapper may send the file with sendfile(2), without reading it.
    file_wrapper = environ.get("wsgi.file_wrapper")
    if file_wrapper is not None and answer.file is not None:
        body: Iterable[bytes] = file_wrapper(answer.file, _READ_BLOCK)
        return body
    return _SpooledBody(answer)


def _load_portal(
    data: ServerDataDirectory, networks: list[str] | None, secure_cookies: bool
) -> WsgiApp:
    # Imported here so that a service started with portal=False never loads Jinja2.
    from pki_soap.portal import make_portal

    app: WsgiApp = make_portal(
        data.path, allow_networks=networks, secure_cookies=secure_cookies, data=data
    )
    return app


def make_app(
    data_dir: Path,
    *,
    public_url: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    portal: bool = True,
    portal_networks: list[str] | None = None,
    smtp_cafile: Path | str | None = None,
    strict_iris: bool = False,
    record: RecordLimits | None = None,
    limits: SubmissionLimits | None = None,
) -> PkiSoapApp:
    """The WSGI application serving the CA server of ``data_dir``.

    ``public_url`` is what the WSDL's ``soap:address`` says (``http://host:port`` or the
    full endpoint URL; default this host's name on port 52773) - never the request's Host.
    ``max_body`` bounds request bodies (413 beyond it, chunked or not).  ``portal`` mounts
    the web pages under ``/pki/`` (``portal_networks``: networks admitted besides loopback).
    ``smtp_cafile`` adds trust in a private SMTP server's certificate.  ``strict_iris``
    switches every deviation that can be switched to IRIS's behaviour
    (:data:`~pki_soap.soap.protocol.DEVIATIONS`); ``record`` keeps the SOAP exchanges in the
    store within those limits (:mod:`pki_soap.soap.recorder`; None records nothing).
    ``limits`` bound what anonymous submissions may store; None means
    :class:`SubmissionLimits`' defaults (``SubmissionLimits(0, pending=0,
    pending_per_host=0)`` for none).

    Raises:
        InvalidInput: ``public_url`` is not an http(s) URL, ``max_body`` is below 1, or a
            portal network is not an IP network.
        PkiError: the WSDL file or the portal's session key cannot be read.
    """
    return PkiSoapApp(
        data_dir,
        public_url=public_url,
        max_body=max_body,
        portal=portal,
        portal_networks=portal_networks,
        smtp_cafile=smtp_cafile,
        strict_iris=strict_iris,
        record=record,
        limits=limits if limits is not None else SubmissionLimits(),
    )
