"""Clients in other languages, each driven by our served ?WSDL, against a live server.

PHP ``SoapClient``, Node.js ``soap`` (npm, pinned in tests/interop/package-lock.json) and Python
``suds-community`` each run as a separate program (tests/interop/) that loads
``<url>?WSDL`` and prints JSON.  Every toolkit does the whole flow: GetCertificate("0"),
SubmitCSR, the administrator issues, ListCertificates (this host and all, with both arguments
omitted), GetCertificate(n).  How each reads the untyped DataSet is described in docs/interop.md.
With the exchange recorder on, each toolkit's requests (and zeep's, plain and under our
client) are recorded and annotated with what is known of that toolkit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zeep
from cryptography import x509

from pki_soap import keys, names
from pki_soap.ca import Usage
from pki_soap.client import CAClient
from pki_soap.errors import InvalidCsr
from pki_soap.exchanges import IRIS, TOOLKIT, Exchange, RecordLimits
from pki_soap.server import CAServer
from pki_soap.service import SERVICE_PATH
from tests.conftest import CA_INSTANCE, CA_NODE, CA_ROOT
from tests.service_support import live_server, wait_for_exchanges

INTEROP = Path(__file__).resolve().parent / "interop"
TIMEOUT = 120  # seconds for one toolkit call: WSDL download, one SOAP call, process start-up

# Not ASCII, so each toolkit's request encoding is checked too.
CONTACT = "Zoë Tester"

TOOLKITS = {
    "php": ["php", str(INTEROP / "php_client.php")],
    "node": ["node", str(INTEROP / "node_client.js")],
    "suds": [sys.executable, str(INTEROP / "suds_client.py")],
}


def ensure_node_modules() -> Path:
    """tests/interop/node_modules, installed from the lock file (``npm ci``) when missing.

    Raises:
        subprocess.CalledProcessError: npm failed (no network to the npm registry?).
    """
    target = INTEROP / "node_modules"
    if not (target / "soap" / "package.json").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(INTEROP)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return target


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The Node.js client's dependencies, installed once per run."""
    return ensure_node_modules()


