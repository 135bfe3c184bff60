"""The spyne service ``CAServer`` (IRIS ``PKI.CAServer``'s three web methods) and its WSGI app.

:func:`make_app` answers ``POST /isc/pki/PKI.CAServer.cls`` (SOAP, spoken by
:class:`~pki_soap.wire.protocol.IrisSoap11`), ``GET /isc/pki/PKI.CAServer.cls?WSDL`` (the
static, IRIS-faithful ``wsdl/CAServer.wsdl``; spyne's generated WSDL is never served) and, when
asked, the portal under ``/pki/``.  The request body is read here, up to a limit, whether or
not a Content-Length is sent, so spyne never sees a truncated body.
"""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from spyne import Application, ComplexModel, ServiceBase, Unicode, rpc
from spyne.model.fault import Fault
from spyne.model.primitive import AnyXml
from spyne.server.wsgi import WsgiApplication

from pki_soap.errors import (
    BadSoapRequest,
    DuplicateRequest,
    InvalidInput,
    MissingField,
    NotConfigured,
    NotFound,
    PkiError,
)
from pki_soap.server import CAServer
from pki_soap.store import IssuedCertificate, PendingRequest
from pki_soap.wire.dataset import LIST_ALL_COLUMNS, LIST_MY_COLUMNS, DataSet
from pki_soap.wire.envelope import CONTENT_TYPE, SERVICE_NS, fault_bytes, fault_status
from pki_soap.wire.protocol import (
    SERVER_APPLICATION_ERROR,
    IrisFault,
    IrisSoap11,
    quiet_spyne_loggers,
)

log = logging.getLogger(__name__)

SERVICE_PATH = "/isc/pki/PKI.CAServer.cls"
PORTAL_PREFIX = "/pki"
DEFAULT_PORT = 52773
DEFAULT_MAX_BODY = 256 * 1024
WSDL_FILE = Path(__file__).resolve().parent.parent / "wsdl" / "CAServer.wsdl"

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


class DataSetResult(AnyXml):  # type: ignore[misc]  # spyne has no type information
    """Stands for ``%XML.DataSet`` in spyne's model; IrisSoap11 writes the real thing."""


def _engine(ctx: Any) -> CAServer:
    # Opened here, inside call_wrapper, so a store that cannot be opened is translated too.
    engines: _Engines = ctx.udc
    return engines.get()


# Server-side errors whose message is meant for the caller; any other one (a store or CA
# file problem) may name paths on this machine and is answered without its message.
_TOLD_SERVER_ERRORS = (DuplicateRequest, NotConfigured, NotFound)


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
        return _engine(ctx).submit(request)

    @rpc(Unicode, Unicode, _returns=DataSetResult, _body_style="wrapped")  # type: ignore[untyped-decorator]
    def ListCertificates(ctx: Any, hostname: str | None, instance: str | None) -> DataSet:  # noqa: N802, N805
        """ListAll (4 columns) when both arguments are empty or omitted, else ListMy (2)."""
        rows = _engine(ctx).certificates(hostname or "", instance or "")
        if not hostname and not instance:
            return DataSet("ListAll", LIST_ALL_COLUMNS, _list_all_rows(rows))
        return DataSet("ListMy", LIST_MY_COLUMNS, _list_my_rows(rows))

    @rpc(Unicode, _returns=Certificate, _body_style="wrapped")  # type: ignore[untyped-decorator]
    def GetCertificate(ctx: Any, number: str | None) -> Certificate | None:  # noqa: N802, N805
        """The certificate numbered ``number`` ("0": the CA's), or the empty answer (Q4)."""
        issued = _engine(ctx).certificate(number or "")
        return None if issued is None else _wire_certificate(issued)


def _list_all_rows(rows: Iterable[IssuedCertificate]) -> Iterator[tuple[str, str, str, str]]:
    for cert in rows:
        yield str(cert.number), cert.hostname, cert.instance, cert.filename


def _list_my_rows(rows: Iterable[IssuedCertificate]) -> Iterator[tuple[str, str]]:
    for cert in rows:
        yield str(cert.number), cert.filename


