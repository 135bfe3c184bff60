"""``serve --tls``: HTTPS under real gunicorn, checked with the real ``openssl s_client``.

Also the server's own certificate (issued by its CA at first start, kept across restarts,
renewed when due, served anew without a restart), ``--certfile/--keyfile``, HSTS and Secure
cookies from the portal, and plain HTTP served beside HTTPS.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from pki_soap.ca import fingerprints, keys, names
from pki_soap.ca.authority import Usage
from pki_soap.cli.https_certificate import renewal_action
from pki_soap.cli.server_app import build_parser
from pki_soap.client.soap_client import CAClient
from pki_soap.errors import InvalidInput, ServerUnreachable
from pki_soap.server import tls
from tests.engine_support import CA_PASSWORD as ENGINE_CA_PASSWORD
from tests.engine_support import make_ca, make_csr, open_server, openssl_verify, write_pem
from tests.service_support import (
    ACTION,
    CA_PASSWORD,
    CA_ROOT,
    REPOSITORY,
    TNS,
    body_element,
    configure_ca,
    free_port,
    soap_post,
    wget_get_certificate,
)

WSDL_PATH = "/isc/pki/PKI.CAServer.cls?WSDL"
SOAP_ADDRESS = ".//{http://schemas.xmlsoap.org/wsdl/soap/}address"
START_TIMEOUT = 30.0


def _password_file(directory: Path, password: bytes = CA_PASSWORD) -> Path:
    path = directory / "ca.password"
    path.write_bytes(password + b"\n")
    path.chmod(0o600)
    return path


def _environment() -> dict[str, str]:
    # No CA password may come from the caller's environment: each test says where it is.
    return {key: value for key, value in os.environ.items() if not key.startswith("PKI_")}


@dataclass
class Served:
    """A ``serve --tls`` process (real gunicorn) and where it answers."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    http_port: int | None = None
    output: str = field(default="", init=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "CAServer" / f"{CA_ROOT}.cer"

    def stop(self) -> str:
        """SIGTERM it (once); its whole output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        if not self.output:
            self.output = self.process.communicate(timeout=30)[0].decode()
        return self.output


def _run_serve(
    data_dir: Path, port: int, *options: str | Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "server_app.py", "--data-dir", str(data_dir), "serve"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return subprocess.Popen(
        [*argv, *map(str, options)],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env if env is not None else _environment(),
    )


def serve_tls(data_dir: Path, *options: str | Path, http_port: int | None = None) -> Served:
    """``serve --tls OPTIONS`` on a free port, returned once it answers over HTTPS."""
    port = free_port()
    extra: list[str | Path] = ["--http-port", str(http_port)] if http_port else []
    served = Served(
        _run_serve(data_dir, port, "--tls", *options, *extra), data_dir, port, http_port
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if served.process.poll() is not None:
            raise AssertionError(f"serve --tls exited early:\n{served.stop()}")
        try:
            soap_post(served.url, b"", None, method="GET", path=WSDL_PATH, cafile=served.ca_file)
        except OSError:
            assert time.monotonic() < deadline, served.stop()
            time.sleep(0.1)
        else:
            return served


def s_client(port: int, *args: str | Path) -> str:
    """``openssl s_client -connect 127.0.0.1:PORT ARGS`` with nothing to send; its output."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *map(str, args)],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``serve --tls --tls-name localhost --http-port P`` for the read-only checks."""
    work = tmp_path_factory.mktemp("tls-serve")
    data_dir = work / "pki-data"
    configure_ca(data_dir)
    running = serve_tls(
        data_dir,
        "--password-file",
        _password_file(work),
        "--tls-name",
        "localhost",
        http_port=free_port(),
    )
    try:
        yield running
    finally:
        running.stop()


# -- protocol versions, ciphers, chain, host names (openssl s_client) ------------------------


@pytest.mark.parametrize(
    ("version", "accepted"),
    [("-tls1", False), ("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)],
    ids=["tls1.0", "tls1.1", "tls1.2", "tls1.3"],
)
def test_only_tls_1_2_and_1_3_are_spoken(served: Served, version: str, accepted: bool) -> None:
    # SECLEVEL=0 lets the client offer the old versions at all: the refusal is the server's.
    output = s_client(
        served.port, version, "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", served.ca_file
    )

    if accepted:
        assert "Verify return code: 0 (ok)" in output, output
        assert f"New, TLSv1.{version[-1]}, Cipher is " in output
    else:
        assert "alert protocol version" in output, output
        assert "Cipher is (NONE)" in output


@pytest.mark.parametrize(
    ("cipher", "accepted"),
    [
        ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
        ("ECDHE-ECDSA-AES256-SHA384", False),  # CBC
        ("AES128-GCM-SHA256", False),  # no forward secrecy
        ("AES128-SHA", False),
    ],
)
def test_tls_1_2_offers_only_forward_secret_aead_ciphers(
    served: Served, cipher: str, accepted: bool
) -> None:
    output = s_client(served.port, "-tls1_2", "-cipher", cipher, "-CAfile", served.ca_file)

    if accepted:
        assert f"Cipher is {cipher}" in output, output
    else:
        assert "alert handshake failure" in output, output


def test_the_chain_is_the_server_certificate_then_our_ca(served: Served) -> None:
    output = s_client(served.port, "-showcerts", "-CAfile", served.ca_file)

    sent = x509.load_pem_x509_certificates(output.encode())
    ca = x509.load_pem_x509_certificate(served.ca_file.read_bytes())
    assert "Verify return code: 0 (ok)" in output
    assert len(sent) == 2 and sent[1] == ca
    sent[0].verify_directly_issued_by(ca)
    san = sent[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.sans_text(list(san)) == "IP:127.0.0.1, DNS:localhost"
    assert sent[0].subject.rfc4514_string() == "CN=127.0.0.1"


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (["-verify_ip", "127.0.0.1"], "Verify return code: 0 (ok)"),
        (["-verify_hostname", "localhost"], "Verify return code: 0 (ok)"),
        (["-verify_hostname", "ca.example"], "Verify return code: 62 (hostname mismatch)"),
        (["-verify_ip", "127.0.0.2"], "Verify return code: 64 (IP address mismatch)"),
    ],
    ids=["ip", "tls-name", "wrong-name", "wrong-ip"],
)
def test_host_names_are_checked(served: Served, check: list[str], expected: str) -> None:
    assert expected in s_client(served.port, "-CAfile", served.ca_file, *check)


def test_another_ca_does_not_verify_the_server(served: Served, tmp_path: Path) -> None:
    other = make_ca(tmp_path)

    output = s_client(served.port, "-CAfile", other.paths.cer, "-verify_ip", "127.0.0.1")

    assert "Verify return code: 19 (self-signed certificate in certificate chain)" in output


# -- what is served over HTTPS and plain HTTP ------------------------------------------------


def test_wsdl_says_https_and_soap_answers_over_it(served: Served) -> None:
    wsdl = soap_post(served.url, b"", None, method="GET", path=WSDL_PATH, cafile=served.ca_file)
    answer = soap_post(
        served.url,
        wget_get_certificate("0"),
        ACTION + "GetCertificate",
        cafile=served.ca_file,
    )

    address = etree.fromstring(wsdl.body).find(SOAP_ADDRESS)
    assert address is not None
    assert address.get("location") == f"{served.url}/isc/pki/PKI.CAServer.cls"
    assert answer.status == 200
    contents = body_element(answer.body).findtext(
        f"{{{TNS}}}GetCertificateResult/{{{TNS}}}Contents"
    )
    assert contents is not None
    assert x509.load_pem_x509_certificate(contents.encode()) == x509.load_pem_x509_certificate(
        served.ca_file.read_bytes()
    )


def test_the_crl_is_served_over_https_too(served: Served) -> None:
    crl = soap_post(
        served.url, b"", None, method="GET", path=f"/isc/pki/crl/{CA_ROOT}.crl",
        cafile=served.ca_file,
    )  # fmt: skip

    assert crl.status == 200 and crl.headers["content-type"] == "application/pkix-crl"
    ca = x509.load_pem_x509_certificate(served.ca_file.read_bytes())
    assert x509.load_der_x509_crl(crl.body).is_signature_valid(ca.public_key())


def test_the_portal_sends_hsts_and_secure_cookies_over_https(served: Served) -> None:
    page = soap_post(served.url, b"", None, method="GET", path="/pki/login", cafile=served.ca_file)

    assert page.status == 200
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    cookie = page.headers["set-cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_plain_http_beside_serves_soap_and_wsdl_but_never_the_portal(served: Served) -> None:
    assert served.http_port is not None
    plain = f"http://127.0.0.1:{served.http_port}"

    wsdl = soap_post(plain, b"", None, method="GET", path=WSDL_PATH)
    answer = soap_post(plain, wget_get_certificate("0"), ACTION + "GetCertificate")
    portal = soap_post(plain, b"", None, method="GET", path="/pki/login")

    address = etree.fromstring(wsdl.body).find(SOAP_ADDRESS)
    assert address is not None
    assert address.get("location") == f"{plain}/isc/pki/PKI.CAServer.cls"
    assert answer.status == 200 and b"BEGIN CERTIFICATE" in answer.body
    assert portal.status == 404
    assert "strict-transport-security" not in portal.headers


def test_plain_http_to_the_https_port_gets_no_answer_and_our_client_says_why(
    served: Served,
) -> None:
    with pytest.raises(OSError):
        soap_post(f"http://127.0.0.1:{served.port}", wget_get_certificate("0"), ACTION)
    with CAClient(f"http://127.0.0.1:{served.port}/isc/pki/PKI.CAServer.cls") as client:
        with pytest.raises(
            ServerUnreachable,
            match=r"unreachable: the server closed the connection without an answer \(as an "
            r"HTTPS server does to plain HTTP: is the client configured for TLS\?\)",
        ):
            client.get_certificate(0)


# -- the server's own certificate: first start, restarts, renewal ----------------------------


def test_first_start_issues_a_certificate_that_later_starts_keep(tmp_path: Path) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    first = serve_tls(data_dir, "--password-file", _password_file(tmp_path))
    first_output = first.stop()
    files = tls.ServerFiles.of(data_dir)
    issued = files.cer.read_bytes()
    # No password this time: the certificate is fresh, so none is needed.
    again = serve_tls(data_dir)
    again_output = again.stop()

    assert "The HTTPS certificate must be issued: there is none yet." in first_output
    assert "HTTPS certificate number 1 issued." in first_output
    assert "must be issued" not in again_output
    assert files.cer.read_bytes() == issued
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert not keys.key_is_encrypted(files.key.read_bytes())
    with open_server(data_dir) as server:
        listed = [(c.number, c.filename, c.usage) for c in server.certificates()]
        fingerprint = fingerprints.sha256_fingerprint(server.authority().certificate)
    assert listed == [(1, "https", "tls")]
    assert f"client_app.py get-ca --fingerprint SHA256:{fingerprint}" in again_output
    leaf = write_pem(tmp_path / "leaf.cer", x509.load_pem_x509_certificates(issued)[0])
    verified = openssl_verify(first.ca_file, leaf, purpose="sslserver")
    assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize(
    ("password", "code", "message"),
    [
        (None, 2, "error: the CA key password is needed: use --password-file FILE"),
        (b"not the password", 5, "error: the password does not decrypt the private key"),
    ],
    ids=["no-password", "wrong-password"],
)
def test_a_certificate_to_issue_needs_the_ca_password(
    tmp_path: Path, password: bytes | None, code: int, message: str
) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    options: list[str | Path] = ["--tls"]
    if password is not None:
        options += ["--password-file", _password_file(tmp_path, password)]

    process = _run_serve(data_dir, free_port(), *options)
    output = process.communicate(timeout=60)[0].decode()

    assert process.returncode == code, output
    assert message in output
    assert "Traceback" not in output and "Listening at" not in output
    assert not tls.ServerFiles.of(data_dir).key.exists()
    with open_server(data_dir) as server:
        assert list(server.certificates()) == []


def test_other_names_make_a_new_certificate(tmp_path: Path) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    password = _password_file(tmp_path)
    serve_tls(data_dir, "--password-file", password).stop()

    process = _run_serve(data_dir, free_port(), "--tls", "--tls-name", "ca.example")
    refused = process.communicate(timeout=60)[0].decode()
    renamed = serve_tls(data_dir, "--tls-name", "ca.example", "--password-file", password)
    output = renamed.stop()

    assert process.returncode == 2
    assert (
        "The HTTPS certificate must be issued: it names IP:127.0.0.1, not IP:127.0.0.1, "
        "DNS:ca.example." in refused
    )
    assert "HTTPS certificate number 2 issued." in output
    cert = tls.read_server_certificate(tls.ServerFiles.of(data_dir))
    assert cert is not None and cert.serial_number == 2


def _serve_args(data_dir: Path, *options: str | Path) -> argparse.Namespace:
    parser, _ = build_parser()
    return parser.parse_args(["--data-dir", str(data_dir), "serve", *map(str, options)])


def test_the_renewal_thread_acts_only_once_the_certificate_is_due(tmp_path: Path) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    files = tls.ServerFiles.of(data_dir)
    wanted = tls.server_names("127.0.0.1")
    with open_server(data_dir) as server:
        tls.issue(server, files, wanted, CA_PASSWORD)
        ca = server.authority().certificate
    cert = tls.read_server_certificate(files)
    assert cert is not None
    reasons: list[str] = []
    renewer = tls.Renewer(files, ca, wanted, reasons.append)

    assert not renewer.check()
    assert not renewer.check(tls.renewal_time(cert) - datetime.timedelta(seconds=1))
    assert renewer.check(tls.renewal_time(cert))
    assert reasons == [
        f"it expires on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC (renewed after two "
        "thirds of its life)"
    ]


def test_a_due_certificate_is_renewed_in_its_own_process_and_served_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    password = _password_file(tmp_path)
    running = serve_tls(data_dir, "--password-file", password)
    monkeypatch.delenv("PKI_CA_PASSWORD", raising=False)
    # Due because the names changed: what serve's thread does once it finds it so.
    wanted = tls.server_names("127.0.0.1", ["localhost"])
    try:
        before = tls.read_server_certificate(tls.ServerFiles.of(data_dir))
        renewal_action(_serve_args(data_dir, "--tls"), wanted)("the names changed")
        without_password = capsys.readouterr().err
        renewal_action(_serve_args(data_dir, "--tls", "--password-file", password), wanted)(
            "the names changed"
        )
        renewed = capsys.readouterr().err
        served = s_client(running.port, "-CAfile", running.ca_file, "-verify_hostname", "localhost")
    finally:
        running.stop()

    assert "the HTTPS certificate must be renewed (the names changed), but there is no " in (
        without_password
    )
    assert "restart serve --tls, or start it with --password-file" in without_password
    assert "[pki-soap] renewing the HTTPS certificate (the names changed)" in renewed
    assert "[pki-soap] HTTPS certificate number 2 issued." in renewed
    # The running workers picked the new files up: no restart.
    sent = x509.load_pem_x509_certificate(served.encode())
    assert before is not None and sent != before and sent.serial_number == 2
    assert "Verify return code: 0 (ok)" in served


def test_https_certificate_command_renews_on_demand_for_a_running_server(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    password = _password_file(tmp_path)
    running = serve_tls(data_dir, "--password-file", password)
    command = [sys.executable, "server_app.py", "--data-dir", str(data_dir), "https-certificate"]
    try:
        kept = subprocess.run(
            [*command, "--name", "127.0.0.1"],
            cwd=REPOSITORY, capture_output=True, text=True, timeout=60, env=_environment(),
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        forced = subprocess.run(
            [*command, "--name", "127.0.0.1", "--force", "--password-file", str(password)],
            cwd=REPOSITORY, capture_output=True, text=True, timeout=60, env=_environment(),
            check=False,
        )  # fmt: skip
        served = s_client(running.port, "-CAfile", running.ca_file, "-verify_ip", "127.0.0.1")
    finally:
        running.stop()

    assert kept.returncode == 0, kept.stderr
    assert (
        "must be issued" not in kept.stdout and "HTTPS certificate for IP:127.0.0.1" in kept.stdout
    )
    assert forced.returncode == 0, forced.stderr
    assert "The HTTPS certificate must be issued: asked for with --force." in forced.stdout
    assert x509.load_pem_x509_certificate(served.encode()).serial_number == 2


def test_certfile_and_keyfile_serve_a_certificate_from_elsewhere(tmp_path: Path) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    other = make_ca(tmp_path, subject="/O=Elsewhere/CN=Elsewhere CA")
    key, csr = make_csr("/CN=127.0.0.1", keys.KeyType.EC256, "IP:127.0.0.1")
    cert = other.sign(
        csr,
        Usage.TLS,
        key=other.private_key(ENGINE_CA_PASSWORD),
        days=30,
        serial_number=other.serials.take(),
    )
    certfile = write_pem(tmp_path / "web.cer", cert)
    keyfile = tmp_path / "web.key"
    keyfile.write_bytes(keys.key_pem(key, None))
    port = free_port()

    process = _run_serve(data_dir, port, "--certfile", certfile, "--keyfile", keyfile)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        output = ""
        while "Verify return code: 0 (ok)" not in output:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
            output = s_client(port, "-CAfile", other.paths.cer, "-verify_ip", "127.0.0.1")
    finally:
        process.send_signal(signal.SIGTERM)
        log = process.communicate(timeout=30)[0].decode()

    assert x509.load_pem_x509_certificate(output.encode()) == cert
    assert f"HTTPS with {certfile} (reloaded when it changes)" in log
    assert not tls.ServerFiles.of(data_dir).cer.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--certfile", "web.cer"], "--certfile and --keyfile go together"),
        (["--tls", "--http-port", "{port}"], "must be a port other than --port"),
        (["--http-port", "8080"], "--http-port serves plain HTTP beside HTTPS: add --tls"),
        (["--tls", "--public-url", "http://ca.example"], "the public URL must be https://"),
        (["--tls", "--tls-name", "no such name"], "'no such name' is not a host name"),
        (["--certfile", "missing.cer", "--keyfile", "missing.key"], "cannot read"),
    ],
    ids=["half-pair", "same-port", "plain-only", "http-url", "bad-name", "missing-files"],
)
def test_bad_tls_options_are_refused_before_serving(
    tmp_path: Path, options: list[str], message: str
) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    port = free_port()
    argv = [option.replace("{port}", str(port)) for option in options]

    process = _run_serve(data_dir, port, *argv)
    output = process.communicate(timeout=60)[0].decode()

    assert process.returncode == 2, output
    assert "error: " in output and message in output, output
    assert "Traceback" not in output and "Listening at" not in output


# -- the pieces, without a server --------------------------------------------------------------


def test_problem_names_each_reason_to_issue_anew(tmp_path: Path) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    files = tls.ServerFiles.of(data_dir)
    wanted = tls.server_names("ca.example", ["192.0.2.7"])
    with open_server(data_dir) as server:
        authority = server.authority().certificate
        none_yet = tls.problem(files, authority, wanted)
        tls.issue(server, files, wanted, CA_PASSWORD)
        cert = tls.read_server_certificate(files)
        assert cert is not None
        fresh = tls.problem(files, authority, wanted)
        due = tls.problem(files, authority, wanted, tls.renewal_time(cert))
        expired = tls.problem(files, authority, wanted, cert.not_valid_after_utc)
        renamed = tls.problem(files, authority, tls.server_names("ca.example"))
        other = tls.problem(files, make_ca(tmp_path).certificate, wanted)
        files.key.write_bytes(keys.key_pem(keys.generate_key(keys.KeyType.EC256), None))
        foreign_key = tls.problem(files, authority, wanted)

    assert none_yet == "there is none yet"
    assert fresh is None
    assert due is not None and due.startswith("it expires on ")
    assert expired is not None and expired.startswith("it expired on ")
    assert renamed == "it names DNS:ca.example, IP:192.0.2.7, not DNS:ca.example"
    assert other == "it was not issued by this CA"
    assert foreign_key == f"{files.key} is not the key of {files.cer}"
    # Renewed after two thirds of its life, which is the configured validity (30 days).
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=30) - life < datetime.timedelta(minutes=2)
    assert tls.renewal_time(cert) - cert.not_valid_before_utc == life * 2 / 3


def test_server_names_refuse_what_is_no_host(tmp_path: Path) -> None:
    assert tls.server_names("CA.Example.", ["::1", "ca.example"]) == [
        x509.DNSName("ca.example"),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    for bad in ("*.example", "a b", ""):
        with pytest.raises(InvalidInput, match="is not a host name or IP address"):
            tls.server_names(bad)


def test_reloading_context_keeps_serving_the_old_pair_while_a_renewal_is_half_written(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    files = tls.ServerFiles.of(data_dir)
    wanted = tls.server_names("127.0.0.1")
    with open_server(data_dir) as server:
        tls.issue(server, files, wanted, CA_PASSWORD)
        hook = tls.ReloadingContext(files.cer, files.key)
        first = hook(None, ssl.create_default_context)
        same = hook(None, ssl.create_default_context)
        # A renewal has written its new key, not yet its certificate.
        files.key.write_bytes(keys.key_pem(keys.generate_key(keys.KeyType.EC256), None))
        half = hook(None, ssl.create_default_context)
        tls.issue(server, files, wanted, CA_PASSWORD)
        renewed = hook(None, ssl.create_default_context)

    assert same is first and half is first
    assert renewed is not first
    assert renewed.minimum_version is ssl.TLSVersion.TLSv1_2
    assert renewed.maximum_version is ssl.TLSVersion.TLSv1_3
    assert {c["name"] for c in renewed.get_ciphers() if c["protocol"] == "TLSv1.2"} <= set(
        tls.CIPHERS.split(":")
    )
