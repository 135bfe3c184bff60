"""One data directory, many processes: each defect of the store's promises, one test each.

SQLite locks lost by a second opener, re-configuring a configured CA, an unencrypted CA key,
the portal's e-mail, the outbox lock race, a read-only data directory, a full disk, and
certificate numbers past 64 bits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pki_soap.ca import keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import build_csr, csr_pem
from pki_soap.ca.keys import KeyType
from pki_soap.cli.server_app import main as server_main
from pki_soap.errors import CAFileError, InvalidInput, StoreUnavailable
from pki_soap.portal import auth
from pki_soap.server.datadir import open_data_directory
from pki_soap.server.mail import Notifier
from pki_soap.server.tasks import CAServer
from pki_soap.server.tasks.submit import SubmissionLimits
from pki_soap.store import DATABASE_NAME, PendingRequest, Store
from tests.engine_support import open_server
from tests.service_support import (
    ACTION,
    CA_PASSWORD,
    REPOSITORY,
    configure_ca,
    free_port,
    iris_get_certificate,
    iris_submit,
    live_server,
    soap_post,
)
from tests.smtp_support import HOST, MailServer

PORTAL_PASSWORD = b"portal password for data directory tests"


def _csr_pem(common_name: str = "web.example") -> str:
    key = keys.generate_key(KeyType.EC256)
    return csr_pem(build_csr(key, names.subject_from_text(f"/CN={common_name}"), []))


def _request(filename: str, **changes: str) -> PendingRequest:
    fields = dict(
        name=f"web.example:IRIS:{filename}",
        hostname="web.example",
        instance="IRIS",
        filename=filename,
        contents=_csr_pem(),
        subject="",
        contact_name="Ann Example",
        contact_email="ann@example.com",
    )
    fields.update(changes)
    return PendingRequest(**fields)


def _python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


# -- SQLite's locks: nothing but SQLite opens the database files ------------------------------


def test_a_second_opener_in_the_process_never_lets_another_process_delete_the_wal(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = Store.open(data)
    first.queue_mail("a@example.com", "one", "body")
    wal = data / f"{DATABASE_NAME}-wal"
    assert wal.exists()

    Store.open(data).close()  # what each portal used to do beside the service's store
    # Another process (a CLI command) opens and closes the database: the last closer
    # checkpoints and deletes the WAL if it can take the exclusive lock.
    count = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
    count += "print(c.execute('select count(*) from mail').fetchone()[0]); c.close()"
    assert _python(count, str(data / DATABASE_NAME)) == "1"

    assert wal.exists(), "the WAL was deleted under a live connection"
    first.queue_mail("b@example.com", "two", "body")
    assert _python(count, str(data / DATABASE_NAME)) == "2"
    first.close()


def test_a_new_database_and_its_journal_files_are_0600_from_creation(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        store = Store.open(tmp_path / "data")
        store.queue_mail("a@example.com", "s", "b")
    finally:
        os.umask(previous)
    for suffix in ("", "-wal", "-shm"):
        path = tmp_path / "data" / f"{DATABASE_NAME}{suffix}"
        assert path.stat().st_mode & 0o777 == 0o600, path
    store.close()
    (tmp_path / "data" / DATABASE_NAME).chmod(0o644)
    Store.open(tmp_path / "data").close()
    assert (tmp_path / "data" / DATABASE_NAME).stat().st_mode & 0o777 == 0o600


def test_the_service_and_the_portal_of_a_process_share_one_open_data_directory(
    tmp_path: Path,
) -> None:
    from pki_soap.wsgi import make_app

    data = tmp_path / "data"
    configure_ca(data)
    app = make_app(data, public_url="http://127.0.0.1:1")
    opened = app.data.get()
    assert app.portal is not None
    assert app.portal.store() is opened.store  # type: ignore[attr-defined]
    assert app.portal.ca_server() is opened.server  # type: ignore[attr-defined]
    assert opened.server.notifier is opened.notifier
    app.data.close()


# -- configure on a configured CA --------------------------------------------------------------


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    configure_ca(data)
    with open_server(data) as server:
        server.configure(
            root="CA_Server",
            directory="CAServer",
            password=None,
            days=None,
            smtp_server="127.0.0.1",
            smtp_port=free_port(),  # nothing listens: mail waits in the outbox
            smtp_user="mailer",
            smtp_password="smtp secret",
            admin_email="admin@example.com",
        )
    return data


def test_configure_with_another_root_is_refused_and_changes_nothing(
    configured: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password_file = tmp_path / "ca.pw"
    password_file.write_bytes(CA_PASSWORD)
    password_file.chmod(0o600)
    code = server_main(
        [
            "configure",
            "--data-dir",
            str(configured),
            "--root",
            "Other",
            "--dir",
            "CAServer",
            "--days",
            "10",
            "--subject",
            "/CN=Other CA",
            "--ca-days",
            "100",
            "--password-file",
            str(password_file),
        ]
    )
    assert code == 2
    assert "cannot be changed: run `reinitialize` first" in capsys.readouterr().err
    assert not (configured / "CAServer" / "Other.cer").exists()
    with open_server(configured) as server:
        assert server.config().root == "CA_Server"
        assert server.config().days == 30


def test_configure_keeps_every_setting_not_given(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = server_main(
        [
            "configure",
            "--data-dir",
            str(configured),
            "--root",
            "CA_Server",
            "--dir",
            "CAServer",
            "--days",
            "500",
        ]
    )
    assert code == 0
    assert "updated: validity of issued certificates." in capsys.readouterr().out
    assert (
        server_main(["configure", "--data-dir", str(configured), "--admin-email", "x@e.org"]) == 0
    )
    with open_server(configured) as server:
        cfg = server.config()
    assert (cfg.days, cfg.admin_email) == (500, "x@e.org")
    assert (cfg.smtp_server, cfg.smtp_user, cfg.smtp_password) == (
        "127.0.0.1",
        "mailer",
        "smtp secret",
    )
    assert cfg.smtp_port is not None
    assert server_main(["configure", "--data-dir", str(configured), "--smtp-server", ""]) == 0
    with open_server(configured) as server:
        assert server.config().smtp_server is None
        assert server.config().smtp_user == "mailer"


def test_a_first_configuration_needs_root_dir_and_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server_main(["configure", "--data-dir", str(tmp_path / "d"), "--days", "5"]) == 2
    assert "needs --root, --dir and --days" in capsys.readouterr().err


# -- an unencrypted CA key ---------------------------------------------------------------------


def test_configure_encrypts_an_existing_unencrypted_ca_key_and_issue_needs_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    configure_ca(data)
    paths_dir = data / "CAServer"
    key = keys.load_key((paths_dir / "CA_Server.key").read_bytes(), CA_PASSWORD)
    (paths_dir / "CA_Server.key").write_bytes(keys.key_pem(key, None))  # left unencrypted
    with open_server(data) as server:
        server.submit(_request("web"))
        with pytest.raises(CAFileError, match="is not encrypted"):
            server.issue("web.example:IRIS:web", Usage.TLS, b"any password")
    any_pw = tmp_path / "any.pw"
    any_pw.write_bytes(b"any password")
    any_pw.chmod(0o600)
    issue = ["issue", "--data-dir", str(data), "web.example:IRIS:web", "--usage", "tls"]
    assert server_main([*issue, "--password-file", str(any_pw)]) == 4
    assert "is not encrypted" in capsys.readouterr().err

    new_pw = tmp_path / "new.pw"
    new_pw.write_bytes(b"the new CA password")
    new_pw.chmod(0o600)
    assert server_main(["configure", "--data-dir", str(data), "--password-file", str(new_pw)]) == 0
    assert "was not encrypted; it is now" in capsys.readouterr().out
    assert keys.key_is_encrypted((paths_dir / "CA_Server.key").read_bytes())
    assert (paths_dir / "CA_Server.key").stat().st_mode & 0o777 == 0o600
    assert server_main([*issue, "--password-file", str(any_pw)]) == 5
    assert server_main([*issue, "--password-file", str(new_pw)]) == 0


def test_a_configured_ca_with_an_unencrypted_key_cannot_be_reconfigured_without_a_password(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    configure_ca(data)
    key_file = data / "CAServer" / "CA_Server.key"
    key_file.write_bytes(keys.key_pem(keys.load_key(key_file.read_bytes(), CA_PASSWORD), None))
    with open_server(data) as server, pytest.raises(InvalidInput, match="give a password"):
        server.configure(root="CA_Server", directory="CAServer", password=None, days=40)


# -- e-mail: the portal's goes through the process's outbox thread -----------------------------


@contextlib.contextmanager
def _silent_smtp() -> Iterator[int]:
    """An SMTP port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for sock in held:
            sock.close()
        listener.close()


