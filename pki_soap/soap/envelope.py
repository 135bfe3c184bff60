"""The IRIS byte layout of SOAP 1.1 responses and faults (wire-protocol.md §1.2 and §5).

lxml cannot write these bytes (CR LF line ends, single-quoted envelope attributes, the space
before ``>`` of a fault's envelope), so they are written here by hand, as text.  A response is
encoded into a spooled temporary file as it is written (memory while small, an unnamed
temporary file beyond that), so a long ListCertificates answer is never held twice and a
failure while writing can still become a fault before any header is sent.  Nothing in this
module knows spyne: the protocol (:mod:`pki_soap.soap.protocol`) hands in plain strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from tempfile import SpooledTemporaryFile

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

# One search decides the common case: a value with none of these is written as it is.
_NEEDS_CARE = re.compile("[&<>\"'\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

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
    if _NEEDS_CARE.search(value) is None:
        return value
    if _NOT_XML.search(value):
        raise UnwritableValue("a value holds a character XML 1.0 cannot carry")
    return value.translate(_ESCAPE_ALL)


def is_plain(text: str) -> bool:
    """True when ``text`` can be written as it is: nothing to escape, nothing XML forbids."""
    return _NEEDS_CARE.search(text) is None


def _escape_fault_text(value: str) -> str:
    # The §5 layout shows quotes left as they are inside <faultstring> and <text>
    # (``extent 'PKI.CSR'``); only markup characters are escaped there.
    return _NOT_XML.sub("?", value).translate(_ESCAPE_MARKUP)


def response_chunks(method: str, result: Iterable[str] | None) -> Iterator[str]:
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


#: Answers up to this size stay in memory; a longer one continues in a temporary file.
SPOOL_MEMORY_LIMIT = 1024 * 1024
# Text is encoded and written in pieces of about this many characters.
_ENCODE_BATCH = 64 * 1024


def spool_response(
    method: str,
    result: Iterable[str] | None,
    *,
    memory_limit: int = SPOOL_MEMORY_LIMIT,
) -> SpooledTemporaryFile[bytes]:
    """The success envelope for ``method`` (:func:`response_chunks`), encoded as written.

    The bytes go into a :class:`~tempfile.SpooledTemporaryFile`: in memory up to
    ``memory_limit`` bytes, beyond that all in an unnamed temporary file (``TMPDIR``), so a
    long answer exists once, mostly on disk.  It is returned at its end (``tell()`` is its
    length); on failure it is closed and nothing is kept.

    Raises:
        UnwritableValue: propagated from the code producing ``result``.
        OSError: the temporary file cannot be written (disk full).
    """
    spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=memory_limit)
    try:
        pending: list[str] = []
        waiting = 0
        for text in response_chunks(method, result):
            pending.append(text)
            waiting += len(text)
            if waiting >= _ENCODE_BATCH:
                spool.write("".join(pending).encode("utf-8"))
                pending.clear()
                waiting = 0
        spool.write("".join(pending).encode("utf-8"))
    except BaseException:
        spool.close()
        raise
    return spool


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
