"""Keys and key files: generation, encryption, loading, 0600 files, acceptable public keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from pki_soap import files
from pki_soap.ca import keys
from pki_soap.ca.keys import KeyType
from pki_soap.errors import CAFileError, InvalidInput, UnacceptableKey, WrongPassword
from tests.engine_support import openssl

SUBJECT = "/C=US/O=Example/CN=host.example.com"


@pytest.mark.parametrize(
    ("key_type", "described"),
    [
        (KeyType.RSA2048, "RSA 2048"),
        (KeyType.RSA3072, "RSA 3072"),
        (KeyType.RSA4096, "RSA 4096"),
        (KeyType.EC256, "EC P-256"),
        (KeyType.EC384, "EC P-384"),
    ],
    ids=lambda value: value.value if isinstance(value, KeyType) else None,
)
def test_generate_key_gives_the_requested_kind(key_type: KeyType, described: str) -> None:
    key = keys.generate_key(key_type)
    assert keys.describe_key(key.public_key()) == described
    assert key_type.label == described
    keys.check_public_key(key.public_key())  # our own keys are always acceptable


def test_generate_key_defaults_to_rsa_2048() -> None:
    key = keys.generate_key()
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert key.public_key().public_numbers().e == 65537


def test_key_pem_encrypts_pkcs8_with_the_password() -> None:
    key = keys.generate_key(KeyType.EC256)
    pem = keys.key_pem(key, b"s3cret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    loaded = keys.load_key(pem, b"s3cret")
    assert keys.same_public_key(loaded.public_key(), key.public_key())


def test_encrypted_key_is_readable_by_openssl_with_the_password(tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(keys.key_pem(keys.generate_key(), b"s3cret"))
    password_file = tmp_path / "pw"
    password_file.write_bytes(b"s3cret")
    result = openssl("pkey", "-in", key_file, "-passin", f"file:{password_file}", "-noout")
    assert result.returncode == 0, result.stderr
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"other")
    assert openssl("pkey", "-in", key_file, "-passin", f"file:{wrong}", "-noout").returncode != 0


def test_key_pem_without_password_is_plain_pkcs8() -> None:
    pem = keys.key_pem(keys.generate_key(KeyType.EC256), None)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")


def test_key_pem_refuses_an_empty_password() -> None:
    with pytest.raises(InvalidInput, match="may not be empty"):
        keys.key_pem(keys.generate_key(KeyType.EC256), b"")


def test_load_key_with_wrong_password_raises_wrong_password() -> None:
    pem = keys.key_pem(keys.generate_key(KeyType.EC256), b"right")
    with pytest.raises(WrongPassword, match="does not decrypt"):
        keys.load_key(pem, b"wrong")


def test_load_key_encrypted_without_password_raises_wrong_password() -> None:
    pem = keys.key_pem(keys.generate_key(KeyType.EC256), b"right")
    with pytest.raises(WrongPassword, match="no password"):
        keys.load_key(pem, None)


def test_load_key_unencrypted_ignores_a_password() -> None:
    key = keys.generate_key(KeyType.EC256)
    loaded = keys.load_key(keys.key_pem(key, None), b"whatever")
    assert keys.same_public_key(loaded.public_key(), key.public_key())


def test_load_key_reads_a_traditional_openssl_rsa_key(tmp_path: Path) -> None:
    key_file = tmp_path / "trad.key"
    result = openssl("genrsa", "-traditional", "-out", key_file, "2048")
    assert result.returncode == 0, result.stderr
    assert key_file.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert isinstance(keys.load_key(key_file.read_bytes(), None), rsa.RSAPrivateKey)


@pytest.mark.parametrize(
    "pem",
    [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
    ids=["empty", "text", "bad-der"],
)
def test_load_key_garbage_raises_ca_file_error(pem: bytes) -> None:
    with pytest.raises(CAFileError, match="not a readable PEM key"):
        keys.load_key(pem, None)


def test_load_key_refuses_a_kind_we_cannot_sign_with() -> None:
    pem = ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CAFileError, match="cannot sign with a Ed448 key"):
        keys.load_key(pem, None)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_file_is_0600_from_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_modes: list[int] = []
    real_replace = os.replace

    def spy_replace(src: str | Path, dst: str | Path) -> None:
        seen_modes.append(_mode(Path(src)))  # the temp file, before it gets its name
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        files.write_private_file(tmp_path / "a.key", b"secret")
    finally:
        os.umask(old_umask)
    assert seen_modes == [0o600]
    assert _mode(tmp_path / "a.key") == 0o600
    assert (tmp_path / "a.key").read_bytes() == b"secret"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key"]  # no temp file left


def test_write_private_file_replaces_and_narrows_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "a.key"
    target.write_bytes(b"old")
    target.chmod(0o644)
    files.write_private_file(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600


def test_write_public_file_is_0644(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        files.write_public_file(tmp_path / "a.cer", b"cert")
    finally:
        os.umask(old_umask)
    assert _mode(tmp_path / "a.cer") == 0o644
    assert (tmp_path / "a.cer").read_bytes() == b"cert"


def test_write_private_file_into_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.write_private_file(tmp_path / "missing" / "a.key", b"x")


@pytest.mark.parametrize(
    ("public_key", "accepted"),
    [
        (lambda: rsa.generate_private_key(65537, 2048).public_key(), True),
        (lambda: ec.generate_private_key(ec.SECP256R1()).public_key(), True),
        (lambda: ec.generate_private_key(ec.SECP384R1()).public_key(), True),
        (lambda: ec.generate_private_key(ec.SECP521R1()).public_key(), True),
        (lambda: ed25519.Ed25519PrivateKey.generate().public_key(), True),
        (lambda: rsa.generate_private_key(65537, 1024).public_key(), False),
        (lambda: ec.generate_private_key(ec.SECP256K1()).public_key(), False),
        (lambda: ed448.Ed448PrivateKey.generate().public_key(), False),
        (lambda: dsa.generate_private_key(1024).public_key(), False),
    ],
    ids=["rsa2048", "p256", "p384", "p521", "ed25519", "rsa1024", "secp256k1", "ed448", "dsa"],
)
def test_check_public_key(public_key: object, accepted: bool) -> None:
    key = public_key()  # type: ignore[operator]
    if accepted:
        keys.check_public_key(key)
    else:
        with pytest.raises(UnacceptableKey, match=keys.describe_key(key)):
            keys.check_public_key(key)


def test_check_public_key_names_what_is_accepted() -> None:
    weak = rsa.generate_private_key(65537, 1024).public_key()
    with pytest.raises(UnacceptableKey, match=r"RSA 1024 keys are too weak; use RSA of at least"):
        keys.check_public_key(weak)


def test_key_is_encrypted_recognises_both_openssl_forms(tmp_path: Path) -> None:
    key = keys.generate_key(KeyType.EC256)
    assert keys.key_is_encrypted(keys.key_pem(key, b"pw"))
    assert not keys.key_is_encrypted(keys.key_pem(key, None))
    password_file = tmp_path / "pw"
    files.write_private_file(password_file, b"traditional secret")
    key_file = tmp_path / "trad.key"
    made = openssl(
        "genrsa", "-traditional", "-aes256", "-passout", f"file:{password_file}",
        "-out", key_file, "2048",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    pem = key_file.read_bytes()
    assert keys.key_is_encrypted(pem)
    assert isinstance(keys.load_key(pem, b"traditional secret"), rsa.RSAPrivateKey)
    with pytest.raises(WrongPassword, match="does not decrypt"):
        keys.load_key(pem, b"wrong")
