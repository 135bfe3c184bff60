"""A stand-in for a real IRIS PKI.CAServer: a real HTTP server on 127.0.0.1, port 0, in a thread.

It answers with bytes written here by hand from wire-protocol.md §1.2 (framing), §3 (the three
methods, the %XML.DataSet layout) and §5 (faults) -- deliberately *not* with pki_soap's own
writer, so the client is tested against the documented IRIS bytes, including what our server
never sends (string-ordered numbers, ``s:unique`` siblings, generic faultstrings).  Every
request is recorded with its headers and body so tests can assert the exact bytes sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from pki_soap.soap import WSDL_FILE

CRLF = "\r\n"
TNS = "http://pki.intersystems.com"
PATH = "/isc/pki/PKI.CAServer.cls"
WSDL = WSDL_FILE

_ENVELOPE_START = (
    '<?xml version="1.0" encoding="UTF-8" ?>' + CRLF + "<SOAP-ENV:Envelope "
    "xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/' "
    "xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' "
    "xmlns:s='http://www.w3.org/2001/XMLSchema'>" + CRLF + "  <SOAP-ENV:Body>"
)
_ENVELOPE_END = "</SOAP-ENV:Body>" + CRLF + "</SOAP-ENV:Envelope>" + CRLF


def _text(value: str) -> str:
    # IRIS's $ZCVT(x,"O","XML") escapes quotes too (wire-protocol.md §3.1).
    return escape(value, {'"': "&quot;", "'": "&apos;"})


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, Content-Type and the exact body bytes."""

    body: bytes
    status: int = 200
    content_type: str = "text/xml; charset=UTF-8"


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def soap_method(self) -> str:
        """The web method named by the SOAPAction (IRIS's last-segment rule, quotes removed)."""
        action = self.headers.get("SOAPAction", "").replace('"', "")
        return action.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


# -- response bytes ------------------------------------------------------------------------


def response(method: str, inner: str) -> Answer:
    """A success envelope framed exactly as §1.2."""
    text = f'{_ENVELOPE_START}<{method}Response xmlns="{TNS}">{inner}</{method}Response>'
    return Answer((text + _ENVELOPE_END).encode("utf-8"))


def submitted(sentence: str) -> Answer:
    """SubmitCSR's success answer."""
    return response("SubmitCSR", f"<SubmitCSRResult>{_text(sentence)}</SubmitCSRResult>")


def certificate(
    number: str, hostname: str, instance: str, filename: str, contents: str, subject: str
) -> Answer:
    """GetCertificate's answer: the six elements in definition order, PEM as-is (§3.3)."""
    parts = (
        ("Number", number),
        ("Hostname", hostname),
        ("Instance", instance),
        ("Filename", filename),
        ("Contents", contents),
        ("Subject", subject),
    )
    inner = "".join(f"<{name}>{_text(value)}</{name}>" for name, value in parts)
    return response("GetCertificate", f"<GetCertificateResult>{inner}</GetCertificateResult>")


def no_certificate() -> Answer:
    """GetCertificate for an unknown number: the wrapper without a result (§3.3, §10 Q4)."""
    return response("GetCertificate", "")


def dataset(
    row_name: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[str | None]],
    *,
    unique: bool = False,
) -> Answer:
    """ListCertificates' untyped %XML.DataSet, byte layout of §3.2 (CR LF, 4-space values).

    ``unique`` adds the ``s:unique``/``msdata:PrimaryKey`` sibling a DataSet over an ID column
    carries (layout of the live capture in tests/real_clients/iris-typed-dataset-response.xml).
    """
    lines = [
        "<ListCertificatesResult>",
        '<s:schema id="DefaultDataSet" xmlns="" attributeFormDefault="qualified"'
        ' elementFormDefault="qualified" xmlns:s="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:msdata="urn:schemas-microsoft-com:xml-msdata">',
        '  <s:element name="DefaultDataSet" msdata:IsDataSet="true">',
        "    <s:complexType>",
        '      <s:choice maxOccurs="unbounded">',
        f'        <s:element name="{row_name}">',
        "          <s:complexType>",
        "            <s:sequence>",
        *(
            f'              <s:element name="{column}" type="s:string" minOccurs="0" />'
            for column in columns
        ),
        "            </s:sequence>",
        "          </s:complexType>",
        "        </s:element>",
        "      </s:choice>",
        "    </s:complexType>",
    ]
    if unique:
        lines += [
            '    <s:unique name="Constraint1" msdata:PrimaryKey="true">',
            f'      <s:selector xpath=".//{row_name}" />',
            f'      <s:field xpath="{columns[0]}" />',
            "    </s:unique>",
        ]
    lines += [
        "  </s:element>",
        "</s:schema>",
        '<diffgr:diffgram xmlns:msdata="urn:schemas-microsoft-com:xml-msdata"'
        ' xmlns:diffgr="urn:schemas-microsoft-com:xml-diffgram-v1">',
        '<DefaultDataSet xmlns="">',
    ]
    for index, values in enumerate(rows):
        lines.append(f'  <{row_name} diffgr:id="{row_name}{index + 1}" msdata:rowOrder="{index}">')
        lines += [
            f"    <{column}>{_text(value)}</{column}>"
            for column, value in zip(columns, values, strict=False)
            if value is not None
        ]
        lines.append(f"  </{row_name}>")
    lines += ["</DefaultDataSet>", "</diffgr:diffgram>", "</ListCertificatesResult>"]
    return response("ListCertificates", CRLF.join(lines))


