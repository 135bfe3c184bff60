"""Certificates in the formats other stacks read, checked by those stacks' own tools.

``client_app.py export NAME --p12`` is read back by ``openssl pkcs12`` and by Java's ``keytool
-list`` (Debian's default-jre-headless); ``--chain`` and ``--fullchain`` by ``openssl verify``,
also below an intermediate CA; ``server_app.py certificates --export NUMBER`` likewise.
"""

from __future__ import annotations

import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from pki_soap import files
from pki_soap.ca import fingerprints, keys
from pki_soap.ca.authority import CertificateAuthority, Usage
from pki_soap.ca.ca_files import CAPaths
from pki_soap.ca.csr import csr_pem
from pki_soap.ca.keys import KeyType
from pki_soap.cli import client_app as client_cli
from pki_soap.cli import server_app as server_cli
from pki_soap.client.configuration import PINNED_CA_FILE
from pki_soap.server.tasks import CAServer
from pki_soap.store import PendingRequest
from tests.engine_support import CA_PASSWORD, make_ca, make_csr, openssl, openssl_verify, write_pem

P12_PASSWORD = b"p12 export password"
KEY_PASSWORD = b"client key password"


@dataclass(frozen=True)
class Client:
    """A client data directory holding ``web.key``, ``web.cer`` and the CA certificate(s)."""

    data_dir: Path
    key: keys.PrivateKey
    cert: x509.Certificate
    cas: tuple[x509.Certificate, ...]
    """Issuer first, root last."""


def _issue(
    authority: CertificateAuthority, usage: Usage, subject: str, key_type: KeyType
) -> tuple[keys.PrivateKey, x509.Certificate]:
    key, csr = make_csr(subject, key_type, "DNS:web.example" if usage is Usage.TLS else ())
    cert = authority.sign(
        csr,
        usage,
        key=authority.private_key(CA_PASSWORD),
        days=30,
        serial_number=authority.serials.take(),
    )
    return key, cert


def _client(
    tmp_path: Path,
    *,
    intermediate: bool = False,
    key_password: bytes | None = None,
    key_type: KeyType = KeyType.RSA2048,
) -> Client:
    root = make_ca(tmp_path, subject="/O=Example/CN=Example Root CA")
    issuer, chain = root, [root.certificate]
    if intermediate:
        inter_key, inter_cert = _issue(
            root, Usage.INTERMEDIATE, "/O=Example/CN=Issuing CA", KeyType.EC256
        )
        paths = CAPaths(tmp_path / "Issuing", "Issuing")
        paths.directory.mkdir()
        files.write_private_file(paths.key, keys.key_pem(inter_key, CA_PASSWORD))
        write_pem(paths.cer, inter_cert)
        issuer = CertificateAuthority.load(paths, password=CA_PASSWORD)
        chain.insert(0, inter_cert)
    key, cert = _issue(issuer, Usage.TLS, "/O=Example/CN=web.example", key_type)
    data_dir = tmp_path / "client"
    data_dir.mkdir(mode=0o700)
    files.write_private_file(data_dir / "web.key", keys.key_pem(key, key_password))
    write_pem(data_dir / "web.cer", cert)
    # As get-ca leaves them: the CA's certificate (pinned too); the root saved by hand.
    write_pem(data_dir / "Issuing.cer" if intermediate else data_dir / "TestCA.cer", chain[0])
    write_pem(data_dir / PINNED_CA_FILE, chain[0])
    if intermediate:
        write_pem(data_dir / "Root.cer", root.certificate)
    return Client(data_dir, key, cert, tuple(chain))


def _secret(path: Path, value: bytes) -> Path:
    path.write_bytes(value + b"\n")
    path.chmod(0o600)
    return path


