"""server_app.py and client_app.py on two hosts: two network namespaces joined by a veth pair.

Host A (namespace ``pkia<pid>``, 10.231.N.1) runs ``server_app.py serve --tls`` (HTTPS, and
plain HTTP beside it) and a CA client of its own that speaks plain HTTP, as an InterSystems
client does; host B (``pkib<pid>``, 10.231.N.2) runs ``client_app.py`` over HTTPS, trusting the
CA by the SHA-256 fingerprint the administrator reads from ``server_app.py status``.  Both
request TLS certificates (CN and subjectAltNames naming their host), the administrator issues
them with ``server_app.py issue``, the clients list and fetch them, the WSDL toolkits on B list
over HTTPS, ``openssl s_client`` on B checks A's HTTPS (chain, IP address and name), and then a
TLS server on A and a client on B use the issued certificates for a mutually authenticated
handshake, the server certificate checked by host name and by IP address against the CA
certificate fetched with get-ca.

The addresses exist only inside the two namespaces, which this test creates and always
removes (with every process left in them); it needs root and iproute2, as CI has.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from pki_soap.ca import names
from pki_soap.client.configuration import PINNED_CA_FILE
from tests.test_interop_languages import TOOLKITS, ensure_node_modules

REPO = Path(__file__).resolve().parents[1]
TLS_PEER = REPO / "tests" / "interop" / "tls_peer.py"
PORT = 52773
HTTP_PORT = 52780
TLS_PORT = 8443
TIMEOUT = 60  # seconds for any one command
START_TIMEOUT = 30.0  # seconds for the SOAP server to start answering
CA_PASSWORD = b"two hosts CA password"
KEY_PASSWORD = b"client B key password"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=TIMEOUT)


@dataclass(eq=False)  # identity: hosts are dictionary keys
class Host:
    """One test host: a network namespace with one veth end and one address."""

    netns: str
    interface: str
    address: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, argv: Sequence[str | Path]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *map(str, argv)]

    def run(
        self, argv: Sequence[str | Path], *, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` here to completion (bounded); by default it must succeed."""
        done = subprocess.run(
            self.command(argv),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=REPO,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if ok:
            assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def start(self, argv: Sequence[str | Path], log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` here in the background, output to ``log``; stopped at teardown."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env=_environment(),
            )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        """End what we started here, then anything still in the namespace (ours too)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        listed = subprocess.run(
            ["ip", "netns", "pids", self.netns], capture_output=True, text=True, timeout=TIMEOUT
        )
        for pid in listed.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _environment() -> dict[str, str]:
    # No password may come from the caller's environment; the test names every file.
    return {key: value for key, value in os.environ.items() if not key.startswith("PKI_")}


@contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Hosts A (10.231.N.1) and B (10.231.N.2) on one veth link, removed on leaving, always."""
    pid = os.getpid()
    subnet = f"10.231.{pid % 250 + 1}"
    # Names carry the pid so parallel runs never collide; interface names stay <= 15 chars.
    a = Host(f"pkia{pid}", f"pka{pid}", f"{subnet}.1")
    b = Host(f"pkib{pid}", f"pkb{pid}", f"{subnet}.2")
    created: list[Host] = []
    try:
        for host in (a, b):
            _ip("netns", "add", host.netns)
            created.append(host)
        _ip("link", "add", a.interface, "netns", a.netns, "type", "veth",
            "peer", "name", b.interface, "netns", b.netns)  # fmt: skip
        for host in (a, b):
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.interface)
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "link", "set", host.interface, "up")
        yield a, b
    finally:
        for host in created:
            host.stop()
            # Deleting a namespace also deletes its veth end, and with it the peer.
            subprocess.run(
                ["ip", "netns", "del", host.netns],
                capture_output=True,
                timeout=TIMEOUT,
                check=False,
            )


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    """The two test hosts of :func:`two_hosts`."""
    with two_hosts() as pair:
        yield pair


def _namespaces() -> set[str]:
    listed = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def test_two_hosts_are_removed_with_their_processes_when_a_test_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the test failed"):
        with two_hosts() as (a, b):
            sleeper = a.start(["sleep", "300"], tmp_path / "sleep.log")
            reachable = _tcp_probe(b, a.address, 9)
            during = _namespaces()
            raise RuntimeError("the test failed")

    assert {a.netns, b.netns} <= during
    # Port 9 is closed on A: refused, not unreachable, proves the link was up.
    assert reachable == "refused"
    assert sleeper.poll() is not None
    assert not {a.netns, b.netns} & _namespaces()


def _tcp_probe(host: Host, address: str, port: int) -> str:
    """From ``host``, try a TCP connection: "connected", "refused" or another error's name."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], int(sys.argv[2])), 5).close()\n"
        "    print('connected')\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    return host.run([sys.executable, "-c", probe, address, str(port)]).stdout.strip()


def _secret(path: Path, value: bytes) -> Path:
    path.write_bytes(value)
    path.chmod(0o600)
    return path


def _wait_for_wsdl(host: Host, url: str, ca_file: Path) -> str:
    """The WSDL fetched from ``host``, retrying until the server answers (bounded).

    Over HTTPS the server is verified against ``ca_file`` alone, host name included.
    """
    fetch = (
        "import ssl, sys, time, urllib.request\n"
        "context = ssl.create_default_context(cafile=sys.argv[2])\n"
        f"deadline = time.monotonic() + {START_TIMEOUT}\n"
        "while True:\n"
        "    try:\n"
        "        answer = urllib.request.urlopen(sys.argv[1], timeout=5, context=context)\n"
        "        print(answer.read().decode()); break\n"
        "    except OSError as exc:\n"
        "        untrusted = isinstance(getattr(exc, 'reason', exc), ssl.SSLError)\n"
        "        if untrusted or time.monotonic() > deadline: raise\n"
        "        time.sleep(0.2)\n"
    )
    return host.run([sys.executable, "-c", fetch, url, ca_file]).stdout


def _s_client(host: Host, address: str, *args: str | Path) -> str:
    """``openssl s_client`` from ``host`` to ``address``:PORT; its whole output."""
    done = subprocess.run(
        host.command(["openssl", "s_client", "-connect", f"{address}:{PORT}", *args]),
        input="",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return done.stdout + done.stderr


def _wait_for_file(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not path.exists():
        assert process.poll() is None, "the TLS server exited early"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def _issued_number(output: str) -> int:
    match = re.search(r"Certificate number (\d+) issued for", output)
    assert match, output
    return int(match.group(1))


def _san_entries(cert_file: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return {entry.strip() for entry in names.sans_text(list(extension.value)).split(",")}


def _server_app(host: Host, data_dir: Path, *args: str | Path) -> str:
    """``server_app.py --data-dir DIR ARGS...`` on ``host``; its output."""
    return host.run([sys.executable, REPO / "server_app.py", "--data-dir", data_dir, *args]).stdout


@dataclass(frozen=True)
class Requester:
    """A CA client on one host asking for a TLS certificate that names the host."""

    host: Host
    data_dir: Path
    instance: str
    root: str
    hostname: str
    password_file: Path | None = None

    @property
    def name(self) -> str:
        """The pending request's Name on the CA server."""
        return f"{self.hostname}:{self.instance}:{self.root}"

    def client_app(self, *args: str | Path) -> str:
        """``client_app.py --data-dir DIR ARGS...`` on the requester's host; its output."""
        argv = [sys.executable, REPO / "client_app.py", "--data-dir", self.data_dir, *args]
        return self.host.run(argv).stdout


def test_server_and_client_on_two_hosts_then_mutual_tls(
    hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    a, b = hosts
    server_dir = tmp_path / "ca"
    public_url = f"https://{a.address}:{PORT}/isc/pki/PKI.CAServer.cls"
    plain_url = f"http://{a.address}:{HTTP_PORT}/isc/pki/PKI.CAServer.cls"
    ca_password = _secret(tmp_path / "ca.password", CA_PASSWORD)
    key_password = _secret(tmp_path / "key.password", KEY_PASSWORD)
    host_a = Requester(a, tmp_path / "client-a", "CLIENTA", "host_a", "pki-a.test")
    host_b = Requester(b, tmp_path / "client-b", "CLIENTB", "host_b", "pki-b.test", key_password)
    ca_file = server_dir / "CAServer" / "CA_Server.cer"

    # Host A: the CA server, listening on its own address only, advertising it in the WSDL:
    # HTTPS with its own certificate (issued at start with the CA password), plain HTTP beside.
    _server_app(a, server_dir, "configure", "--root", "CA_Server", "--dir", "CAServer",
                "--subject", "/O=Two Hosts/CN=Two Hosts Test CA", "--ca-days", "30",
                "--days", "7", "--password-file", ca_password,
                "--node", "pki-a.test", "--instance", "IRIS")  # fmt: skip
    serve = ["serve", "--host", a.address, "--port", str(PORT), "--public-url", public_url,
             "--tls", "--tls-name", "pki-a.test", "--password-file", ca_password,
             "--http-port", str(HTTP_PORT)]  # fmt: skip
    a.start([sys.executable, REPO / "server_app.py", "--data-dir", server_dir, *serve,
             "--workers", "1", "--no-portal"], tmp_path / "serve.log")  # fmt: skip
    wsdl = _wait_for_wsdl(b, public_url + "?WSDL", ca_file)
    plain_wsdl = _wait_for_wsdl(b, plain_url + "?WSDL", ca_file)
    assert f'<soap:address location="{public_url}"/>' in wsdl
    assert f'<soap:address location="{plain_url}"/>' in plain_wsdl
    assert _tcp_probe(a, "127.0.0.1", PORT) == "refused"  # --host: that address only
    status = _server_app(a, server_dir, "status")
    sha256 = re.search(r"^CA SHA-256 fingerprint:\s+(\S+)$", status, re.MULTILINE)
    sha1 = re.search(r"^CA SHA-1 fingerprint:\s+(\S+)$", status, re.MULTILINE)
    assert sha256 and sha1, status

    # openssl on B: A's HTTPS chain verifies against the CA, for its address and its name.
    by_ip = _s_client(b, a.address, "-CAfile", ca_file, "-verify_ip", a.address, "-showcerts")
    by_name = _s_client(b, a.address, "-CAfile", ca_file, "-verify_hostname", "pki-a.test")
    other_name = _s_client(b, a.address, "-CAfile", ca_file, "-verify_hostname", "pki-b.test")
    assert "Verify return code: 0 (ok)" in by_ip and by_ip.count("BEGIN CERTIFICATE") == 2
    assert "Verify return code: 0 (ok)" in by_name
    assert "Verify return code: 62 (hostname mismatch)" in other_name

    # Host A's own client speaks plain HTTP, as an InterSystems client does; B speaks HTTPS
    # and must first trust the CA by its fingerprint (the SHA-1 form works for A's pin too).
    connections = {
        host_a: (["--server", a.address, "--port", str(HTTP_PORT)], sha1.group(1)),
        host_b: (["--server", f"https://{a.address}:{PORT}"], f"SHA256:{sha256.group(1)}"),
    }
    untrusted = host_b.host.run(
        [sys.executable, REPO / "client_app.py", "--data-dir", host_b.data_dir, "configure",
         "--server", f"https://{a.address}:{PORT}", "--contact-name", "x"],
    )  # fmt: skip
    assert untrusted.returncode == 0
    first_use = host_b.host.run(
        [sys.executable, REPO / "client_app.py", "--data-dir", host_b.data_dir, "get-ca"],
        ok=False,
    )
    assert first_use.returncode == 4 and "get-ca --fingerprint" in first_use.stderr
    for requester in (host_a, host_b):
        server, fingerprint = connections[requester]
        requester.client_app("configure", *server,
                             "--contact-name", f"Admin of {requester.hostname}",
                             "--hostname", requester.hostname,
                             "--instance", requester.instance)  # fmt: skip
        got_ca = requester.client_app("get-ca", "--fingerprint", fingerprint)
        password: list[str | Path] = []
        if requester.password_file:
            password = ["--password-file", requester.password_file]
        sans = f"DNS:{requester.hostname},IP:{requester.host.address}"
        submitted = requester.client_app("submit", "--root", requester.root,
                                         "--subject", f"/O=Two Hosts/CN={requester.hostname}",
                                         "--san", sans, *password)  # fmt: skip
        assert "Certificate Authority Certificate (SHA-1 Fingerprint:" in got_ca
        assert "Pinned as the trusted CA certificate" in got_ca
        assert (
            "successfully submitted to the Certificate Authority at instance IRIS "
            "on node pki-a.test" in " ".join(submitted.split())
        )

    # The administrator, on host A, issues both with the CA key password from a file.
    numbers = {
        requester.root: _issued_number(
            _server_app(
                a,
                server_dir,
                "issue",
                "--usage",
                "tls",
                "--password-file",
                ca_password,
                requester.name,
            )
        )
        for requester in (host_a, host_b)
    }

    # B lists its own and all certificates; each client fetches its own.
    mine = host_b.client_app("list")
    everything = host_b.client_app("list", "--all")
    saved = {r.root: r.client_app("get", str(numbers[r.root])) for r in (host_a, host_b)}

    assert re.search(rf"^\s*{numbers['host_b']}\s+host_b\s*$", mine, re.MULTILINE), mine
    assert "host_a" not in mine
    for r in (host_a, host_b):
        row = rf"^\s*{numbers[r.root]}\s+{re.escape(r.hostname)}\s+{r.instance}\s+{r.root}\s*$"
        assert re.search(row, everything, re.MULTILINE), everything
        assert f"Certificate number {numbers[r.root]} (SHA-1 Fingerprint:" in saved[r.root]
        assert _san_entries(r.data_dir / f"{r.root}.cer") == {
            f"DNS:{r.hostname}",
            f"IP:{r.host.address}",
        }

    # Clients generated from the WSDL follow its soap:address, the public HTTPS URL, from host
    # B, trusting B's pinned CA certificate alone; the server's own certificate is listed too.
    ensure_node_modules()
    toolkit_env = ["env", f"INTEROP_CA_FILE={host_b.data_dir / PINNED_CA_FILE}"]
    wsdl_listings = {
        toolkit: json.loads(b.run([*toolkit_env, *argv, "list", public_url + "?WSDL"]).stdout)
        for toolkit, argv in TOOLKITS.items()
    }
    for toolkit, listing in wsdl_listings.items():
        filenames = [row["Filename"] for row in listing["rows"]]
        assert filenames == ["https", "host_a", "host_b"], toolkit

    # TLS between the hosts with the issued certificates, trust from each get-ca copy.
    ready = tmp_path / "tls.ready"
    tls_server = a.start(
        [sys.executable, TLS_PEER, "serve",
         "--cert", host_a.data_dir / "host_a.cer", "--key", host_a.data_dir / "host_a.key",
         "--ca", host_a.data_dir / "CA_Server.cer",
         "--host", a.address, "--port", str(TLS_PORT), "--count", "3", "--ready-file", ready],
        tmp_path / "tls-server.log",
    )  # fmt: skip
    _wait_for_file(ready, tls_server)
    connect: list[str | Path] = [sys.executable, TLS_PEER, "connect",
               "--cert", host_b.data_dir / "host_b.cer", "--key", host_b.data_dir / "host_b.key",
               "--key-password-file", key_password, "--ca", host_b.data_dir / "CA_Server.cer",
               "--host", a.address, "--port", str(TLS_PORT)]  # fmt: skip
    by_name = json.loads(b.run([*connect, "--server-name", "pki-a.test"]).stdout)
    by_address = json.loads(b.run([*connect, "--server-name", a.address]).stdout)
    wrong_name = b.run([*connect, "--server-name", "pki-b.test"], ok=False)
    tls_server.wait(TIMEOUT)

    subject_a = {"organizationName": "Two Hosts", "commonName": "pki-a.test"}
    subject_b = {"organizationName": "Two Hosts", "commonName": "pki-b.test"}
    for outcome in (by_name, by_address):
        assert outcome["server_subject"] == subject_a
        assert outcome["server_answer"]["client_subject"] == subject_b
    assert wrong_name.returncode == 1
    assert json.loads(wrong_name.stdout) == {
        "error": "verify",
        "reason": "Hostname mismatch, certificate is not valid for 'pki-b.test'.",
    }
    assert tls_server.returncode == 0
