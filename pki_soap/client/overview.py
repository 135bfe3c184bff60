"""What the client holds and what the server says of it: ``client_app.py`` with no command.

Also the portal's client page.  A server that does not answer is reported, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from pki_soap.ca.csr import load_csr
from pki_soap.ca.fingerprints import fingerprint
from pki_soap.client.configuration import connected, server_url
from pki_soap.client.soap_client import CAClient, CertificateRow, RemoteCertificate
from pki_soap.errors import PkiError
from pki_soap.store import ClientConfig


@dataclass(frozen=True)
class LocalRequest:
    """A request of this client, as its files in the data directory and the server show it."""

    root: str
    has_key: bool
    csr_fingerprint: str | None
    """SHA-1 of ``<root>.csr``; None when there is no readable one."""
    certificate: x509.Certificate | None
    """``<root>.cer`` when saved."""
    issued_number: int | None
    """The number the server lists for this root (this host and instance), when it answered."""


@dataclass(frozen=True)
class Overview:
    """Everything ``client_app.py`` shows about this client, gathered in one place."""

    config: ClientConfig | None
    url: str | None
    server_error: str | None
    """Why the server did not answer; None when it did, or when there is nothing to ask."""
    server_ca: RemoteCertificate | None
    ca_file: Path | None
    """The CA certificate held in the data directory (``<CA root>.cer``), if any."""
    ca_fingerprint: str | None
    ca_matches: bool | None
    """Whether ``ca_file`` is the server's CA certificate; None when unknown."""
    requests: list[LocalRequest]
    issued: list[CertificateRow]
    """The server's certificates for this host and instance ([] when it did not answer)."""


def _read_certificate(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def overview(
    data_dir: Path, cfg: ClientConfig | None, *, client: CAClient | None = None
) -> Overview:
    """What this client holds and what the server says: configuration, the CA certificate, the
    requests (each ``<root>.key``/``.csr``/``.cer`` in the data directory) and their state.

    Asks the server twice (GetCertificate 0, ListCertificates for this host and instance)
    when configured; a server that does not answer is reported, never raised.
    """
    local: dict[str, x509.Certificate | None] = {}
    ca_candidates: dict[Path, x509.Certificate] = {}
    roots: set[str] = set()
    if data_dir.is_dir():
        for path in sorted(data_dir.iterdir()):
            if path.suffix in (".key", ".csr") and path.is_file():
                roots.add(path.stem)
            elif path.suffix == ".cer" and path.is_file():
                cert = _read_certificate(path)
                if (
                    cert is not None
                    and _is_ca(cert)
                    and not (data_dir / f"{path.stem}.key").exists()
                ):
                    ca_candidates[path] = cert
                else:
                    roots.add(path.stem)
                    local[path.stem] = cert
    url = server_url(cfg) if cfg is not None else None
    server_error: str | None = None
    server_ca: RemoteCertificate | None = None
    issued: list[CertificateRow] = []
    if cfg is not None:
        try:
            with connected(cfg, data_dir, client) as ca_client:
                server_ca = ca_client.get_certificate(0)
                issued = ca_client.list_certificates(cfg.hostname, cfg.instance)
        except PkiError as exc:
            server_error = exc.message
    ca_file = next(iter(ca_candidates), None)
    if server_ca is not None and (data_dir / f"{server_ca.filename}.cer").is_file():
        ca_file = data_dir / f"{server_ca.filename}.cer"
        roots.discard(ca_file.stem)  # even without a CA flag: it is where get-ca saves it
        local.pop(ca_file.stem, None)
    held = _read_certificate(ca_file) if ca_file is not None else None
    ca_matches = None if server_ca is None or held is None else held == server_ca.certificate
    numbers = {row.filename: row.number for row in issued}
    requests = []
    for root in sorted(roots):
        csr_path = data_dir / f"{root}.csr"
        try:
            csr_fingerprint: str | None = fingerprint(load_csr(csr_path.read_bytes()))
        except (OSError, PkiError):
            csr_fingerprint = None
        requests.append(
            LocalRequest(
                root=root,
                has_key=(data_dir / f"{root}.key").is_file(),
                csr_fingerprint=csr_fingerprint,
                certificate=local.get(root),
                issued_number=numbers.get(root),
            )
        )
    return Overview(
        config=cfg,
        url=url,
        server_error=server_error,
        server_ca=server_ca,
        ca_file=ca_file,
        ca_fingerprint=fingerprint(held) if held is not None else None,
        ca_matches=ca_matches,
        requests=requests,
        issued=issued,
    )