@dataclass(frozen=True)
class Toolkit:
    """One foreign client program and the service it talks to."""

    name: str
    wsdl: str
    work: Path

    def run(self, command: str, *args: str) -> dict[str, object]:
        """Run one call; return its JSON (a SOAP fault gives {"fault": ...})."""
        done = subprocess.run(
            [*TOOLKITS[self.name], command, self.wsdl, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=INTEROP,
            check=False,
        )
        assert done.returncode in (0, 3), f"{self.name} {command} failed:\n{done.stderr}"
        result: dict[str, object] = json.loads(done.stdout)
        return result

    def submit(
        self, csr: x509.CertificateSigningRequest, hostname: str, filename: str, *extra: str
    ) -> dict[str, object]:
        """SubmitCSR with the CSR written to a file, contact :data:`CONTACT`."""
        csr_file = self.work / f"{filename}.csr"
        csr_file.write_text(keys.csr_pem(csr))
        return self.run("submit", str(csr_file), hostname, "IRIS", filename, CONTACT, *extra)


@pytest.fixture
def service_url(configured_server: CAServer, data_dir: Path) -> Iterator[str]:
    """URL of the SOAP service on a live HTTP server over the configured CA's data directory."""
    with live_server(data_dir, portal=False) as base_url:
        yield base_url + SERVICE_PATH


@pytest.fixture(params=sorted(TOOLKITS), ids=sorted(TOOLKITS))
def toolkit(
    request: pytest.FixtureRequest, service_url: str, node_modules: Path, tmp_path: Path
) -> Toolkit:
    """Each foreign toolkit, pointed at ``<service>?WSDL``."""
    return Toolkit(request.param, service_url + "?WSDL", tmp_path)


def _csr(subject: str, sans: str = "") -> tuple[keys.PrivateKey, x509.CertificateSigningRequest]:
    key = keys.generate_key(keys.KeyType.EC256)
    return key, keys.build_csr(key, names.subject_from_text(subject), names.parse_sans(sans))


def _certificate(value: object) -> x509.Certificate:
    assert isinstance(value, dict)
    return x509.load_pem_x509_certificate(str(value["Contents"]).encode())


def test_toolkit_gets_ca_certificate_as_number_0(
    toolkit: Toolkit, configured_server: CAServer
) -> None:
    got = toolkit.run("get", "0")["certificate"]

    assert isinstance(got, dict)
    assert (got["Number"], got["Filename"], got["Instance"]) == ("0", CA_ROOT, CA_INSTANCE)
    assert got["Hostname"] == CA_NODE
    assert _certificate(got) == configured_server.authority().certificate


def test_toolkit_submit_issue_list_get(
    toolkit: Toolkit, configured_server: CAServer, ca_password: bytes
) -> None:
    hostname = f"{toolkit.name}-host.example"
    filename = f"{toolkit.name}_client"
    subject = f"/O=Interop/CN={hostname}"
    key, csr = _csr(subject, f"DNS:{hostname}")

    submitted = toolkit.submit(csr, hostname, filename, subject)
    pending = configured_server.request(f"{hostname}:IRIS:{filename}")
    pending_list = toolkit.run("list", hostname, "IRIS")
    issued = configured_server.issue(f"{hostname}:IRIS:{filename}", Usage.TLS, ca_password)
    mine = toolkit.run("list", hostname, "IRIS")
    everything = toolkit.run("list")
    got = toolkit.run("get", str(issued.number))["certificate"]

    assert submitted == {
        "result": f'Certificate Signing Request "{filename}" successfully submitted to the '
        f"Certificate Authority at instance {CA_INSTANCE} on node {CA_NODE}"
    }
    assert (pending.contact_name, pending.subject) == (CONTACT, subject)
    assert keys.load_csr(pending.contents) == csr
    assert pending_list["rows"] == []
    assert mine["row_name"] == "ListMy"
    assert mine["columns"] == ["Number", "Filename"]
    assert mine["rows"] == [{"Number": str(issued.number), "Filename": filename}]
    assert everything["row_name"] == "ListAll"
    assert everything["columns"] == ["Number", "Hostname", "Instance", "Filename"]
    assert everything["rows"] == [
        {
            "Number": str(issued.number),
            "Hostname": hostname,
            "Instance": "IRIS",
            "Filename": filename,
        }
    ]
    # What the toolkit's own object model made of the DataSet agrees with the raw XML.
    for listing in (pending_list, mine, everything):
        assert listing["typed_rows"] == listing["rows"]
    assert isinstance(got, dict)
    assert got == {
        "Number": str(issued.number),
        "Hostname": hostname,
        "Instance": "IRIS",
        "Filename": filename,
        "Contents": issued.contents,
        "Subject": subject,
    }
    certificate = _certificate(got)
    assert certificate.public_key() == key.public_key()
    certificate.verify_directly_issued_by(configured_server.authority().certificate)


def test_toolkit_lists_several_rows_newest_last(
    toolkit: Toolkit, configured_server: CAServer, ca_password: bytes
) -> None:
    hostname = f"{toolkit.name}-many.example"
    numbers = []
    for index in range(3):
        _, csr = _csr(f"/CN={hostname}")
        toolkit.submit(csr, hostname, f"file{index}")
        numbers.append(
            configured_server.issue(f"{hostname}:IRIS:file{index}", Usage.TLS, ca_password).number
        )

    listing = toolkit.run("list", hostname, "IRIS")

    assert listing["rows"] == [
        {"Number": str(n), "Filename": f"file{i}"} for i, n in enumerate(numbers)
    ]
    assert listing["typed_rows"] == listing["rows"]


def test_toolkit_gets_nothing_for_an_unknown_number(toolkit: Toolkit) -> None:
    assert toolkit.run("get", "424242") == {"certificate": None}


def test_toolkit_reads_a_client_fault(toolkit: Toolkit) -> None:
    bogus = toolkit.work / "bogus.csr"
    bogus.write_text(
        "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
    )

    answer = toolkit.run("submit", str(bogus), "bogus.example", "IRIS", "bogus", "Tester")

    fault = answer["fault"]
    assert isinstance(fault, dict)
    assert str(fault["faultcode"]).rpartition(":")[2] == "Client"
    assert fault["faultstring"] == "the CSR's PEM block is not valid base64"
    assert fault["detail"] == f"ERROR #8103: {fault['faultstring']}"


def test_toolkit_reads_a_server_fault(toolkit: Toolkit) -> None:
    _, csr = _csr("/CN=twice.example")
    first = toolkit.submit(csr, "twice.example", "twice")

    again = toolkit.submit(csr, "twice.example", "twice")

    assert "successfully submitted" in str(first["result"])
    fault = again["fault"]
    assert isinstance(fault, dict)
    assert str(fault["faultcode"]).rpartition(":")[2] == "Server"
    assert "ID key not unique for extent 'PKI.CSR'" in str(fault["faultstring"])
    assert fault["detail"] == f"ERROR #5805: {fault['faultstring']}"


# -- the exchange recorder sees each toolkit ------------------------------------------------------

BOGUS_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
TNS_ACTION = "http://pki.intersystems.com/PKI.CAServer."
RECORDED_AS = {
    "php": ("PHP SoapClient", "PHP-SOAP/"),
    "node": ("Node.js soap", "node-soap/"),
    "suds": ("Python suds", "Python-urllib/"),
}


@pytest.fixture
def recorded_url(configured_server: CAServer, data_dir: Path) -> Iterator[str]:
    """The SOAP service recording its exchanges."""
    with live_server(data_dir, portal=False, record=RecordLimits()) as base_url:
        yield base_url + SERVICE_PATH


def _notes(exchange: Exchange, kind: str) -> str:
    return "\n".join(note.text for note in exchange.notes if note.kind == kind)


def _assert_get_and_refused_csr(
    got: Exchange, refused: Exchange, toolkit: str, user_agent: str
) -> None:
    for exchange in (got, refused):
        assert exchange.user_agent is not None and exchange.user_agent.startswith(user_agent)
        assert f"Toolkit: {toolkit}." in _notes(exchange, TOOLKIT)
    assert (got.method, got.status, got.fault) == ("GetCertificate", 200, None)
    assert b"<Filename>" + CA_ROOT.encode() + b"</Filename>" in got.answer
    assert _notes(got, IRIS) == ""
    assert (refused.method, refused.status) == ("SubmitCSR", 400)
    assert refused.fault == "Client: the CSR's PEM block is not valid base64"
    assert "The CSR was refused: IRIS - stored as received" in _notes(refused, IRIS)


@pytest.mark.parametrize("name", sorted(TOOLKITS), ids=sorted(TOOLKITS))
def test_recorder_annotates_each_toolkit(
    name: str, recorded_url: str, node_modules: Path, tmp_path: Path, data_dir: Path
) -> None:
    toolkit = Toolkit(name, recorded_url + "?WSDL", tmp_path)
    bogus = tmp_path / "bogus.csr"
    bogus.write_text(BOGUS_CSR)

    assert toolkit.run("get", "0")["certificate"]
    assert "fault" in toolkit.run("submit", str(bogus), "rec.example", "IRIS", "rec", "Tester")

    got, refused = wait_for_exchanges(data_dir, 2)
    _assert_get_and_refused_csr(got, refused, *RECORDED_AS[name])
    unseen = "so your program will not see this faultstring"
    # Only suds reads faults from HTTP 500 alone: its program misses this Client fault's text.
    assert (unseen in _notes(refused, TOOLKIT)) == (name == "suds")
    if name == "php":
        assert ("SOAPAction", f'"{TNS_ACTION}SubmitCSR"') in refused.request_headers
        assert "PHP SoapClient quotes the SOAPAction" in _notes(refused, TOOLKIT)


def test_recorder_annotates_zeep_and_our_client(recorded_url: str, data_dir: Path) -> None:
    plain = zeep.Client(recorded_url + "?WSDL")  # type: ignore[no-untyped-call]
    assert plain.service.GetCertificate("0").Number == "0"
    with pytest.raises(zeep.exceptions.Fault, match="not valid base64"):
        plain.service.SubmitCSR(
            {
                "Name": "z:IRIS:z",
                "Hostname": "z.example",
                "Instance": "IRIS",
                "Filename": "z",
                "Contents": BOGUS_CSR,
                "ContactName": "Tester",
            }
        )
    with CAClient(recorded_url) as ours:
        assert ours.get_certificate(0) is not None
        with pytest.raises(InvalidCsr):
            ours.submit_csr(
                name="o:IRIS:o",
                hostname="o.example",
                instance="IRIS",
                filename="o",
                contents=BOGUS_CSR,
                subject="/CN=o",
                contact_name="Tester",
            )

    zeep_get, zeep_refused, our_get, our_refused = wait_for_exchanges(data_dir, 4)
    _assert_get_and_refused_csr(zeep_get, zeep_refused, "zeep", "Zeep/")
    assert zeep_get.request.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<soap-env:")
    assert "zeep writes soap-env: and ns0: prefixes" in _notes(zeep_get, TOOLKIT)
    _assert_get_and_refused_csr(our_get, our_refused, "pki-soap client_app.py (zeep)", "pki-soap/")
    assert ("SOAPAction", f"{TNS_ACTION}GetCertificate") in our_get.request_headers
