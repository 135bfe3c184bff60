"""Python suds-community client driven from the CAServer ?WSDL; prints one JSON object per call.

    python suds_client.py get    WSDL_URL NUMBER
    python suds_client.py submit WSDL_URL CSR_PEM_FILE HOSTNAME INSTANCE FILENAME CONTACT [SUBJECT]
    python suds_client.py list   WSDL_URL [HOSTNAME INSTANCE]

A SOAP fault prints {"fault": {...}} and exits with 3; a usage error exits with 2.  Over HTTPS
the server is verified against the CA certificate file named by $INTEROP_CA_FILE alone (host
name included), through a suds transport whose urllib opener carries that SSL context.

suds cannot load the WSDL as served: the DataSet type is ``<s:element ref="s:schema"/><s:any/>``
and suds has no definition of the XML Schema ``schema`` element (``TypeNotFound: (schema,
http://www.w3.org/2001/XMLSchema, )``).  The usual fix, ``ImportDoctor`` importing the XML Schema
namespace, downloads XMLSchema.xsd from the W3C at every start; instead the plugin below turns
that reference into ``<s:any/>`` in suds' in-memory copy of the WSDL.  suds then returns the
DataSet as a generic object tree (one row: an object; several: a list), so the rows are read
from the raw reply (captured by a MessagePlugin; ``client.last_received()`` is a re-printed copy
that drops the ``xmlns=""`` declarations) and the generic tree is only cross-checked.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from suds import WebFault
from suds.client import Client
from suds.plugin import DocumentPlugin, MessagePlugin
from suds.transport.https import HttpTransport

XSD = "http://www.w3.org/2001/XMLSchema"
MSDATA = "urn:schemas-microsoft-com:xml-msdata"
DIFFGR = "urn:schemas-microsoft-com:xml-diffgram-v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "http://pki.intersystems.com"
TIMEOUT = 20


class SchemaRefAsAny(DocumentPlugin):  # type: ignore[misc]
    """Replaces ``<s:element ref="s:schema"/>`` by ``<s:any/>`` in the parsed WSDL."""

    def parsed(self, context: Any) -> None:
        """suds hook: called with each WSDL/XSD document it has parsed."""
        self._rewrite(context.document)

    def _rewrite(self, node: Any) -> None:
        for child in node.getChildren():
            ref = child.get("ref")
            if child.name == "element" and child.namespace()[1] == XSD and ref:
                prefix, _, local = ref.rpartition(":")
                if local == "schema" and child.resolvePrefix(prefix)[1] == XSD:
                    child.rename("any")
                    child.unset("ref")
            self._rewrite(child)


class VerifiedHttps(HttpTransport):  # type: ignore[misc]
    """suds' HTTP transport, its HTTPS verified against one CA certificate file."""

    def __init__(self, ca_file: str, **options: Any) -> None:
        self._context = ssl.create_default_context(cafile=ca_file)
        super().__init__(**options)

    def u2handlers(self) -> list[Any]:
        """suds hook: the urllib handlers of its opener (ours replaces the default HTTPS one)."""
        handlers: list[Any] = super().u2handlers()
        return [*handlers, urllib.request.HTTPSHandler(context=self._context)]


class RawReply(MessagePlugin):  # type: ignore[misc]
    """Keeps the last reply exactly as received."""

    reply: bytes = b""

    def received(self, context: Any) -> None:
        """suds hook: called with the raw reply before it is parsed."""
        self.reply = context.reply


def _emit(value: object, code: int = 0) -> None:
    print(json.dumps(value))
    raise SystemExit(code)


def _usage() -> None:
    print("usage: suds_client.py get|submit|list WSDL_URL ...", file=sys.stderr)
    raise SystemExit(2)


