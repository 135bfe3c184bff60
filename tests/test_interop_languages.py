"""Clients in other languages, each driven by our served ?WSDL, against a live server.

PHP ``SoapClient``, Node.js ``soap`` (npm, pinned in tests/interop/package-lock.json), Python
``suds-community`` and plain ``zeep`` each run as a separate program (tests/interop/) that
loads ``<url>?WSDL`` and prints JSON.  Every toolkit does the whole flow: GetCertificate("0"),
SubmitCSR, the administrator issues, ListCertificates (this host and all, with both arguments
omitted), GetCertificate(n).  How each reads the untyped DataSet is described in docs/interop.md.

Every test runs over plain HTTP and over HTTPS (the server certificate ``serve --tls`` makes),
each toolkit verifying the server against our CA certificate alone ($INTEROP_CA_FILE), host
name included; a server another CA vouches for, or one named otherwise, is refused.

With the exchange recorder on, each toolkit's requests (and our own client's) are
recorded and annotated with what is known of that toolkit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from pki_soap.ca import keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import build_csr, csr_pem, load_csr
from pki_soap.client.soap_client import CAClient
from pki_soap.errors import InvalidCsr
from pki_soap.server.tasks import CAServer
from pki_soap.soap.wsdl import SERVICE_PATH
from pki_soap.store import IRIS, TOOLKIT, Exchange, RecordLimits
from tests.conftest import CA_DIRECTORY, CA_INSTANCE, CA_NODE, CA_ROOT
from tests.engine_support import make_ca
from tests.service_support import https_context, live_server, wait_for_exchanges

INTEROP = Path(__file__).resolve().parent / "interop"
TIMEOUT = 120  # seconds for one toolkit call: WSDL download, one SOAP call, process start-up

# Not ASCII, so each toolkit's request encoding is checked too.
CONTACT = "Zoë Tester"

TOOLKITS = {
    "php": ["php", str(INTEROP / "php_client.php")],
    "node": ["node", str(INTEROP / "node_client.js")],
    "suds": [sys.executable, str(INTEROP / "suds_client.py")],
    "zeep": [sys.executable, str(INTEROP / "zeep_client.py")],
}


def toolkit_environment(ca_file: Path | None) -> dict[str, str]:
    """The toolkits' environment: $INTEROP_CA_FILE names the CA to trust over HTTPS."""
    env = {key: value for key, value in os.environ.items() if key != "INTEROP_CA_FILE"}
    if ca_file is not None:
        env["INTEROP_CA_FILE"] = str(ca_file)
    return env


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
    ca_file: Path | None = None
    """Over HTTPS: the CA certificate the toolkit trusts (and nothing else)."""

    def call(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one call as a process."""
        return subprocess.run(
            [*TOOLKITS[self.name], command, self.wsdl, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=INTEROP,
            env=toolkit_environment(self.ca_file),
            check=False,
        )

    def run(self, command: str, *args: str) -> dict[str, object]:
        """Run one call; return its JSON (a SOAP fault gives {"fault": ...})."""
        done = self.call(command, *args)
        assert done.returncode in (0, 3), f"{self.name} {command} failed:\n{done.stderr}"
        result: dict[str, object] = json.loads(done.stdout)
        return result

    def submit(
        self, csr: x509.CertificateSigningRequest, hostname: str, filename: str, *extra: str
    ) -> dict[str, object]:
        """SubmitCSR with the CSR written to a file, contact :data:`CONTACT`."""
        csr_file = self.work / f"{filename}.csr"
        csr_file.write_text(csr_pem(csr))
        return self.run("submit", str(csr_file), hostname, "IRIS", filename, CONTACT, *extra)


@dataclass(frozen=True)
class Service:
    """The SOAP service's URL and, over HTTPS, the CA certificate that vouches for it."""

    url: str
    ca_file: Path | None


@pytest.fixture(params=["http", "https"])
def service(
    request: pytest.FixtureRequest, configured_server: CAServer, data_dir: Path, ca_password: bytes
) -> Iterator[Service]:
    """The SOAP service on a live server over the configured CA's data directory."""
    if request.param == "http":
        with live_server(data_dir, portal=False) as base_url:
            yield Service(base_url + SERVICE_PATH, None)
        return
    context = https_context(data_dir, ca_password)
    with live_server(data_dir, portal=False, ssl_context=context) as base_url:
        yield Service(base_url + SERVICE_PATH, data_dir / CA_DIRECTORY / f"{CA_ROOT}.cer")


@pytest.fixture(params=sorted(TOOLKITS), ids=sorted(TOOLKITS))
def toolkit(
    request: pytest.FixtureRequest, service: Service, node_modules: Path, tmp_path: Path
) -> Toolkit:
    """Each foreign toolkit, pointed at ``<service>?WSDL``."""
    return Toolkit(request.param, service.url + "?WSDL", tmp_path, service.ca_file)


def _csr(subject: str, sans: str = "") -> tuple[keys.PrivateKey, x509.CertificateSigningRequest]:
    key = keys.generate_key(keys.KeyType.EC256)
    return key, build_csr(key, names.subject_from_text(subject), names.parse_sans(sans))


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
    assert load_csr(pending.contents) == csr
    assert pending_list["rows"] == []
    assert mine["row_name"] == "ListMy"
    assert mine["columns"] == ["Number", "Filename"]
    assert mine["rows"] == [{"Number": str(issued.number), "Filename": filename}]
    assert everything["row_name"] == "ListAll"
    assert everything["columns"] == ["Number", "Hostname", "Instance", "Filename"]
    # Over HTTPS the server's own certificate (number 1, Filename https) is listed first.
    server_row = {"Number": "1", "Hostname": "127.0.0.1", "Instance": CA_INSTANCE}
    assert everything["rows"] == [
        *([{**server_row, "Filename": "https"}] if toolkit.ca_file else []),
        {
            "Number": str(issued.number),
            "Hostname": hostname,
            "Instance": "IRIS",
            "Filename": filename,
        },
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


# What each toolkit says when it refuses (PHP, Node.js and Python word it differently).
_REFUSALS = {
    "ca": ("certificate verify failed", "self-signed certificate in certificate chain"),
    "name": ("did not match expected", "is not in the cert's list", "IP address mismatch"),
}


@pytest.mark.parametrize("wrong", sorted(_REFUSALS))
def test_toolkit_refuses_a_server_it_cannot_verify(
    configured_server: CAServer,
    data_dir: Path,
    ca_password: bytes,
    node_modules: Path,
    tmp_path: Path,
    wrong: str,
) -> None:
    # Another CA to trust; or ours, for a server certificate that names another host.
    ca_file = data_dir / CA_DIRECTORY / f"{CA_ROOT}.cer"
    names_ = ("127.0.0.1",)
    if wrong == "ca":
        ca_file = make_ca(tmp_path).paths.cer
    else:
        names_ = ("ca.example",)
    context = https_context(data_dir, ca_password, names_)
    with live_server(data_dir, portal=False, ssl_context=context) as base_url:
        for name in sorted(TOOLKITS):
            toolkit = Toolkit(name, base_url + SERVICE_PATH + "?WSDL", tmp_path, ca_file)
            done = toolkit.call("get", "0")
            assert done.returncode not in (0, 3), f"{name} trusted the server: {done.stdout}"
            assert any(reason in done.stderr for reason in _REFUSALS[wrong]), (
                f"{name}: {done.stderr}"
            )


# -- the exchange recorder sees each toolkit ------------------------------------------------------

BOGUS_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
TNS_ACTION = "http://pki.intersystems.com/PKI.CAServer."
RECORDED_AS = {
    "php": ("PHP SoapClient", "PHP-SOAP/"),
    "node": ("Node.js soap", "node-soap/"),
    "suds": ("Python suds", "Python-urllib/"),
    "zeep": ("zeep", "Zeep/"),
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
    if name == "zeep":
        assert got.request.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<soap-env:")
        assert "zeep writes soap-env: and ns0: prefixes" in _notes(got, TOOLKIT)


def test_recorder_annotates_our_client(recorded_url: str, data_dir: Path) -> None:
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

    our_get, our_refused = wait_for_exchanges(data_dir, 2)
    _assert_get_and_refused_csr(our_get, our_refused, "pki-soap client_app.py (zeep)", "pki-soap/")
    assert ("SOAPAction", f"{TNS_ACTION}GetCertificate") in our_get.request_headers
