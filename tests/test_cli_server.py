"""``server_app.py``: every administration command, in-process and as a real subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import select
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from pki_soap.ca import fingerprints, keys, names
from pki_soap.ca.authority import CertificateAuthority
from pki_soap.ca.ca_files import CAPaths
from pki_soap.ca.csr import build_csr, csr_pem
from pki_soap.cli.server_app import main
from pki_soap.store import PendingRequest, Store
from tests.engine_support import make_ca, make_csr, open_server, openssl_verify
from tests.service_support import start_serve
from tests.smtp_support import PASSWORD, USER, MailServer, free_port

REPO = Path(__file__).resolve().parents[1]
CA_PASSWORD = b"correct horse battery staple"
ADMIN = "ca-admin@example.test"
CONTACT = "jane.doe@example.test"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.password"
    path.write_bytes(CA_PASSWORD + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[MailServer]:
    with MailServer(tmp_path) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("PKI_CA_PASSWORD", "PKI_SMTP_PASSWORD", "PKI_SMTP_CAFILE"):
        monkeypatch.delenv(variable, raising=False)


def _configure_args(data_dir: Path, password_file: Path, *extra: str) -> list[str]:
    return [
        "configure",
        "--data-dir",
        str(data_dir),
        "--root",
        "TestCA",
        "--dir",
        "CAServer",
        "--subject",
        "/C=US/O=Example/CN=Example Test CA",
        "--ca-days",
        "3650",
        "--days",
        "30",
        "--key-type",
        "ec256",  # fast to generate
        "--password-file",
        str(password_file),
        "--instance",
        "PKITEST",
        "--node",
        "ca.example.test",
        *extra,
    ]


@pytest.fixture
def configured(data_dir: Path, password_file: Path) -> Path:
    """``data_dir`` with a CA configured through the command line (no SMTP)."""
    assert main(_configure_args(data_dir, password_file)) == 0
    return data_dir


def _submit(
    data_dir: Path, host: str = "web1", *, contact_email: str | None = CONTACT
) -> x509.CertificateSigningRequest:
    _, csr = make_csr(
        f"/C=US/O=Example/CN={host}.example.test",
        keys.KeyType.EC256,
        sans=f"DNS:{host}.example.test,IP:127.0.0.1",
    )
    with open_server(data_dir) as server:
        server.submit(
            PendingRequest(
                name="",
                hostname=host,
                instance="IRIS",
                filename=f"{host}_client",
                contents=csr_pem(csr),
                subject=f"/C=US/O=Example/CN={host}.example.test",
                contact_name="Jane Doe",
                contact_phone="+1 617 555 0100",
                contact_email=contact_email,
            )
        )
    return csr


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python server_app.py ARGS`` from the repository root, without a terminal."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PKI_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "server_app.py", *args],
        cwd=REPO,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _store(data_dir: Path) -> Store:
    return Store.open(data_dir)


def _fields(out: str) -> dict[str, str]:
    """The ``Label:   value`` lines of ``show`` and ``status``."""
    found = (re.match(r"([A-Za-z][^:]*):\s+(.*)$", line) for line in out.splitlines())
    return {m.group(1): m.group(2) for m in found if m}


# -- configure ----------------------------------------------------------------------------


def test_configure_creates_a_new_ca(
    data_dir: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_configure_args(data_dir, password_file)) == 0

    out = capsys.readouterr().out.splitlines()
    paths = CAPaths(data_dir / "CAServer", "TestCA")
    authority = CertificateAuthority.load(paths, password=CA_PASSWORD)
    assert out == [
        "Certificate Authority server successfully configured.",
        f"Created new files: {data_dir / 'CAServer' / 'TestCA'}.cer .key, and .srl.",
        "Certificate Authority Certificate SHA-1 fingerprint:",
        authority.fingerprint,
    ]
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert authority.subject_text == "/C=US/O=Example/CN=Example Test CA"
    with _store(data_dir) as store:
        cfg = store.server_config()
    assert cfg is not None
    assert (cfg.root, cfg.days, cfg.instance, cfg.node) == (
        "TestCA",
        30,
        "PKITEST",
        "ca.example.test",
    )


def test_configure_from_separate_subject_fields(data_dir: Path, password_file: Path) -> None:
    args = [
        "configure",
        "--data-dir",
        str(data_dir),
        "--root",
        "FieldsCA",
        "--dir",
        "CA",
        "--country",
        "us",
        "--organization",
        "Example",
        "--common-name",
        "Fields CA",
        "--ca-days",
        "100",
        "--days",
        "10",
        "--key-type",
        "ec256",
        "--password-file",
        str(password_file),
    ]
    assert main(args) == 0

    authority = CertificateAuthority.load(CAPaths(data_dir / "CA", "FieldsCA"))
    assert authority.subject_text == "/C=US/O=Example/CN=Fields CA"


def test_configure_uses_an_existing_pair(
    configured: Path, password_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    other = tmp_path / "other-data"
    ca_dir = configured / "CAServer"
    args = ["configure", "--data-dir", str(other), "--root", "TestCA", "--dir", str(ca_dir)]
    args += ["--days", "90", "--subject", "/CN=ignored", "--password-file", str(password_file)]

    assert main(args) == 0

    captured = capsys.readouterr()
    assert f"Using existing files: {ca_dir / 'TestCA'}.cer and .key" in captured.out
    assert "the subject given is ignored" in captured.err
    with _store(other) as store:
        cfg = store.server_config()
    assert cfg is not None and cfg.days == 90


def test_configure_existing_pair_with_wrong_password(
    configured: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    capsys.readouterr()

    code = main(
        [
            "configure",
            "--data-dir",
            str(configured),
            "--root",
            "TestCA",
            "--dir",
            "CAServer",
            "--days",
            "30",
            "--password-file",
            str(wrong),
        ]
    )

    assert code == 5
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1


def test_configure_refuses_a_mismatched_pair(
    data_dir: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = make_ca(data_dir, directory="CAServer", root="TestCA", key_type=keys.KeyType.EC256)
    other = make_ca(data_dir, directory="Other", root="TestCA", key_type=keys.KeyType.EC256)
    one.paths.key.unlink()
    other.paths.key.rename(one.paths.key)

    code = main(_configure_args(data_dir, password_file))

    assert code == 4
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: ")
    assert "is not the private key of" in last
    with _store(data_dir) as store:
        assert store.server_config() is None


@pytest.mark.parametrize(
    "root",
    ["bad/root", "cache", "", "a" * 51, "../up"],
    ids=["slash", "cache", "empty", "long", "dots"],
)
def test_configure_refuses_an_invalid_root_before_asking_anything(
    data_dir: Path, root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No password source at all: the root must be refused first.
    code = main(
        [
            "configure",
            "--data-dir",
            str(data_dir),
            "--root",
            root,
            "--dir",
            "CA",
            "--subject",
            "/CN=x",
            "--ca-days",
            "10",
            "--days",
            "10",
        ]
    )

    assert code == 2
    assert "root" in capsys.readouterr().err
    assert not (data_dir / "CA").exists()


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("C=US/CN=x", "must look like"),
        ("/C=USA/CN=x", "two-letter"),
        ("/XX=1", "unknown subject attribute"),
        ("/", "at least one attribute"),
    ],
    ids=["no-slash", "country", "unknown-key", "empty"],
)
def test_configure_refuses_an_invalid_subject(
    data_dir: Path,
    password_file: Path,
    subject: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _configure_args(data_dir, password_file)
    args[args.index("--subject") + 1] = subject

    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (data_dir / "CAServer" / "TestCA.key").exists()


def test_configure_refuses_subject_text_and_fields_together(
    data_dir: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_configure_args(data_dir, password_file), "--common-name", "x"]) == 2
    assert "either as --subject or as separate fields" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("mail.example.test", "mail.example.test", None),
        ("mail.example.test:2525", "mail.example.test", 2525),
        ("[::1]:25", "::1", 25),
        ("::1", "::1", None),
    ],
    ids=["host", "host-port", "ipv6-port", "ipv6"],
)
def test_configure_stores_the_smtp_address(
    data_dir: Path, password_file: Path, address: str, host: str, port: int | None
) -> None:
    assert main([*_configure_args(data_dir, password_file), "--smtp-server", address]) == 0

    with _store(data_dir) as store:
        cfg = store.server_config()
    assert cfg is not None
    assert (cfg.smtp_server, cfg.smtp_port) == (host, port)


@pytest.mark.parametrize(
    "address",
    ["mail:0", "mail:99999", "mail:x", ":25", "[::1"],
    ids=["zero", "big", "word", "no-host", "bracket"],
)
def test_configure_refuses_a_bad_smtp_address(
    data_dir: Path, password_file: Path, address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_configure_args(data_dir, password_file), "--smtp-server", address]) == 2
    assert capsys.readouterr().err.startswith("error: SMTP")


def test_configure_sends_the_confirmation(
    data_dir: Path, password_file: Path, smtp: MailServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _configure_args(data_dir, password_file)
    args += ["--smtp-server", f"127.0.0.1:{smtp.port}", "--admin-email", ADMIN]

    assert main(args) == 0

    assert capsys.readouterr().out.splitlines()[-1] == f"Confirmation email sent to: {ADMIN}"
    [mail] = smtp.messages
    assert mail.rcpt_tos == [ADMIN]
    assert mail.subject == "Certificate Authority server configured"


def test_configure_with_smtp_down_succeeds_and_queues(
    data_dir: Path, password_file: Path, smtp: MailServer, capsys: pytest.CaptureFixture[str]
) -> None:
    smtp.stop()
    args = _configure_args(data_dir, password_file)
    args += ["--smtp-server", f"127.0.0.1:{smtp.port}", "--admin-email", ADMIN]

    assert main(args) == 0

    out = capsys.readouterr().out
    assert "Confirmation email sent to" not in out
    assert f"Confirmation email to {ADMIN} not delivered yet (cannot connect" in out
    smtp.start()
    assert main(["status", "--retry", "--data-dir", str(data_dir)]) == 0
    assert "Delivered 1 queued e-mail message(s)." in capsys.readouterr().out
    assert [m.rcpt_tos for m in smtp.messages] == [[ADMIN]]


def test_configure_reads_the_smtp_password_from_a_file(
    data_dir: Path, password_file: Path, tmp_path: Path
) -> None:
    smtp_file = tmp_path / "smtp.password"
    smtp_file.write_text(PASSWORD + "\n")
    smtp_file.chmod(0o600)
    args = _configure_args(data_dir, password_file)
    args += ["--smtp-server", "127.0.0.1:1", "--smtp-user", USER]
    args += ["--smtp-password-file", str(smtp_file)]

    assert main(args) == 0

    with _store(data_dir) as store:
        cfg = store.server_config()
    assert cfg is not None
    assert (cfg.smtp_user, cfg.smtp_password) == (USER, PASSWORD)


# -- pending, show ------------------------------------------------------------------------


def test_pending_lists_requests_in_aligned_columns(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit(configured, "web1")
    _submit(configured, "database-server", contact_email=None)
    capsys.readouterr()

    assert main(["pending", "--data-dir", str(configured)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["Name", "Hostname", "Instance", "Filename", "Contact", "Received"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].startswith("web1:IRIS:web1_client ")
    assert lines[3].startswith("database-server:IRIS:database-server_client ")
    assert "Jane Doe (+1 617 555 0100, jane.doe@example.test)" in lines[2]
    # Every column starts at the same offset in every row.
    column = lines[0].index("Hostname")
    assert lines[2][column:].startswith("web1 ")
    assert lines[3][column:].startswith("database-server ")


def test_pending_with_nothing_pending(configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--data-dir", str(configured), "pending"]) == 0
    assert capsys.readouterr().out == "No pending Certificate Signing Requests.\n"


def test_show_prints_everything_to_verify(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csr = _submit(configured)
    capsys.readouterr()

    assert main(["show", "web1:IRIS:web1_client", "--data-dir", str(configured)]) == 0

    out = capsys.readouterr().out
    assert _fields(out) | {"Received": ""} == {
        "Name": "web1:IRIS:web1_client",
        "Received": "",
        "Host name": "web1",
        "Instance": "IRIS",
        "File name": "web1_client",
        "Subject (as sent)": "/C=US/O=Example/CN=web1.example.test",
        "Contact name": "Jane Doe",
        "Contact phone": "+1 617 555 0100",
        "Contact e-mail": CONTACT,
        "Subject (in the CSR)": "/C=US/O=Example/CN=web1.example.test",
        "Requested subjectAltNames": "DNS:web1.example.test, IP:127.0.0.1",
        "Key": "EC P-256",
        "SHA-1 fingerprint": fingerprints.fingerprint(csr),
        "Issuance policy": "no objection",
    }
    for expected in (
        "--usage tls (TLS/SSL and XML security) would issue:",
        "--usage intermediate (Intermediate Certificate Authority) would issue:",
        "--usage codesign (Code signing) would issue:",
    ):
        assert expected in out


@pytest.mark.parametrize("command", ["show", "delete"], ids=["show", "delete"])
def test_unknown_request_name(
    configured: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    extra = ["--yes"] if command == "delete" else []
    assert main([command, "nope", "--data-dir", str(configured), *extra]) == 3
    assert capsys.readouterr().err == 'error: no pending Certificate Signing Request "nope"\n'


# -- issue --------------------------------------------------------------------------------


def test_issue_one_request(
    configured: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit(configured)
    capsys.readouterr()

    code = main(
        [
            "issue",
            "web1:IRIS:web1_client",
            "--usage",
            "tls",
            "--password-file",
            str(password_file),
            "--data-dir",
            str(configured),
        ]
    )

    assert code == 0
    assert capsys.readouterr().out == (
        'Certificate number 1 issued for Certificate Signing Request "web1:IRIS:web1_client"\n'
    )
    with _store(configured) as store:
        assert store.requests() == []
        issued = store.certificate(1)
    assert issued is not None
    cert_file = configured / "web1.cer"
    cert_file.write_text(issued.contents)
    result = openssl_verify(configured / "CAServer" / "TestCA.cer", cert_file, purpose="sslserver")
    assert result.returncode == 0, result.stderr


def test_issue_with_wrong_password_issues_nothing(
    configured: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit(configured)
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong password\n")
    wrong.chmod(0o600)
    capsys.readouterr()

    code = main(
        [
            "issue",
            "web1:IRIS:web1_client",
            "--usage",
            "tls",
            "--password-file",
            str(wrong),
            "--data-dir",
            str(configured),
        ]
    )

    assert code == 5
    assert capsys.readouterr().err.startswith("error: ")
    with _store(configured) as store:
        assert [r.name for r in store.requests()] == ["web1:IRIS:web1_client"]
        assert store.count_certificates() == 0
    assert (configured / "CAServer" / "TestCA.srl").read_text() == "00\n"


def test_issue_all(
    configured: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for host in ("web1", "web2", "web3"):
        _submit(configured, host)
    capsys.readouterr()

    code = main(
        [
            "issue",
            "--all",
            "--usage",
            "codesign",
            "--password-file",
            str(password_file),
            "--data-dir",
            str(configured),
        ]
    )

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        f'Certificate number {n} issued for Certificate Signing Request "{h}:IRIS:{h}_client"'
        for n, h in ((1, "web1"), (2, "web2"), (3, "web3"))
    ]
    with _store(configured) as store:
        assert [c.usage for c in store.certificates()] == ["codesign"] * 3


def test_issue_all_reports_each_failed_request_and_issues_the_others(
    configured: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit(configured, "web1")
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = build_csr(weak_key, names.subject_from_text("/CN=weak.example.test"))
    with _store(configured) as store:  # stored by an older version, before the key policy
        store.add_request(
            PendingRequest(
                name="legacy",
                hostname="old",
                instance="IRIS",
                filename="old_client",
                contents=csr_pem(weak),
                subject="",
                contact_name="Old Timer",
            )
        )
    _submit(configured, "web2")
    capsys.readouterr()

    code = main(
        [
            "issue",
            "--all",
            "--usage",
            "tls",
            "--password-file",
            str(password_file),
            "--data-dir",
            str(configured),
        ]
    )

    out, err = capsys.readouterr()
    assert code == 2  # UnacceptableKey is bad input
    assert out.splitlines() == [
        'Certificate number 1 issued for Certificate Signing Request "web1:IRIS:web1_client"',
        'Certificate number 2 issued for Certificate Signing Request "web2:IRIS:web2_client"',
    ]
    assert err.splitlines() == [
        'error: "legacy": RSA 1024 keys are too weak; use RSA of at '
        "least 2048 bits, EC P-256/P-384/P-521 or Ed25519"
    ]
    with _store(configured) as store:
        assert [r.name for r in store.requests()] == ["legacy"]
        assert [c.number for c in store.certificates()] == [1, 2]


def test_issue_all_mails_every_contact_once_at_the_end(
    data_dir: Path, password_file: Path, smtp: MailServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*_configure_args(data_dir, password_file), "--smtp-server", f"127.0.0.1:{smtp.port}"]
    assert main(args) == 0
    for host in ("web1", "web2", "web3"):
        _submit(data_dir, host)
    _submit(data_dir, "web4", contact_email=None)
    capsys.readouterr()

    code = main(
        [
            "issue",
            "--all",
            "--usage",
            "tls",
            "--password-file",
            str(password_file),
            "--data-dir",
            str(data_dir),
        ]
    )

    assert code == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    received = sorted((m.rcpt_tos, m.subject) for m in smtp.messages)
    assert received == [
        ([CONTACT], f'Certificate number {n} issued for "web{n}_client"') for n in (1, 2, 3)
    ]
    with _store(data_dir) as store:
        assert store.undelivered() == []


@pytest.mark.parametrize(
    "args",
    [["--usage", "tls"], ["x", "--all", "--usage", "tls"]],
    ids=["neither", "both"],
)
def test_issue_needs_exactly_one_of_name_and_all(
    configured: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["issue", *args, "--data-dir", str(configured)]) == 2
    assert "either one request NAME or --all" in capsys.readouterr().err


def test_issue_uses_the_password_from_the_environment(configured: Path) -> None:
    _submit(configured)

    result = _run(
        "issue",
        "web1:IRIS:web1_client",
        "--usage",
        "intermediate",
        "--data-dir",
        str(configured),
        env={"PKI_CA_PASSWORD": CA_PASSWORD.decode()},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Certificate number 1 issued")


# -- delete, certificates, reinitialize ---------------------------------------------------


def test_delete_with_yes_notifies_the_contact(
    data_dir: Path, password_file: Path, smtp: MailServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*_configure_args(data_dir, password_file), "--smtp-server", f"127.0.0.1:{smtp.port}"]
    assert main(args) == 0
    _submit(data_dir)
    capsys.readouterr()

    assert main(["delete", "web1:IRIS:web1_client", "--yes", "--data-dir", str(data_dir)]) == 0

    assert (
        capsys.readouterr().out == 'Certificate Signing Request "web1:IRIS:web1_client" deleted.\n'
    )
    with _store(data_dir) as store:
        assert store.requests() == []
    [mail] = smtp.messages
    assert mail.rcpt_tos == [CONTACT]
    assert "not approved" in mail.subject


@pytest.mark.parametrize(
    "args", [["delete", "web1:IRIS:web1_client"], ["reinitialize"]], ids=["delete", "reinitialize"]
)
def test_questions_without_terminal_or_yes_change_nothing(
    configured: Path, args: list[str]
) -> None:
    _submit(configured)

    result = _run(*args, "--data-dir", str(configured))

    assert result.returncode == 2
    assert result.stderr == "error: confirmation needed: run on a terminal or add --yes\n"
    with _store(configured) as store:
        assert store.count_requests() == 1
        assert store.server_config() is not None


def test_certificates_table(
    configured: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit(configured)
    assert (
        main(
            [
                "issue",
                "--all",
                "--usage",
                "tls",
                "--password-file",
                str(password_file),
                "--data-dir",
                str(configured),
            ]
        )
        == 0
    )
    capsys.readouterr()

    assert main(["certificates", "--data-dir", str(configured)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "Number",
        "Hostname",
        "Instance",
        "Filename",
        "Subject",
        "Usage",
        "Not",
        "after",
        "State",
    ]
    assert lines[2].split()[-1] == "valid"
    assert lines[2].split()[:5] == [
        "1",
        "web1",
        "IRIS",
        "web1_client",
        "/C=US/O=Example/CN=web1.example.test",
    ]
    assert "TLS/SSL and XML security" in lines[2]


def test_reinitialize_forgets_records_but_keeps_files(
    configured: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit(configured)
    capsys.readouterr()

    assert main(["reinitialize", "--yes", "--data-dir", str(configured)]) == 0

    assert capsys.readouterr().out == "Certificate Authority server reinitialized.\n"
    with _store(configured) as store:
        assert store.server_config() is None
        assert store.count_requests() == 0
    assert (configured / "CAServer" / "TestCA.key").exists()
    assert main(["status", "--data-dir", str(configured)]) == 0
    assert "not configured" in capsys.readouterr().out


# -- status and the e-mail outbox ---------------------------------------------------------


def test_status_summarises_without_secrets(
    data_dir: Path, password_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    smtp_file = tmp_path / "smtp.password"
    smtp_file.write_text("smtp-secret-value\n")
    smtp_file.chmod(0o600)
    args = _configure_args(data_dir, password_file)
    args += [
        "--smtp-server",
        "127.0.0.1:1",
        "--smtp-user",
        USER,
        "--smtp-password-file",
        str(smtp_file),
    ]
    args += ["--admin-email", ADMIN]
    assert main(args) == 0  # the confirmation cannot go anywhere: port 1
    _submit(data_dir)
    capsys.readouterr()

    assert main(["status", "--data-dir", str(data_dir)]) == 0

    out = capsys.readouterr().out
    assert "smtp-secret-value" not in out
    fields = _fields(out)
    assert {
        key: fields[key]
        for key in (
            "SMTP server",
            "SMTP user",
            "SMTP password",
            "Administrator e-mail",
            "Pending CSRs",
            "Issued certificates",
            "Serial counter (.srl)",
            "Instance",
            "Node",
            "Issued certificates valid",
            "CA subject",
            "Undelivered e-mail",
        )
    } == {
        "SMTP server": "127.0.0.1:1",
        "SMTP user": USER,
        "SMTP password": "set",
        "Administrator e-mail": ADMIN,
        "Pending CSRs": "1",
        "Issued certificates": "0",
        "Serial counter (.srl)": "00 (next certificate number 1)",
        "Instance": "PKITEST",
        "Node": "ca.example.test",
        "Issued certificates valid": "30 days",
        "CA subject": "/C=US/O=Example/CN=Example Test CA",
        "Undelivered e-mail": "2",
    }
    assert "cannot connect to SMTP server 127.0.0.1:1" in out
    assert "Certificate Authority server configured" in out


def test_smtp_down_during_submit_and_issue_then_retry_delivers_once(
    data_dir: Path, password_file: Path, smtp: MailServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _configure_args(data_dir, password_file)
    args += ["--smtp-server", f"127.0.0.1:{smtp.port}", "--admin-email", ADMIN]
    assert main(args) == 0
    smtp.stop()

    _submit(data_dir)  # succeeds although the notice cannot go out
    issue = [
        "issue",
        "web1:IRIS:web1_client",
        "--usage",
        "tls",
        "--password-file",
        str(password_file),
    ]
    assert main([*issue, "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    assert main(["status", "--data-dir", str(data_dir)]) == 0
    assert "Undelivered e-mail: 2" in capsys.readouterr().out

    smtp.start()
    assert main(["status", "--retry", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "Delivered 2 queued e-mail message(s)." in out
    assert "Undelivered e-mail: none" in out
    assert main(["status", "--retry", "--data-dir", str(data_dir)]) == 0
    assert "Delivered 0 queued e-mail message(s)." in capsys.readouterr().out

    received = [(m.rcpt_tos, m.subject) for m in smtp.messages]
    assert received == [
        ([ADMIN], "Certificate Authority server configured"),
        ([ADMIN], 'New Certificate Signing Request "web1_client" from web1'),
        ([CONTACT], 'Certificate number 1 issued for "web1_client"'),
    ]


def test_starttls_and_auth_from_the_command_line(
    data_dir: Path, password_file: Path, tmp_path: Path
) -> None:
    with MailServer(tmp_path, tls=True) as smtp:
        smtp_file = tmp_path / "smtp.password"
        smtp_file.write_text(PASSWORD + "\n")
        smtp_file.chmod(0o600)
        assert smtp.cafile is not None

        result = _run(
            *_configure_args(data_dir, password_file),
            "--smtp-server",
            f"127.0.0.1:{smtp.port}",
            "--smtp-user",
            USER,
            "--smtp-password-file",
            str(smtp_file),
            "--admin-email",
            ADMIN,
            env={"PKI_SMTP_CAFILE": str(smtp.cafile)},
        )

        assert result.returncode == 0, result.stderr
        assert f"Confirmation email sent to: {ADMIN}" in result.stdout
        [mail] = smtp.messages
        assert mail.authenticated_as == USER


# -- as a subprocess: exit codes, one error line, no traceback ----------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pending"], 4, "no CA server data in"),
        (
            [
                "configure",
                "--root",
                "TestCA",
                "--dir",
                "CA",
                "--days",
                "3",
                "--subject",
                "/CN=x",
                "--ca-days",
                "3",
            ],
            2,
            "the new CA key password is needed: use --password-file",
        ),
        (["configure", "--root", "cache", "--dir", "CA", "--days", "3"], 2, "may not be 'cache'"),
        (["issue", "x", "--usage", "tls", "--password-file", "/nonexistent/pw"], 4, "no CA server"),
    ],
    ids=["unconfigured", "no-password", "bad-root", "no-data"],
)
def test_errors_are_one_line_with_the_exit_code(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = _run(*args, "--data-dir", str(tmp_path / "pki-data"))

    assert result.returncode == code
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_subprocess_errors_on_a_configured_server(configured: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    wrong.chmod(0o644)
    _submit(configured)
    cases = [
        (["show", "nope"], 3, 'error: no pending Certificate Signing Request "nope"'),
        (["issue", "nope", "--usage", "tls"], 3, "error: no pending"),
        (["issue", "--all", "--usage", "tls"], 2, "error: the CA key password is needed"),
        (
            ["issue", "--all", "--usage", "tls", "--password-file", str(tmp_path / "missing")],
            2,
            "error: cannot read the password file",
        ),
        (["issue", "--all", "--usage", "tls", "--password-file", str(wrong)], 5, "error: "),
    ]
    for args, code, message in cases:
        result = _run(*args, "--data-dir", str(configured))
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    # The group/other-readable password file is pointed out.
    assert "warning: the password file" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["issue", "x"], ["frobnicate"], ["issue", "x", "--usage", "email"]],
    ids=["no-usage", "unknown-command", "bad-usage"],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: server_app.py")
    assert "Traceback" not in result.stderr


def test_help_lists_every_command() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for command in (
        "configure",
        "reinitialize",
        "pending",
        "show",
        "issue",
        "delete",
        "certificates",
        "status",
    ):
        assert command in result.stdout


# -- the whole flow: `server_app.py serve` in one process, `client_app.py` in another -------


def _wait_for_service(port: int, serve: subprocess.Popen[Any]) -> None:
    url = f"http://127.0.0.1:{port}/isc/pki/PKI.CAServer.cls?WSDL"
    for _ in range(300):
        if serve.poll() is not None:
            output = serve.stdout.read() if serve.stdout else ""
            pytest.fail(f"serve exited with {serve.returncode}: {output!r}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.1)
    pytest.fail("the service did not start within 30 s")


def _client(client_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKI_")}
    result = subprocess.run(
        [sys.executable, "client_app.py", "--data-dir", str(client_dir), *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (args, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def test_two_processes_submit_issue_get_verify(
    data_dir: Path, password_file: Path, smtp: MailServer, tmp_path: Path
) -> None:
    configure = _run(
        *_configure_args(data_dir, password_file),
        "--smtp-server",
        f"127.0.0.1:{smtp.port}",
        "--admin-email",
        ADMIN,
    )
    assert configure.returncode == 0, configure.stderr
    port = free_port()
    serve = start_serve(data_dir, port, "--workers", "1", "--no-portal")
    client_dir = tmp_path / "client-data"
    try:
        _wait_for_service(port, serve)
        _client(
            client_dir,
            "configure",
            "--server",
            "127.0.0.1",
            "--port",
            str(port),
            "--contact-name",
            "Jane Doe",
            "--contact-email",
            CONTACT,
            "--hostname",
            "web1",
            "--instance",
            "IRIS",
        )
        got_ca = _client(client_dir, "get-ca")
        submitted = _client(
            client_dir,
            "submit",
            "--root",
            "web1_client",
            "--subject",
            "/C=US/O=Example/CN=web1.example.test",
            "--san",
            "DNS:web1.example.test",
            "--key-type",
            "ec256",
        )
        assert (
            'Certificate Signing Request "web1_client" successfully submitted' in submitted.stdout
        )
        assert "at instance PKITEST on node ca.example.test" in submitted.stdout

        pending = _run("pending", "--data-dir", str(data_dir))
        assert "web1:IRIS:web1_client" in pending.stdout
        issued = _run(
            "issue",
            "web1:IRIS:web1_client",
            "--usage",
            "tls",
            "--password-file",
            str(password_file),
            "--data-dir",
            str(data_dir),
        )
        assert issued.returncode == 0, issued.stderr
        assert issued.stdout.startswith("Certificate number 1 issued")

        got = _client(client_dir, "get", "1")
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        if serve.stdout:
            serve.stdout.close()

    assert "saved in file" in got_ca.stdout and "saved in file" in got.stdout
    ca_file = client_dir / "TestCA.cer"
    cert_file = client_dir / "web1_client.cer"
    result = openssl_verify(ca_file, cert_file, purpose="sslserver")
    assert result.returncode == 0, result.stderr
    # The administrator heard of the request (from the server process), the contact of
    # the certificate (from the issuing command), each exactly once.
    subjects = [(m.rcpt_tos, m.subject) for m in smtp.messages]
    assert subjects == [
        ([ADMIN], "Certificate Authority server configured"),
        ([ADMIN], 'New Certificate Signing Request "web1_client" from web1'),
        ([CONTACT], 'Certificate number 1 issued for "web1_client"'),
    ]
    assert (
        fingerprints.fingerprint(
            x509.load_pem_x509_csr((client_dir / "web1_client.csr").read_bytes())
        )
        in smtp.messages[1].body
    )


def test_status_reports_unusable_ca_files(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit(configured)
    (configured / "CAServer" / "TestCA.cer").unlink()
    capsys.readouterr()

    assert main(["status", "--data-dir", str(configured)]) == 4

    captured = capsys.readouterr()
    assert _fields(captured.out)["CA files"].startswith("UNUSABLE: ")
    assert _fields(captured.out)["Pending CSRs"] == "1"
    assert captured.err == "error: the CA files are unusable (see above)\n"
    assert main(["show", "web1:IRIS:web1_client", "--data-dir", str(configured)]) == 0
    assert "Cannot preview the certificate: " in capsys.readouterr().out


# -- on a terminal: password prompts and questions -----------------------------------------

# Runs the command on a new pseudo-terminal and relays it to our pipes, so getpass and
# input() talk to a real terminal.
_ON_A_TERMINAL = "import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))"


class _Terminal:
    """``server_app.py ARGS`` on a pseudo-terminal; answer its prompts one at a time."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PKI_")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ON_A_TERMINAL, sys.executable, "server_app.py", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = ""

    def expect(self, text: str) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while text not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never saw {text!r} in {self.output!r}"
            ready, _, _ = select.select([self.process.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                assert chunk, f"ended before {text!r}: {self.output!r}"
                self.output += chunk.decode(errors="replace").replace("\r\n", "\n")

    def answer(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def finish(self) -> int:
        assert self.process.stdout is not None and self.process.stdin is not None
        self.process.stdin.close()
        self.output += self.process.stdout.read().decode(errors="replace").replace("\r\n", "\n")
        self.process.stdout.close()
        return self.process.wait(timeout=60)


def test_configure_asks_for_the_new_password_twice(data_dir: Path) -> None:
    terminal = _Terminal(
        "configure",
        "--data-dir",
        str(data_dir),
        "--root",
        "TestCA",
        "--dir",
        "CAServer",
        "--subject",
        "/CN=Prompted CA",
        "--ca-days",
        "100",
        "--days",
        "10",
        "--key-type",
        "ec256",
    )
    terminal.expect("New CA key password: ")
    terminal.answer("typed secret")
    terminal.expect("New CA key password (again): ")
    terminal.answer("typed secret")

    assert terminal.finish() == 0
    assert "Certificate Authority server successfully configured." in terminal.output
    assert "typed secret" not in terminal.output  # not echoed
    CertificateAuthority.load(CAPaths(data_dir / "CAServer", "TestCA"), password=b"typed secret")


def test_configure_refuses_differing_passwords(data_dir: Path) -> None:
    terminal = _Terminal(
        "configure",
        "--data-dir",
        str(data_dir),
        "--root",
        "TestCA",
        "--dir",
        "CAServer",
        "--subject",
        "/CN=Prompted CA",
        "--ca-days",
        "100",
        "--days",
        "10",
    )
    terminal.expect("New CA key password: ")
    terminal.answer("first")
    terminal.expect("(again): ")
    terminal.answer("second")

    assert terminal.finish() == 2
    assert "error: the two new CA key passwords differ" in terminal.output
    assert not (data_dir / "CAServer").exists()


@pytest.mark.parametrize(
    ("reply", "code", "still_pending"),
    [("n", 1, True), ("", 1, True), ("y", 0, False)],
    ids=["no", "default-no", "yes"],
)
def test_delete_asks_first(configured: Path, reply: str, code: int, still_pending: bool) -> None:
    _submit(configured)
    terminal = _Terminal("delete", "web1:IRIS:web1_client", "--data-dir", str(configured))
    terminal.expect("Continue? [y/N] ")
    terminal.answer(reply)

    assert terminal.finish() == code
    with _store(configured) as store:
        assert (store.count_requests() == 1) is still_pending
    expected = "Cancelled; nothing was changed." if still_pending else "deleted."
    assert expected in terminal.output


def test_admin_commands_do_not_load_the_service(tmp_path: Path) -> None:
    probe = (
        "import sys; from pki_soap.cli.server_app import main; "
        f"code = main(['pending', '--data-dir', {str(tmp_path / 'none')!r}]); "
        "print(code, sorted(m for m in ('spyne', 'gunicorn', 'zeep') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout == "4 []\n", result.stderr


def test_serve_help_does_not_load_the_service() -> None:
    # One parser holds every command's options; serving's libraries load only to serve.
    probe = (
        "import contextlib, io, sys; from pki_soap.cli.server_app import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['serve', '--help'])\n"
        "print(sorted(m for m in ('spyne', 'gunicorn', 'zeep', 'argon2') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout == "[]\n", result.stderr


@pytest.mark.parametrize(
    ("command", "option"),
    [("serve", "--port"), ("portal-password", "--password-file")],
    ids=["serve", "portal-password"],
)
def test_commands_of_other_modules_are_registered(command: str, option: str) -> None:
    listed = _run("--help")
    assert command in listed.stdout
    result = _run(command, "--help")
    assert result.returncode == 0
    assert option in result.stdout


# -- a newcomer's first commands, and the gaps they found ------------------------------------


def test_no_command_on_an_unconfigured_directory_says_how_to_begin(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "server_app.py")],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("PKI_")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4
    assert result.stdout.splitlines() == [
        "No Certificate Authority is configured in pki-data yet. Configure one:",
        '  python server_app.py configure --root MyCA --dir CAServer --subject "/O=Example/CN='
        'Example CA" --ca-days 3650 --days 365',
        "(a new key and certificate; <root>.cer and <root>.key already in --dir are used), or",
        "start a throw-away demo CA, for testing only:",
        "  python server_app.py serve --demo",
        "Then `python server_app.py` serves it; `python server_app.py --help` lists every command.",
    ]
    assert result.stderr == "error: no Certificate Authority is configured in pki-data\n"
    assert list(tmp_path.iterdir()) == []  # looking created nothing


def test_no_command_serves_the_configured_ca(configured: Path) -> None:
    port = free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "server_app.py",
            "--data-dir",
            str(configured),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_service(port, serve)
        url = f"http://127.0.0.1:{port}/isc/pki/PKI.CAServer.cls?WSDL"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert b"PKI.CAServer" in answer.read()
    finally:
        serve.terminate()
        output, _ = serve.communicate(timeout=30)
    assert output.startswith(f"Serving PKI.CAServer at http://127.0.0.1:{port}/")
    assert "warning" not in output


def test_serve_on_an_unconfigured_directory_warns_and_serves(tmp_path: Path) -> None:
    port = free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "server_app.py",
            "serve",
            "--data-dir",
            str(tmp_path / "empty"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_service(port, serve)
    finally:
        serve.terminate()
        output, _ = serve.communicate(timeout=30)
    assert output.startswith(
        f"warning: no Certificate Authority is configured in {tmp_path / 'empty'}: SubmitCSR "
        "answers a fault and there is no CA certificate to get until one is. Configure it with "
        "`server_app.py configure ...` or in the portal (/pki/), or serve with --demo.\n"
    )


@pytest.mark.parametrize("program", ["server_app.py", "client_app.py"])
def test_help_lists_each_command_on_one_line(program: str) -> None:
    env = {**os.environ, "COLUMNS": "60"}  # narrower than the lines: nothing may wrap
    result = subprocess.run(
        [sys.executable, program, "--help"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    block = result.stdout.split("commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    expected = (
        ["configure", "reinitialize", "pending", "show", "issue", "delete", "certificates",
         "revoke", "crl", "status", "drop-mail", "settings", "exchanges", "serve",
         "https-certificate", "portal-password"]
        if program == "server_app.py"
        else ["show", "configure", "get-ca", "submit", "list", "get", "export"]
    )  # fmt: skip
    assert [line.split()[0] for line in block] == expected
    # Each line: two spaces, the command, and its help text on the same line.
    assert all(re.fullmatch(r"  [a-z-]+ +\S.*", line) for line in block), block


def _submit_as(data_dir: Path, host: str, filename: str) -> str:
    _, csr = make_csr(f"/CN={host}.example.test", keys.KeyType.EC256)
    with open_server(data_dir) as server:
        server.submit(
            PendingRequest(
                name="",
                hostname=host,
                instance="IRIS",
                filename=filename,
                contents=csr_pem(csr),
                subject="",
                contact_name="Jane Doe",
            )
        )
    return f"{host}:IRIS:{filename}"


def test_a_request_is_named_by_its_filename_or_the_start_of_its_name(
    configured: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _submit_as(configured, "web1", "web_client")
    _submit_as(configured, "web2", "web_client")
    _submit_as(configured, "db1", "db_client")
    data = ["--data-dir", str(configured)]

    assert main(["show", "db_client", *data]) == 0  # by Filename
    assert "Name:" in capsys.readouterr().out
    assert main(["show", "web1:", *data]) == 0  # by the start of the Name
    assert "web1:IRIS:web_client" in capsys.readouterr().out

    assert main(["show", "web_client", *data]) == 2  # two Filenames fit: say which
    assert capsys.readouterr().err == (
        'error: "web_client" fits 2 pending requests (web1:IRIS:web_client, '
        "web2:IRIS:web_client); give more of the Name\n"
    )
    assert main(["delete", "nothing", "--yes", *data]) == 3

    issue = ["issue", "web2", "--usage", "tls", "--password-file", str(password_file), *data]
    assert main(issue) == 0
    assert capsys.readouterr().out == (
        'Certificate number 1 issued for Certificate Signing Request "web2:IRIS:web_client"\n'
    )
    assert main(["delete", "web_client", "--yes", *data]) == 0  # now only one fits
    assert 'Certificate Signing Request "web1:IRIS:web_client" deleted.' in capsys.readouterr().out
    with _store(configured) as store:
        assert [r.name for r in store.requests()] == ["db1:IRIS:db_client"]


def test_configure_says_which_lone_file_it_renamed(
    data_dir: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lone = data_dir / "CAServer" / "TestCA.key"
    lone.parent.mkdir(parents=True)
    lone.write_bytes(b"a key without its certificate")

    assert main(_configure_args(data_dir, password_file)) == 0

    out = capsys.readouterr().out
    assert out.endswith(
        f'Renamed "{lone}" to "{lone}.old": its partner file was missing, so a new pair was made.\n'
    )
    assert (
        data_dir / "CAServer" / "TestCA.key.old"
    ).read_bytes() == b"a key without its certificate"


def test_queued_mail_survives_reinitialize_until_dropped(
    data_dir: Path, password_file: Path, smtp: MailServer, capsys: pytest.CaptureFixture[str]
) -> None:
    smtp.stop()
    data = ["--data-dir", str(data_dir)]
    args = _configure_args(data_dir, password_file)
    assert main([*args, "--smtp-server", f"127.0.0.1:{smtp.port}", "--admin-email", ADMIN]) == 0
    _submit(data_dir)  # a second notice waits too
    capsys.readouterr()

    assert main(["reinitialize", "--yes", *data]) == 0
    assert capsys.readouterr().out == (
        "Certificate Authority server reinitialized.\n"
        "2 undelivered e-mail message(s) stay queued and are retried; `server_app.py status` "
        "lists them, `server_app.py drop-mail --all` drops them.\n"
    )
    assert main(["drop-mail", "7", "--yes", *data]) == 3
    assert capsys.readouterr().err == "error: no undelivered e-mail message with id 7\n"
    assert main(["drop-mail", *data]) == 2
    assert main(["drop-mail", "1", *data]) == 2  # no terminal to confirm on, no --yes
    assert "confirmation needed" in capsys.readouterr().err

    assert main(["drop-mail", "1", "--yes", *data]) == 0
    assert capsys.readouterr().out == "Dropped 1 undelivered e-mail message(s): 1\n"
    assert main(["drop-mail", "--all", "--yes", *data]) == 0
    assert capsys.readouterr().out == "Dropped 1 undelivered e-mail message(s): 2\n"
    assert main(["status", *data]) == 0
    assert "Undelivered e-mail: none" in capsys.readouterr().out
    smtp.start()
    assert main(["status", "--retry", *data]) == 0
    assert smtp.messages == []  # dropped means never sent


def test_mail_warnings_come_after_the_result(
    configured: Path, password_file: Path, smtp: MailServer
) -> None:
    # Configured with an SMTP server that is down: the issue notice cannot go out.
    with _store(configured) as store:
        cfg = store.server_config()
        assert cfg is not None
        cfg.smtp_server, cfg.smtp_port = "127.0.0.1", smtp.port
        store.save_server_config(cfg)
    smtp.stop()
    _submit(configured)
    result = subprocess.run(
        [
            sys.executable,
            "server_app.py",
            "issue",
            "web1_client",
            "--usage",
            "tls",
            "--password-file",
            str(password_file),
            "--data-dir",
            str(configured),
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream: the order the user sees
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == (
        'Certificate number 1 issued for Certificate Signing Request "web1:IRIS:web1_client"'
    )
    assert len(lines) == 2 and lines[1].startswith(f"warning: e-mail 1 to {CONTACT} not delivered")
