"""Keys, key files and CSRs: generation, encryption, 0600 files, CSR parsing and checks."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from pki_soap import files
from pki_soap.ca import keys, names
from pki_soap.ca.keys import KeyType
from pki_soap.errors import CAFileError, InvalidCsr, InvalidInput, UnacceptableKey, WrongPassword
from tests.engine_support import make_csr, openssl

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


@pytest.mark.parametrize(
    "key_type", [KeyType.RSA2048, KeyType.EC256], ids=lambda key_type: key_type.value
)
def test_build_csr_round_trips_through_load_csr(key_type: KeyType) -> None:
    _key, csr = make_csr(SUBJECT, key_type, sans="DNS:host.example.com,IP:10.0.0.1")
    text = keys.csr_pem(csr)
    loaded = keys.load_csr(text)
    assert loaded == csr
    assert keys.load_csr(text.encode("ascii")) == csr
    assert names.subject_text(loaded.subject) == SUBJECT
    assert names.sans_text(keys.requested_sans(loaded)) == "DNS:host.example.com, IP:10.0.0.1"
    assert loaded.signature_hash_algorithm is not None
    assert loaded.signature_hash_algorithm.name == "sha256"


def test_build_csr_with_ed25519_key() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    _, csr = make_csr(SUBJECT, key)
    assert keys.load_csr(keys.csr_pem(csr)).public_key() == key.public_key()


def test_csr_is_accepted_by_openssl(tmp_path: Path) -> None:
    _, csr = make_csr(SUBJECT, sans="DNS:host.example.com")
    path = tmp_path / "r.csr"
    path.write_text(keys.csr_pem(csr))
    result = openssl("req", "-in", path, "-verify", "-noout")
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stdout + result.stderr


def test_load_csr_accepts_an_openssl_made_csr(tmp_path: Path) -> None:
    key_file, csr_file = tmp_path / "k.pem", tmp_path / "r.csr"
    result = openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key_file,
        "-subj", "/C=US/O=Example/CN=web.example", "-addext", "subjectAltName=DNS:web.example",
        "-out", csr_file,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    csr = keys.load_csr(csr_file.read_text())
    assert names.subject_text(csr.subject) == "/C=US/O=Example/CN=web.example"
    assert names.sans_text(keys.requested_sans(csr)) == "DNS:web.example"


def test_csr_pem_and_cert_pem_have_lf_line_ends() -> None:
    _, csr = make_csr(SUBJECT)
    text = keys.csr_pem(csr)
    assert text.startswith("-----BEGIN CERTIFICATE REQUEST-----\n")
    assert text.endswith("-----END CERTIFICATE REQUEST-----\n")
    assert "\r" not in text


def test_requested_sans_is_empty_without_extension() -> None:
    _, csr = make_csr(SUBJECT)
    assert keys.requested_sans(csr) == []


def _csr_text() -> str:
    return keys.csr_pem(make_csr(SUBJECT, KeyType.EC256)[1])


def _tampered_signature_csr() -> str:
    der = bytearray(make_csr(SUBJECT, KeyType.EC256)[1].public_bytes(serialization.Encoding.DER))
    # The signature BIT STRING is the last field: flipping its last byte breaks only the
    # signature, leaving a well-formed CSR.
    der[-1] ^= 0x01
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _tampered_subject_csr() -> str:
    _key, csr = make_csr("/C=US/O=Example/CN=aaaa.example", KeyType.EC256)
    der = csr.public_bytes(serialization.Encoding.DER).replace(b"aaaa", b"bbbb")
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize(
    ("make_text", "message"),
    [
        (lambda: "", "no PEM block"),
        (lambda: "hello world", "no PEM block"),
        (lambda: _csr_text() + _csr_text(), "more than one PEM block"),
        (
            lambda: _csr_text() + "-----BEGIN CERTIFICATE-----\nAAAA\n",
            "more than one PEM block",
        ),
        (
            lambda: _csr_text().replace("CERTIFICATE REQUEST", "CERTIFICATE"),
            "is a 'CERTIFICATE', not a 'CERTIFICATE REQUEST'",
        ),
        (lambda: "garbage\n" + _csr_text(), "text outside its PEM block"),
        (lambda: _csr_text() + "trailer", "text outside its PEM block"),
        (lambda: _csr_text().replace("\n", "\n!", 2), "not valid base64"),
        (
            lambda: (
                "-----BEGIN CERTIFICATE REQUEST-----\n"
                + base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
                + "\n-----END CERTIFICATE REQUEST-----\n"
            ),
            "not a DER certificate signing request",
        ),
        (lambda: "\u00e9" + _csr_text(), "non-ASCII"),
        (_tampered_signature_csr, "^CSR signature is not valid$"),
        (_tampered_subject_csr, "^CSR signature is not valid$"),
    ],
    ids=[
        "empty",
        "text",
        "two-csrs",
        "csr-plus-cert",
        "certificate-label",
        "leading-garbage",
        "trailing-garbage",
        "bad-base64",
        "not-a-csr",
        "non-ascii",
        "bad-signature",
        "altered-subject",
    ],
)
def test_load_csr_refuses_bad_input(make_text: object, message: str) -> None:
    with pytest.raises(InvalidCsr, match=message):
        keys.load_csr(make_text())  # type: ignore[operator]


def test_load_csr_refuses_der_bytes() -> None:
    der = make_csr(SUBJECT, KeyType.EC256)[1].public_bytes(serialization.Encoding.DER)
    with pytest.raises(InvalidCsr, match="not PEM text"):
        keys.load_csr(der)


def test_load_csr_accepts_surrounding_whitespace_and_crlf() -> None:
    text = _csr_text()
    csr = keys.load_csr("\r\n  " + text.replace("\n", "\r\n") + "\n\n")
    assert csr == keys.load_csr(text)


def test_load_csr_refuses_a_weak_key() -> None:
    _, csr = make_csr(SUBJECT, rsa.generate_private_key(65537, 1024))
    with pytest.raises(UnacceptableKey, match="RSA 1024 keys are too weak"):
        keys.load_csr(keys.csr_pem(csr))


def test_load_csr_refuses_an_unsupported_curve() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(names.subject_from_text(SUBJECT))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(UnacceptableKey, match="EC secp256k1 keys are not accepted"):
        keys.load_csr(keys.csr_pem(csr))


def test_load_csr_refuses_an_empty_subject() -> None:
    key = keys.generate_key(KeyType.EC256)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(InvalidCsr, match="subject is empty"):
        keys.load_csr(keys.csr_pem(csr))


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
