"""The CA client's pages against a live CA server (SOAP over real HTTP on a loopback port)."""

from __future__ import annotations

import datetime
import html
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.test import Client, TestResponse

from pki_soap import messages
from pki_soap.ca import fingerprints, keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import cert_pem
from pki_soap.portal import make_portal
from pki_soap.portal.auth import set_password
from pki_soap.server.tasks import CAServer
from pki_soap.wsgi import make_app
from tests.engine_support import make_ca
from tests.service_support import https_context, live_server

PORTAL_PASSWORD = "portal admin secret"


class Browser:
    """werkzeug's test client at 127.0.0.1, with the CSRF token taken from each form."""

    def __init__(self, app: object) -> None:
        self.client = Client(app)  # type: ignore[arg-type]
        self.environ = {"REMOTE_ADDR": "127.0.0.1"}

    def get(self, path: str) -> TestResponse:
        return self.client.get(path, environ_base=self.environ)

    def submit(self, path: str, data: dict[str, str]) -> TestResponse:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.get(path).text)
        assert found is not None
        return self.client.post(
            path, data={**data, "csrf_token": found.group(1)}, environ_base=self.environ
        )


def shown(response: TestResponse) -> list[str]:
    found = re.findall(r'class="(?:message|field-error)[^"]*"[^>]*>([^<]*)<', response.text)
    return [html.unescape(text) for text in found]


@pytest.fixture
def ca_url(configured_server: CAServer, data_dir: Path) -> Iterator[str]:
    """The configured CA server's full application on 127.0.0.1:<free port>."""
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, make_app(data_dir, portal=False), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def client_dir(tmp_path: Path) -> Path:
    """The data directory of a separate client instance (another host, in effect)."""
    path = tmp_path / "client-data"
    path.mkdir(mode=0o700)
    set_password(path, PORTAL_PASSWORD.encode())
    return path


def signed_in(client_dir: Path, server: str, port: str) -> Browser:
    b = Browser(make_portal(client_dir))
    b.submit("/login", {"password": PORTAL_PASSWORD, "next": "/"})
    response = b.submit(
        "/client/configure",
        {
            "server": server, "port": port, "path": "/isc/pki/PKI.CAServer.cls",
            "contact_name": "Carol", "contact_email": "carol@example.com",
            "hostname": "client.example", "instance": "IRIS",
        },
    )  # fmt: skip
    assert shown(response) == [messages.client_configured()]
    return b


def test_client_submits_gets_ca_and_certificate(
    ca_url: str, client_dir: Path, configured_server: CAServer, ca_password: bytes
) -> None:
    host, port = ca_url.split(":")
    b = signed_in(client_dir, host, port)

    response = b.submit(
        "/client/submit",
        {"root": "appserver", "key_type": "ec256", "organization": "Example",
         "common_name": "app.example", "sans": "DNS:app.example"},
    )  # fmt: skip
    assert response.status_code == 200
    (submitted,) = shown(response)
    csr = x509.load_pem_x509_csr((client_dir / "appserver.csr").read_bytes())
    assert submitted == messages.request_submitted(
        fingerprints.fingerprint(csr),
        messages.submission_sentence("appserver", "PKI", "ca.example"),
    )
    assert b"ENCRYPTED" not in (client_dir / "appserver.key").read_bytes()

    response = b.submit("/client/ca-certificate", {})
    ca_file = client_dir / "TestCA.cer"
    assert shown(response) == [
        messages.ca_certificate_saved(configured_server.authority().fingerprint, ca_file)
    ]
    assert b.get("/client/files/TestCA.cer").data == ca_file.read_bytes()

    issued = configured_server.issue("client.example:IRIS:appserver", Usage.TLS, ca_password)
    listing = b.get("/client/certificates")  # all: with host and instance columns
    assert re.findall(r"<tr>\s*<td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td>", listing.text) == [
        (str(issued.number), "client.example", "IRIS")
    ]
    listing = b.get("/client/certificates?show=mine")
    assert re.findall(r"<tr>\s*<td>(\d+)</td>", listing.text) == [str(issued.number)]
    response = b.submit("/client/certificates?show=mine", {"number": str(issued.number)})
    cert_file = client_dir / "appserver.cer"
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert shown(response) == [
        messages.certificate_saved(issued.number, fingerprints.fingerprint(cert), cert_file)
    ]
    assert 'href="/client/files/appserver.cer"' in response.text


