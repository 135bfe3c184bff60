"""What the exchange recorder notes on an exchange: where IRIS would have answered otherwise,
and what is known of the client's toolkit.

Read from the recorded bytes alone (a locked-down lxml parse), so an exchange can be noted
again later; the deviations cited are :data:`~pki_soap.soap.deviations.DEVIATIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from pki_soap.ca.names import CSR_FIELD_LIMITS
from pki_soap.soap.deviations import Deviation, deviation
from pki_soap.soap.envelope import SERVICE_NS, SOAP_ENV_NS, XSI_NS
from pki_soap.soap.protocol import SOAP12_ENV_NS
from pki_soap.soap.toolkits import identify
from pki_soap.store import IRIS, TOOLKIT, Exchange, Note

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
