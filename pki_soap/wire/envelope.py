"""The IRIS byte layout of SOAP 1.1 responses and faults (wire-protocol.md §1.2 and §5).

lxml cannot write these bytes (CR LF line ends, single-quoted envelope attributes, the space
before ``>`` of a fault's envelope), so they are written here by hand, as text, and encoded
once.  Nothing in this module knows spyne: the protocol (:mod:`pki_soap.wire.protocol`) hands
in plain strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
SERVICE_NS = "http://pki.intersystems.com"

CRLF = "\r\n"
CONTENT_TYPE = "text/xml; charset=UTF-8"

_ENVELOPE_ATTRIBUTES = f"xmlns:SOAP-ENV='{SOAP_ENV_NS}' xmlns:xsi='{XSI_NS}' xmlns:s='{XSD_NS}'"
_RESPONSE_START = (
    f'<?xml version="1.0" encoding="UTF-8" ?>{CRLF}'
    f"<SOAP-ENV:Envelope {_ENVELOPE_ATTRIBUTES}>{CRLF}"
    "  <SOAP-ENV:Body>"
)
_RESPONSE_END = f"</SOAP-ENV:Body>{CRLF}</SOAP-ENV:Envelope>{CRLF}"

# XML 1.0 forbids these code points even as character references; a value holding one
# cannot be written, so the response becomes a Server fault instead of broken XML.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_ESCAPE_ALL = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"})
_ESCAPE_MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


class UnwritableValue(ValueError):
    """A value holds a character XML 1.0 cannot carry; the answer must become a fault."""


def escape_value(value: str) -> str:
    """Escape a property value as IRIS's ``$ZCVT(x,"O","XML")`` does (``& < > " '``).

    CR and LF stay as they are (§1.2), so a PEM keeps its line structure on the wire.

    Raises:
        UnwritableValue: ``value`` holds a character XML 1.0 does not allow.
    """
    if _NOT_XML.search(value):
        raise UnwritableValue("a value holds a character XML 1.0 cannot carry")
    return value.translate(_ESCAPE_ALL)


def _escape_fault_text(value: str) -> str:
    # The §5 layout shows quotes left as they are inside <faultstring> and <text>
    # (``extent 'PKI.CSR'``); only markup characters are escaped there.
    return _NOT_XML.sub("?", value).translate(_ESCAPE_MARKUP)


def response_chunks(method: str, result: Iterable[str] | None) -> Iterable[str]:
    """The text pieces of a success envelope for ``method`` (e.g. ``GetCertificate``).

    ``result`` is the already-escaped content of ``<{method}Response>`` (the ``<...Result>``
    element and everything in it); ``None`` writes the empty wrapper IRIS sends for a null
    result (§3.3, Q4).  Pieces are yielded as they come so a long DataSet is written once.
    """
    yield _RESPONSE_START
    yield f'<{method}Response xmlns="{SERVICE_NS}">'
    if result is not None:
        yield from result
    yield f"</{method}Response>"
    yield _RESPONSE_END


def response_bytes(method: str, result: Iterable[str] | None) -> bytes:
    """The success envelope for ``method`` as UTF-8 bytes (see :func:`response_chunks`).

    Raises:
        UnwritableValue: propagated from the code producing ``result``.
    """
    return "".join(response_chunks(method, result)).encode("utf-8")


def result_element(method: str, content: str) -> str:
    """``<{method}Result>content</{method}Result>`` with ``content`` already escaped."""
    return f"<{method}Result>{content}</{method}Result>"


def fault_bytes(faultcode: str, faultstring: str, details: Iterable[str] = ()) -> bytes:
    """A SOAP 1.1 fault exactly as ``%SOAP.WebService.Fault`` writes it (§5).

    ``faultcode`` is the bare code (``Client``, ``Server``, ``VersionMismatch``); the
    ``SOAP-ENV:`` prefix is added here.  Each entry of ``details`` becomes one
    ``<text>`` inside ``<detail><error xmlns='http://pki.intersystems.com'>``; with none,
    no ``<detail>`` is written.
    """
    lines = [
        "<?xml version='1.0' encoding='UTF-8' standalone='no' ?>",
        f"<SOAP-ENV:Envelope {_ENVELOPE_ATTRIBUTES} >",
        "  <SOAP-ENV:Body>",
        "    <SOAP-ENV:Fault>",
        f"      <faultcode>SOAP-ENV:{_escape_fault_text(faultcode)}</faultcode>",
        f"      <faultstring>{_escape_fault_text(faultstring)}</faultstring>",
    ]
    texts = list(details)
    if texts:
        lines.append("      <detail>")
        lines.append(f"    <error xmlns='{SERVICE_NS}'>")
        lines.extend(f"     <text>{_escape_fault_text(text)}</text>" for text in texts)
        lines.append("    </error>")
        lines.append("</detail>")
    lines += ["    </SOAP-ENV:Fault>", "  </SOAP-ENV:Body>", "</SOAP-ENV:Envelope>", ""]
    return CRLF.join(lines).encode("utf-8")


def fault_status(faultcode: str) -> str:
    """The HTTP status IRIS answers a fault with: 400 for ``Client``, 500 otherwise."""
    if faultcode == "Client" or faultcode.startswith("Client."):
        return "400 Bad Request"
    return "500 Internal Server Error"