def _wire_certificate(issued: IssuedCertificate) -> Certificate:
    # The wget client cuts the PEM out between the <Contents> line and the </Contents>
    # line: the value must start with the BEGIN line and end with a line break.
    contents = (issued.contents or "").lstrip()
    if not contents.endswith("\n"):
        contents += "\n"
    return Certificate(
        Number=str(issued.number),
        Hostname=issued.hostname or "",
        Instance=issued.instance or "",
        Filename=issued.filename or "",
        Contents=contents,
        Subject=issued.subject or "",
    )


# -- the WSGI application ---------------------------------------------------------------------


class _Engines:
    """One CAServer per process, opened at the first call (after a gunicorn fork).

    Its e-mail notices are only queued during a request and sent by a retry thread of
    the same process, so a slow or unreachable SMTP server never delays a SOAP answer.
    """

    def __init__(self, data_dir: Path, smtp_cafile: Path | str | None = None) -> None:
        self._data_dir = data_dir
        self._smtp_cafile = smtp_cafile
        self._lock = threading.Lock()
        self._engine: CAServer | None = None
        self._pid = 0

    def get(self) -> CAServer:
        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                self._engine = CAServer.open(
                    self._data_dir, smtp_cafile=self._smtp_cafile, deliver_now=False
                )
                self._pid = os.getpid()
                start_retrying = getattr(self._engine.notifier, "start_retrying", None)
                if start_retrying is not None:
                    start_retrying()
            return self._engine


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
    """``wsdl/CAServer.wsdl`` with its ``soap:address`` set from ``public_url``.

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
    ) -> None:
        if max_body < 1:
            raise InvalidInput("the request body limit must be at least one byte")
        self.data_dir = Path(data_dir)
        self.max_body = max_body
        self.wsdl = load_wsdl(public_url)
        quiet_spyne_loggers()
        application = Application(
            [CAServerService],
            tns=SERVICE_NS,
            name="CAServer",
            in_protocol=IrisSoap11(),
            out_protocol=IrisSoap11(),
        )
        engines = _Engines(self.data_dir, smtp_cafile)

        def _attach_engine(ctx: Any) -> None:
            ctx.udc = engines

        application.event_manager.add_listener("method_call", _attach_engine)
        self.soap = WsgiApplication(application, max_content_length=max_body)
        self.portal: WsgiApp | None = None
        if portal:
            # Behind an https:// public URL the session cookie is marked Secure.
            secure = endpoint_url(public_url).startswith("https://")
            self.portal = _load_portal(self.data_dir, portal_networks, secure)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == SERVICE_PATH:
            return self._service(environ, start_response)
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
        except _Refused as refused:
            return _fault_answer(
                start_response,
                BadSoapRequest(refused.message),
                status=refused.status,
                close=refused.close,
            )
        inner = dict(environ)
        inner["wsgi.input"] = io.BytesIO(body)
        inner["CONTENT_LENGTH"] = str(len(body))
        inner.pop("HTTP_TRANSFER_ENCODING", None)
        try:
            # spyne's iterable is a lazy chain; materialise it so nothing fails after the
            # headers are out.
            return list(self.soap(inner, start_response))
        except Exception:
            log.exception("the SOAP request failed outside the web method")
            return _fault_answer(
                start_response, PkiError(SERVER_APPLICATION_ERROR), exc_info=sys.exc_info()
            )

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


def _load_portal(data_dir: Path, networks: list[str] | None, secure_cookies: bool) -> WsgiApp:
    # Imported here so that a service started with portal=False never loads Jinja2.
    from pki_soap.portal import make_portal

    app: WsgiApp = make_portal(data_dir, allow_networks=networks, secure_cookies=secure_cookies)
    return app


def make_app(
    data_dir: Path,
    *,
    public_url: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    portal: bool = True,
    portal_networks: list[str] | None = None,
    smtp_cafile: Path | str | None = None,
) -> PkiSoapApp:
    """The WSGI application serving the CA server of ``data_dir``.

    ``public_url`` is what the WSDL's ``soap:address`` says (``http://host:port`` or the
    full endpoint URL; default this host's name on port 52773) - never the request's Host.
    ``max_body`` bounds request bodies (413 beyond it, chunked or not).  ``portal`` mounts
    the web pages under ``/pki/`` (``portal_networks``: networks admitted besides loopback).
    ``smtp_cafile`` adds trust in a private SMTP server's certificate.

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
    )