def list_my(rows: Iterable[tuple[str, str]], *, unique: bool = False) -> Answer:
    """ListMy: columns Number, Filename."""
    return dataset("ListMy", ("Number", "Filename"), rows, unique=unique)


def list_all(rows: Iterable[tuple[str, str, str, str]]) -> Answer:
    """ListAll: columns Number, Hostname, Instance, Filename."""
    return dataset("ListAll", ("Number", "Hostname", "Instance", "Filename"), rows)


def fault(code: str, faultstring: str, texts: Sequence[str] = ()) -> Answer:
    """A SOAP 1.1 fault exactly as IRIS writes it (§5): 400 for Client, 500 otherwise."""
    lines = [
        "<?xml version='1.0' encoding='UTF-8' standalone='no' ?>",
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'"
        " xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'"
        " xmlns:s='http://www.w3.org/2001/XMLSchema' >",
        "  <SOAP-ENV:Body>",
        "    <SOAP-ENV:Fault>",
        f"      <faultcode>SOAP-ENV:{code}</faultcode>",
        f"      <faultstring>{_text(faultstring)}</faultstring>",
    ]
    if texts:
        lines += ["      <detail>", f"    <error xmlns='{TNS}'>"]
        lines += [f"     <text>{_text(text)}</text>" for text in texts]
        lines += ["    </error>", "</detail>"]
    lines += ["    </SOAP-ENV:Fault>", "  </SOAP-ENV:Body>", "</SOAP-ENV:Envelope>", ""]
    return Answer(CRLF.join(lines).encode("utf-8"), status=400 if code == "Client" else 500)


HTML_500 = Answer(
    b"<html><head><title>500 Internal Server Error</title></head>"
    b"<body><h1>Internal Server Error</h1><p>CSP Gateway: the server is busy.</p></body></html>",
    status=500,
    content_type="text/html; charset=iso-8859-1",
)
MALFORMED = Answer(
    b'<?xml version="1.0" encoding="UTF-8" ?>\r\n<SOAP-ENV:Envelope xmlns:SOAP-ENV='
    b"'http://schemas.xmlsoap.org/soap/envelope/'>\r\n  <SOAP-ENV:Body><GetCertificateResp"
)


# -- the server ----------------------------------------------------------------------------

Responder = Answer | Callable[[Recorded], Answer]


@dataclass
class IrisStandin:
    """The stand-in server.  ``answers`` maps a web method name to an Answer or a callable.

    ``wsdl`` is served for ``GET ?WSDL``; None answers 404 (an IRIS server serves its WSDL only
    to ``%Development`` users, so real clients must cope without it).
    """

    wsdl: bytes | None = None
    answers: dict[str, Responder] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: tests read ``requests`` instead."""

            def _record(self) -> Recorded:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Recorded(self.command, self.path, dict(self.headers.items()), body)
                standin.requests.append(seen)
                return seen

            def _send(self, answer: Answer) -> None:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def do_GET(self) -> None:
                self._record()
                if standin.wsdl is not None and self.path.lower().endswith("?wsdl"):
                    self._send(Answer(standin.wsdl))
                else:
                    self._send(Answer(b"<html>not found</html>", 404, "text/html"))

            def do_POST(self) -> None:
                seen = self._record()
                responder = standin.answers.get(seen.soap_method)
                if responder is None:
                    answer = fault("Client", "Badly formed SOAP Message", ["no answer set"])
                else:
                    answer = responder if isinstance(responder, Answer) else responder(seen)
                self._send(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for it.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def posts(self) -> list[Recorded]:
        """The SOAP requests (not the WSDL fetches)."""
        return [seen for seen in self.requests if seen.method == "POST"]

    def start(self) -> IrisStandin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> IrisStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
