"""The product as people run it, all at once on one data directory, with SIGKILLs.

``server_app.py serve`` (2 gunicorn workers, portal on) while, for a bounded time, SOAP
clients submit and read, a portal session signs in, views pages, issues and deletes,
``server_app.py`` commands list, issue, delete and report, and ``client_app.py`` submits and
lists from its own data directory.  A worker is SIGKILLed, then the master (and whatever
workers outlive it), the server restarts, and the load goes on.  At the end, from the
database and the files: every acknowledged submission is pending, issued or deleted by an
acknowledged action; every acknowledged issue is a certificate whose X.509 serial equals its
number; no number twice; the serial file at or past the highest number; integrity_check ok;
and the WAL file never vanished under the running server.
"""

from __future__ import annotations

import html
import http.client
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography import x509

from pki_soap.ca import keys, names
from pki_soap.ca.csr import build_csr, csr_pem
from pki_soap.ca.keys import KeyType
from tests.service_support import (
    ACTION,
    CA_INSTANCE,
    CA_PASSWORD,
    CA_ROOT,
    REPOSITORY,
    configure_ca,
    free_port,
    iris_get_certificate,
    iris_list_certificates,
    iris_submit,
    soap_post,
    start_serve,
)

PHASE_SECONDS = 11.0
PORTAL_PASSWORD = "system test portal password"
SUBMIT_HOST = "sys.example"
CLIENT_HOST = "client.example"
_ISSUED = re.compile(r'Certificate number (\d+) issued for Certificate Signing Request "([^"]+)"')
_DELETED = re.compile(r'Certificate Signing Request "([^"]+)" deleted\.')


@dataclass
class Ledger:
    """What the product acknowledged, and how many operations of each kind ran."""

    submitted: set[str] = field(default_factory=set)
    issued: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def candidates(self) -> list[str]:
        with self.lock:
            return sorted(self.submitted - self.deleted - set(self.issued))


