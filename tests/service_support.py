"""Helpers for tests that talk to the SOAP service over real HTTP.

* ``with live_server(data_dir) as base_url:`` runs ``make_app(data_dir)`` in werkzeug's
  threaded server on 127.0.0.1, port 0 (a free one), in a background thread, and yields
  ``"http://127.0.0.1:<port>"``; the WSDL's ``soap:address`` points there, so zeep works.
  Extra keyword arguments go to ``make_app`` (``portal=False`` skips the web pages,
  ``max_body=...`` sets the body limit).  The server stops when the block ends.
  ``ssl_context=...`` serves HTTPS instead (``https://127.0.0.1:<port>``).
* ``configure_ca(data_dir)`` configures a CA (root ``CA_Server``, node ``caserver``,
  instance ``IRIS``: the names of wire-protocol.md's examples) and returns its password.
* ``https_context(data_dir, password)`` issues the server's own HTTPS certificate (for
  127.0.0.1) as ``serve --tls`` does and returns the server SSLContext ``serve`` would use.
* ``soap_post(base_url, body, action)`` sends one POST with exactly the headers given
  (``action=None`` sends no SOAPAction) and returns an :class:`Answer`;
  ``raw_request(base_url, data)`` sends raw bytes over a socket (chunked bodies, lies).
* ``wget_*`` build the requests of the real wget client (tests/real_clients/, see its README)
  and ``iris_*`` those of InterSystems' own client (SOAP-ENV prefix, ``xsi:type``,
  omitted elements); ``submitted``, ``cut_pem`` and ``last_number`` parse answers exactly
  as the wget client does.
* ``wait_for_exchanges(data_dir, n)`` returns the newest ``n`` recorded exchanges (``record=``)
  once they are in the store.
* ``assert_valid_response(body)`` validates the Body's element against the XSD embedded in
  the packaged WSDL (stack-notes Appendix C).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree
from werkzeug.serving import make_server

from pki_soap.ca import names
from pki_soap.server import tls
from pki_soap.soap import WSDL_FILE
from pki_soap.soap.wsdl import SERVICE_PATH
from pki_soap.store import Exchange, Store
from pki_soap.wsgi import make_app
from tests.engine_support import open_server

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_CLIENTS = Path(__file__).resolve().parent / "real_clients"
GOLDEN = Path(__file__).resolve().parent / "golden"

CA_ROOT = "CA_Server"
CA_NODE = "caserver"
CA_INSTANCE = "IRIS"
CA_PASSWORD = b"demo CA password for tests"

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XS = "http://www.w3.org/2001/XMLSchema"
TNS = "http://pki.intersystems.com"
ACTION = "http://pki.intersystems.com/PKI.CAServer."
TIMEOUT = 10.0
# An exchange is recorded just after its answer is sent: tests wait for it, up to this long.
EXCHANGE_WAIT_SECONDS = 60.0


@contextmanager
def live_server(
    data_dir: Path, *, ssl_context: ssl.SSLContext | None = None, **app_options: Any
) -> Iterator[str]:
    """Serve ``make_app(data_dir, **app_options)`` on 127.0.0.1:<free port>; yield the base URL."""
    server = make_server("127.0.0.1", 0, _not_ready, threaded=True, ssl_context=ssl_context)
    scheme = "http" if ssl_context is None else "https"
    base_url = f"{scheme}://127.0.0.1:{server.server_port}"
    app_options.setdefault("public_url", base_url)
    server.app = make_app(data_dir, **app_options)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def wait_for_exchanges(data_dir: Path, count: int) -> list[Exchange]:
    """The newest ``count`` exchanges, oldest first, once that many have been recorded."""
    deadline = time.monotonic() + EXCHANGE_WAIT_SECONDS
    with Store.open(data_dir) as store:
        while True:
            listed = store.exchanges(count)
            if len(listed) >= count:
                found = [store.exchange(summary.id) for summary in reversed(listed)]
                return [exchange for exchange in found if exchange is not None]
            assert time.monotonic() < deadline, f"{len(listed)} of {count} exchanges recorded"
            time.sleep(0.05)


def https_context(
    data_dir: Path, password: bytes, names: tuple[str, ...] = ("127.0.0.1",)
) -> ssl.SSLContext:
    """Issue the server's HTTPS certificate for ``names`` (as ``serve --tls``); its context."""
    files = tls.ServerFiles.of(data_dir)
    with open_server(data_dir) as server:
        tls.issue(server, files, tls.server_names(names[0], names[1:]), password)
    return tls.server_context(files.cer, files.key)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_serve(
    data_dir: Path, port: int, *options: str, stdout: Any = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """``server_app.py serve`` (real gunicorn) on 127.0.0.1:``port``, with extra ``options``."""
    return subprocess.Popen(
        [
            sys.executable,
            "server_app.py",
            "serve",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *options,
        ],
        cwd=REPOSITORY,
        stdout=stdout,
        stderr=subprocess.STDOUT,
    )


def _not_ready(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]


def configure_ca(data_dir: Path, *, days: int = 30) -> bytes:
    """Configure the CA server of ``data_dir`` as in the spec's examples; return its password."""
    with open_server(data_dir) as server:
        server.configure(
            root=CA_ROOT,
            directory="CAServer",
            password=CA_PASSWORD,
            days=days,
            subject=names.subject_from_text("/C=US/O=pki-soap tests/CN=Test CA"),
            ca_days=3650,
            instance=CA_INSTANCE,
            node=CA_NODE,
        )
    return CA_PASSWORD


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status code, headers (lower-case names), raw body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def soap_post(
    base_url: str,
    body: bytes,
    action: str | None,
    *,
    method: str = "POST",
    path: str = SERVICE_PATH,
    content_type: str | None = "text/xml; charset=utf-8",
    headers: dict[str, str] | None = None,
    cafile: Path | None = None,
) -> Answer:
    """Send one request with exactly these headers (plus Host and Content-Length).

    An ``https://`` ``base_url`` is verified against ``cafile`` alone, host name included.
    """
    parts = urlsplit(base_url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=cafile)
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=TIMEOUT, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        sent = dict(headers or {})
        if content_type is not None:
            sent["Content-Type"] = content_type
        if action is not None:
            sent["SOAPAction"] = action
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Answer(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


def raw_request(base_url: str, data: bytes) -> Answer:
    """Send ``data`` (a whole HTTP/1.1 request) over a socket; read the answer to the end."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )


def chunked(body: bytes, size: int = 8192) -> bytes:
    """``body`` in HTTP/1.1 chunked transfer coding."""
    out = bytearray()
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


# -- requests as the real clients send them ---------------------------------------------------


def wget_get_certificate(number: str) -> bytes:
    """The wget client's GetCertificate ``number``."""
    body = (REAL_CLIENTS / "wget-getcertificate.xml").read_bytes()
    return body.replace(b"{certificate_number}", number.encode())


def wget_list_certificates(hostname: str) -> bytes:
    """The wget client's ListCertificates(``hostname``, "webgateway")."""
    body = (REAL_CLIENTS / "wget-listcertificates.xml").read_bytes()
    return body.replace(b"{MYHOSTNAME}", hostname.encode())


def wget_submit(hostname: str, filename: str, csr_pem: str) -> bytes:
    """The wget client's SubmitCSR: its template with its substitutions (Subject left empty)."""
    text = (REAL_CLIENTS / "wget-submitcsr-template.xml").read_text()
    text = text.replace("hostname", hostname).replace("CertificateFileName", filename)
    text = text.replace("TheRequestCertificate", csr_pem)
    text = text.replace("ContactNameToReplace", "ContactPerson")
    text = text.replace("PhoneToReplace", "ContactPhone").replace("EmailToReplace", "ContactPerson")
    return text.replace("CsrSubject", "").encode()


WGET_HEADERS = {
    "Cookie": (
        "CSPSESSIONID-SP-81-UP-isc-pki-=000000000000B8x0QrAT4PN6gCSV2SDi4i5u1s81uzT4Uvxkxz;"
        " CSPWSERVERID=hzYoK7sO"
    )
}

_IRIS_START = (
    '<?xml version="1.0" encoding="UTF-8" ?>\r\n'
    "<SOAP-ENV:Envelope xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'"
    " xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'"
    " xmlns:s='http://www.w3.org/2001/XMLSchema'>\r\n  <SOAP-ENV:Body>"
)
_IRIS_END = "</SOAP-ENV:Body>\r\n</SOAP-ENV:Envelope>\r\n"


def _iris_field(name: str, value: str | None) -> str:
    if value is None:  # IRIS null: the element is omitted
        return ""
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f'<{name} xsi:type="s:string">{escaped}</{name}>'


def iris_submit(fields: dict[str, str | None]) -> bytes:
    """SubmitCSR as ``PKI.CAClient`` sends it; ``None`` fields are omitted."""
    inner = "".join(_iris_field(name, value) for name, value in fields.items())
    return (
        f'{_IRIS_START}<SubmitCSR xmlns="{TNS}"><csr xsi:type="CSR">{inner}</csr></SubmitCSR>'
        f"{_IRIS_END}"
    ).encode()


def iris_list_certificates(hostname: str | None = None, instance: str | None = None) -> bytes:
    """ListCertificates as ``PKI.CAClient`` sends it (both omitted: list all)."""
    inner = _iris_field("hostname", hostname) + _iris_field("instance", instance)
    wrapper = f'<ListCertificates xmlns="{TNS}">{inner}</ListCertificates>'
    return f"{_IRIS_START}{wrapper}{_IRIS_END}".encode()


def iris_get_certificate(number: str) -> bytes:
    """GetCertificate as ``PKI.CAClient`` sends it."""
    inner = _iris_field("number", number)
    return (
        f'{_IRIS_START}<GetCertificate xmlns="{TNS}">{inner}</GetCertificate>{_IRIS_END}'.encode()
    )


# -- answers parsed as the wget client parses them -------------------------------------------


def submitted(body: bytes) -> bool:
    """``grep -F "successfully submitted"``."""
    return b"successfully submitted" in body


def cut_pem(body: bytes) -> str:
    """The lines strictly between the <Contents> and </Contents> lines, after its BEGIN line."""
    lines = body.decode("utf-8").split("\n")
    first = next(i for i, line in enumerate(lines) if "<Contents>" in line)
    last = next(i for i, line in enumerate(lines) if "</Contents>" in line)
    return "-----BEGIN CERTIFICATE-----\n" + "".join(
        line + "\n" for line in lines[first + 1 : last]
    )


def last_number(body: bytes) -> str | None:
    """The text after the first '>' of the last line holding <Number>, up to the next '<'."""
    lines = [line for line in body.decode("utf-8").split("\n") if "<Number>" in line]
    if not lines:
        return None
    return lines[-1].split(">", 1)[1].split("<", 1)[0]


# -- openssl --------------------------------------------------------------------------------


def openssl(*args: str | Path) -> str:
    """Run the real openssl binary; return stdout (fails the test on a non-zero status)."""
    done = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def openssl_csr(directory: Path, name: str, subject: str, bits: int = 2048) -> tuple[Path, str]:
    """``openssl req -new -newkey rsa:<bits> -nodes -subj ...`` as the wget client runs it."""
    key = directory / f"{name}.key"
    csr = directory / f"{name}.csr"
    openssl(
        "req",
        "-new",
        "-newkey",
        f"rsa:{bits}",
        "-nodes",
        "-subj",
        subject,
        "-keyout",
        key,
        "-out",
        csr,
    )
    return key, csr.read_text()


# -- the WSDL's schema (stack-notes Appendix C) ----------------------------------------------


@cache
def wsdl_schema() -> etree.XMLSchema:
    """The XSD inside the packaged WSDL, compiled; ``ref="s:schema"`` made a skip-any."""
    wsdl = etree.parse(str(WSDL_FILE)).getroot()
    source = wsdl.find(f".//{{{XS}}}schema")
    assert source is not None
    nsmap = {**wsdl.nsmap, **source.nsmap}
    nsmap.pop(None, None)
    root = etree.Element(source.tag, attrib=dict(source.attrib), nsmap=nsmap)
    for child in source:
        root.append(etree.fromstring(etree.tostring(child)))
    for ref in root.iter(f"{{{XS}}}element"):
        if ref.get("ref", "").endswith(":schema"):
            del ref.attrib["ref"]
            ref.tag = f"{{{XS}}}any"
            ref.set("namespace", XS)
            ref.set("processContents", "skip")
    for any_element in root.iter(f"{{{XS}}}any"):
        any_element.set("processContents", any_element.get("processContents", "lax"))
    return etree.XMLSchema(root)


def body_element(body: bytes) -> etree._Element:
    """The first element inside the SOAP Body of a response."""
    envelope = etree.fromstring(body)
    assert envelope.tag == f"{{{SOAP_ENV}}}Envelope"
    soap_body = envelope.find(f"{{{SOAP_ENV}}}Body")
    assert soap_body is not None and len(soap_body) == 1
    return soap_body[0]


def assert_valid_response(body: bytes) -> etree._Element:
    """Validate a success response against the WSDL's XSD; return its body element."""
    element = body_element(body)
    schema = wsdl_schema()
    assert schema.validate(element), schema.error_log.last_error
    return element
