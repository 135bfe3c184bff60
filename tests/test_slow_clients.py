"""Slow and idle clients cannot take the service down: ``server_app.py serve`` (real gunicorn)
with 50 idle sockets, 50 slowloris sockets and trickling bodies from one host, loopback only,
every loop bounded in time.

Before: 50 idle connections kept a GetCertificate waiting 778 s, and a few sockets sending a
header line every 5 s blocked every call.  The one-second bound below is generous on purpose
(it tests availability, not speed: speed is in bench/).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pki_soap.soap.wsdl import SERVICE_PATH
from tests.service_support import (
    ACTION,
    configure_ca,
    free_port,
    iris_list_certificates,
    iris_submit,
    openssl_csr,
    start_serve,
    wget_get_certificate,
)

IDLE = 50
SLOWLORIS = 50
SLOW_BODIES = 10
HEADER_TIMEOUT = 2
BODY_TIMEOUT = 3
TRICKLE_EVERY = 0.5
ATTACK_LIMIT = 30.0  # no attacker thread outlives this, whatever happens
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """``server_app.py serve`` with its default worker setup and short, testable timeouts."""
    data_dir = tmp_path_factory.mktemp("slow") / "pki-data"
    configure_ca(data_dir)
    port = free_port()
    log = (data_dir.parent / "serve.log").open("wb")
    process = start_serve(
        data_dir, port, "--workers", "2", "--no-portal",
        "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
        stdout=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (data_dir.parent / "serve.log").read_text()
            try:
                if _call(port, wget_get_certificate("0"), "GetCertificate", 5.0)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        yield port, data_dir
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _call(port: int, body: bytes, method: str, timeout: float) -> tuple[int, bytes]:
    """One legitimate SOAP call on a fresh connection; raises TimeoutError past ``timeout``."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(
            "POST",
            SERVICE_PATH,
            body=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ACTION + method},
        )
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _head(length: int) -> bytes:
    return (
        f"POST {SERVICE_PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/xml\r\n"
        f"SOAPAction: {ACTION}GetCertificate\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


class Attack:
    """Idle sockets (connect, send nothing), slowloris sockets (a header line at a time) and
    slow bodies (a byte at a time), fed by one thread until stopped or ``ATTACK_LIMIT``."""

    def __init__(self, port: int, idle: int, slowloris: int, slow_bodies: int) -> None:
        self.port = port
        self.idle = [self._connect() for _ in range(idle)]
        self.slowloris = [self._connect() for _ in range(slowloris)]
        for sock in self.slowloris:
            sock.sendall(f"POST {SERVICE_PATH} HTTP/1.1\r\nHost: {HOST}\r\n".encode())
        self.bodies = [self._connect() for _ in range(slow_bodies)]
        for sock in self.bodies:
            sock.sendall(_head(1000))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="attack", daemon=True)

    def _connect(self) -> socket.socket:
        return socket.create_connection((HOST, self.port), timeout=5)

    def _trickle(self) -> None:
        started = time.monotonic()
        line = 0
        while not self._stop.wait(TRICKLE_EVERY) and time.monotonic() - started < ATTACK_LIMIT:
            line += 1
            for sock in self.slowloris:
                _send(sock, f"X-Slow-{line}: a\r\n".encode())
            for sock in self.bodies:
                _send(sock, b" ")

    def __enter__(self) -> Attack:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.idle + self.slowloris + self.bodies:
            sock.close()


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # closed by the server: what it should do


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass  # an answer (408) before the close is fine
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_legitimate_calls_are_answered_within_a_second_under_attack(
    served: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ = served
    _, csr = openssl_csr(tmp_path, "legit", "/CN=legit.example.com")
    calls = [
        ("GetCertificate", wget_get_certificate("0"), b"<Filename>CA_Server</Filename>"),
        ("ListCertificates", iris_list_certificates(), b"<ListCertificatesResult>"),
        (
            "SubmitCSR",
            iris_submit(
                {
                    "Hostname": "legit.example.com",
                    "Instance": "IRIS",
                    "Filename": "legit",
                    "Contents": csr,
                    "ContactName": "Legit",
                }
            ),
            b"successfully submitted",
        ),
        ("GetCertificate", wget_get_certificate("0"), b"<Filename>CA_Server</Filename>"),
        ("ListCertificates", iris_list_certificates("caserver", "IRIS"), b"ListMy"),
    ]
    with Attack(port, IDLE, SLOWLORIS, SLOW_BODIES):
        time.sleep(TRICKLE_EVERY * 2)  # every attacker connected and sending
        for method, body, expected in calls:
            started = time.monotonic()
            status, answer = _call(port, body, method, timeout=1.0)
            elapsed = time.monotonic() - started
            assert (status, expected in answer) == (200, True), (method, answer[:300])
            assert elapsed < 1.0, (method, elapsed)


def test_idle_and_slowloris_sockets_are_closed_after_the_header_timeout(
    served: tuple[int, Path],
) -> None:
    port, _ = served
    with Attack(port, idle=5, slowloris=5, slow_bodies=0) as attack:
        started = time.monotonic()
        for sock in attack.idle + attack.slowloris:
            remaining = HEADER_TIMEOUT + 3 - (time.monotonic() - started)
            assert _closed_by_server(sock, max(remaining, 0.1)), "a socket stayed open"
        assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5


def test_a_trickling_body_gets_408_after_the_body_timeout(served: tuple[int, Path]) -> None:
    port, _ = served
    with Attack(port, idle=0, slowloris=0, slow_bodies=1) as attack:
        [sock] = attack.bodies
        sock.settimeout(BODY_TIMEOUT + 5)
        started = time.monotonic()
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:
            pass
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"the request body did not arrive in time" in answer
    assert b"<faultcode>SOAP-ENV:Client</faultcode>" in answer
    assert BODY_TIMEOUT - 1 <= waited < BODY_TIMEOUT + 5
