"""The WSDL we serve: the packaged IRIS-faithful ``CAServer.wsdl`` with our own address in it.

spyne's generated WSDL is never served (its types and names are not IRIS's, and it would
take its address from the first request's Host header); the endpoint's address comes from
the public URL the server was started with.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit
from xml.sax.saxutils import quoteattr

from pki_soap.errors import InvalidInput, PkiError
from pki_soap.soap import WSDL_FILE

#: Where IRIS serves ``PKI.CAServer`` (and so do we).
SERVICE_PATH = "/isc/pki/PKI.CAServer.cls"
#: The IRIS web server's default port, in the address when no public URL is given.
DEFAULT_PORT = 52773

# The address attribute with its quotes (always double quotes, as the file has them).
_ADDRESS = re.compile(r'(<soap:address location=)"[^"]*"')


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


def load_wsdl(public_url: str | None = None) -> bytes:
    """The packaged WSDL (:data:`WSDL_FILE`) with its ``soap:address`` set from ``public_url``.

    Raises:
        InvalidInput: ``public_url`` is not usable (see :func:`endpoint_url`).
        PkiError: the WSDL file cannot be read.
    """
    location = quoteattr(endpoint_url(public_url), {'"': "&quot;"})
    try:
        text = WSDL_FILE.read_text(encoding="utf-8")
    except OSError as exc:
        raise PkiError(f"cannot read the WSDL file {WSDL_FILE}: {exc.strerror}") from exc
    text, count = _ADDRESS.subn(lambda m: m.group(1) + location, text)
    if count != 1:
        raise PkiError(f"the WSDL file {WSDL_FILE} has no single soap:address")
    return text.encode("utf-8")