def test_submit_with_key_password_and_duplicate_request(ca_url: str, client_dir: Path) -> None:
    host, port = ca_url.split(":")
    b = signed_in(client_dir, host, port)
    form = {
        "root": "encrypted", "password": "client key pw", "password_confirm": "client key pw",
        "key_type": "ec256", "common_name": "enc.example",
    }  # fmt: skip
    assert b.submit("/client/submit", form).status_code == 200
    assert b"ENCRYPTED" in (client_dir / "encrypted.key").read_bytes()
    response = b.submit("/client/submit", form)
    assert response.status_code == 400
    assert any("already exists" in text for text in shown(response))
    assert re.search(r'name="common_name" value="enc.example"', response.text)


def test_get_replaces_a_different_file_only_when_asked(
    ca_url: str, client_dir: Path, configured_server: CAServer
) -> None:
    host, port = ca_url.split(":")
    b = signed_in(client_dir, host, port)
    ca_file = client_dir / "TestCA.cer"
    ca_file.write_text(someone_elses_certificate())
    response = b.submit("/client/ca-certificate", {})
    assert response.status_code == 400
    (error,) = shown(response)
    assert 'tick "replace an existing file"' in error
    assert "--force" not in error
    response = b.submit("/client/ca-certificate", {"force": "yes"})
    assert response.status_code == 200
    assert ca_file.read_text() == configured_server.authority().certificate_pem


def someone_elses_certificate() -> str:
    """A self-signed certificate that is not the CA's."""
    key = keys.generate_key(keys.KeyType.EC256)
    name = names.subject_from_text("/CN=someone else")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, keys.signature_hash(key))
    )
    return cert_pem(cert)


def test_unreachable_server_is_said_on_the_page_and_nothing_is_kept(client_dir: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    b = signed_in(client_dir, "127.0.0.1", str(port))
    response = b.submit("/client/submit", {"root": "lost", "common_name": "lost.example"})
    assert response.status_code == 400
    (error,) = shown(response)
    assert f"127.0.0.1:{port}" in error
    assert not (client_dir / "lost.key").exists()
    assert not (client_dir / "lost.csr").exists()
    listing = b.get("/client/certificates")
    assert listing.status_code == 400
    assert f"127.0.0.1:{port}" in " ".join(shown(listing))


def test_client_pages_over_https_pin_the_ca_by_fingerprint(
    configured_server: CAServer, data_dir: Path, ca_password: bytes, client_dir: Path
) -> None:
    context = https_context(data_dir, ca_password)
    ca = configured_server.authority().certificate
    other = make_ca(client_dir.parent / "other").certificate
    with live_server(data_dir, portal=False, ssl_context=context) as url:
        b = Browser(make_portal(client_dir))
        b.submit("/login", {"password": PORTAL_PASSWORD, "next": "/"})
        configured = b.submit(
            "/client/configure",
            {
                "server": "127.0.0.1", "port": url.rpartition(":")[2], "tls": "yes",
                "path": "/isc/pki/PKI.CAServer.cls", "contact_name": "Carol",
            },
        )  # fmt: skip
        untrusted = b.get("/client/certificates")
        no_fingerprint = b.submit("/client/ca-certificate", {})
        wrong = b.submit("/client/ca-certificate", {"fingerprint": fingerprints.fingerprint(other)})
        malformed = b.submit("/client/ca-certificate", {"fingerprint": "E3:FB"})
        right = b.submit("/client/ca-certificate", {"fingerprint": fingerprints.fingerprint(ca)})
        page = b.get("/client/ca-certificate")
        listing = b.get("/client/certificates")

    assert shown(configured) == [messages.client_configured()]
    assert 'name="tls" value="yes" checked' in b.get("/client/configure").text
    assert "first enter, on the CA certificate page, the fingerprint" in untrusted.text
    assert no_fingerprint.status_code == 400
    assert "first enter, on the CA certificate page, the fingerprint" in shown(no_fingerprint)[0]
    assert wrong.status_code == 400 and "nothing was saved or pinned" in shown(wrong)[0]
    assert malformed.status_code == 400 and "has 2 bytes: a SHA-1" in shown(malformed)[0]
    assert shown(right) == [
        messages.ca_certificate_saved(fingerprints.fingerprint(ca), client_dir / "TestCA.cer")
    ]
    assert fingerprints.sha256_fingerprint(ca) in page.text
    assert x509.load_pem_x509_certificate((client_dir / "pinned-ca.pem").read_bytes()) == ca
    assert "<td>https</td>" in listing.text
