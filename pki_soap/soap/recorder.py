"""The exchange recorder (``serve --record [N]``): a WSGI middleware around the SOAP endpoint.

It keeps each POST's request and answer bytes (:data:`~pki_soap.server.exchanges.BODY_KEPT` of each
at most), headers, client address, User-Agent, duration, the web method the protocol routed it
to (:data:`~pki_soap.soap.protocol.ROUTED_METHOD`) and the fault, annotates it
(:func:`annotate`: what IRIS would have done differently, what is known of the toolkit) and
stores it, the oldest dropped first beyond the limits.  The request body is copied as the
application reads it and the answer as the server sends it: nothing else changes, and a
server started without ``--record`` has no recorder at all.  Recording never fails a request:
a recording that cannot be stored is logged and dropped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from pki_soap.ca.names import CSR_FIELD_LIMITS
from pki_soap.soap.deviations import Deviation, deviation
from pki_soap.soap.envelope import SERVICE_NS, SOAP_ENV_NS, XSI_NS
from pki_soap.soap.protocol import ROUTED_METHOD, SOAP12_ENV_NS
from pki_soap.soap.toolkits import identify
from pki_soap.store import BODY_KEPT, IRIS, TOOLKIT, Exchange, Note, RecordLimits, Store

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: The parameters of each web method, and the members of ``csr`` (the WSDL's types).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "GetCertificate": ("number",),
    "ListCertificates": ("hostname", "instance"),
    "SubmitCSR": ("csr",),
}
CSR_MEMBERS: tuple[str, ...] = tuple(CSR_FIELD_LIMITS)
_SHOWN_NUMBERS = 12
_NUMBER_LINE = re.compile(rb"<Number>([0-9]+)</Number>")
_CANONICAL_NUMBER = re.compile(r"0|[1-9][0-9]*")


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


@dataclass(frozen=True)
class FaultParts:
    """faultcode (without its prefix), faultstring and detail text of a SOAP 1.1 fault."""

    code: str
    string: str
    detail: str


def _parser() -> etree.XMLParser:
    # A stranger's bytes: no DTD, no entities, no network, libxml2's limits kept.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _parse(data: bytes) -> etree._Element | None:
    try:
        return etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError):
        return None


def fault_parts(answer: bytes) -> FaultParts | None:
    """The fault in a SOAP 1.1 answer, or None when it holds none."""
    if b"Fault>" not in answer:
        return None
    root = _parse(answer)
    fault = None if root is None else root.find(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault")
    if fault is None:
        return None
    detail = fault.find("detail")
    return FaultParts(
        code=(fault.findtext("faultcode") or "").strip().rpartition(":")[2],
        string=(fault.findtext("faultstring") or "").strip(),
        detail="" if detail is None else " ".join("".join(detail.itertext()).split()),
    )


def _header(exchange: Exchange, name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in exchange.request_headers if k.lower() == wanted), None)


def _differs(entry: Deviation, what: str) -> str:
    """A note for a deviation that strict mode switches, when the server ran lenient."""
    return (
        f"{what}: IRIS - {entry.iris}; this server - {entry.ours}."
        " `serve --strict-iris` answers as IRIS does."
    )


def _kept(entry: Deviation, what: str) -> str:
    return f"{what}: IRIS - {entry.iris}; this server - {entry.ours} (kept: {entry.kept})."


def _local(tag: object) -> tuple[str | None, str]:
    if not isinstance(tag, str):
        return None, ""
    qname = etree.QName(tag)
    return qname.namespace, qname.localname


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:_SHOWN_NUMBERS])
    return shown + (", ..." if len(numbers) > _SHOWN_NUMBERS else "") if numbers else "no rows"


def annotate(exchange: Exchange) -> list[Note]:
    """What IRIS would have done differently with ``exchange``, and what is known of its
    client's toolkit."""
    fault = fault_parts(exchange.answer)
    notes = [Note(IRIS, text) for text in _iris_notes(exchange, fault)]
    notes += [Note(TOOLKIT, text) for text in _toolkit_notes(exchange, fault)]
    return notes


def _iris_notes(exchange: Exchange, fault: FaultParts | None) -> Iterator[str]:
    strict = exchange.strict_iris
    content_type = (_header(exchange, "Content-Type") or "").split(";", 1)[0].strip().lower()
    root = _parse(exchange.request) if exchange.request_size == len(exchange.request) else None
    soap12 = content_type == "application/soap+xml" or (
        root is not None and root.tag == f"{{{SOAP12_ENV_NS}}}Envelope"
    )
    if soap12:
        yield _kept(deviation("soap12"), "A SOAP 1.2 request")
    elif _header(exchange, "SOAPAction") is None:
        entry = deviation("no-soapaction")
        if strict:
            yield (
                "No SOAPAction header: refused as IRIS refuses it (IRIS-strict mode) - "
                f"{entry.iris}. Send SOAPAction: {SERVICE_NS}/PKI.CAServer.<method>."
            )
        else:
            routed = f" (to {exchange.method})" if exchange.method else ""
            yield _differs(entry, "No SOAPAction header") + f" This one was routed{routed}."
    if exchange.status == 413:
        yield _kept(deviation("body-limit"), "The request body is over the limit")
    if fault is not None:
        yield from _fault_notes(exchange, fault)
    if root is not None and not soap12:
        yield from _body_notes(exchange, root)


