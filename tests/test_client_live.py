"""The whole client_app.py flow against our live service: two data directories, like two hosts."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from pki_soap.ca import fingerprints, keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import build_csr, csr_pem, load_csr
from pki_soap.cli.client_app import main
from pki_soap.client.soap_client import CAClient, CertificateRow
from pki_soap.store import ClientConfig, Store
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
    password_file.chmod(0o600)  # one other users can read is pointed out on stderr
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
            "Certificate Authority Certificate"
            f" (SHA-1 Fingerprint: {fingerprints.fingerprint(ca_cert)})"
            f' saved in file "{ca_file}"\n'
        )

        done = client_app(
            client_dir, "submit", "--root", "web_client", "--subject",
            "/C=US/O=Example/CN=web.example", "--san", "DNS:web.example",
            "--password-file", str(password_file),
        )  # fmt: skip
        csr = load_csr((client_dir / "web_client.csr").read_bytes())
        assert done.stdout == (
            f"SHA-1 Fingerprint:\n{fingerprints.fingerprint(csr)},\n"
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
            f"Certificate number {issued.number}"
            f" (SHA-1 Fingerprint: {fingerprints.fingerprint(cert)})"
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
            csr = build_csr(key, names.subject_from_text(f"/CN=host{number}.example"))
            sentence = client.submit_csr(
                name=f"host.example:PKI:cert_{number}",
                hostname="host.example",
                instance="PKI",
                filename=f"cert_{number}",
                contents=csr_pem(csr),
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


# -- a newcomer's client: where it stands, changing one setting, the way forward -------------


def _cli(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), *args])
    out, err = capsys.readouterr()
    return code, out, err


def _configure(capsys: pytest.CaptureFixture[str], data_dir: Path, base_url: str) -> None:
    port = str(urlsplit(base_url).port)
    assert _cli(
        capsys, data_dir, "configure", "--server", "127.0.0.1", "--port", port,
        "--contact-name", "Pat Admin", "--hostname", "client.example", "--instance", "PKI",
    )[0] == 0  # fmt: skip


def _shown(data_dir: Path) -> list[str]:
    """``client_app.py`` with no command, as a user runs it."""
    return client_app(data_dir).stdout.splitlines()


def test_no_command_shows_where_the_client_stands_and_the_next_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    ca_password = configure_ca(server_dir)
    assert _shown(client_dir) == [
        f"Certificate Authority client, data directory {client_dir}",
        "Configuration:   none yet",
        "",
        "Next step: say where the CA server is and who the technical contact is:",
        '  python client_app.py configure --server HOST --port 52773 --contact-name "Your Name"'
        " [--contact-email you@example.com]",
    ]
    assert not client_dir.exists()  # looking created nothing

    with live_server(server_dir, portal=False) as base_url:
        _configure(capsys, client_dir, base_url)
        url = f"http://127.0.0.1:{urlsplit(base_url).port}{SERVICE_PATH}"
        shown = _shown(client_dir)
        assert shown[1:5] == [
            f"CA server:       {url} (answers)",
            "This client:     host client.example, instance PKI",
            "Contact:         Pat Admin",
            "CA certificate:  none saved",
        ]
        assert shown[-1] == "Next step: save the CA certificate: `python client_app.py get-ca`."

        assert _cli(capsys, client_dir, "get-ca")[0] == 0
        ca_file = client_dir / f"{CA_ROOT}.cer"
        ca_fingerprint = fingerprints.fingerprint(
            x509.load_pem_x509_certificate(ca_file.read_bytes())
        )
        shown = _shown(client_dir)
        assert shown[4] == f"CA certificate:  {ca_file} (SHA-1 {ca_fingerprint})"
        assert shown[-3:] == [
            "  none",
            "",
            "Next step: request a certificate: `python client_app.py submit --root NAME --subject"
            ' "/CN=client.example" --san DNS:client.example`.',
        ]

        assert _cli(capsys, client_dir, "submit", "--root", "web", "--common-name", "w")[0] == 0
        csr = load_csr((client_dir / "web.csr").read_bytes())
        shown = _shown(client_dir)
        assert shown[-3:] == [
            f"  web: CSR SHA-1 {fingerprints.fingerprint(csr)}; not issued yet"
            " (pending, or deleted by the CA administrator)",
            "",
            "Next step: read the CSR's SHA-1 fingerprint to the CA administrator and wait for the"
            " certificate (`python client_app.py` again shows it); if the request was deleted:"
            " `python client_app.py submit --root web --resubmit`.",
        ]

        with open_server(server_dir) as server:
            number = server.issue("client.example:PKI:web", Usage.TLS, ca_password).number
        shown = _shown(client_dir)
        assert shown[-3] == f"  web: issued as number {number}, not saved yet"
        assert (
            shown[-1] == f"Next step: save your certificate: `python client_app.py get {number}`."
        )

        assert _cli(capsys, client_dir, "get", str(number))[0] == 0
        cert = x509.load_pem_x509_certificate((client_dir / "web.cer").read_bytes())
        until = cert.not_valid_after_utc.strftime("%Y-%m-%d")
        assert _shown(client_dir)[-4:] == [
            "Requests and certificates:",
            f"  web: certificate number {number} saved, valid until {until}",
            "",
            "Next step: nothing to do; `python client_app.py list --all` shows every certificate"
            " of the CA.",
        ]
    shown = _shown(client_dir)  # the server is gone
    assert shown[1].startswith(f"CA server:       {url} (NO ANSWER: ")
    assert shown[-1] == (
        f"Next step: check that the CA server runs at {url} and that port "
        f"{urlsplit(url).port} is open to this host (`python client_app.py configure --server"
        " HOST --port PORT` fixes the address)."
    )
    assert _cli(capsys, client_dir, "show")[1].splitlines() == shown  # `show` is the same


def test_configure_changes_only_what_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "client"
    assert _cli(
        capsys, data_dir, "configure", "--server", "ca.example", "--port", "52773",
        "--contact-name", "Pat Admin", "--contact-phone", "555-0100", "--hostname", "web01",
    )[0] == 0  # fmt: skip
    code, out, err = _cli(capsys, data_dir, "configure", "--contact-email", "pat@example.com")
    assert (code, out, err) == (0, "Certificate Authority client successfully configured.\n", "")
    with Store.open(data_dir) as store:
        cfg = store.client_config()
    assert cfg == ClientConfig(
        server="ca.example",
        port=52773,
        path="/isc/pki/PKI.CAServer.cls",
        contact_name="Pat Admin",
        contact_phone="555-0100",
        contact_email="pat@example.com",
        hostname="web01",
        instance="PKI",
    )
    assert _cli(capsys, data_dir, "configure", "--contact-phone", "", "--port", "57772")[0] == 0
    with Store.open(data_dir) as store:
        changed = store.client_config()
    assert changed == dataclasses.replace(cfg, contact_phone=None, port=57772)

    code, out, err = _cli(capsys, data_dir, "configure")
    assert (code, out) == (2, "")
    assert err == (
        "error: give the settings to store (see configure --help); "
        "`python client_app.py show` shows the configuration\n"
    )


def test_resubmit_after_the_administrator_deleted_the_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    configure_ca(server_dir)
    with live_server(server_dir, portal=False) as base_url:
        _configure(capsys, client_dir, base_url)
        assert _cli(capsys, client_dir, "submit", "--root", "web", "--common-name", "w")[0] == 0
        key_before = (client_dir / "web.key").read_bytes()
        with open_server(server_dir) as server:
            deleted = server.delete_request("client.example:PKI:web")

        code, out, err = _cli(capsys, client_dir, "submit", "--root", "web", "--common-name", "w")
        assert (code, out) == (2, "")
        assert err == (
            f'error: "{client_dir / "web.key"}" exists (a key is never overwritten): to send '
            "that request again, e.g. after the CA administrator deleted it, run `python "
            "client_app.py submit --root web --resubmit`; for a new key, choose another --root\n"
        )
        code, out, err = _cli(capsys, client_dir, "submit", "--root", "web", "--resubmit")
        assert (code, err) == (0, "")
        csr = load_csr((client_dir / "web.csr").read_bytes())
        assert out.startswith(f"SHA-1 Fingerprint:\n{fingerprints.fingerprint(csr)},\n")
        assert "successfully submitted" in out
        assert (client_dir / "web.key").read_bytes() == key_before
        with open_server(server_dir) as server:
            again = server.request("client.example:PKI:web")
        assert again.contents == deleted.contents  # the same CSR, hence the same key

        # Still pending: the duplicate's exit code and the way forward.
        code, out, err = _cli(capsys, client_dir, "submit", "--root", "web", "--resubmit")
        assert (code, out) == (7, "")
        assert err.startswith('error: a request named "client.example:PKI:web" is already pending')
        with pytest.raises(SystemExit) as usage:
            main(["--data-dir", str(client_dir), "submit", "--root", "web", "--resubmit",
                  "--san", "DNS:x"])  # fmt: skip
        assert usage.value.code == 2
        assert "--resubmit sends <root>.csr as it is" in capsys.readouterr().err


def test_a_second_client_with_the_same_name_learns_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server_dir = tmp_path / "server"
    configure_ca(server_dir)
    first, second = tmp_path / "first", tmp_path / "second"
    with live_server(server_dir, portal=False) as base_url:
        _configure(capsys, first, base_url)
        _configure(capsys, second, base_url)  # the same host name and instance
        assert _cli(capsys, first, "submit", "--root", "web", "--common-name", "w")[0] == 0
        done = subprocess.run(
            [
                *(sys.executable, str(REPO / "client_app.py"), "--data-dir", str(second)),
                *("submit", "--root", "web", "--common-name", "w"),
            ],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert (done.returncode, done.stdout) == (7, "")
    assert done.stderr == (
        'error: a request named "client.example:PKI:web" is already pending at the CA (ID key '
        "not unique for extent 'PKI.CSR' : 'client.example:PKI:web' exists.); wait until the "
        "CA administrator issues or deletes it, or use another file name root (or, if another "
        "client uses this host name and instance, configure another --hostname or --instance)\n"
    )
    assert sorted(p.name for p in second.iterdir()) == ["pki.sqlite3"]  # no key left behind


def test_get_out_saves_where_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    ca_password = configure_ca(server_dir)
    with live_server(server_dir, portal=False) as base_url:
        _configure(capsys, client_dir, base_url)
        assert _cli(capsys, client_dir, "submit", "--root", "web", "--common-name", "w")[0] == 0
        with open_server(server_dir) as server:
            number = server.issue("client.example:PKI:web", Usage.TLS, ca_password).number
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        code, out, err = _cli(
            capsys, client_dir, "get", str(number), "--out", str(elsewhere / "mine.pem")
        )
        assert (code, err) == (0, "")
        assert out.endswith(f'saved in file "{elsewhere / "mine.pem"}"\n')
        assert _cli(capsys, client_dir, "get", str(number), "--out", str(elsewhere))[0] == 0
        assert _cli(capsys, client_dir, "get-ca", "--out", str(elsewhere))[0] == 0
    assert sorted(p.name for p in elsewhere.iterdir()) == [f"{CA_ROOT}.cer", "mine.pem", "web.cer"]
    assert (elsewhere / "mine.pem").read_bytes() == (elsewhere / "web.cer").read_bytes()
    assert not (client_dir / "web.cer").exists()
