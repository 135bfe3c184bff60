"""SOAP request bodies as the real third-party (wget) client sends them (wire-protocol.md §3)."""

from __future__ import annotations

from xml.sax.saxutils import escape

ACTION = "http://pki.intersystems.com/PKI.CAServer."
CONTENT_TYPE = "text/xml; charset=utf-8"

_ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">\n'
    "  <soap:Body>\n{body}\n  </soap:Body>\n</soap:Envelope>\n"
)


def action(method: str) -> str:
    """The SOAPAction header value of ``method``."""
    return ACTION + method


def get_certificate(number: int | str) -> str:
    """A GetCertificate request body."""
    return _ENVELOPE.format(
        body='    <GetCertificate xmlns="http://pki.intersystems.com">\n'
        f"      <number>{number}</number>\n    </GetCertificate>"
    )


def list_certificates(hostname: str = "", instance: str = "") -> str:
    """A ListCertificates body; both empty is ListAll (the arguments are omitted)."""
    inner = ""
    if hostname or instance:
        inner = (
            f"\n      <hostname>{escape(hostname)}</hostname>"
            f"\n      <instance>{escape(instance)}</instance>\n    "
        )
    return _ENVELOPE.format(
        body=f'    <ListCertificates xmlns="http://pki.intersystems.com">{inner}</ListCertificates>'
    )


def submit_csr(*, name: str, hostname: str, instance: str, filename: str, contents: str) -> str:
    """A SubmitCSR body carrying the PEM ``contents``."""
    return _ENVELOPE.format(
        body='    <SubmitCSR xmlns="http://pki.intersystems.com">\n      <csr>\n'
        f"        <Name>{escape(name)}</Name>\n"
        f"        <Hostname>{escape(hostname)}</Hostname>\n"
        f"        <Instance>{escape(instance)}</Instance>\n"
        f"        <Filename>{escape(filename)}</Filename>\n"
        f"        <Contents>{escape(contents)}</Contents>\n"
        "        <Subject></Subject>\n"
        "        <ContactName>Bench Contact</ContactName>\n"
        "        <ContactPhone>555-0100</ContactPhone>\n"
        "        <ContactEmail>bench@example.com</ContactEmail>\n"
        "      </csr>\n    </SubmitCSR>"
    )