def _csr_pem() -> str:
    key = keys.generate_key(KeyType.EC256)
    csr = build_csr(key, names.subject_from_text(f"/O=pki-soap system test/CN={SUBMIT_HOST}"), [])
    return csr_pem(csr)


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _tree(root_pid: int) -> list[int]:
    """``root_pid`` and its descendants (the gunicorn master and workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat_text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _alive(pid: int) -> bool:
    try:
        stat_text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_text.rsplit(")", 1)[1].split()[0] != "Z"


def _deleted_database_files(pids: list[int]) -> list[str]:
    seen = []
    for pid in pids:
        try:
            entries = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for entry in entries:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{entry}")
            except OSError:
                continue
            if "pki.sqlite3" in target and target.endswith("(deleted)"):
                seen.append(f"{pid}: {target}")
    return seen


class System:
    """The running product and the actors driving it."""

    def __init__(self, tmp: Path) -> None:
        self.data_dir = tmp / "server"
        self.client_dir = tmp / "client"
        self.password_file = tmp / "ca.pw"
        self.password_file.write_bytes(CA_PASSWORD + b"\n")
        self.password_file.chmod(0o600)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ledger = Ledger()
        self.stop = threading.Event()
        self.serve: subprocess.Popen[bytes] | None = None
        self.serve_log = open(tmp / "serve.log", "ab")
        self.vanished: list[str] = []
        self.kills: list[str] = []
        self.csr = _csr_pem()
        self.phase = 0

    # -- the server ---------------------------------------------------------------------------

    def start(self) -> None:
        # No submission limits: this test is about what survives kills (limits: test_limits).
        unlimited = ["--submissions-per-minute", "0", "--max-pending", "0"]
        unlimited += ["--max-pending-per-host", "0"]
        self.serve = start_serve(
            self.data_dir, self.port, "--workers", "2", *unlimited, stdout=self.serve_log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base_url}/pki/login", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("serve did not start")

    def workers(self) -> list[int]:
        assert self.serve is not None
        return [pid for pid in _tree(self.serve.pid) if pid != self.serve.pid]

    def kill_worker(self) -> None:
        worker = self.workers()[0]
        os.kill(worker, signal.SIGKILL)
        self.kills.append(f"worker {worker}")

    def kill_master(self) -> None:
        assert self.serve is not None
        workers = self.workers()
        self.serve.kill()
        self.serve.wait(10)
        self.kills.append(f"master {self.serve.pid}")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                self.kills.append(f"orphaned worker {pid}")

    def shutdown(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            self.serve.terminate()
            try:
                self.serve.wait(30)
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait(10)
        self.serve_log.close()

    def watch_wal(self) -> None:
        """Look every 50 ms for a database file deleted under a server process."""
        while not self.stop.is_set():
            if self.serve is not None and self.serve.poll() is None:
                for line in _deleted_database_files(_tree(self.serve.pid)):
                    if line not in self.vanished:
                        self.vanished.append(line)
            time.sleep(0.05)

    # -- the actors ---------------------------------------------------------------------------

    def soap_submitter(self, tag: str) -> None:
        for n in range(10**6):
            if self.stop.is_set():
                return
            filename = f"{tag}x{n}"
            body = iris_submit(
                {
                    "Hostname": SUBMIT_HOST,
                    "Instance": CA_INSTANCE,
                    "Filename": filename,
                    "Contents": self.csr,
                    "ContactName": "System Test",
                }
            )
            try:
                answer = soap_post(self.base_url, body, ACTION + "SubmitCSR")
            except (OSError, http.client.HTTPException):  # a worker killed mid-answer
                self.ledger.count("soap submit (no answer)")
                time.sleep(0.05)
                continue
            if answer.status == 200 and b"successfully submitted" in answer.body:
                with self.ledger.lock:
                    self.ledger.submitted.add(f"{SUBMIT_HOST}:{CA_INSTANCE}:{filename}")
                self.ledger.count("soap submit")
            else:
                self.ledger.count(f"soap submit HTTP {answer.status}")

    def soap_reader(self) -> None:
        while not self.stop.is_set():
            try:
                listed = soap_post(
                    self.base_url, iris_list_certificates(), ACTION + "ListCertificates"
                )
                numbers = re.findall(rb"<Number>(\d+)</Number>", listed.body)
                number = random.choice(numbers).decode() if numbers else "0"
                got = soap_post(
                    self.base_url, iris_get_certificate(number), ACTION + "GetCertificate"
                )
            except (OSError, http.client.HTTPException):  # a worker killed mid-answer
                self.ledger.count("soap read (no answer)")
                time.sleep(0.05)
                continue
            if listed.status == 200 and got.status == 200:
                self.ledger.count("soap list+get")
            else:
                self.ledger.count(f"soap read HTTP {listed.status}/{got.status}")

    def _pick(self) -> str | None:
        candidates = self.ledger.candidates()
        return random.choice(candidates) if candidates else None

    def portal(self) -> None:
        session: requests.Session | None = None
        while not self.stop.is_set():
            try:
                if session is None:
                    session = self._portal_login()
                self._portal_round(session)
            except (requests.RequestException, _SignedOut):
                self.ledger.count("portal (no answer or signed out)")
                session = None
                time.sleep(0.1)

    def _portal_login(self) -> requests.Session:
        session = requests.Session()
        page = session.get(f"{self.base_url}/pki/login", timeout=10)
        token = _csrf(page.text)
        answer = session.post(
            f"{self.base_url}/pki/login",
            data={"csrf_token": token, "password": PORTAL_PASSWORD, "next": ""},
            timeout=10,
        )
        if "Sign out" not in answer.text and "logout" not in answer.text:
            raise _SignedOut
        self.ledger.count("portal login")
        return session

    def _portal_round(self, session: requests.Session) -> None:
        for path in ("/pki/", "/pki/server/requests", "/pki/server/certificates"):
            page = session.get(self.base_url + path, timeout=10)
            if "/pki/login" in page.url:
                raise _SignedOut
            self.ledger.count("portal page")
        name = self._pick()
        if name is None:
            time.sleep(0.1)
            return
        if random.random() < 0.6:
            form = session.get(
                f"{self.base_url}/pki/server/process", params={"name": name}, timeout=10
            )
            if "/pki/login" in form.url:
                raise _SignedOut
            if "csrf_token" not in form.text:
                return  # decided meanwhile
            answer = session.post(
                f"{self.base_url}/pki/server/process",
                params={"name": name},
                data={
                    "csrf_token": _csrf(form.text),
                    "usage": "tls",
                    "password": CA_PASSWORD.decode(),
                },
                timeout=30,
            )
            self._record(answer.text, "portal issue")
        else:
            form = session.get(
                f"{self.base_url}/pki/server/delete", params={"name": name}, timeout=10
            )
            if "csrf_token" not in form.text:
                return
            answer = session.post(
                f"{self.base_url}/pki/server/delete",
                params={"name": name},
                data={"csrf_token": _csrf(form.text)},
                timeout=30,
            )
            self._record(answer.text, "portal delete")

    def _record(self, text: str, kind: str) -> None:
        text = html.unescape(text)
        with self.ledger.lock:
            for number, name in _ISSUED.findall(text):
                self.ledger.issued[name] = int(number)
            for name in _DELETED.findall(text):
                self.ledger.deleted.add(name)
        if _ISSUED.search(text) or _DELETED.search(text):
            self.ledger.count(kind)

    def admin_cli(self) -> None:
        server = ["server_app.py", "--data-dir", str(self.data_dir)]
        # An issue and a deletion first in each phase, then at random: a loaded machine runs
        # only a few commands in a phase, and the test must have issued and deleted.
        firsts = [0.0, 0.4]
        while not self.stop.is_set():
            name = self._pick()
            choice = firsts.pop(0) if firsts and name is not None else random.random()
            if choice < 0.35 and name is not None:
                done = _run(*server, "issue", name, "--usage", "tls",
                            "--password-file", str(self.password_file))  # fmt: skip
                kind = "cli issue"
            elif choice < 0.55 and name is not None:
                done = _run(*server, "delete", name, "--yes")
                kind = "cli delete"
            else:
                command = random.choice(["pending", "status", "certificates"])
                done = _run(*server, command)
                kind = f"cli {command}"
            if done.returncode == 0:
                self._record(done.stdout, kind)
                if kind not in ("cli issue", "cli delete"):
                    self.ledger.count(kind)
            elif "Traceback" in done.stderr:
                self.ledger.unexpected.append(f"{kind}: {done.stderr}")
            else:
                self.ledger.count(f"{kind} refused")

    def client_cli(self) -> None:
        client = ["client_app.py", "--data-dir", str(self.client_dir)]
        configured = _run(
            *client, "configure", "--server", "127.0.0.1", "--port", str(self.port),
            "--contact-name", "Client Admin", "--hostname", CLIENT_HOST,
            "--instance", CA_INSTANCE,
        )  # fmt: skip
        assert configured.returncode == 0, configured.stderr
        for n in range(10**6):
            if self.stop.is_set():
                return
            root = f"p{self.phase}c{n}"
            done = _run(*client, "submit", "--root", root, "--subject", f"/CN={CLIENT_HOST}")
            if done.returncode == 0 and "successfully submitted" in done.stdout:
                with self.ledger.lock:
                    self.ledger.submitted.add(f"{CLIENT_HOST}:{CA_INSTANCE}:{root}")
                self.ledger.count("client submit")
            elif "Traceback" in done.stderr:
                self.ledger.unexpected.append(f"client submit: {done.stderr}")
            else:
                self.ledger.count("client submit refused")
            listed = _run(*client, "list", "--all")
            self.ledger.count("client list" if listed.returncode == 0 else "client list refused")


class _SignedOut(Exception):
    """The portal session is gone (a restart, or a page that asks to sign in)."""


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if found is None:
        raise _SignedOut
    return found.group(1)


def _run_phase(
    system: System, phase: int, seconds: float, middle: Callable[[], None] | None
) -> None:
    system.stop.clear()
    system.phase = phase
    actors = [
        threading.Thread(target=system.soap_submitter, args=(f"p{phase}a",), daemon=True),
        threading.Thread(target=system.soap_submitter, args=(f"p{phase}b",), daemon=True),
        threading.Thread(target=system.soap_reader, daemon=True),
        threading.Thread(target=system.portal, daemon=True),
        threading.Thread(target=system.admin_cli, daemon=True),
        threading.Thread(target=system.client_cli, daemon=True),
        threading.Thread(target=system.watch_wal, daemon=True),
    ]
    for actor in actors:
        actor.start()
    time.sleep(seconds / 2)
    if middle is not None:
        middle()
    time.sleep(seconds / 2)
    system.stop.set()
    for actor in actors:
        actor.join(90)
        assert not actor.is_alive(), f"{actor.name} did not stop"


@pytest.fixture
def system(tmp_path: Path) -> System:
    made = System(tmp_path)
    configure_ca(made.data_dir, days=30)
    done = _run(
        "server_app.py", "portal-password", "--data-dir", str(made.data_dir),
        env={"PKI_PORTAL_PASSWORD": PORTAL_PASSWORD},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    try:
        yield made
    finally:
        made.stop.set()
        made.shutdown()


def test_nothing_acknowledged_is_lost_with_everyone_at_once_and_sigkills(
    system: System, tmp_path: Path
) -> None:
    system.start()
    _run_phase(system, 1, PHASE_SECONDS, system.kill_worker)
    system.kill_master()
    system.start()
    _run_phase(system, 2, PHASE_SECONDS, system.kill_worker)
    system.shutdown()

    ledger = system.ledger
    database = system.data_dir / "pki.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        pending = {row[0] for row in conn.execute("SELECT name FROM requests")}
        stored = {
            f"{hostname}:{instance}:{filename}": (number, contents)
            for number, hostname, instance, filename, contents in conn.execute(
                "SELECT number, hostname, instance, filename, contents FROM certificates "
                "WHERE number <> 0"
            )
        }
        numbers = [row[0] for row in conn.execute("SELECT number FROM certificates")]
    conn.close()
    srl = int((system.data_dir / "CAServer" / f"{CA_ROOT}.srl").read_text(), 16)

    summary = {
        "acknowledged submissions": len(ledger.submitted),
        "acknowledged issues": len(ledger.issued),
        "acknowledged deletions": len(ledger.deleted),
        "kills": system.kills,
        **ledger.counts,
    }
    print("system test figures:", summary)

    assert ledger.unexpected == []
    assert not any("HTTP 5" in kind for kind in ledger.counts), "a server error was answered"
    assert system.vanished == [], "a database file was deleted under the running server"
    # Every acknowledged submission is pending, issued or deleted by an acknowledged action.
    lost = {
        name
        for name in ledger.submitted
        if name not in pending and name not in stored and name not in ledger.deleted
    }
    assert lost == set(), f"{len(lost)} acknowledged submissions lost"
    # Every acknowledged issue is a certificate whose X.509 serial is its number, and its
    # request is no longer pending; an acknowledged deletion left neither.
    for name, number in ledger.issued.items():
        assert name in stored and stored[name][0] == number, name
        certificate = x509.load_pem_x509_certificate(stored[name][1].encode())
        assert certificate.serial_number == number
        assert name not in pending
    for name in ledger.deleted:
        assert name not in pending and name not in stored, name
    assert pending.isdisjoint(stored)
    assert len(numbers) == len(set(numbers))
    assert srl >= max(numbers)
    # The test did what it says: real load of every kind, and the kills.
    assert len(ledger.submitted) >= 40
    assert ledger.counts.get("soap list+get", 0) >= 10
    assert ledger.counts.get("portal issue", 0) + ledger.counts.get("portal delete", 0) >= 2
    assert ledger.counts.get("cli issue", 0) + ledger.counts.get("cli delete", 0) >= 2
    assert ledger.counts.get("client submit", 0) >= 2
    assert len(system.kills) >= 3
