"""CSRs: building, PEM text, loading with every check, requested subjectAltNames."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pki_soap.ca import keys, names
from pki_soap.ca.csr import csr_pem, load_csr, requested_sans
from pki_soap.ca.keys import KeyType
from pki_soap.errors import InvalidCsr, UnacceptableKey
from tests.engine_support import make_csr, openssl

SUBJECT = "/C=US/O=Example/CN=host.example.com"


@pytest.mark.parametrize(
    "key_type", [KeyType.RSA2048, KeyType.EC256], ids=lambda key_type: key_type.value
)
def test_build_csr_round_trips_through_load_csr(key_type: KeyType) -> None:
    _key, csr = make_csr(SUBJECT, key_type, sans="DNS:host.example.com,IP:10.0.0.1")
    text = csr_pem(csr)
    loaded = load_csr(text)
    assert loaded == csr
    assert load_csr(text.encode("ascii")) == csr
    assert names.subject_text(loaded.subject) == SUBJECT
    assert names.sans_text(requested_sans(loaded)) == "DNS:host.example.com, IP:10.0.0.1"
    assert loaded.signature_hash_algorithm is not None
    assert loaded.signature_hash_algorithm.name == "sha256"


def test_build_csr_with_ed25519_key() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    _, csr = make_csr(SUBJECT, key)
    assert load_csr(csr_pem(csr)).public_key() == key.public_key()


def test_csr_is_accepted_by_openssl(tmp_path: Path) -> None:
    _, csr = make_csr(SUBJECT, sans="DNS:host.example.com")
    path = tmp_path / "r.csr"
    path.write_text(csr_pem(csr))
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
    csr = load_csr(csr_file.read_text())
    assert names.subject_text(csr.subject) == "/C=US/O=Example/CN=web.example"
    assert names.sans_text(requested_sans(csr)) == "DNS:web.example"


def test_csr_pem_and_cert_pem_have_lf_line_ends() -> None:
    _, csr = make_csr(SUBJECT)
    text = csr_pem(csr)
    assert text.startswith("-----BEGIN CERTIFICATE REQUEST-----\n")
    assert text.endswith("-----END CERTIFICATE REQUEST-----\n")
    assert "\r" not in text


def test_requested_sans_is_empty_without_extension() -> None:
    _, csr = make_csr(SUBJECT)
    assert requested_sans(csr) == []


def _csr_text() -> str:
    return csr_pem(make_csr(SUBJECT, KeyType.EC256)[1])


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
        load_csr(make_text())  # type: ignore[operator]


def test_load_csr_refuses_der_bytes() -> None:
    der = make_csr(SUBJECT, KeyType.EC256)[1].public_bytes(serialization.Encoding.DER)
    with pytest.raises(InvalidCsr, match="not PEM text"):
        load_csr(der)


def test_load_csr_accepts_surrounding_whitespace_and_crlf() -> None:
    text = _csr_text()
    csr = load_csr("\r\n  " + text.replace("\n", "\r\n") + "\n\n")
    assert csr == load_csr(text)


def test_load_csr_refuses_a_weak_key() -> None:
    _, csr = make_csr(SUBJECT, rsa.generate_private_key(65537, 1024))
    with pytest.raises(UnacceptableKey, match="RSA 1024 keys are too weak"):
        load_csr(csr_pem(csr))


def test_load_csr_refuses_an_unsupported_curve() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(names.subject_from_text(SUBJECT))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(UnacceptableKey, match="EC secp256k1 keys are not accepted"):
        load_csr(csr_pem(csr))


def test_load_csr_refuses_an_empty_subject() -> None:
    key = keys.generate_key(KeyType.EC256)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(InvalidCsr, match="subject is empty"):
        load_csr(csr_pem(csr))
