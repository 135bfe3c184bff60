"""The CA engine: files, existing-key mode, signing per usage; checked by openssl, ssl, pkilint."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki_soap import files
from pki_soap.ca import keys, names
from pki_soap.ca.authority import CertificateAuthority, Usage
from pki_soap.ca.ca_files import CAPaths
from pki_soap.ca.csr import cert_pem
from pki_soap.ca.keys import KeyType, PrivateKey
from pki_soap.errors import (
    CAFileError,
    InvalidCsr,
    InvalidInput,
    InvalidRoot,
    UnacceptableKey,
    WrongPassword,
)
from tests.engine_support import (
    CA_PASSWORD,
    CA_SUBJECT,
    make_ca,
    make_csr,
    openssl,
    openssl_verify,
    write_pem,
)


@dataclass
class Issuer:
    """A CA made once per module, with its key decrypted, and a directory for outputs."""

    ca: CertificateAuthority
    key: PrivateKey
    out: Path

    def issue(
        self,
        subject: str,
        usage: Usage,
        *,
        key_type: KeyType | PrivateKey = KeyType.EC256,
        sans: str = "",
        days: int = 30,
    ) -> tuple[PrivateKey, x509.Certificate, Path]:
        leaf_key, csr = make_csr(subject, key_type, sans)
        cert = self.ca.sign(
            csr, usage, key=self.key, days=days, serial_number=self.ca.serials.take()
        )
        path = write_pem(self.out / f"{cert.serial_number}.cer", cert)
        return leaf_key, cert, path


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    base = tmp_path_factory.mktemp("issuer")
    ca = make_ca(base)
    return Issuer(ca, ca.private_key(CA_PASSWORD), base)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _extension(cert: x509.Certificate, kind: type[Any]) -> x509.Extension[Any]:
    return cert.extensions.get_extension_for_class(kind)


def _san_text(cert: x509.Certificate) -> str | None:
    try:
        return names.sans_text(_extension(cert, x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return None


# -- creating a CA --------------------------------------------------------------------------


def test_create_makes_private_directory_encrypted_key_certificate_and_srl(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # a careless umask must not leak the key
    try:
        ca = make_ca(tmp_path, directory="deep/CAServer", root="DemoCA")
    finally:
        os.umask(old_umask)
    directory = tmp_path / "deep" / "CAServer"
    assert ca.paths == CAPaths(directory, "DemoCA")
    assert sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock")) == [
        "DemoCA.cer",
        "DemoCA.key",
        "DemoCA.srl",
    ]
    assert _mode(directory) == 0o700
    assert _mode(directory / "DemoCA.key") == 0o600
    assert (directory / "DemoCA.srl").read_text() == "00\n"
    assert (
        (directory / "DemoCA.key")
        .read_bytes()
        .startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    )
    assert x509.load_pem_x509_certificate((directory / "DemoCA.cer").read_bytes()) == (
        ca.certificate
    )
    assert ca.serials.take() == 1


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
def test_ca_certificate_is_a_proper_self_signed_ca(
    tmp_path: Path, key_type: KeyType, described: str
) -> None:
    ca = make_ca(tmp_path, key_type=key_type, ca_days=365)
    cert = ca.certificate
    assert keys.describe_key(cert.public_key()) == described
    assert cert.subject == cert.issuer == names.subject_from_text(CA_SUBJECT)
    assert ca.subject_text == CA_SUBJECT
    assert cert.serial_number > 0
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=365) <= lifetime <= datetime.timedelta(days=365, minutes=2)
    basic = _extension(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length is None
    usage = _extension(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = _extension(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert _extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    result = openssl_verify(ca.paths.cer, ca.paths.cer)
    assert result.returncode == 0, result.stderr


def test_fingerprint_and_pem_match_openssl(issuer: Issuer) -> None:
    result = openssl("x509", "-in", issuer.ca.paths.cer, "-noout", "-fingerprint", "-sha1")
    label, _, value = result.stdout.strip().partition("=")
    assert label.lower() == "sha1 fingerprint"  # spelled "SHA1" or "sha1" by version
    assert value == issuer.ca.fingerprint
    assert issuer.ca.certificate_pem == issuer.ca.paths.cer.read_text()


def test_create_never_overwrites_existing_files(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    before = ca.paths.key.read_bytes()
    with pytest.raises(CAFileError, match="already exists; it is never overwritten"):
        make_ca(tmp_path)
    assert ca.paths.key.read_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"password": b""}, "password is required"),
        ({"ca_days": 0}, "validity must be a whole number of days"),
        ({"ca_days": 10**6}, "validity must be a whole number of days"),
    ],
    ids=["empty-password", "zero-days", "too-many-days"],
)
def test_create_refuses_bad_input_before_writing(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        make_ca(tmp_path, **kwargs)
    assert not (tmp_path / "CA").exists()


@pytest.mark.parametrize(
    "root",
    ["", "cache", "CACHE", "Cache", "a/b", "../x", "a b", "a.b", "x" * 51, "é"],
    ids=["empty", "cache", "CACHE", "Cache", "slash", "dotdot", "space", "dot", "long", "accent"],
)
def test_invalid_roots_are_refused(tmp_path: Path, root: str) -> None:
    with pytest.raises(InvalidRoot):
        CAPaths(tmp_path, root)


def test_paths_of_a_ca() -> None:
    paths = CAPaths(Path("CAServer"), "Demo-CA_1")
    assert (paths.cer, paths.key, paths.srl) == (
        Path("CAServer/Demo-CA_1.cer"),
        Path("CAServer/Demo-CA_1.key"),
        Path("CAServer/Demo-CA_1.srl"),
    )
    assert paths.old(paths.cer) == Path("CAServer/Demo-CA_1.cer.old")


# -- configure: new pair, existing pair, lone files -----------------------------------------


def _configure(paths: CAPaths, password: bytes = CA_PASSWORD) -> tuple[CertificateAuthority, bool]:
    return CertificateAuthority.configure(
        paths,
        password=password,
        subject=names.subject_from_text("/C=US/CN=Configured CA"),
        ca_days=3650,
    )


def test_configure_without_files_creates_them(tmp_path: Path) -> None:
    ca, created = _configure(CAPaths(tmp_path / "CAServer", "DemoCA"))
    assert created is True
    assert ca.subject_text == "/C=US/CN=Configured CA"
    assert ca.paths.srl.read_text() == "00\n"


def test_configure_with_both_files_uses_them_and_keeps_the_counter(tmp_path: Path) -> None:
    first, _ = _configure(CAPaths(tmp_path, "DemoCA"))
    assert [first.serials.take() for _ in range(3)] == [1, 2, 3]
    again, created = _configure(CAPaths(tmp_path, "DemoCA"))
    assert created is False
    assert again.fingerprint == first.fingerprint
    assert again.serials.take() == 4


@pytest.mark.parametrize("lone", ["cer", "key"], ids=["only-cer", "only-key"])
def test_configure_renames_a_lone_file_to_old_and_creates_a_new_pair(
    tmp_path: Path, lone: str
) -> None:
    paths = CAPaths(tmp_path, "DemoCA")
    original, _ = _configure(paths)
    kept = paths.cer if lone == "cer" else paths.key
    (paths.key if lone == "cer" else paths.cer).unlink()
    content = kept.read_bytes()
    ca, created = _configure(paths)
    assert created is True
    assert ca.fingerprint != original.fingerprint
    assert (tmp_path / f"DemoCA.{lone}.old").read_bytes() == content
    assert paths.cer.exists() and paths.key.exists()
    assert _mode(paths.key) == 0o600
    assert keys.same_public_key(
        ca.private_key(CA_PASSWORD).public_key(), ca.certificate.public_key()
    )


def test_configure_never_overwrites_an_old_file(tmp_path: Path) -> None:
    paths = CAPaths(tmp_path, "DemoCA")
    (tmp_path / "DemoCA.cer.old").write_text("older")
    paths.cer.write_text("lone")
    _configure(paths)
    assert (tmp_path / "DemoCA.cer.old").read_text() == "older"
    assert (tmp_path / "DemoCA.cer.old.1").read_text() == "lone"


def test_configure_new_pair_without_subject_refuses_before_renaming(tmp_path: Path) -> None:
    paths = CAPaths(tmp_path, "DemoCA")
    paths.cer.write_text("lone")
    with pytest.raises(InvalidInput, match="needs a subject"):
        CertificateAuthority.configure(paths, password=CA_PASSWORD, ca_days=10)
    with pytest.raises(InvalidInput, match="needs its validity"):
        CertificateAuthority.configure(
            paths, password=CA_PASSWORD, subject=names.subject_from_text("/CN=x")
        )
    assert paths.cer.read_text() == "lone"
    assert not (tmp_path / "DemoCA.cer.old").exists()


def test_configure_existing_pair_with_wrong_password(tmp_path: Path) -> None:
    paths = CAPaths(tmp_path, "DemoCA")
    _configure(paths)
    with pytest.raises(WrongPassword, match="does not decrypt"):
        _configure(paths, password=b"not the password")


def test_existing_mode_encrypts_an_unencrypted_key_with_the_password(tmp_path: Path) -> None:
    paths = CAPaths(tmp_path, "Plain")
    made = make_ca(tmp_path, root="Plain", directory=".")
    plain = keys.key_pem(made.private_key(CA_PASSWORD), None)
    paths.key.write_bytes(plain)
    paths.key.chmod(0o644)
    paths.srl.unlink()

    ca, created = CertificateAuthority.configure(paths, password=b"now the password")

    assert created is False
    assert paths.srl.read_text() == "00\n"  # created because it was absent
    assert keys.key_is_encrypted(paths.key.read_bytes())
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert list(tmp_path.glob(".*.tmp")) == []
    with pytest.raises(WrongPassword):
        ca.private_key(b"any password")
    key = ca.private_key(b"now the password")
    _, csr = make_csr("/CN=leaf.example", KeyType.EC256)
    cert = ca.sign(csr, Usage.TLS, key=key, days=5, serial_number=ca.serials.take())
    assert cert.serial_number == 1
    assert cert.issuer == made.certificate.subject


def test_a_ca_key_found_unencrypted_is_never_used_to_sign(tmp_path: Path) -> None:
    made = make_ca(tmp_path, root="Plain", directory=".")
    made.paths.key.write_bytes(keys.key_pem(made.private_key(CA_PASSWORD), None))
    ca = CertificateAuthority.load(made.paths)
    for password in (None, b"any password", CA_PASSWORD):
        with pytest.raises(CAFileError, match="is not encrypted; encrypt it with"):
            ca.private_key(password)


_OPENSSL_CA_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
O = Elsewhere
CN = OpenSSL Made CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


def test_existing_mode_with_an_openssl_made_encrypted_pair(tmp_path: Path) -> None:
    paths = CAPaths(tmp_path / "CAServer", "Bought")
    paths.directory.mkdir()
    config, password_file = tmp_path / "ca.cnf", tmp_path / "pw"
    config.write_text(_OPENSSL_CA_CONFIG)
    files.write_private_file(password_file, b"openssl secret")  # never on argv
    made = openssl(
        "req", "-x509", "-config", config, "-newkey", "rsa:2048", "-days", "30",
        "-keyout", paths.key, "-passout", f"file:{password_file}", "-out", paths.cer,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    ca, created = CertificateAuthority.configure(paths, password=b"openssl secret")
    assert created is False
    assert ca.subject_text == "/O=Elsewhere/CN=OpenSSL Made CA"
    assert paths.srl.read_text() == "00\n"
    _, csr = make_csr("/CN=leaf.example", KeyType.EC256)
    key = ca.private_key(b"openssl secret")
    cert = ca.sign(csr, Usage.TLS, key=key, days=365, serial_number=ca.serials.take())
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc  # capped at 30 days
    result = openssl_verify(paths.cer, write_pem(tmp_path / "leaf.cer", cert), purpose="sslserver")
    assert result.returncode == 0, result.stderr
    with pytest.raises(WrongPassword):
        CertificateAuthority.configure(paths, password=b"wrong")


def test_mismatched_pair_is_refused(tmp_path: Path) -> None:
    one = make_ca(tmp_path, root="One", directory=".")
    two = make_ca(tmp_path, root="Two", directory=".")
    one.paths.key.write_bytes(two.paths.key.read_bytes())
    with pytest.raises(CAFileError, match=r"One\.key is not the private key of .*One\.cer"):
        CertificateAuthority.configure(one.paths, password=CA_PASSWORD)
    with pytest.raises(CAFileError, match="is not the private key"):
        CertificateAuthority.load(one.paths, password=CA_PASSWORD)


def test_a_non_ca_certificate_is_refused(tmp_path: Path, issuer: Issuer) -> None:
    leaf_key, leaf, _ = issuer.issue("/CN=leaf.example", Usage.TLS)
    paths = CAPaths(tmp_path, "Leaf")
    paths.cer.write_text(cert_pem(leaf))
    files.write_private_file(paths.key, keys.key_pem(leaf_key, CA_PASSWORD))
    with pytest.raises(CAFileError, match=r"Leaf\.cer is not a CA certificate"):
        CertificateAuthority.configure(paths, password=CA_PASSWORD)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is not a PEM certificate"), (b"garbage", "is not a PEM certificate")],
    ids=["empty", "garbage"],
)
def test_an_unreadable_certificate_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    ca = make_ca(tmp_path)
    ca.paths.cer.write_bytes(content)
    with pytest.raises(CAFileError, match=message):
        CertificateAuthority.load(ca.paths, password=CA_PASSWORD)


def test_load_without_password_defers_the_key_check(tmp_path: Path) -> None:
    made = make_ca(tmp_path)
    ca = CertificateAuthority.load(made.paths)
    assert ca.fingerprint == made.fingerprint
    with pytest.raises(WrongPassword, match="does not decrypt"):
        ca.private_key(b"wrong")
    with pytest.raises(WrongPassword, match="no password"):
        ca.private_key(None)


def test_load_tightens_a_key_file_others_can_read(tmp_path: Path) -> None:
    made = make_ca(tmp_path)
    made.paths.key.chmod(0o644)
    CertificateAuthority.load(made.paths, password=CA_PASSWORD)
    assert _mode(made.paths.key) == 0o600


def test_load_of_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CAFileError, match="does not exist"):
        CertificateAuthority.load(CAPaths(tmp_path, "Nothing"), password=CA_PASSWORD)


# -- signing --------------------------------------------------------------------------------


def test_tls_certificate_extensions_and_openssl_purposes(issuer: Issuer) -> None:
    _, cert, path = issuer.issue(
        "/C=US/O=Example/CN=web.example", Usage.TLS, key_type=KeyType.RSA2048
    )
    assert cert.subject == names.subject_from_text("/C=US/O=Example/CN=web.example")
    assert cert.issuer == issuer.ca.certificate.subject
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    basic = _extension(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = _extension(cert, x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment  # RSA
    assert not usage.key_cert_sign
    assert list(_extension(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert _san_text(cert) == "DNS:web.example"
    for purpose in ("sslserver", "sslclient"):
        result = openssl_verify(issuer.ca.paths.cer, path, purpose=purpose)
        assert result.returncode == 0, result.stderr


def test_tls_certificate_for_an_ec_key_has_no_key_encipherment(issuer: Issuer) -> None:
    _, cert, _ = issuer.issue("/CN=ec.example", Usage.TLS, key_type=KeyType.EC256)
    usage = _extension(cert, x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment


def test_codesign_certificate(issuer: Issuer) -> None:
    _, cert, path = issuer.issue("/O=Example/CN=Example Code Signing", Usage.CODESIGN)
    assert _extension(cert, x509.BasicConstraints).value.ca is False
    usage = _extension(cert, x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment and not usage.key_cert_sign
    assert list(_extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CODE_SIGNING]
    assert _san_text(cert) is None
    assert openssl_verify(issuer.ca.paths.cer, path).returncode == 0
    result = openssl_verify(issuer.ca.paths.cer, path, purpose="codesign")
    if "Invalid purpose" in result.stderr:
        # OpenSSL < 3.2 has no codesign purpose: check the EKU as OpenSSL reads it instead.
        shown = openssl("x509", "-in", path, "-noout", "-ext", "extendedKeyUsage").stdout
        assert "Code Signing" in shown
    else:
        assert result.returncode == 0, result.stderr
    assert openssl_verify(issuer.ca.paths.cer, path, purpose="sslserver").returncode != 0


def test_intermediate_ca_and_its_leaf_verify_through_the_chain(
    tmp_path: Path, issuer: Issuer
) -> None:
    inter_key, inter_cert, inter_file = issuer.issue(
        "/O=Example/CN=Example Intermediate CA", Usage.INTERMEDIATE, key_type=KeyType.RSA2048
    )
    basic = _extension(inter_cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca is True and basic.value.path_length == 0
    usage = _extension(inter_cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign and usage.value.digital_signature
    assert openssl_verify(issuer.ca.paths.cer, inter_file, purpose="any").returncode == 0

    # The intermediate becomes a CA of its own (existing-key mode) and issues a TLS leaf.
    paths = CAPaths(tmp_path, "Intermediate")
    paths.cer.write_text(cert_pem(inter_cert))
    files.write_private_file(paths.key, keys.key_pem(inter_key, b"inter secret"))
    intermediate, created = CertificateAuthority.configure(paths, password=b"inter secret")
    assert created is False
    _, csr = make_csr("/CN=app.example", KeyType.EC256)
    leaf = intermediate.sign(
        csr,
        Usage.TLS,
        key=intermediate.private_key(b"inter secret"),
        days=10,
        serial_number=intermediate.serials.take(),
    )
    leaf_file = write_pem(tmp_path / "leaf.cer", leaf)
    chained = openssl_verify(
        issuer.ca.paths.cer, leaf_file, purpose="sslserver", untrusted=inter_file
    )
    assert chained.returncode == 0, chained.stderr
    assert openssl_verify(issuer.ca.paths.cer, leaf_file).returncode != 0  # needs the chain

    # pathlen 0: the intermediate may not make further CAs.
    with pytest.raises(InvalidInput, match="path length constraint is 0"):
        intermediate.sign(
            csr, Usage.INTERMEDIATE, key=intermediate.private_key(b"inter secret"),
            days=10, serial_number=intermediate.serials.take(),
        )  # fmt: skip


def test_serial_validity_and_key_identifiers(issuer: Issuer) -> None:
    leaf_key, csr = make_csr("/CN=ids.example", KeyType.EC256)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert = issuer.ca.sign(csr, Usage.TLS, key=issuer.key, days=30, serial_number=123456789)
    after = datetime.datetime.now(datetime.UTC)
    assert cert.serial_number == 123456789
    assert cert.not_valid_before_utc <= before
    assert cert.not_valid_before_utc >= before - datetime.timedelta(minutes=5)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=30) <= lifetime <= datetime.timedelta(days=30, minutes=5)
    assert cert.not_valid_after_utc <= after + datetime.timedelta(days=30)
    ski = _extension(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key())
    ca_ski = _extension(issuer.ca.certificate, x509.SubjectKeyIdentifier).value
    assert _extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski.digest


def test_validity_never_passes_the_ca_certificate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, ca_days=5)
    _, csr = make_csr("/CN=short.example", KeyType.EC256)
    cert = ca.sign(csr, Usage.TLS, key=ca.private_key(CA_PASSWORD), days=365, serial_number=1)
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc
    assert cert.not_valid_before_utc >= ca.certificate.not_valid_before_utc


def test_an_expired_ca_does_not_sign(tmp_path: Path) -> None:
    key = keys.generate_key(KeyType.EC256)
    subject = names.subject_from_text("/CN=Old CA")
    long_ago = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(long_ago)
        .not_valid_after(long_ago + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = CAPaths(tmp_path, "Old")
    paths.cer.write_text(cert_pem(cert))
    files.write_private_file(paths.key, keys.key_pem(key, None))
    ca = CertificateAuthority.load(paths)
    _, csr = make_csr("/CN=x.example", KeyType.EC256)
    with pytest.raises(CAFileError, match="expired on 2001-01-02"):
        ca.sign(csr, Usage.TLS, key=key, days=1, serial_number=1)


def test_requested_extensions_are_never_copied(issuer: Issuer) -> None:
    key = keys.generate_key(KeyType.EC256)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(names.subject_from_text("/CN=sneaky.example"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, True, True, True, True, True, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.NameConstraints([x509.DNSName("example")], None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert = issuer.ca.sign(csr, Usage.TLS, key=issuer.key, days=5, serial_number=77)
    assert _extension(cert, x509.BasicConstraints).value.ca is False
    usage = _extension(cert, x509.KeyUsage).value
    assert not usage.key_cert_sign and not usage.crl_sign and not usage.content_commitment
    assert ExtendedKeyUsageOID.CODE_SIGNING not in _extension(cert, x509.ExtendedKeyUsage).value
    assert {type(ext.value) for ext in cert.extensions} == {
        x509.BasicConstraints,
        x509.KeyUsage,
        x509.ExtendedKeyUsage,
        x509.SubjectAlternativeName,
        x509.SubjectKeyIdentifier,
        x509.AuthorityKeyIdentifier,
    }


def _email_and_dns_csr() -> tuple[PrivateKey, x509.CertificateSigningRequest]:
    return make_csr(
        "/CN=mail.example",
        KeyType.EC256,
        [x509.RFC822Name("admin@example.com"), x509.UniformResourceIdentifier("https://x")],
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: make_csr("/CN=a.example", KeyType.EC256, "DNS:b.example,IP:10.1.2.3"),
         "DNS:b.example, IP:10.1.2.3"),
        (lambda: make_csr("/CN=a.example", KeyType.EC256, "DNS:b.example,DNS:b.example,IP:::1"),
         "DNS:b.example, IP:::1"),
        (lambda: make_csr("/O=Example/CN=host.example", KeyType.EC256), "DNS:host.example"),
        (lambda: make_csr("/CN=*.apps.example", KeyType.EC256), "DNS:*.apps.example"),
        (lambda: make_csr("/CN=192.0.2.7", KeyType.EC256), "IP:192.0.2.7"),
        (lambda: make_csr("/CN=Santiago Development Group", KeyType.EC256), None),
        (lambda: make_csr("/O=No Common Name", KeyType.EC256), None),
        (_email_and_dns_csr, "DNS:mail.example"),
    ],
    ids=["requested", "deduplicated", "cn-host", "cn-wildcard", "cn-ip", "cn-not-host",
         "no-cn", "other-types-ignored"],
)  # fmt: skip
def test_tls_subject_alternative_names(
    issuer: Issuer,
    make: Callable[[], tuple[PrivateKey, x509.CertificateSigningRequest]],
    expected: str | None,
) -> None:
    _, csr = make()
    cert = issuer.ca.sign(csr, Usage.TLS, key=issuer.key, days=5, serial_number=5)
    assert _san_text(cert) == expected


def test_preview_names_the_names_not_copied(issuer: Issuer) -> None:
    _, csr = _email_and_dns_csr()
    lines = issuer.ca.preview_extensions(csr, Usage.TLS)
    assert "Subject alternative name: DNS:mail.example" in lines
    assert lines[-1] == "Not copied from the request: admin@example.com, https://x"


def test_an_invalid_requested_dns_name_is_refused(issuer: Issuer) -> None:
    _, csr = make_csr("/CN=a.example", KeyType.EC256, [x509.DNSName("bad name!")])
    with pytest.raises(InvalidCsr, match="DNS:'bad name!' is not a host name"):
        issuer.ca.sign(csr, Usage.TLS, key=issuer.key, days=5, serial_number=5)


def test_a_requested_ip_network_is_refused(issuer: Issuer) -> None:
    network = x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))
    _, csr = make_csr("/CN=a.example", KeyType.EC256, [network])
    with pytest.raises(InvalidCsr, match=r"10\.0\.0\.0/8 is not an address"):
        issuer.ca.sign(csr, Usage.TLS, key=issuer.key, days=5, serial_number=5)


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: ec.generate_private_key(ec.SECP521R1()),
        lambda: ed25519.Ed25519PrivateKey.generate(),
        lambda: rsa.generate_private_key(65537, 3072),
    ],
    ids=["p384", "p521", "ed25519", "rsa3072"],
)
def test_acceptable_leaf_keys_are_certified(
    tmp_path: Path, issuer: Issuer, make_key: Callable[[], PrivateKey]
) -> None:
    leaf_key = make_key()
    _, cert, path = issuer.issue("/CN=keys.example", Usage.TLS, key_type=leaf_key)
    assert keys.same_public_key(cert.public_key(), leaf_key.public_key())
    result = openssl_verify(issuer.ca.paths.cer, path, purpose="sslclient")
    assert result.returncode == 0, result.stderr


def test_a_weak_key_is_refused_with_a_reason(issuer: Issuer) -> None:
    _, csr = make_csr("/CN=weak.example", rsa.generate_private_key(65537, 1024))
    with pytest.raises(UnacceptableKey, match="RSA 1024 keys are too weak"):
        issuer.ca.sign(csr, Usage.TLS, key=issuer.key, days=5, serial_number=5)
    with pytest.raises(UnacceptableKey, match="RSA 1024"):
        issuer.ca.preview_extensions(csr, Usage.TLS)


def test_a_csr_with_a_bad_signature_is_refused(issuer: Issuer) -> None:
    _, csr = make_csr("/CN=aaaa.example", KeyType.EC256)
    der = csr.public_bytes(serialization.Encoding.DER).replace(b"aaaa", b"bbbb")
    forged = x509.load_der_x509_csr(der)
    with pytest.raises(InvalidCsr, match=r"^CSR signature is not valid$"):
        issuer.ca.sign(forged, Usage.TLS, key=issuer.key, days=5, serial_number=5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"days": 0}, InvalidInput, "validity must be a whole number"),
        ({"serial_number": 0}, InvalidInput, "serial number 0 is out of range"),
        ({"serial_number": 2**160}, InvalidInput, "out of range"),
        ({"key": keys.generate_key(KeyType.EC256)}, CAFileError, "not the CA certificate's key"),
    ],
    ids=["zero-days", "serial-0", "serial-too-big", "foreign-key"],
)
def test_sign_refuses_bad_arguments(
    issuer: Issuer, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    _, csr = make_csr("/CN=args.example", KeyType.EC256)
    arguments: dict[str, Any] = {"key": issuer.key, "days": 5, "serial_number": 5} | kwargs
    with pytest.raises(error, match=message):
        issuer.ca.sign(csr, Usage.TLS, **arguments)


def test_an_ed25519_ca_signs_without_a_separate_hash(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    subject = names.subject_from_text("/CN=Edwards CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
        .not_valid_after(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, None)
    )
    paths = CAPaths(tmp_path, "Edwards")
    paths.cer.write_text(cert_pem(ca_cert))
    files.write_private_file(paths.key, keys.key_pem(key, b"ed"))
    ca, _ = CertificateAuthority.configure(paths, password=b"ed")
    _, csr = make_csr("/CN=ed.example", KeyType.EC256)
    cert = ca.sign(csr, Usage.TLS, key=ca.private_key(b"ed"), days=5, serial_number=1)
    assert cert.signature_hash_algorithm is None
    result = openssl_verify(paths.cer, write_pem(tmp_path / "ed.cer", cert), purpose="sslserver")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("usage", list(Usage), ids=[usage.value for usage in Usage])
def test_preview_describes_exactly_what_sign_adds(issuer: Issuer, usage: Usage) -> None:
    _, csr = make_csr("/CN=preview.example", KeyType.RSA2048, "DNS:preview.example")
    lines = issuer.ca.preview_extensions(csr, usage)
    cert = issuer.ca.sign(csr, usage, key=issuer.key, days=5, serial_number=9)
    assert len(lines) == len(cert.extensions)
    ski = _extension(cert, x509.SubjectKeyIdentifier).value.digest
    assert f"Subject key identifier: {':'.join(f'{b:02X}' for b in ski)}" in lines
    expected_first = {
        Usage.TLS: "Basic constraints (critical): CA:FALSE",
        Usage.INTERMEDIATE: "Basic constraints (critical): CA:TRUE, pathlen:0",
        Usage.CODESIGN: "Basic constraints (critical): CA:FALSE",
    }
    assert lines[0] == expected_first[usage]
    if usage is Usage.TLS:
        assert "Key usage (critical): Digital Signature, Key Encipherment" in lines
        assert "Subject alternative name: DNS:preview.example" in lines


def test_usage_labels_and_values() -> None:
    assert [(u.label, u.value) for u in Usage] == [
        ("TLS/SSL and XML security", "tls"),
        ("Intermediate Certificate Authority", "intermediate"),
        ("Code signing", "codesign"),
    ]
    assert Usage("codesign") is Usage.CODESIGN


# -- the real consumers: a TLS handshake and pkilint ----------------------------------------


def _tls_files(issuer: Issuer, subject: str, sans: str, name: str) -> tuple[Path, Path]:
    key, _cert, cert_file = issuer.issue(subject, Usage.TLS, key_type=KeyType.RSA2048, sans=sans)
    key_file = issuer.out / f"{name}.key"
    files.write_private_file(key_file, keys.key_pem(key, None))
    return cert_file, key_file


def _serve_once(
    server_context: ssl.SSLContext, listener: socket.socket, outcome: dict[str, Any]
) -> None:
    try:
        connection, _ = listener.accept()
        with connection, server_context.wrap_socket(connection, server_side=True) as tls:
            outcome["peer"] = tls.getpeercert()
            tls.sendall(b"hello from the server")
    except (ssl.SSLError, OSError) as exc:
        outcome["error"] = exc


def _handshake(
    issuer: Issuer, client_context: ssl.SSLContext, server_hostname: str
) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    server_cert, server_key = _tls_files(
        issuer, "/O=Example/CN=localhost", "DNS:localhost,IP:127.0.0.1", "server"
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server_cert, server_key)
    server_context.verify_mode = ssl.CERT_REQUIRED  # client certificate required
    server_context.load_verify_locations(issuer.ca.paths.cer)
    outcome: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    received = b""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=_serve_once, args=(server_context, listener, outcome))
        thread.start()
        try:
            with socket.create_connection(listener.getsockname()[:2], timeout=30) as raw:
                with client_context.wrap_socket(raw, server_hostname=server_hostname) as tls:
                    seen["peer"] = tls.getpeercert()
                    received = tls.recv(100)
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc
        finally:
            thread.join(timeout=30)
    assert not thread.is_alive()
    return outcome, seen, received


def _client_context(issuer: Issuer, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(issuer.ca.paths.cer))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    if with_certificate:
        client_cert, client_key = _tls_files(issuer, "/O=Example/CN=client.example", "", "client")
        context.load_cert_chain(client_cert, client_key)
    return context


def test_tls_handshake_between_server_and_client_certificates_we_issued(
    issuer: Issuer,
) -> None:
    server_side, client_side, received = _handshake(
        issuer, _client_context(issuer, with_certificate=True), "localhost"
    )
    assert "error" not in server_side and "error" not in client_side
    assert received == b"hello from the server"
    assert ("commonName", "client.example") in [
        pair for rdn in server_side["peer"]["subject"] for pair in rdn
    ]
    assert ("DNS", "localhost") in client_side["peer"]["subjectAltName"]


def test_tls_handshake_checks_the_host_name_against_the_san(issuer: Issuer) -> None:
    _, client_side, _ = _handshake(
        issuer, _client_context(issuer, with_certificate=True), "other.example"
    )
    assert isinstance(client_side["error"], ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(client_side["error"])


def test_tls_server_requires_a_client_certificate(issuer: Issuer) -> None:
    server_side, _, received = _handshake(
        issuer, _client_context(issuer, with_certificate=False), "localhost"
    )
    assert isinstance(server_side["error"], ssl.SSLError)
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(server_side["error"])
    assert received == b""


def _pkilint(path: Path) -> subprocess.CompletedProcess[str]:
    # WARNING threshold: stricter than required (no ERROR/FATAL), and what we issue passes it.
    return subprocess.run(
        [sys.executable, "-m", "pkilint.bin.lint_pkix_cert", "lint", "-s", "WARNING", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "what",
    ["ca-rsa", "ca-ec384", "tls", "tls-ec", "intermediate", "codesign"],
)
def test_pkilint_rfc5280_finds_nothing(tmp_path: Path, issuer: Issuer, what: str) -> None:
    if what == "ca-rsa":
        path = issuer.ca.paths.cer
    elif what == "ca-ec384":
        path = make_ca(tmp_path, key_type=KeyType.EC384).paths.cer
    elif what.startswith("tls"):
        key_type = KeyType.EC256 if what == "tls-ec" else KeyType.RSA2048
        _, _, path = issuer.issue(
            "/C=US/O=Example/CN=lint.example", Usage.TLS, key_type=key_type, sans="IP:10.0.0.1"
        )
    elif what == "intermediate":
        _, _, path = issuer.issue("/O=Example/CN=Lint Intermediate", Usage.INTERMEDIATE)
    else:
        _, _, path = issuer.issue("/O=Example/CN=Lint Code Signing", Usage.CODESIGN)
    result = _pkilint(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout and "FATAL" not in result.stdout
