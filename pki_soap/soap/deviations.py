"""Where this server differs from IRIS on purpose: :data:`DEVIATIONS`, one entry per place.

The README's table says the same, word for word; ``serve --strict-iris`` switches each entry
that can be switched to IRIS's behaviour (the rules themselves live in
:mod:`pki_soap.soap.protocol`, the front and the CA server's tasks), and the exchange
recorder cites the entries when it notes what IRIS would have done.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deviation:
    """One place where this server behaves differently from IRIS on purpose.

    ``kept`` says why ``--strict-iris`` keeps our behaviour; it is empty for the deviations
    that strict mode switches to IRIS's.  The README's table says the same, word for word.
    """

    key: str
    topic: str
    ours: str
    iris: str
    kept: str = ""

    @property
    def switchable(self) -> bool:
        """True when ``--strict-iris`` switches this one to IRIS's behaviour."""
        return not self.kept


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "no-soapaction",
        "A request without a SOAPAction header",
        "routed by its body element",
        "not taken as SOAP: it is the web service's test page, which needs the %Development"
        " privilege, so the caller gets an HTML error page, no SOAP answer",
    ),
    Deviation(
        "list-order",
        "Order of the ListCertificates rows",
        "numeric, so the newest certificate is always last",
        'Number sorted as text: "10" before "9"',
    ),
    Deviation(
        "csr-check",
        "The CSR in SubmitCSR",
        "checked before anything is stored (one PEM CSR, valid signature, RSA >= 2048 or"
        " EC/Ed25519, the issuance policy) and stored as canonical PEM",
        "stored as received; checked only when the administrator issues",
    ),
    Deviation(
        "csr-unknown-element",
        "An unknown element inside csr",
        "dropped and logged (older and newer clients differ: Subject)",
        "Client fault `Unexpected tag in XML input: <name>`",
    ),
    Deviation(
        "soap12",
        "A SOAP 1.2 envelope",
        "VersionMismatch fault",
        "answered in SOAP 1.2",
        kept="IRIS's SOAP 1.2 bytes are not known, and its WSDL offers SOAP 1.1 only",
    ),
    Deviation(
        "doctype",
        "A DOCTYPE in the request",
        "Client fault",
        "not known",
        kept="a DTD can expand entities or reach for external files",
    ),
    Deviation(
        "body-limit",
        "A request body over the limit (`--max-body`, 256 KiB)",
        "HTTP 413 with a Client fault",
        "no limit known",
        kept="a CSR is a few KB; an unbounded body is a denial of service",
    ),
    Deviation(
        "field-checks",
        "Control characters in a field, a Filename that is not a file-name root",
        "Client fault at SubmitCSR",
        "stored",
        kept="these values reach terminals, e-mail headers and the clients' file names",
    ),
    Deviation(
        "submission-limits",
        "Submissions from one address, pending requests",
        "at most 20 a minute per address, 1000 pending, 50 per Hostname: Server fault"
        " `ERROR #8140` beyond",
        "no limit known",
        kept="an anonymous flood would fill the store and the administrator's mailbox",
    ),
    Deviation(
        "contact-email",
        "ContactEmail",
        "one address, or a value without `@` (kept, never mailed); a list is a Client fault",
        "stored as sent",
        kept="a notice goes to one person",
    ),
)


def deviation(key: str) -> Deviation:
    """The entry of :data:`DEVIATIONS` called ``key``.

    Raises:
        KeyError: no such deviation.
    """
    for entry in DEVIATIONS:
        if entry.key == key:
            return entry
    raise KeyError(key)
