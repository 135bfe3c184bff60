"""``server_app.py revoke``, ``crl``, and revocation in ``configure``, ``certificates``, ``status``
and ``serve``: in-process, and once as a real subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from pki_soap.cli.serve import configured_public_url
from pki_soap.cli.server_app import main
from tests.engine_support import open_server
from tests.revocation_support import issue, run, write

REPO = Path(__file__).resolve().parents[1]
CA_PASSWORD = b"correct horse battery staple"


@pytest.fixture(autouse=True)
def _no_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("PKI_CA_PASSWORD", "PKI_SMTP_PASSWORD", "PKI_SMTP_CAFILE"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.password"
    path.write_bytes(CA_PASSWORD + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def configured(data_dir: Path, password_file: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A CA configured through the command line with a public URL, and two certificates."""
    args = ["configure", "--data-dir", str(data_dir), "--root", "CliCA", "--dir", "CA"]
    args += ["--subject", "/O=Example/CN=CLI CA", "--ca-days", "365", "--days", "30"]
    args += ["--key-type", "ec256", "--password-file", str(password_file)]
    args += ["--public-url", "http://ca.example.test:52773", "--crl-days", "7"]
    assert main(args) == 0
    with open_server(data_dir) as server:
        for host in ("one", "two"):
            issue(server, CA_PASSWORD, host)
    capsys.readouterr()
    return data_dir


def _args(data_dir: Path, *args: str) -> list[str]:
    return [*args, "--data-dir", str(data_dir)]


