"""``server_app.py portal-password``: where the password comes from and how it is kept."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from pki_soap.cli import portal_password
from pki_soap.cli.server_app import main
from pki_soap.errors import InvalidInput
from pki_soap.portal.auth import PASSWORD_FILE, check_password, password_hash, set_password


def test_password_from_file_is_stored_as_argon2_hash_0600(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(portal_password.ENV_VARIABLE, raising=False)
    secret_file = tmp_path / "password.txt"
    secret_file.write_bytes(b"a long portal password\n")
    secret_file.chmod(0o600)
    assert (
        main(["portal-password", "--data-dir", str(data_dir), "--password-file", str(secret_file)])
        == 0
    )
    stored = data_dir / PASSWORD_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    document = json.loads(stored.read_text())
    assert PasswordHasher().verify(document["password_hash"], b"a long portal password")
    assert "a long portal password" not in stored.read_text()
    out = capsys.readouterr().out
    assert out.startswith("Portal password set (Argon2 hash in ")
    assert "a long portal password" not in out


def test_data_dir_given_to_the_main_parser_is_kept(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(portal_password.ENV_VARIABLE, "from the environment")
    assert main(["--data-dir", str(data_dir), "portal-password"]) == 0
    stored = password_hash(data_dir)
    assert stored is not None and check_password(stored, b"from the environment")


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (b"short\n", "at least 8 characters"),
        (b"\n", "is empty"),
        (b"first line\nsecond line\n", "holds more than one line"),
        (b"\xff\xfe not utf-8 at all", "must be UTF-8 text"),
    ],
    ids=["short", "empty", "two-lines", "not-utf8"],
)
def test_unusable_password_is_refused_and_nothing_written(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    contents: bytes,
    message: str,
) -> None:
    secret_file = tmp_path / "password.txt"
    secret_file.write_bytes(contents)
    code = main(
        ["portal-password", "--data-dir", str(data_dir), "--password-file", str(secret_file)]
    )
    assert code == InvalidInput.exit_code
    assert message in capsys.readouterr().err
    assert not (data_dir / PASSWORD_FILE).exists()


def test_no_source_and_no_terminal_is_an_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(portal_password.ENV_VARIABLE, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal, as in CI
    assert main(["portal-password", "--data-dir", str(data_dir)]) == 2
    assert "use --password-file or the environment variable PKI_PORTAL_PASSWORD" in (
        capsys.readouterr().err
    )


def test_missing_password_file_is_an_error(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["portal-password", "--data-dir", str(data_dir)]
    assert main([*argv, "--password-file", str(tmp_path / "absent")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_new_password_replaces_the_old(data_dir: Path) -> None:
    set_password(data_dir, b"first password")
    set_password(data_dir, b"second password")
    stored = password_hash(data_dir)
    assert stored is not None
    assert check_password(stored, b"second password")
    assert not check_password(stored, b"first password")
