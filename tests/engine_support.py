"""Shared test helpers for anything that needs a real CA, CSRs or the openssl binary.

Typical use in a test:

* ``ca = make_ca(tmp_path)`` gives an RSA-2048 CA (root ``TestCA``) in ``tmp_path/CA``,
  its key encrypted with ``CA_PASSWORD``;
* ``key, csr = make_csr("/C=US/CN=host.example", KeyType.EC256, "DNS:host.example")``;
* ``cert = ca.sign(csr, Usage.TLS, key=ca.private_key(CA_PASSWORD), days=30,
  serial_number=ca.serials.take())``;
* ``openssl_verify(ca.paths.cer, write_pem(tmp_path / "h.cer", cert), purpose="sslserver")``
  returns the finished ``openssl verify`` process (check ``returncode``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509

from pki_soap.ca import keys, names
from pki_soap.ca.authority import CertificateAuthority
from pki_soap.ca.ca_files import CAPaths
from pki_soap.ca.csr import build_csr, cert_pem, csr_pem
from pki_soap.ca.keys import KeyType, PrivateKey
from pki_soap.server.datadir import open_data_directory
from pki_soap.server.tasks import CAServer

CA_PASSWORD = b"correct horse battery staple"
CA_SUBJECT = "/C=US/ST=MA/L=Cambridge/O=Example/OU=Testing/CN=Example Test CA"


def make_ca(
    tmp_path: Path,
    *,
    password: bytes = CA_PASSWORD,
    key_type: KeyType = KeyType.RSA2048,
    subject: str = CA_SUBJECT,
    ca_days: int = 3650,
    root: str = "TestCA",
    directory: str = "CA",
) -> CertificateAuthority:
    """A freshly created CA whose files live in ``tmp_path / directory``."""
    paths = CAPaths(tmp_path / directory, root)
    return CertificateAuthority.create(
        paths,
        subject=names.subject_from_text(subject),
        password=password,
        ca_days=ca_days,
        key_type=key_type,
    )


def make_csr(
    subject: str,
    key_type: KeyType | PrivateKey = KeyType.RSA2048,
    sans: str | Sequence[x509.GeneralName] = (),
) -> tuple[PrivateKey, x509.CertificateSigningRequest]:
    """(key, CSR) for ``subject`` text; ``key_type`` may also be a ready key; sans like "DNS:x"."""
    key = keys.generate_key(key_type) if isinstance(key_type, KeyType) else key_type
    general_names = names.parse_sans(sans) if isinstance(sans, str) else list(sans)
    return key, build_csr(key, names.subject_from_text(subject), general_names)


def write_pem(path: Path, cert: x509.Certificate | x509.CertificateSigningRequest) -> Path:
    """Write ``cert`` (or a CSR) as PEM to ``path`` and return the path."""
    text = cert_pem(cert) if isinstance(cert, x509.Certificate) else csr_pem(cert)
    path.write_text(text, encoding="ascii")
    return path


def openssl(*args: str | Path, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``openssl`` binary; the result holds text stdout/stderr and returncode."""
    return subprocess.run(
        ["openssl", *map(str, args)],
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def openssl_verify(
    ca_file: Path,
    cert_file: Path,
    *,
    purpose: str | None = None,
    untrusted: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -CAfile ca_file [-purpose p] [-untrusted chain] cert_file``."""
    args: list[str | Path] = ["verify", "-x509_strict", "-CAfile", ca_file]
    if purpose:
        args += ["-purpose", purpose]
    if untrusted:
        args += ["-untrusted", untrusted]
    return openssl(*args, cert_file)


@contextmanager
def open_server(data_dir: Path) -> Iterator[CAServer]:
    """The CA server of ``data_dir`` as a command opens it (creating the store if needed)."""
    with open_data_directory(Path(data_dir), create=True) as opened:
        yield opened.server