def test_revoke_prints_what_it_did_and_the_new_crl(
    configured: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *_args(configured, "revoke", "2", "--reason", "keyCompromise", "--yes"),
            "--password-file",
            str(password_file),
        ]
    )

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == "Certificate number 2 revoked (reason: keyCompromise)."
    assert out[1].startswith("CRL number 2 signed: 1 revoked certificate(s), next update ")
    with open_server(configured) as server:
        recorded = server.revocations().revocation(2)
        assert recorded is not None and recorded.revoked_by.endswith("(command line)")
        crl = server.revocations().crl()
        assert crl is not None and crl.next_update - crl.this_update == timedelta(days=7)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["revoke", "9", "--yes"], 3, "error: no certificate number 9 was issued by this CA"),
        (["revoke", "0", "--yes"], 2, "error: certificate number 0 is the CA's own certificate"),
        (
            ["revoke", "1", "--yes", "--reason", "removeFromCRL"],
            2,
            "error: certificate number 1 is not on hold",
        ),
        (["revoke", "1"], 2, "error: confirmation needed: run on a terminal or add --yes"),
    ],
    ids=["unknown", "ca", "not-on-hold", "no-confirmation"],
)
def test_bad_revocations_print_one_error_line_before_any_password(
    configured: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(_args(configured, *argv)) == code
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(message)
    assert "password" not in captured.err  # refused before asking for it


def test_revoking_twice_and_a_wrong_password(
    configured: Path, password_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not it\n")
    wrong.chmod(0o600)
    revoke = _args(configured, "revoke", "1", "--yes")
    assert main([*revoke, "--password-file", str(wrong)]) == 5
    assert capsys.readouterr().err.startswith("error: ")
    assert main([*revoke, "--password-file", str(password_file)]) == 0
    capsys.readouterr()
    assert main([*revoke, "--password-file", str(password_file)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: certificate number 1 is already revoked (unspecified, ")


def test_certificates_and_status_show_revocation(
    configured: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pw = ["--password-file", str(password_file)]
    assert main(_args(configured, "revoke", "1", "--yes", "--reason", "superseded", *pw)) == 0
    capsys.readouterr()

    assert main(_args(configured, "certificates")) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[-1] == "State"
    assert rows[2].endswith("revoked (superseded, " + rows[2].split("(superseded, ")[1])
    assert rows[3].endswith("valid")

    assert main(_args(configured, "status")) == 0
    out = capsys.readouterr().out
    assert "Public URL:" in out and "http://ca.example.test:52773" in out
    assert (
        "CRL http://ca.example.test:52773/isc/pki/crl/CliCA.crl, "
        "OCSP http://ca.example.test:52773/isc/pki/ocsp"
    ) in out
    assert "CRL validity:" in out and "7 days" in out
    crl_line = next(line for line in out.splitlines() if line.startswith("CRL:"))
    assert "number 2, next update " in crl_line and ", 1 revoked" in crl_line
    assert "DUE" not in crl_line
    assert "OCSP signing certificate:" in out and "valid until" in out


def test_crl_signs_a_new_one_and_if_due_needs_no_password_when_current(
    configured: Path, password_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(configured, "crl", "--if-due")) == 0  # no password given, none needed
    assert capsys.readouterr().out.startswith("CRL number 1 is current until ")

    out_file = tmp_path / "now.crl.pem"
    pw = ["--password-file", str(password_file)]
    assert main(_args(configured, "crl", *pw, "--out", str(out_file))) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("CRL number 2 signed: 0 revoked certificate(s)")
    assert printed[1] == f'CRL number 2 saved in file "{out_file}"'
    crl = x509.load_pem_x509_crl(out_file.read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2

    # Behind the records (a revocation whose CRL was never signed): due, and signed.
    with open_server(configured) as server:
        issuer = server.revocations().issuer
    with sqlite3.connect(configured / "pki.sqlite3") as conn:  # as a crash after the record would
        conn.execute("UPDATE crl_state SET revision = revision + 1 WHERE issuer = ?", (issuer,))
    assert main(_args(configured, "crl", "--if-due")) == 2  # due now: it needs the password
    assert "CA key password is needed" in capsys.readouterr().err
    assert main(_args(configured, "crl", "--if-due", *pw)) == 0
    assert capsys.readouterr().out.startswith("CRL number 3 signed")


def test_configure_refuses_a_bad_public_url(
    data_dir: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["configure", "--data-dir", str(data_dir), "--root", "X", "--dir", "CA"]
    args += ["--subject", "/CN=X", "--ca-days", "30", "--days", "3", "--key-type", "ec256"]
    args += ["--password-file", str(password_file), "--public-url", "ftp://nope"]
    assert main(args) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == "error: public URL 'ftp://nope' is not an http:// or https:// URL"


def test_serve_defaults_to_the_configured_public_url(configured: Path, tmp_path: Path) -> None:
    assert configured_public_url(configured) == "http://ca.example.test:52773"
    assert configured_public_url(tmp_path / "nothing-here") is None


def test_revoke_as_a_real_process(configured: Path, password_file: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKI_")}
    done = subprocess.run(
        [
            sys.executable,
            "server_app.py",
            "revoke",
            "2",
            "--reason",
            "cessationOfOperation",
            "--yes",
            "--password-file",
            str(password_file),
            "--data-dir",
            str(configured),
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("Certificate number 2 revoked (reason: cessationOfOperation).")
    with open_server(configured) as server:
        crl = server.revocations().crl()
        assert crl is not None
        two = next(c for c in server.certificates() if c.number == 2)
        ca = server.authority().paths.cer
    crl_file = write(tmp_path / "c.crl.pem", x509.load_der_x509_crl(crl.der))
    refused = run(
        "openssl", "verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl_file,
        write(tmp_path / "two.pem", two),
    )  # fmt: skip
    assert "certificate revoked" in refused.stdout + refused.stderr


def test_configure_again_changes_only_the_revocation_settings_given(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["configure", "--data-dir", str(configured), "--root", "CliCA", "--dir", "CA"]
    assert main([*base, "--no-revocation-urls"]) == 0
    with open_server(configured) as server:
        cfg = server.config()
        assert (cfg.public_url, cfg.revocation_urls, cfg.crl_days) == (
            "http://ca.example.test:52773",
            False,
            7,
        )
        assert server.authority().revocation_urls is None
    assert main([*base, "--revocation-urls", "--public-url", ""]) == 0
    with open_server(configured) as server:
        cfg = server.config()
        assert (cfg.public_url, cfg.revocation_urls) == (None, True)
        assert server.authority().revocation_urls is None  # no URL, nothing to name
    capsys.readouterr()
