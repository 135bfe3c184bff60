"""Reading a CA server's SOAP answers: a locked-down parse, the envelope checks, and faults
turned back into the PkiError tree (the class by the detail's ``ERROR #n``, wire-protocol.md §5).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import requests
from lxml import etree

from pki_soap.errors import (
    BadSoapRequest,
    InvalidInput,
    PkiError,
    ServerUnreachable,
    error_for_number,
)
from pki_soap.soap.envelope import SERVICE_NS, SOAP_ENV_NS

_ERROR_TEXT = re.compile(r"ERROR\s*#\s*(\d+)\s*:\s*(.*)", re.DOTALL)
# faultstrings that say nothing: the IRIS engine's own; the detail text is the real message.
_GENERIC_FAULTSTRINGS = {
    "",
    "server application error",
    "internal server error",
    "badly formed soap message",
}
_XML_MEDIA_TYPES = ("text/xml", "application/soap+xml", "application/xml")


def _safe_parser() -> etree.XMLParser:
    # No DTDs, no entities, no network, libxml2's size and depth limits kept.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def local_name(element: etree._Element) -> str:
    """The element's tag without its namespace."""
    return str(etree.QName(element).localname)


def children(element: etree._Element) -> Iterator[etree._Element]:
    """Element children only (no comments or processing instructions)."""
    for child in element:
        if isinstance(child.tag, str):
            yield child


def invalid_answer(url: str, reason: str) -> ServerUnreachable:
    """The error for an answer from ``url`` that breaks the wire rules (it may have acted)."""
    return ServerUnreachable(
        f"CA server at {url} gave an invalid answer: {reason}", maybe_received=True
    )


def read_answer(url: str, method: str, response: requests.Response) -> etree._Element:
    """The response wrapper element of ``method``'s answer from the CA server at ``url``.

    Raises:
        PkiError: the answer is a SOAP fault (the class its ``ERROR #n`` names).
        ServerUnreachable: not XML, not a SOAP 1.1 envelope, a DTD, an error status without
            a fault, or an empty Body.
    """
    status = response.status_code
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    summary = f"HTTP {status} {response.reason or ''}".rstrip()
    if media_type not in _XML_MEDIA_TYPES:
        raise invalid_answer(url, f"{summary} with Content-Type {media_type or 'none'!r}, not SOAP")
    try:
        root = etree.fromstring(response.content, parser=_safe_parser())
    except etree.XMLSyntaxError as exc:
        raise invalid_answer(url, f"{summary}, malformed XML: {exc.msg or exc}") from exc
    if root.getroottree().docinfo.doctype:
        raise invalid_answer(url, "the answer carries a DTD")
    body = root.find(f"{{{SOAP_ENV_NS}}}Body") if root.tag == f"{{{SOAP_ENV_NS}}}Envelope" else None
    if body is None:
        raise invalid_answer(url, f"{summary}, not a SOAP 1.1 envelope")
    first = next(children(body), None)
    if first is not None and first.tag == f"{{{SOAP_ENV_NS}}}Fault":
        raise fault_error(first)
    if status not in (200, 201):
        raise invalid_answer(url, f"{summary} without a SOAP fault")
    if first is None:
        raise invalid_answer(url, f"{method} answer has an empty Body")
    namespace = etree.QName(first).namespace
    if namespace not in (SERVICE_NS, None):
        raise invalid_answer(url, f"{method} answer wrapper is in namespace {namespace!r}")
    return first


def fault_error(fault: etree._Element) -> PkiError:
    """The PkiError for a SOAP 1.1 Fault (class by the detail's ``ERROR #n``)."""

    def text_of(name: str) -> str:
        node = fault.find(name)
        return "" if node is None else "".join(node.itertext()).strip()

    code = text_of("faultcode")
    faultstring = text_of("faultstring")
    detail = fault.find("detail")
    texts: list[str] = []
    if detail is not None:
        texts = [
            "".join(node.itertext()).strip()
            for node in detail.iter()
            if isinstance(node.tag, str) and local_name(node) == "text"
        ]
        if not texts and "".join(detail.itertext()).strip():
            texts = ["".join(detail.itertext()).strip()]
    number: int | None = None
    detail_messages: list[str] = []
    for text in texts:
        match = _ERROR_TEXT.match(text)
        if match:
            number = number if number is not None else int(match.group(1))
            detail_messages.append(match.group(2).strip())
        elif text:
            detail_messages.append(text)
    own = _ERROR_TEXT.match(faultstring)
    if own:
        number = number if number is not None else int(own.group(1))
        faultstring = own.group(2).strip()
    if faultstring.lower() in _GENERIC_FAULTSTRINGS and detail_messages:
        message = "; ".join(detail_messages)
    else:
        message = faultstring or f"the CA server answered with a {code or 'SOAP'} fault"
    client_side = code.split(":")[-1].startswith("Client")
    if number is not None:
        cls = error_for_number(number)
        if cls is PkiError and client_side:
            cls = InvalidInput
    else:
        cls = BadSoapRequest if client_side else PkiError
    return cls(message)