def _fault_notes(exchange: Exchange, fault: FaultParts) -> Iterator[str]:
    if "a DOCTYPE is not allowed" in fault.detail:
        yield _kept(deviation("doctype"), "The request has a DOCTYPE")
    if fault.detail.startswith(("ERROR #8103", "ERROR #8104")) and not exchange.strict_iris:
        yield _differs(deviation("csr-check"), "The CSR was refused") + (
            " IRIS would have answered `successfully submitted`."
        )
    if fault.detail.startswith("ERROR #8101") or "holds a control character" in fault.detail:
        yield _kept(deviation("field-checks"), "A field was refused")


def _body_notes(exchange: Exchange, envelope: etree._Element) -> Iterator[str]:
    body = next((c for c in envelope if _local(c.tag)[1] == "Body"), None)
    wrapper = None if body is None else next((c for c in body if isinstance(c.tag, str)), None)
    if wrapper is None:
        return
    namespace, name = _local(wrapper.tag)
    method = exchange.method or (name if name in PARAMETERS else None)
    if namespace not in (None, SERVICE_NS):
        yield (
            f"The body element is in namespace {namespace}: IRIS, like this server, takes"
            f" only {SERVICE_NS} or no namespace (Client fault)."
        )
    if method is not None and name != method:
        yield (
            f"The body element is <{name}> but the request was routed to {method}: IRIS,"
            " like this server, ignores the element's name once SOAPAction names the method."
        )
    if wrapper.get(f"{{{XSI_NS}}}nil") in ("true", "1"):
        yield (
            'The body element carries xsi:nil="true" (Perl SOAP::Lite sends it for a call'
            " without arguments): this server answers a Client fault, and what IRIS does with"
            " it is not documented. Send the element without xsi:nil; with no children it"
            " means no arguments on both (ListCertificates: every certificate)."
        )
    if method is None:
        return
    yield from _element_notes(exchange, wrapper, method)
    if method == "ListCertificates" and exchange.status == 200 and not exchange.strict_iris:
        yield from _listing_notes(exchange)
    if method == "GetCertificate" and exchange.status == 200:
        number = _argument(wrapper, "number")
        if number is not None and not _CANONICAL_NUMBER.fullmatch(number):
            yield (
                f"GetCertificate number {number!r}: IRIS, like this server, matches the number"
                " as text, so only the plain decimal form (no sign, blanks or leading zeros)"
                " finds a certificate."
            )


def _argument(wrapper: etree._Element, name: str) -> str | None:
    for child in wrapper:
        if _local(child.tag)[1] == name:
            return child.text or ""
    return None


def _element_notes(exchange: Exchange, wrapper: etree._Element, method: str) -> Iterator[str]:
    parameters = PARAMETERS[method]
    unqualified = False
    for child in wrapper:
        namespace, local = _local(child.tag)
        if not local:
            continue
        unqualified = unqualified or namespace is None
        if namespace not in (None, SERVICE_NS) or local not in parameters:
            where = ""
            if method == "SubmitCSR" and local in CSR_MEMBERS:
                where = " (it belongs inside <csr>)"
            elif namespace not in (None, SERVICE_NS):
                where = f" (its namespace {namespace} is not {SERVICE_NS})"
            yield (
                f"<{local}> is not a parameter of {method}{where}: IRIS, like this server,"
                f" answers a Client fault `Unexpected tag in XML input: {local}`."
            )
        elif local == "csr":
            for member in child:
                member_namespace, member_name = _local(member.tag)
                if not member_name:
                    continue
                unqualified = unqualified or member_namespace is None
                known = member_name in CSR_MEMBERS and member_namespace in (None, SERVICE_NS)
                if not known and not exchange.strict_iris:
                    yield _differs(
                        deviation("csr-unknown-element"), f"Unknown element <{member_name}> in csr"
                    )
    if unqualified:
        yield (
            f"Some parameter elements have no namespace: this server accepts them; whether IRIS"
            f" does is not established. Qualify them in {SERVICE_NS}, as InterSystems clients do."
        )


def _listing_notes(exchange: Exchange) -> Iterator[str]:
    if exchange.answer_size != len(exchange.answer):
        return  # only part of a long answer was kept
    listed = [int(n) for n in _NUMBER_LINE.findall(exchange.answer)]
    iris = sorted(listed, key=str)
    if iris != listed:
        why = deviation("list-order")
        yield (
            f"{why.topic}: IRIS would have listed {_numbers(iris)}; this server listed"
            f" {_numbers(listed)} ({why.ours}; IRIS: {why.iris}). `serve --strict-iris`"
            " answers as IRIS does."
        )


def _toolkit_notes(exchange: Exchange, fault: FaultParts | None) -> Iterator[str]:
    toolkit = identify(exchange.user_agent)
    if toolkit is None:
        if exchange.user_agent:
            yield "Unknown toolkit: nothing is known of this User-Agent."
        else:
            yield "No User-Agent header: the toolkit is unknown."
    else:
        yield f"Toolkit: {toolkit.name}."
        yield from toolkit.facts
    if toolkit is not None and toolkit.faults_from_500_only and fault and exchange.status == 400:
        yield (
            f"{toolkit.name} reads SOAP faults only from HTTP 500: this Client fault came with"
            " HTTP 400, as IRIS sends it, so your program will not see this faultstring"
            f" ({fault.string})."
        )
    expect = _header(exchange, "Expect")
    if expect and (toolkit is None or "Mono" not in toolkit.name):
        yield (
            f"The request carried Expect: {expect} (Mono's proxy sends it too): whatever"
            " answers in front of the CA must handle it."
        )


__all__ = [
    "CSR_MEMBERS",
    "PARAMETERS",
    "ExchangeRecorder",
    "FaultParts",
    "annotate",
    "build_exchange",
    "fault_parts",
]
