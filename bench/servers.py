"""Start and stop the gunicorn servers under test (ours and the floor); read worker memory."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
SERVICE_PATH = "/isc/pki/PKI.CAServer.cls"
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Memory:
    """One process's resident memory, in MiB: now and its high-water mark."""

    rss: float
    peak: float


def memory_of(pid: int) -> Memory:
    """VmRSS and VmHWM of ``pid`` from /proc (zeros when it is gone)."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024
    return Memory(values["VmRSS"], values["VmHWM"])


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU time of ``pid`` (with ``reaped``: plus its waited-for children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # Fields after the command name start at field 3: utime is 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers, for its arbiter)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return sorted(found)


class Server:
    """A gunicorn server we started (its arbiter is our child); stopped by its pid only.

    With ``cafile`` it serves HTTPS, verified against that CA certificate.
    """

    def __init__(
        self, name: str, command: list[str], port: int, log: Path, cafile: Path | None = None
    ) -> None:
        self.name, self.command, self.port, self.log = name, command, port, log
        self.cafile = cafile
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.cafile else "http"
        return f"{scheme}://{HOST}:{self.port}{SERVICE_PATH}"

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        """A new HTTP(S) connection to the server (HTTPS verified against ``cafile``)."""
        if self.cafile is None:
            return http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        context = ssl.create_default_context(cafile=self.cafile)
        return http.client.HTTPSConnection(HOST, self.port, timeout=timeout, context=context)

    def start(self, timeout: float = 90.0) -> Server:
        """Start it and wait until it answers on its port.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds.
        """
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            self.command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log}")
            if self._answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s; see {self.log}")

    def _answers(self) -> bool:
        try:
            conn = self.connection(timeout=5)
            conn.request("GET", SERVICE_PATH + "?WSDL")
            conn.getresponse().read()
            conn.close()
        except OSError:
            return False
        # Every worker must be up too, or the first load run measures worker start-up.
        return len(self.workers()) >= 1

    def workers(self) -> list[int]:
        """The worker pids (children of the arbiter)."""
        return [] if self.process is None else children_of(self.process.pid)

    def cpu(self) -> float:
        """CPU seconds the server has used so far: arbiter, live workers and reaped ones."""
        if self.process is None:
            return 0.0
        arbiter = self.process.pid
        return cpu_seconds(arbiter, reaped=True) + sum(cpu_seconds(w) for w in self.workers())

    def worker_memory(self) -> dict[int, Memory]:
        """Each worker's memory right now."""
        return {pid: memory_of(pid) for pid in self.workers()}

    def stop(self) -> None:
        """SIGTERM the arbiter we started (gunicorn stops its workers) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def workers_default() -> int:
    """Workers = cores, as ``serve`` defaults to."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Tls:
    """HTTPS for both servers: ours issues its certificate with the CA password file; the
    floor then serves the very same files with the same settings."""

    password_file: Path
    cafile: Path
    certfile: Path
    keyfile: Path


def our_server(
    data_dir: Path,
    log: Path,
    workers: int | None = None,
    tls: Tls | None = None,
    worker_class: str | None = None,
    options: tuple[str, ...] = (),
) -> Server:
    """``server_app.py serve`` (with ``tls``: ``serve --tls``) on a free loopback port, with
    extra ``options``, without submission limits.

    The limits (a rate per client address, pending caps) would turn a SubmitCSR load into
    faults; the benchmark measures the work of an accepted submission.
    """
    port = free_port()
    command = [
        PYTHON,
        str(REPO / "server_app.py"),
        "--data-dir",
        str(data_dir),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers or workers_default()),
        "--submissions-per-minute",
        "0",
        "--max-pending",
        "0",
        "--max-pending-per-host",
        "0",
        *options,
    ]
    if tls is not None:
        command += ["--tls", "--password-file", str(tls.password_file)]
    if worker_class:
        command += ["--worker-class", worker_class]
    name = f"server_app.py serve ({worker_class or 'default'})"
    return Server(name, command, port, log, tls.cafile if tls else None)


def floor_server(
    responses: Path,
    log: Path,
    workers: int | None = None,
    tls: Tls | None = None,
    worker_class: str | None = None,
) -> Server:
    """The floor app (bench/floor_app.py) served the same way, on a free port."""
    port = free_port()
    command = [
        PYTHON,
        str(BENCH / "floor_app.py"),
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers or workers_default()),
        "--responses",
        str(responses),
    ]
    if tls is not None:
        command += ["--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile)]
    if worker_class:
        command += ["--worker-class", worker_class]
    name = f"floor ({worker_class or 'default'})"
    return Server(name, command, port, log, tls.cafile if tls else None)
