"""Helpers for the revocation tests: issue real certificates, run openssl and pkilint on them.

* ``issue(server, password, "web1")`` submits a CSR for ``web1.example`` (EC P-256 key,
  subjectAltName DNS and IP 127.0.0.1) with a contact, issues it for TLS and returns the
  certificate record and its private key;
* ``write(path, cert_or_crl)`` writes PEM; ``ca_file(server)`` is the CA certificate file;
* ``openssl_ocsp(...)`` runs ``openssl ocsp`` against a URL and returns the process;
* ``pkilint(kind, path)`` runs pkilint's CRL or OCSP response linter (PKIX profile).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki_soap.ca import keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import build_csr, csr_pem
from pki_soap.ca.keys import PrivateKey
from pki_soap.server.tasks import CAServer
from pki_soap.store import IssuedCertificate, PendingRequest

CONTACT = "holder@example.test"


def issue(
    server: CAServer, password: bytes, host: str, *, contact_email: str | None = CONTACT
) -> tuple[IssuedCertificate, PrivateKey]:
    """Submit and issue a TLS certificate for ``<host>.example``; (record, private key)."""
    key = keys.generate_key(keys.KeyType.EC256)
    csr = build_csr(
        key,
        names.subject_from_text(f"/O=Example/CN={host}.example"),
        names.parse_sans(f"DNS:{host}.example,IP:127.0.0.1"),
    )
    server.submit(
        PendingRequest(
            name="",
            hostname=f"{host}.example",
            instance="IRIS",
            filename=host,
            contents=csr_pem(csr),
            subject="",
            contact_name="Holder of " + host,
            contact_email=contact_email,
        )
    )
    issued = server.issue(f"{host}.example:IRIS:{host}", Usage.TLS, password)
    return issued, key


def write(path: Path, item: IssuedCertificate | x509.CertificateRevocationList | bytes) -> Path:
    """Write a certificate record, a CRL or raw bytes to ``path``; return the path."""
    if isinstance(item, IssuedCertificate):
        path.write_text(item.contents, encoding="ascii")
    elif isinstance(item, x509.CertificateRevocationList):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(item)
    return path


def ca_file(server: CAServer) -> Path:
    """The CA certificate file of ``server``'s configured CA."""
    return server.authority().paths.cer


def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a program to its end; text output, never raises for a non-zero status."""
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=timeout, check=False
    )


def openssl_ocsp(
    ca: Path,
    url: str,
    *,
    cert: Path | None = None,
    serial: int | None = None,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``openssl ocsp -issuer CA -cert C|-serial N -url URL -CAfile CA`` (checks the answer)."""
    target: list[str | Path] = ["-cert", cert] if cert is not None else ["-serial", str(serial)]
    return run("openssl", "ocsp", "-issuer", ca, *extra, *target, "-url", url, "-CAfile", ca)


def pkilint(kind: str, path: Path) -> subprocess.CompletedProcess[str]:
    """pkilint's linter for ``kind`` ("crl" or "ocsp") at the WARNING threshold."""
    if kind == "crl":
        command = ["lint_crl", "lint", "-t", "CRL", "-p", "PKIX"]
    else:
        command = ["lint_ocsp_response", "lint"]
    module = {
        "lint_crl": "pkilint.bin.lint_crl",
        "lint_ocsp_response": "pkilint.bin.lint_ocsp_response",
    }
    return run(
        sys.executable, "-m", module[command[0]], *command[1:], "-s", "WARNING", path, timeout=120
    )