def client_app(
    capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str | Path
) -> tuple[int, str, str]:
    code = client_cli.main(["--data-dir", str(data_dir), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def no_environment_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PKI_KEY_PASSWORD", "PKI_P12_PASSWORD", "PKI_CA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


# -- PKCS#12 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.EC256], ids=["rsa", "ec"])
def test_p12_is_read_back_by_openssl(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_type: KeyType
) -> None:
    client = _client(tmp_path, key_type=key_type)
    password = _secret(tmp_path / "p12.pw", P12_PASSWORD)

    code, out, err = client_app(
        capsys, client.data_dir, "export", "web", "--p12", "--password-file", password
    )

    p12 = client.data_dir / "web.p12"
    assert (code, err) == (0, "")
    assert out == f'Wrote "{p12}": key, certificate and 1 CA certificate(s).\n'
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    passin = f"file:{password}"
    info = openssl("pkcs12", "-in", p12, "-passin", passin, "-info", "-noout")
    assert info.returncode == 0, info.stderr
    assert "MAC: sha256" in info.stderr
    assert "PBES2, PBKDF2, AES-256-CBC" in info.stderr
    leaf = openssl("pkcs12", "-in", p12, "-passin", passin, "-clcerts", "-nokeys")
    cas = openssl("pkcs12", "-in", p12, "-passin", passin, "-cacerts", "-nokeys")
    key = openssl("pkcs12", "-in", p12, "-passin", passin, "-nocerts", "-nodes")
    assert x509.load_pem_x509_certificates(leaf.stdout.encode()) == [client.cert]
    assert x509.load_pem_x509_certificates(cas.stdout.encode()) == list(client.cas)
    assert keys.same_public_key(
        keys.load_key(key.stdout.encode(), None).public_key(), client.cert.public_key()
    )
    assert "friendlyName: web" in leaf.stdout
    wrong = openssl("pkcs12", "-in", p12, "-passin", "pass:wrong", "-noout")
    assert wrong.returncode != 0 and "mac verify error" in wrong.stderr.lower()


def test_p12_is_read_by_java_keytool(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    client = _client(tmp_path, intermediate=True)
    password = _secret(tmp_path / "p12.pw", P12_PASSWORD)
    assert (
        client_app(capsys, client.data_dir, "export", "web", "--p12", "--password-file", password)[
            0
        ]
        == 0
    )

    listed = subprocess.run(
        ["keytool", "-list", "-v", "-keystore", client.data_dir / "web.p12",
         "-storetype", "PKCS12", "-storepass:file", password],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "Your keystore contains 1 entry" in listed.stdout
    assert "Alias name: web" in listed.stdout
    assert "Entry type: PrivateKeyEntry" in listed.stdout
    assert "Certificate chain length: 3" in listed.stdout
    serial = f"Serial number: {client.cert.serial_number:x}"
    assert serial in listed.stdout
    refused = subprocess.run(
        ["keytool", "-list", "-keystore", client.data_dir / "web.p12",
         "-storetype", "PKCS12", "-storepass", "not the password"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode != 0


def test_an_encrypted_key_needs_its_own_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client = _client(tmp_path, key_password=KEY_PASSWORD)
    password = _secret(tmp_path / "p12.pw", P12_PASSWORD)
    right = _secret(tmp_path / "key.pw", KEY_PASSWORD)
    wrong = _secret(tmp_path / "wrong.pw", b"not it")
    export = ["export", "web", "--p12", "--password-file", password]

    missing = client_app(capsys, client.data_dir, *export)
    refused = client_app(capsys, client.data_dir, *export, "--key-password-file", wrong)
    done = client_app(capsys, client.data_dir, *export, "--key-password-file", right)

    assert missing == (
        2,
        "",
        "error: web.key is encrypted: use --key-password-file FILE or $PKI_KEY_PASSWORD\n",
    )
    assert refused[0] == 5 and "the password does not decrypt the private key" in refused[2]
    assert done[0] == 0, done[2]
    out = openssl(
        "pkcs12",
        "-in",
        client.data_dir / "web.p12",
        "-passin",
        f"file:{password}",
        "-nocerts",
        "-nodes",
    )
    assert keys.same_public_key(
        keys.load_key(out.stdout.encode(), None).public_key(), client.key.public_key()
    )


def test_a_p12_password_comes_from_a_file_or_the_environment_never_empty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(tmp_path)

    nowhere = client_app(capsys, client.data_dir, "export", "web", "--p12")
    empty = client_app(
        capsys,
        client.data_dir,
        "export",
        "web",
        "--p12",
        "--password-file",
        _secret(tmp_path / "e", b""),
    )
    monkeypatch.setenv("PKI_P12_PASSWORD", "from the environment")
    from_env = client_app(capsys, client.data_dir, "export", "web", "--p12")

    assert nowhere == (
        2,
        "",
        "error: the PKCS#12 password is needed: use --password-file FILE or $PKI_P12_PASSWORD\n",
    )
    assert empty[0] == 2 and "is empty" in empty[2]
    assert from_env[0] == 0, from_env[2]
    read = openssl(
        "pkcs12",
        "-in",
        client.data_dir / "web.p12",
        "-passin",
        "pass:from the environment",
        "-noout",
    )
    assert read.returncode == 0, read.stderr


# -- PEM chains ------------------------------------------------------------------------------


def test_chain_and_fullchain_below_an_intermediate_ca(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client = _client(tmp_path, intermediate=True)
    intermediate, root = client.cas

    chain = client_app(capsys, client.data_dir, "export", "web", "--chain")
    full = client_app(capsys, client.data_dir, "export", "web", "--fullchain")

    chain_file = client.data_dir / "web-chain.pem"
    full_file = client.data_dir / "web-fullchain.pem"
    assert chain == (0, f'Wrote "{chain_file}": certificate and 1 CA certificate(s).\n', "")
    assert full == (0, f'Wrote "{full_file}": certificate and 2 CA certificate(s).\n', "")
    assert x509.load_pem_x509_certificates(chain_file.read_bytes()) == [client.cert, intermediate]
    assert x509.load_pem_x509_certificates(full_file.read_bytes()) == [
        client.cert,
        intermediate,
        root,
    ]
    root_file = write_pem(tmp_path / "root.pem", root)
    leaf_file = write_pem(tmp_path / "leaf.pem", client.cert)
    # What a TLS server sends (the chain file) verifies against the root alone.
    verified = openssl_verify(root_file, leaf_file, purpose="sslserver", untrusted=chain_file)
    assert verified.returncode == 0, verified.stderr
    without = openssl_verify(root_file, leaf_file, purpose="sslserver")
    assert without.returncode != 0


def test_below_a_root_the_chain_is_the_certificate_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client = _client(tmp_path)

    client_app(capsys, client.data_dir, "export", "web", "--chain")
    client_app(
        capsys, client.data_dir, "export", "web", "--fullchain", "--out", tmp_path / "full.pem"
    )

    assert x509.load_pem_x509_certificates((client.data_dir / "web-chain.pem").read_bytes()) == [
        client.cert
    ]
    assert x509.load_pem_x509_certificates((tmp_path / "full.pem").read_bytes()) == [
        client.cert,
        *client.cas,
    ]


def test_export_says_what_is_missing_and_never_overwrites_unasked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client = _client(tmp_path, intermediate=True)
    (client.data_dir / "Root.cer").unlink()

    no_root = client_app(capsys, client.data_dir, "export", "web", "--fullchain")
    chain = client_app(capsys, client.data_dir, "export", "web", "--chain")
    again = client_app(capsys, client.data_dir, "export", "web", "--chain")
    forced = client_app(capsys, client.data_dir, "export", "web", "--chain", "--force")
    for name in ("Issuing.cer", PINNED_CA_FILE):
        (client.data_dir / name).unlink()
    no_ca = client_app(capsys, client.data_dir, "export", "web", "--chain", "--force")
    no_cert = client_app(capsys, client.data_dir, "export", "nothing", "--chain")
    bad_root = client_app(capsys, client.data_dir, "export", "../web", "--chain")
    password_without_p12 = client_app(
        capsys, client.data_dir, "export", "web", "--chain", "--password-file", "x"
    )

    assert no_root[0] == 3
    assert (
        "the chain ends at /O=Example/CN=Issuing CA, whose issuer "
        "(/O=Example/CN=Example Root CA) is not at hand" in no_root[2]
    )
    assert chain[0] == 0 and forced[0] == 0
    assert again[0] == 2 and "already exists; use --force to replace it" in again[2]
    assert no_ca[0] == 3
    assert (
        "web.cer: the certificate of its issuer (/O=Example/CN=Issuing CA) is not at hand"
        in no_ca[2]
    )
    assert "(run client_app.py get-ca first)" in no_ca[2]
    assert no_cert[0] == 3 and "no certificate" in no_cert[2]
    assert bad_root[0] == 2
    assert password_without_p12[0] == 2 and "only with --p12" in password_without_p12[2]


# -- the server's certificates --export ------------------------------------------------------


def test_server_exports_one_certificate_alone_or_with_its_chain(
    capsys: pytest.CaptureFixture[str],
    configured_server: CAServer,
    data_dir: Path,
    ca_password: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, csr = make_csr("/CN=web.example", KeyType.EC256, "DNS:web.example")
    configured_server.submit(
        PendingRequest(
            name="web.example:IRIS:web", hostname="web.example", instance="IRIS",
            filename="web", contents=csr_pem(csr), subject="/CN=web.example",
            contact_name="Pat",
        )
    )  # fmt: skip
    issued = configured_server.issue("web.example:IRIS:web", Usage.TLS, ca_password)
    ca = configured_server.authority().certificate
    monkeypatch.chdir(tmp_path)

    def server_app(*args: str) -> tuple[int, str, str]:
        code = server_cli.main(["--data-dir", str(data_dir), "certificates", *args])
        out, err = capsys.readouterr()
        return code, out, err

    alone = server_app("--export", str(issued.number))
    chain = server_app("--export", str(issued.number), "--chain")
    full = server_app("--export", str(issued.number), "--fullchain", "--out", "-")
    again = server_app("--export", str(issued.number))
    unknown = server_app("--export", "999")
    misplaced = server_app("--chain")

    cert = x509.load_pem_x509_certificate(issued.contents.encode())
    assert alone == (0, f'Certificate number {issued.number} written to "web.cer".\n', "")
    assert (tmp_path / "web.cer").read_text() == issued.contents
    assert chain[0] == 0
    assert x509.load_pem_x509_certificates((tmp_path / "web-chain.pem").read_bytes()) == [cert]
    assert full[0] == 0 and x509.load_pem_x509_certificates(full[1].encode()) == [cert, ca]
    assert again[0] == 2 and "already exists" in again[2]
    assert unknown == (3, "", "error: no certificate number '999'\n")
    assert misplaced[0] == 2 and "go with --export NUMBER" in misplaced[2]
    assert fingerprints.fingerprint(cert) == fingerprints.fingerprint(
        x509.load_pem_x509_certificate((tmp_path / "web.cer").read_bytes())
    )