def dataset_from_envelope(reply: bytes) -> dict[str, Any]:
    """Row name, columns (schema order) and rows of the DataSet in a ListCertificates reply."""
    envelope = ET.fromstring(reply)
    body = envelope.find(f"{{{SOAP_ENV}}}Body")
    result = None if body is None else body.find(f".//{{{TNS}}}ListCertificatesResult")
    if result is None:
        raise ValueError("no ListCertificatesResult in the reply")
    schema, diffgram = list(result)
    if schema.tag != f"{{{XSD}}}schema" or diffgram.tag != f"{{{DIFFGR}}}diffgram":
        raise ValueError("ListCertificatesResult is not schema + diffgram")
    dataset = next(
        e for e in schema.iter(f"{{{XSD}}}element") if e.get(f"{{{MSDATA}}}IsDataSet") == "true"
    )
    row = dataset.find(f"{{{XSD}}}complexType/{{{XSD}}}choice/{{{XSD}}}element")
    if row is None:
        raise ValueError("no row element in the DataSet schema")
    sequence = f"{{{XSD}}}complexType/{{{XSD}}}sequence/{{{XSD}}}element"
    columns = [column.get("name") for column in row.iterfind(sequence)]
    rows = []
    # No namespace: <DefaultDataSet xmlns=""> undoes the response wrapper's default namespace.
    for data in diffgram.iterfind(dataset.get("name", "")):
        for element in data:
            if element.tag != row.get("name"):
                raise ValueError(f"unexpected row element {element.tag}")
            rows.append({cell.tag: cell.text or "" for cell in element})
    return {"row_name": row.get("name"), "columns": columns, "rows": rows}


def rows_from_result(result: Any, row_name: str) -> list[dict[str, str]]:
    """The rows as suds' generic object tree holds them."""
    data = getattr(getattr(result, "diffgram", None), "DefaultDataSet", None)
    found = getattr(data, row_name, None)
    if found is None:
        return []
    items = found if isinstance(found, list) else [found]
    return [{key: str(value) for key, value in item if not key.startswith("_")} for item in items]


def main(argv: list[str]) -> None:
    """Run one command against the service described by the WSDL URL."""
    if len(argv) < 2:
        _usage()
    command, wsdl, *args = argv
    raw = RawReply()
    options: dict[str, Any] = {}
    ca_file = os.environ.get("INTEROP_CA_FILE")
    if ca_file:
        options["transport"] = VerifiedHttps(ca_file, timeout=TIMEOUT)
    client = Client(wsdl, cache=None, timeout=TIMEOUT, plugins=[SchemaRefAsAny(), raw], **options)
    try:
        if command == "get":
            if len(args) != 1:
                _usage()
            cert = client.service.GetCertificate(args[0])
            # An unknown number comes back as a wrapper without a Result element.
            fields = None if cert is None else {key: str(value) for key, value in cert}
            _emit({"certificate": fields})
        elif command == "submit":
            if not 5 <= len(args) <= 6:
                _usage()
            csr_file, hostname, instance, filename, contact = args[:5]
            csr = client.factory.create("CSR")
            csr.Name = f"{hostname}:{instance}:{filename}"
            csr.Hostname = hostname
            csr.Instance = instance
            csr.Filename = filename
            csr.Contents = Path(csr_file).read_text()
            csr.ContactName = contact
            if len(args) == 6:
                csr.Subject = args[5]
            _emit({"result": str(client.service.SubmitCSR(csr))})
        elif command == "list":
            if len(args) == 2:
                result = client.service.ListCertificates(args[0], args[1])
            elif not args:
                # "All certificates": both parameters omitted, as an IRIS client does.
                result = client.service.ListCertificates()
            else:
                _usage()
            dataset = dataset_from_envelope(raw.reply)
            dataset["typed_rows"] = rows_from_result(result, dataset["row_name"])
            _emit(dataset)
        else:
            _usage()
    except WebFault:
        _emit(_fault(raw.reply), 3)
    except Exception as exc:
        # suds raises WebFault only for HTTP 500; IRIS (and we) answer a Client fault with 400,
        # which suds reports as Exception((400, 'Bad Request')) after handing the body to plugins.
        if not (exc.args and isinstance(exc.args[0], tuple) and raw.reply):
            raise
        _emit(_fault(raw.reply), 3)


def _fault(reply: bytes) -> dict[str, object]:
    """faultcode, faultstring and the detail's text of the SOAP 1.1 fault in ``reply``."""
    fault = ET.fromstring(reply).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    if fault is None:
        raise ValueError("the reply holds no SOAP fault")
    detail = fault.find("detail")
    return {
        "fault": {
            "faultcode": fault.findtext("faultcode"),
            "faultstring": fault.findtext("faultstring"),
            "detail": None if detail is None else "".join(detail.itertext()).strip(),
        }
    }


if __name__ == "__main__":
    main(sys.argv[1:])
