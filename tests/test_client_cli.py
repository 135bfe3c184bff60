"""client_app.py against a stand-in IRIS server: the flow, the files, and one clear error each."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
from cryptography import x509

from pki_soap import errors, messages
from pki_soap.ca import fingerprints, keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import cert_pem, csr_pem, load_csr, requested_sans
from pki_soap.cli.client_app import main
from pki_soap.client import configuration
from pki_soap.store import Store
from tests import iris_standin as iris
from tests.engine_support import CA_PASSWORD, make_ca, make_csr

REPO = Path(__file__).resolve().parents[1]
SENTENCE = (
    'Certificate Signing Request "web_client" successfully submitted to the '
    "Certificate Authority at instance IRIS on node caserver"
)


class Certs:
    def __init__(self, tmp: Path) -> None:
        authority = make_ca(tmp)
        self.ca = authority.certificate
        self.leaves: list[x509.Certificate] = []
        for name in ("first", "second"):
            _, csr = make_csr(f"/O=Example/CN={name}.example")
            self.leaves.append(
                authority.sign(
                    csr,
                    Usage.TLS,
                    key=authority.private_key(CA_PASSWORD),
                    days=30,
                    serial_number=authority.serials.take(),
                )
            )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("ca"))


def ca_answer(certs: Certs) -> iris.Answer:
    return iris.certificate(
        "0", "caserver", "IRIS", "TestCA", cert_pem(certs.ca), "/CN=Example Test CA"
    )


def leaf_answer(cert: x509.Certificate, filename: str = "web_client") -> iris.Answer:
    return iris.certificate("12", "client", "PKI", filename, cert_pem(cert), "/CN=x")


@pytest.fixture
def standin(certs: Certs) -> Iterator[iris.IrisStandin]:
    with iris.IrisStandin() as server:
        server.answers["GetCertificate"] = lambda seen: (
            ca_answer(certs) if b">0<" in seen.body else leaf_answer(certs.leaves[0])
        )
        server.answers["SubmitCSR"] = iris.submitted(SENTENCE)
        yield server


def configure(data_dir: Path, port: int) -> None:
    with Store.open(data_dir) as store:
        configuration.configure(
            store,
            server="127.0.0.1",
            port=port,
            contact_name="Pat Admin",
            contact_email="pat@example.com",
            hostname="client.example",
            instance="PKI",
        )


@pytest.fixture
def configured(data_dir: Path, standin: iris.IrisStandin) -> Path:
    configure(data_dir, standin.port)
    return data_dir


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def no_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PKI_KEY_PASSWORD", raising=False)


# -- configure -----------------------------------------------------------------------------


def test_configure_stores_the_client_and_defaults_the_identity(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, err = run(
        capsys, data_dir, "configure", "--server", "ca.example", "--port", "52773",
        "--contact-name", "Pat Admin", "--contact-phone", "555-0100",
    )  # fmt: skip
    assert (code, out, err) == (0, "Certificate Authority client successfully configured.\n", "")
    with Store.open(data_dir) as store:
        cfg = store.client_config()
    assert cfg is not None
    assert (cfg.server, cfg.port, cfg.path) == ("ca.example", 52773, "/isc/pki/PKI.CAServer.cls")
    assert (cfg.contact_name, cfg.contact_phone, cfg.contact_email) == (
        "Pat Admin",
        "555-0100",
        None,
    )
    assert (cfg.hostname, cfg.instance) == (socket.gethostname(), "PKI")
    assert configuration.server_url(cfg) == "http://ca.example:52773/isc/pki/PKI.CAServer.cls"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--server", "ftp://ca.example", "--port", "1"], "use http(s)://host:port"),
        (["--server", "ca/example", "--port", "1"], "is not a host name or IP address"),
        (["--server", "ca.example", "--port", "1", "--hostname", "a:b"], "may not contain ':'"),
        (["--server", "ca.example", "--port", "1", "--path", "isc"], "must start with '/'"),
        (["--server", "ca.example", "--port", "1", "--instance", "I\x1b"], "control character"),
    ],
    ids=["scheme", "not-a-host", "colon-host", "relative-path", "control-instance"],
)
def test_configure_refuses_bad_values(
    capsys: pytest.CaptureFixture[str], data_dir: Path, args: list[str], message: str
) -> None:
    code, out, err = run(capsys, data_dir, "configure", "--contact-name", "P", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    with Store.open(data_dir) as store:
        assert store.client_config() is None


def test_a_first_configure_without_contact_name_names_what_is_missing(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, err = run(capsys, data_dir, "configure", "--server", "h", "--port", "1")
    assert (code, out) == (2, "")
    assert err == (
        "error: the first configuration of the CA client needs the CA server, its port and a "
        "contact name (missing: --contact-name)\n"
    )
    with Store.open(data_dir) as store:
        assert store.client_config() is None


@pytest.mark.parametrize(
    "command", [["get-ca"], ["list"], ["get", "1"]], ids=["get-ca", "list", "get"]
)
def test_commands_need_a_configured_client(
    capsys: pytest.CaptureFixture[str], data_dir: Path, command: list[str]
) -> None:
    code, out, err = run(capsys, data_dir, *command)
    assert (code, out) == (4, "")
    assert err.startswith("error: the CA client is not configured; run: client_app.py configure")


# -- the flow against the stand-in ---------------------------------------------------------


def test_get_ca_saves_the_ca_certificate(
    capsys: pytest.CaptureFixture[str], configured: Path, certs: Certs
) -> None:
    code, out, err = run(capsys, configured, "get-ca")
    path = configured / "TestCA.cer"
    assert (code, err) == (0, "")
    assert out == messages.ca_certificate_saved(fingerprints.fingerprint(certs.ca), path) + "\n"
    assert path.read_text() == cert_pem(certs.ca)


def test_submit_writes_key_and_csr_and_prints_fingerprint_and_sentence(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin, tmp_path: Path
) -> None:
    password_file = tmp_path / "pw"
    password_file.write_bytes(b"key secret\n")
    password_file.chmod(0o600)
    code, out, err = run(
        capsys, configured, "submit", "--root", "web_client", "--subject",
        "/C=US/O=Example/CN=web.example", "--san", "DNS:web.example,IP:127.0.0.1",
        "--password-file", str(password_file), "--key-type", "ec256",
    )  # fmt: skip
    assert (code, err) == (0, "")
    key_file, csr_file = configured / "web_client.key", configured / "web_client.csr"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = keys.load_key(key_file.read_bytes(), b"key secret")
    with pytest.raises(errors.WrongPassword):
        keys.load_key(key_file.read_bytes(), None)
    csr = load_csr(csr_file.read_bytes())
    assert keys.same_public_key(csr.public_key(), key.public_key())
    assert names.subject_text(csr.subject) == "/C=US/O=Example/CN=web.example"
    assert names.sans_text(requested_sans(csr)) == "DNS:web.example, IP:127.0.0.1"
    assert out == messages.request_submitted(fingerprints.fingerprint(csr), SENTENCE) + "\n"
    [seen] = standin.posts()
    assert b"<ns0:Name>client.example:PKI:web_client</ns0:Name>" in seen.body
    assert b"<ns0:Subject>/C=US/O=Example/CN=web.example</ns0:Subject>" in seen.body
    assert b"<ns0:ContactEmail>pat@example.com</ns0:ContactEmail>" in seen.body
    assert csr_pem(csr).encode() in seen.body


def test_submit_takes_the_password_from_the_environment(
    capsys: pytest.CaptureFixture[str], configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PKI_KEY_PASSWORD", "from env")
    code, _, err = run(
        capsys, configured, "submit", "--root", "env_client", "--organization", "Example",
        "--common-name", "env.example",
    )  # fmt: skip
    assert (code, err) == (0, "")
    key_pem = (configured / "env_client.key").read_bytes()
    assert keys.key_is_encrypted(key_pem)
    keys.load_key(key_pem, b"from env")


@pytest.mark.parametrize(
    ("contents", "mode", "code", "message"),
    [
        (b"key secret\r\n", 0o644, 0, "warning: the password file {} is readable by other users\n"),
        (b"key secret\nmore\n", 0o600, 2, "error: the password file {} holds more than one line\n"),
        (b"\n", 0o600, 2, "error: the password file {} is empty\n"),
    ],
    ids=["readable-by-others", "two-lines", "empty"],
)
def test_a_key_password_file_is_read_by_the_one_rule(
    capsys: pytest.CaptureFixture[str],
    configured: Path,
    tmp_path: Path,
    contents: bytes,
    mode: int,
    code: int,
    message: str,
) -> None:
    password_file = tmp_path / "pw"
    password_file.write_bytes(contents)
    password_file.chmod(mode)
    result = run(
        capsys, configured, "submit", "--root", "ruled", "--common-name", "r.example",
        "--password-file", str(password_file),
    )  # fmt: skip
    assert (result[0], result[2]) == (code, message.format(password_file))
    if code == 0:  # the line end is the file's: the password is what precedes it
        keys.load_key((configured / "ruled.key").read_bytes(), b"key secret")
    else:
        assert not (configured / "ruled.key").exists()


def test_submit_without_a_password_writes_an_unencrypted_0600_key(
    capsys: pytest.CaptureFixture[str], configured: Path
) -> None:
    code, _, _ = run(capsys, configured, "submit", "--root", "plain", "--common-name", "p.example")
    key_file = configured / "plain.key"
    assert code == 0 and not keys.key_is_encrypted(key_file.read_bytes())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_submit_never_overwrites_a_key(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin
) -> None:
    (configured / "web_client.key").write_bytes(b"precious")
    code, out, err = run(capsys, configured, "submit", "--root", "web_client", "--common-name", "w")
    assert (code, out) == (2, "")
    assert "exists (a key is never overwritten)" in err
    assert "submit --root web_client --resubmit`; for a new key, choose another --root" in err
    assert (configured / "web_client.key").read_bytes() == b"precious"
    assert not (configured / "web_client.csr").exists() and standin.posts() == []


def test_a_refused_submission_leaves_no_key_behind(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin
) -> None:
    standin.answers["SubmitCSR"] = iris.fault(
        "Server",
        "Server Application Error",
        ["ERROR #5805: ID key not unique for extent 'PKI.CSR'"],
    )
    code, out, err = run(capsys, configured, "submit", "--root", "dup", "--common-name", "d")
    assert (code, out) == (7, "")
    assert err == (
        'error: a request named "client.example:PKI:dup" is already pending at the CA (ID key '
        "not unique for extent 'PKI.CSR'); wait until the CA administrator issues or deletes "
        "it, or use another file name root (or, if another client uses this host name and "
        "instance, configure another --hostname or --instance)\n"
    )
    assert sorted(p.name for p in configured.glob("dup.*")) == []


def test_an_unreadable_answer_to_a_submission_keeps_key_and_csr(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin
) -> None:
    # The server may have stored the request: the certificate it issues will need this key.
    standin.answers["SubmitCSR"] = iris.MALFORMED
    code, out, err = run(capsys, configured, "submit", "--root", "kept", "--common-name", "k")
    assert (code, out) == (6, "")
    assert err.startswith("error: CA server at ") and "malformed XML" in err
    assert "the request may have reached the server" in err
    assert sorted(p.name for p in configured.glob("kept.*")) == ["kept.csr", "kept.key"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--root", "../x", "--common-name", "c"], "may contain only letters"),
        (["--root", "cache", "--common-name", "c"], "may not be 'cache'"),
        (["--root", "r", "--subject", "CN=x"], "subject must look like"),
        (["--root", "r"], "subject needs at least one attribute"),
        (["--root", "r", "--common-name", "c", "--san", "URI:x"], "must be DNS:<host name>"),
    ],
    ids=["path-root", "cache-root", "bad-subject", "no-subject", "bad-san"],
)
def test_submit_refuses_bad_input_before_anything_happens(
    capsys: pytest.CaptureFixture[str],
    configured: Path,
    standin: iris.IrisStandin,
    args: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, configured, "submit", *args)
    assert (code, out) == (2, "") and message in err
    assert standin.posts() == [] and not list(configured.glob("*.key"))


def test_subject_text_and_fields_together_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], configured: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--data-dir", str(configured), "submit", "--root", "r", "--subject", "/CN=a",
              "--country", "US"])  # fmt: skip
    assert exited.value.code == 2
    assert "either --subject or the attribute options" in capsys.readouterr().err


def test_list_prints_a_table_of_this_instance(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin
) -> None:
    standin.answers["ListCertificates"] = iris.list_my(
        [(str(n), f"cert_{n}") for n in sorted(range(1, 12), key=str)]
    )
    code, out, err = run(capsys, configured, "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == [
        "Serial Number  Filename",
        "-------------  --------",
        "1              cert_1",
    ]
    assert lines[-1] == "11             cert_11"
    assert b"<ns0:hostname>client.example</ns0:hostname>" in standin.posts()[0].body


def test_list_all_prints_four_columns_and_neutralises_control_characters(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin
) -> None:
    standin.answers["ListCertificates"] = iris.list_all(
        [("2", "host-a", "PKI", "a\u009b31mb"), ("10", "host-b", "IRIS", "b")]
    )
    code, out, _ = run(capsys, configured, "list", "--all")
    assert code == 0
    assert out.splitlines() == [
        "Serial Number  Hostname  Instance  Filename",
        "-------------  --------  --------  ---------",
        "2              host-a    PKI       a\\x9b31mb",
        "10             host-b    IRIS      b",
    ]
    assert b"hostname" not in standin.posts()[0].body


def test_list_with_no_certificates_says_so(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin
) -> None:
    standin.answers["ListCertificates"] = iris.list_my([])
    assert run(capsys, configured, "list") == (
        0,
        "No certificates for host client.example, instance PKI.\n",
        "",
    )


def test_get_saves_and_refuses_to_overwrite_a_different_certificate(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin, certs: Certs
) -> None:
    first, second = certs.leaves
    path = configured / "web_client.cer"
    code, out, err = run(capsys, configured, "get", "12")
    assert (code, err) == (0, "")
    assert out == messages.certificate_saved(12, fingerprints.fingerprint(first), path) + "\n"
    assert path.read_text() == cert_pem(first)
    assert run(capsys, configured, "get", "12")[0] == 0  # the same certificate again: fine

    standin.answers["GetCertificate"] = leaf_answer(second)
    code, out, err = run(capsys, configured, "get", "12")
    assert (code, out) == (2, "")
    assert err == (
        f'error: file "{path}" already holds a different certificate; use --force to replace '
        "it, or --out FILE to save this one elsewhere\n"
    )
    assert path.read_text() == cert_pem(first)

    code, out, _ = run(capsys, configured, "get", "12", "--force")
    assert code == 0 and path.read_text() == cert_pem(second)


def test_get_unknown_number(
    capsys: pytest.CaptureFixture[str], configured: Path, standin: iris.IrisStandin
) -> None:
    standin.answers["GetCertificate"] = iris.no_certificate()
    code, out, err = run(capsys, configured, "get", "99")
    assert (code, out) == (3, "")
    assert err == f"error: the CA server at {standin.url} has no certificate number 99\n"


# -- bad cases, through the real entry point ------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _NotSoap(BaseHTTPRequestHandler):
    """Some other web server: it has no POST handler, so http.server answers 501 HTML."""

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def other_web_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotSoap)
    thread = Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def client_app(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PKI_KEY_PASSWORD"}
    return subprocess.run(
        [sys.executable, str(REPO / "client_app.py"), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=data_dir,
        check=False,
    )


BAD_CASES = {
    "server-down": (
        ["get-ca"],
        6,
        r"CA server at http://127\.0\.0\.1:\d+/isc/pki/PKI\.CAServer\.cls unreachable: "
        r"Connection refused",
    ),
    "wrong-port": (
        ["list"],
        6,
        r"CA server at .* gave an invalid answer: HTTP 501 .*Content-Type 'text/html', not SOAP",
    ),
    "html-500": (
        ["list", "--all"],
        6,
        r"CA server at .* gave an invalid answer: HTTP 500 .*Content-Type 'text/html', not SOAP",
    ),
    "malformed-xml": (
        ["get", "12"],
        6,
        r"CA server at .* gave an invalid answer: HTTP 200 OK, malformed XML.*",
    ),
    "evil-filename": (
        ["get", "12"],
        2,
        r"CA server at .* supplied an unsafe file name '\.\./\.\./evil' for certificate 12: "
        r".*; nothing was saved",
    ),
    "evil-ca-filename": (
        ["get-ca"],
        2,
        r"CA server at .* supplied an unsafe file name '\.\./evil_ca' for certificate 0: .*",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_cases_give_one_clear_error_line(
    tmp_path: Path,
    data_dir: Path,
    standin: iris.IrisStandin,
    other_web_server: int,
    certs: Certs,
    case: str,
) -> None:
    command, code, message = BAD_CASES[case]
    port = {"server-down": closed_port(), "wrong-port": other_web_server}.get(case, standin.port)
    configure(data_dir, port)
    if case == "html-500":
        standin.answers["ListCertificates"] = iris.HTML_500
    elif case == "malformed-xml":
        standin.answers["GetCertificate"] = iris.MALFORMED
    elif case == "evil-filename":
        standin.answers["GetCertificate"] = leaf_answer(certs.leaves[0], filename="../../evil")
    elif case == "evil-ca-filename":
        standin.answers["GetCertificate"] = iris.certificate(
            "0", "h", "i", "../evil_ca", cert_pem(certs.ca), ""
        )

    def files() -> list[Path]:
        return sorted(p for p in tmp_path.rglob("*") if not p.name.startswith("pki.sqlite3"))

    before = files()
    done = client_app(data_dir, *command)
    assert done.returncode == code
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert re.fullmatch("error: " + message + "\n", done.stderr), done.stderr
    assert files() == before  # nothing written, in the data directory or outside it


def test_usage_error_exits_2_without_traceback(data_dir: Path) -> None:
    done = client_app(data_dir, "get")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: the following arguments are required: NUMBER" in done.stderr


# -- the password prompt, on a real pseudo-terminal ----------------------------------------

_ON_TTY = (
    "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.close(fd); "  # become its ctty
    "sys.argv = sys.argv[2:]; import runpy; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _read_until(master: int, wanted: bytes, seen: bytearray) -> None:
    import select

    while wanted not in seen:
        ready, _, _ = select.select([master], [], [], 60)
        assert ready, f"no {wanted!r} on the terminal; got {bytes(seen)!r}"
        try:
            seen += os.read(master, 1024)
        except OSError:  # EIO: the program closed the terminal
            raise AssertionError(f"terminal closed before {wanted!r}: {bytes(seen)!r}") from None


def submit_on_a_terminal(data_dir: Path, root: str, typed: list[bytes]) -> tuple[int, str]:
    """Run ``submit`` with stdin on a pty; answer each password prompt with ``typed``."""
    master, slave = os.openpty()
    env = {key: value for key, value in os.environ.items() if key != "PKI_KEY_PASSWORD"}
    command = [str(REPO / "client_app.py"), "--data-dir", str(data_dir), "submit", "--root", root]
    with subprocess.Popen(
        [sys.executable, "-c", _ON_TTY, os.ttyname(slave), *command, "--common-name", "t"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a session without a terminal, so the pty becomes its terminal
    ) as process:
        os.close(slave)
        seen = bytearray()
        for prompt, answer in zip((b"Password for", b"Confirm"), typed, strict=False):
            _read_until(master, prompt, seen)
            os.write(master, answer + b"\n")
        _, err = process.communicate(timeout=120)
    os.close(master)
    return process.returncode, err


def test_the_password_prompt_asks_twice_on_a_terminal(configured: Path) -> None:
    code, err = submit_on_a_terminal(configured, "tty_client", [b"typed secret", b"typed secret"])
    assert (code, err) == (0, "")
    keys.load_key((configured / "tty_client.key").read_bytes(), b"typed secret")


def test_mismatched_passwords_are_refused(configured: Path, standin: iris.IrisStandin) -> None:
    code, err = submit_on_a_terminal(configured, "tty_client", [b"one", b"two"])
    assert (code, err) == (2, "error: the passwords do not match\n")
    assert not (configured / "tty_client.key").exists() and standin.posts() == []
