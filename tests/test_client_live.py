"""The whole client_app.py flow against our live service: two data directories, like two hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from pki_soap import keys, names
from pki_soap.ca import Usage
from pki_soap.client import CAClient, CertificateRow
from tests.engine_support import open_server, openssl_verify
from tests.service_support import CA_NODE, CA_ROOT, SERVICE_PATH, configure_ca, live_server

REPO = Path(__file__).resolve().parents[1]


def client_app(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PKI_KEY_PASSWORD"}
    done = subprocess.run(
        [sys.executable, str(REPO / "client_app.py"), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done


def test_configure_get_ca_submit_issue_list_get(tmp_path: Path) -> None:
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    ca_password = configure_ca(server_dir)
    password_file = tmp_path / "key-password"
    password_file.write_bytes(b"client key password\n")
    with live_server(server_dir, portal=False) as base_url:
        port = str(urlsplit(base_url).port)
        done = client_app(
            client_dir, "configure", "--server", "127.0.0.1", "--port", port,
            "--contact-name", "Pat Admin", "--hostname", "client.example", "--instance", "PKI",
        )  # fmt: skip
        assert done.stdout == "Certificate Authority client successfully configured.\n"

        done = client_app(client_dir, "get-ca")
        ca_file = client_dir / f"{CA_ROOT}.cer"
        ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        server_ca = server_dir / "CAServer" / f"{CA_ROOT}.cer"
        assert ca_cert == x509.load_pem_x509_certificate(server_ca.read_bytes())
        assert done.stdout == (
            f"Certificate Authority Certificate (SHA-1 Fingerprint: {names.fingerprint(ca_cert)})"
            f' saved in file "{ca_file}"\n'
        )

        done = client_app(
            client_dir, "submit", "--root", "web_client", "--subject",
            "/C=US/O=Example/CN=web.example", "--san", "DNS:web.example",
            "--password-file", str(password_file),
        )  # fmt: skip
        csr = keys.load_csr((client_dir / "web_client.csr").read_bytes())
        assert done.stdout == (
            f"SHA-1 Fingerprint:\n{names.fingerprint(csr)},\n"
            'Certificate Signing Request "web_client" successfully submitted to the '
            f"Certificate Authority at instance IRIS on node {CA_NODE}\n"
        )

        with open_server(server_dir) as server:
            issued = server.issue("client.example:PKI:web_client", Usage.TLS, ca_password)

        done = client_app(client_dir, "list")
        assert done.stdout.splitlines()[2].split() == [str(issued.number), "web_client"]
        done = client_app(client_dir, "list", "--all")
        assert done.stdout.splitlines()[2].split() == [
            str(issued.number), "client.example", "PKI", "web_client"
        ]  # fmt: skip

        done = client_app(client_dir, "get", str(issued.number))
        cert_file = client_dir / "web_client.cer"
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        assert done.stdout == (
            f"Certificate number {issued.number} (SHA-1 Fingerprint: {names.fingerprint(cert)})"
            f' saved in file "{cert_file}"\n'
        )
        key = keys.load_key((client_dir / "web_client.key").read_bytes(), b"client key password")
        assert keys.same_public_key(cert.public_key(), key.public_key())
        verified = openssl_verify(ca_file, cert_file, purpose="sslserver")
        assert verified.returncode == 0, verified.stderr


def test_caclient_against_the_live_service(tmp_path: Path) -> None:
    ca_password = configure_ca(tmp_path)
    with live_server(tmp_path, portal=False) as base_url:
        client = CAClient(base_url + SERVICE_PATH, timeout=10)
        assert client.list_certificates() == []
        for number in range(11):
            key = keys.generate_key(keys.KeyType.EC256)
            csr = keys.build_csr(key, names.subject_from_text(f"/CN=host{number}.example"))
            sentence = client.submit_csr(
                name=f"host.example:PKI:cert_{number}",
                hostname="host.example",
                instance="PKI",
                filename=f"cert_{number}",
                contents=keys.csr_pem(csr),
                subject=f"/CN=host{number}.example",
                contact_name="Pat",
            )
            assert "successfully submitted" in sentence
        with open_server(tmp_path) as server:
            numbers = [
                server.issue(f"host.example:PKI:cert_{n}", Usage.TLS, ca_password).number
                for n in range(11)
            ]
        assert client.wsdl_source == base_url + SERVICE_PATH + "?WSDL"
        rows = client.list_certificates("host.example", "PKI")
        assert rows == [CertificateRow(num, f"cert_{n}") for n, num in enumerate(numbers)]
        assert client.list_certificates("other", "PKI") == []
        remote = client.get_certificate(numbers[-1])
        assert remote is not None and remote.filename == "cert_10"
        assert client.get_certificate(0) is not None
        assert client.get_certificate(max(numbers) + 100) is None
