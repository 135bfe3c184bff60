"""What is known of a SOAP client's toolkit from its User-Agent, for the exchange recorder.

Each entry names a toolkit by the User-Agent it sends and says what matters when it talks to
an IRIS ``PKI.CAServer``; the facts come from the toolkits tried against this server
(docs/interop.md, tests/test_interop_languages.py) and from the wire contract.  A toolkit that
reads SOAP faults only from HTTP 500 (``faults_from_500_only``) never shows its program the
faultstring of a Client fault, which IRIS sends with HTTP 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Toolkit:
    """A SOAP client toolkit, known by its User-Agent."""

    name: str
    pattern: re.Pattern[str]
    facts: tuple[str, ...]
    faults_from_500_only: bool = False


def _toolkit(name: str, pattern: str, *facts: str, faults_from_500_only: bool = False) -> Toolkit:
    return Toolkit(name, re.compile(pattern), facts, faults_from_500_only)


TOOLKITS: tuple[Toolkit, ...] = (
    _toolkit(
        "pki-soap client_app.py (zeep)",
        r"^pki-soap/",
        "This project's own client: it sends what an InterSystems client sends (SOAPAction"
        " unquoted, text/xml; charset=UTF-8, qualified elements) and reads any fault.",
    ),
    _toolkit(
        "InterSystems PKI.CAClient",
        r"InterSystems IRIS|\bCache\b",
        "An InterSystems client: it sends xsi:type on every element and reads faults from"
        " HTTP 400 and 500.",
    ),
    _toolkit(
        "zeep",
        r"^Zeep/",
        "zeep writes soap-env: and ns0: prefixes and no xsi:type (IRIS accepts both) and"
        " reads faults from any HTTP status.",
        "zeep cannot type the untyped DataSet of ListCertificates: ask for the raw answer"
        " (Settings(raw_response=True)) and read the rows from it"
        " (pki_soap.soap.dataset.read_dataset does).",
    ),
    _toolkit(
        "PHP SoapClient",
        r"^PHP-SOAP/",
        "PHP SoapClient quotes the SOAPAction (IRIS removes the quotes) and gives the"
        " ListCertificates DataSet as two XML strings, ->schema and ->any.",
        "Faults arrive as SoapFault from HTTP 400 and 500; the ERROR #n detail text is only"
        " in __getLastResponse().",
    ),
    _toolkit(
        "Node.js soap",
        r"^node-soap/",
        "Node.js soap turns the DataSet into a generic object tree (one row: an object,"
        " several: an array); read the rows from the raw response.",
        "It posts to the WSDL's soap:address; client.setEndpoint(url) goes elsewhere.",
    ),
    _toolkit(
        "Python suds",
        r"^Python-urllib/",
        "Python urllib is what suds-community sends (other Python programs send it too).",
        "suds raises WebFault only for HTTP 500: for a Client fault (HTTP 400, as IRIS"
        " answers) it raises Exception((400, 'Bad Request')) and the faultstring reaches your"
        " program only through a MessagePlugin.",
        faults_from_500_only=True,
    ),
    _toolkit(
        "Ruby soap4r",
        r"SOAP4R",
        "soap4r reads SOAP faults only from HTTP 500.",
        faults_from_500_only=True,
    ),
    _toolkit(
        "Apache Axis 1.4",
        r"^Axis/1\.",
        "Axis 1.4 reads SOAP faults only from HTTP 500.",
        faults_from_500_only=True,
    ),
    _toolkit(
        "Perl SOAP::Lite",
        r"SOAP::Lite",
        'SOAP::Lite sends xsi:nil="true" on the ListCertificates element when it is called'
        " without arguments.",
    ),
    _toolkit(
        "Mono web services client",
        r"Mono Web Services Client Protocol",
        "Mono's proxy sends Expect: 100-continue; a proxy or web server in front of the CA"
        " must answer it.",
    ),
    _toolkit(
        ".NET web services client",
        r"MS Web Services Client Protocol",
        ".NET reads the untyped DataSet natively (it is .NET's own format).",
    ),
    _toolkit(
        "wget",
        r"^Wget/",
        "A wget script (like the public one written against IRIS) treats any answer but 2xx"
        " as a failure and saves no body for it: a fault's text never reaches it.",
    ),
    _toolkit(
        "curl",
        r"^curl/",
        "curl shows a fault's body with any status; add --fail to stop on HTTP 400/500.",
    ),
)


def identify(user_agent: str | None) -> Toolkit | None:
    """The toolkit that sends ``user_agent``, or None when it is unknown (or absent)."""
    if not user_agent:
        return None
    for toolkit in TOOLKITS:
        if toolkit.pattern.search(user_agent):
            return toolkit
    return None