def _portal_session(base_url: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base_url}/pki/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    session.post(
        f"{base_url}/pki/login",
        data={"csrf_token": token.group(1), "password": PORTAL_PASSWORD.decode(), "next": ""},
        timeout=10,
    )
    return session


def _portal_delete(session: requests.Session, base_url: str, name: str) -> requests.Response:
    form = session.get(f"{base_url}/pki/server/delete", params={"name": name}, timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None, form.text
    return session.post(
        f"{base_url}/pki/server/delete",
        params={"name": name},
        data={"csrf_token": token.group(1)},
        timeout=30,
    )


def test_portal_mail_is_queued_not_sent_inside_the_request(tmp_path: Path) -> None:
    data = tmp_path / "data"
    configure_ca(data)
    auth.set_password(data, PORTAL_PASSWORD)
    with _silent_smtp() as port:
        with open_server(data) as server:
            server.configure(
                root="CA_Server", directory="CAServer", password=None, days=None,
                smtp_server=HOST, smtp_port=port, admin_email="admin@example.com",
            )  # fmt: skip
            server.store.add_request(_request("web"))
        with live_server(data) as base_url:
            session = _portal_session(base_url)
            answer = _portal_delete(session, base_url, "web.example:IRIS:web")
            # Read at once: the notice is queued, and no attempt to send it has ended yet.
            # The SMTP server never answers, so a send made inside the request would have
            # ended (timed out, attempts = 1) before the portal answered.
            with sqlite3.connect(f"file:{data / DATABASE_NAME}?mode=ro", uri=True) as conn:
                attempts = conn.execute(
                    "SELECT attempts FROM mail WHERE recipient = 'ann@example.com'"
                ).fetchall()
            conn.close()
    assert "Certificate Signing Request &#34;web.example:IRIS:web&#34; deleted." in answer.text
    assert attempts == [(0,)]


def test_portal_mail_trusts_the_smtp_cafile_of_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    configure_ca(data)
    auth.set_password(data, PORTAL_PASSWORD)
    with MailServer(tmp_path, tls=True) as mail:
        with open_server(data) as server:
            server.configure(
                root="CA_Server", directory="CAServer", password=None, days=None,
                smtp_server=HOST, smtp_port=mail.port, smtp_user="ca-mailer",
                smtp_password="s3cret mail password", admin_email="admin@example.com",
            )  # fmt: skip
            server.store.add_request(_request("web"))
        with live_server(data, smtp_cafile=mail.cafile) as base_url:
            session = _portal_session(base_url)
            _portal_delete(session, base_url, "web.example:IRIS:web")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not mail.messages:
                time.sleep(0.05)
        assert [m.rcpt_tos for m in mail.messages] == [["ann@example.com"]]
        assert mail.messages[0].authenticated_as == "ca-mailer"


def test_a_notice_queued_while_another_sender_holds_the_outbox_is_sent_when_it_lets_go(
    configured_server: CAServer, data_dir: Path, tmp_path: Path
) -> None:
    with MailServer(tmp_path) as mail:
        configured_server.configure(
            root="TestCA", directory="CAServer", password=None, days=None,
            smtp_server=HOST, smtp_port=mail.port, admin_email="admin@example.com",
        )  # fmt: skip
        store = configured_server.store
        notifier = Notifier(store, deliver_now=False)
        stop = notifier.start_retrying(interval=60.0)
        # Another worker is delivering: it read the outbox before our notice was queued.
        fd = os.open(str(store.path) + ".mail.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            req = store.add_request(_request("web"))
            notifier.request_received(req, "AA:BB")
            time.sleep(0.5)
        finally:
            os.close(fd)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not mail.messages:
            time.sleep(0.05)
        stop.set()
        assert [m.rcpt_tos for m in mail.messages] == [["admin@example.com"]]


# -- a data directory that cannot be written ---------------------------------------------------


@contextlib.contextmanager
def _small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (the tests run as root, as CI does)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_serve_refuses_a_read_only_data_directory(tmp_path: Path) -> None:
    with _small_filesystem(tmp_path / "mnt", "8m") as mount:
        data = mount / "data"
        configure_ca(data)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "server_app.py",
                "serve",
                "--data-dir",
                str(data),
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
            ],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode != 0
    assert time.monotonic() - started < 30
    assert "error: cannot write in the data directory" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_full_disk_answers_a_server_fault_and_loses_nothing(tmp_path: Path) -> None:
    with _small_filesystem(tmp_path / "mnt", "6m") as mount:
        data = mount / "data"
        configure_ca(data)
        filler = mount / "filler"
        # No submission limits: the disk must fill before any limit is reached.
        no_limits = SubmissionLimits(per_address=0, pending=0, pending_per_host=0)
        with live_server(data, portal=False, limits=no_limits) as base_url:
            # The running server has its data directory open before the disk fills.
            soap_post(base_url, iris_get_certificate("0"), ACTION + "GetCertificate")
            stored: list[str] = []
            faults: list[str] = []
            csr = _csr_pem()
            # Unbuffered: a partly written last block must not fail again at close.
            with filler.open("wb", buffering=0) as sink, contextlib.suppress(OSError):
                while True:
                    sink.write(b"\0" * 65536)
                    sink.flush()
            for n in range(200):
                body = iris_submit(
                    {"Hostname": "h", "Instance": "IRIS", "Filename": f"f{n}",
                     "Contents": csr + "\n" * 2000, "ContactName": "C"}
                )  # fmt: skip
                answer = soap_post(base_url, body, ACTION + "SubmitCSR")
                if answer.status == 200:
                    stored.append(f"h:IRIS:f{n}")
                else:
                    faults.append(answer.text)
                    break
            assert faults, "the disk never filled"
            assert "HTTP/1" not in faults[0]
            assert "cannot write its database now (disk full or not writable)" in faults[0]
            assert "ERROR #8123" in faults[0]
            assert str(mount) not in faults[0]
            # Reads still work, and once space is back, so do writes.
            got = soap_post(base_url, iris_get_certificate("0"), ACTION + "GetCertificate")
            assert got.status == 200 and b"<Contents>" in got.body
            filler.unlink()
            again = soap_post(
                base_url,
                iris_submit(
                    {
                        "Hostname": "h",
                        "Instance": "IRIS",
                        "Filename": "after",
                        "Contents": csr,
                        "ContactName": "C",
                    }
                ),
                ACTION + "SubmitCSR",
            )
            assert again.status == 200
        with open_data_directory(data) as opened:
            pending = {r.name for r in opened.server.pending()}
    assert pending == {*stored, "h:IRIS:after"}


def test_store_unavailable_is_a_server_fault_told_to_the_caller() -> None:
    assert StoreUnavailable.fault_side == "Server"
    assert StoreUnavailable("x").detail_text == "ERROR #8123: x"


# -- numbers beyond 64 bits --------------------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["9223372036854775808", "12345678901234567890123", "9" * 49], ids=["2^63", "23", "49"]
)
def test_numbers_beyond_64_bits_get_the_empty_answer_and_no_traceback(
    tmp_path: Path, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    configure_ca(data)
    auth.set_password(data, PORTAL_PASSWORD)
    with live_server(data) as base_url:
        answer = soap_post(base_url, iris_get_certificate(number), ACTION + "GetCertificate")
        assert answer.status == 200
        assert b"<GetCertificateResponse" in answer.body and b"<Contents>" not in answer.body
        session = _portal_session(base_url)
        pem = session.get(f"{base_url}/pki/server/certificates/{number}.pem", timeout=10)
        assert pem.status_code == 404
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
