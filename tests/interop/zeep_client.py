"""Python zeep client driven from the CAServer ?WSDL; prints one JSON object per call.

    python zeep_client.py get    WSDL_URL NUMBER
    python zeep_client.py submit WSDL_URL CSR_PEM_FILE HOSTNAME INSTANCE FILENAME CONTACT [SUBJECT]
    python zeep_client.py list   WSDL_URL [HOSTNAME INSTANCE]

A SOAP fault prints {"fault": {...}} and exits with 3; a usage error exits with 2.  Over HTTPS
the server is verified against the CA certificate file named by $INTEROP_CA_FILE alone (host
name included); the environment's CA bundle variables are not consulted.

This is plain zeep with its typed parsing, not pki-soap's CAClient: zeep compiles the DataSet's
inline schema and returns the rows as objects ("typed_rows"); the rows are also read from the
raw reply with the same ElementTree reader as suds_client.py ("rows").
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import requests
import zeep
import zeep.helpers
from lxml import etree
from suds_client import dataset_from_envelope
from zeep.exceptions import Fault
from zeep.plugins import Plugin
from zeep.transports import Transport

TIMEOUT = 20


class RawReply(Plugin):  # type: ignore[misc]
    """Keeps the last reply envelope."""

    reply: bytes = b""

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        """zeep hook: called with each parsed reply."""
        self.reply = etree.tostring(envelope)
        return envelope, http_headers


def _emit(value: object, code: int = 0) -> None:
    print(json.dumps(value))
    raise SystemExit(code)


def _usage() -> None:
    print("usage: zeep_client.py get|submit|list WSDL_URL ...", file=sys.stderr)
    raise SystemExit(2)


def _session() -> requests.Session:
    session = requests.Session()
    ca_file = os.environ.get("INTEROP_CA_FILE")
    if ca_file:
        session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace verify
        session.verify = ca_file
    return session


def typed_rows(result: Any) -> list[dict[str, str]]:
    """The rows as zeep typed them from the inline schema: [{row name: {column: value}}]."""
    diffgram = zeep.helpers.serialize_object(result)["_value_1"]
    rows = (diffgram or {}).get("_value_1") or []
    return [{key: str(value) for key, value in next(iter(row.values())).items()} for row in rows]


def main(argv: list[str]) -> None:
    """Run one command against the service described by the WSDL URL."""
    if len(argv) < 2:
        _usage()
    command, wsdl, *args = argv
    raw = RawReply()
    transport = Transport(session=_session(), timeout=TIMEOUT, operation_timeout=TIMEOUT)
    client = zeep.Client(wsdl, transport=transport, plugins=[raw])
    try:
        if command == "get":
            if len(args) != 1:
                _usage()
            cert = client.service.GetCertificate(args[0])
            fields = None if cert is None else dict(zeep.helpers.serialize_object(cert))
            _emit({"certificate": fields})
        elif command == "submit":
            if not 5 <= len(args) <= 6:
                _usage()
            csr_file, hostname, instance, filename, contact = args[:5]
            csr = {
                "Name": f"{hostname}:{instance}:{filename}",
                "Hostname": hostname,
                "Instance": instance,
                "Filename": filename,
                "Contents": Path(csr_file).read_text(),
                "ContactName": contact,
            }
            if len(args) == 6:
                csr["Subject"] = args[5]
            _emit({"result": client.service.SubmitCSR(csr=csr)})
        elif command == "list":
            if len(args) == 2:
                result = client.service.ListCertificates(args[0], args[1])
            elif not args:
                # "All certificates": both parameters omitted, as an IRIS client does.
                result = client.service.ListCertificates()
            else:
                _usage()
            dataset = dataset_from_envelope(raw.reply)
            dataset["typed_rows"] = typed_rows(result)
            _emit(dataset)
        else:
            _usage()
    except Fault as fault:
        detail = None if fault.detail is None else "".join(fault.detail.itertext()).strip()
        _emit(
            {"fault": {"faultcode": fault.code, "faultstring": fault.message, "detail": detail}}, 3
        )


if __name__ == "__main__":
    main(sys.argv[1:])
