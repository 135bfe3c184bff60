"""The IRIS byte layout of SOAP 1.1 responses and faults (wire-protocol.md §1.2 and §5).

lxml cannot write these bytes (CR LF line ends, single-quoted envelope attributes, the space
before ``>`` of a fault's envelope), so they are written here by hand, as text.  A response is
encoded into a :class:`SpooledAnswer` as it is written (memory while small, an unnamed
temporary file beyond that), so a long ListCertificates answer is never held twice and a
failure while writing can still become a fault before any header is sent.  Nothing in this
module knows spyne: the protocol (:mod:`pki_soap.soap.protocol`) hands in plain strings.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

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


def response_bytes(method: str, result: Iterable[str] | None) -> bytes:
    """The success envelope for ``method`` as UTF-8 bytes (see :func:`response_chunks`).

    Raises:
        UnwritableValue: propagated from the code producing ``result``.
    """
    return "".join(response_chunks(method, result)).encode("utf-8")


#: Answers up to this size stay in memory; a longer one continues in a temporary file.
SPOOL_MEMORY_LIMIT = 1024 * 1024
# Text is encoded in pieces of about this many characters (and file blocks are this size).
_ENCODE_BATCH = 64 * 1024


class SpooledAnswer:
    """An answer's UTF-8 bytes, encoded as they are written, of known length when complete.

    Text handed to :meth:`write` is encoded in pieces of about 64 KiB.  The bytes stay in
    memory up to ``memory_limit``; beyond it they all move to an unnamed temporary file
    (``tempfile.TemporaryFile``, honouring ``TMPDIR``), so the answer exists once, as bytes,
    and mostly on disk.  After :meth:`finish`, ``len()`` is its size in bytes and the
    bytes are read back with :meth:`blocks` (or, on disk, :attr:`file` for
    ``wsgi.file_wrapper``).  :meth:`close` releases the file; it is idempotent.
    """

    def __init__(self, memory_limit: int = SPOOL_MEMORY_LIMIT) -> None:
        self._memory_limit = memory_limit
        self._text: list[str] = []
        self._text_length = 0
        self._memory: list[bytes] = []
        self._size = 0
        self._file: IO[bytes] | None = None
        self._finished = False

    def write(self, text: str) -> None:
        """Add ``text`` to the answer.

        Raises:
            OSError: the temporary file cannot be created or written (disk full).
            ValueError: the answer is already finished or closed.
        """
        if self._finished:
            raise ValueError("the answer is already finished")
        self._text.append(text)
        self._text_length += len(text)
        if self._text_length >= _ENCODE_BATCH:
            self._encode()

    def write_all(self, texts: Iterable[str]) -> None:
        """Add each of ``texts`` to the answer, in order (as :meth:`write` does).

        Raises:
            OSError: the temporary file cannot be created or written (disk full).
            ValueError: the answer is already finished or closed.
        """
        if self._finished:
            raise ValueError("the answer is already finished")
        pending = self._text
        for text in texts:
            pending.append(text)
            self._text_length += len(text)
            if self._text_length >= _ENCODE_BATCH:
                self._encode()

    def _encode(self) -> None:
        data = "".join(self._text).encode("utf-8")
        self._text.clear()
        self._text_length = 0
        self._size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._memory.append(data)
        if self._size > self._memory_limit:
            self._file = tempfile.TemporaryFile()
            for block in self._memory:
                self._file.write(block)
            self._memory.clear()

    def finish(self) -> SpooledAnswer:
        """Encode what is left and make the answer readable from its start; returns it.

        Raises:
            OSError: the temporary file cannot be written (disk full).
        """
        if not self._finished:
            if self._text:
                self._encode()
            if self._file is not None:
                self._file.flush()
                self._file.seek(0)
            self._finished = True
        return self

    @property
    def in_memory(self) -> bool:
        """True while the whole answer is held in memory (no temporary file)."""
        return self._file is None

    @property
    def file(self) -> IO[bytes] | None:
        """The temporary file holding the finished answer (at its start), or None in memory."""
        return self._file

    def memory_blocks(self) -> list[bytes]:
        """The finished answer's bytes when it is held in memory (else an empty list)."""
        return self._memory

    def blocks(self, size: int = _ENCODE_BATCH) -> Iterator[bytes]:
        """The finished answer's bytes, in memory blocks or file blocks of ``size`` bytes.

        Raises:
            OSError: the temporary file cannot be read.
        """
        if self._file is None:
            yield from self._memory
            return
        while block := self._file.read(size):
            yield block

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        """Drop the bytes and remove the temporary file, if any."""
        self._finished = True
        self._text.clear()
        self._memory.clear()
        if self._file is not None:
            self._file.close()


def spool_response(
    method: str,
    result: Iterable[str] | None,
    *,
    memory_limit: int = SPOOL_MEMORY_LIMIT,
) -> SpooledAnswer:
    """The success envelope for ``method`` (:func:`response_chunks`), finished and spooled.

    The bytes are the same as :func:`response_bytes` gives; on failure nothing is kept.

    Raises:
        UnwritableValue: propagated from the code producing ``result``.
        OSError: the temporary file cannot be written (disk full).
    """
    answer = SpooledAnswer(memory_limit)
    try:
        answer.write_all(response_chunks(method, result))
        return answer.finish()
    except BaseException:
        answer.close()
        raise


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
