"""The CA client's fetching tasks: get-ca (the CA certificate, pinned), list, get.

Files land directly in the data directory, as the original's land in ``<install>/mgr/``:
``<root>.cer`` and the CA certificate ``<CA root>.cer``.  A file name that comes from the
server is used only after it passed the file-name root rules (``CAClient.get_certificate``
refuses anything else), so nothing is ever written outside the data directory.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from pki_soap.ca.csr import cert_pem
from pki_soap.ca.fingerprints import Fingerprint, fingerprint, sha256_fingerprint
from pki_soap.client.configuration import (
    DEFAULT_TIMEOUT,
    PINNED_CA_FILE,
    client_config,
    connected,
    make_client,
    pinned_ca,
    pinned_ca_path,
    server_url,
)
from pki_soap.client.soap_client import CAClient, CertificateRow, RemoteCertificate
from pki_soap.client.transport import WireExchange
from pki_soap.errors import InvalidInput, NotConfigured, UnknownCertificate, UntrustedServer
from pki_soap.files import write_public_file
from pki_soap.store import ClientConfig, Store


def _save_certificate(path: Path, cert: x509.Certificate, *, force: bool) -> None:
    """Write ``cert`` to ``path``; an existing file holding another certificate needs ``force``."""
    data = cert_pem(cert).encode("ascii")
    if path.is_file():
        try:
            existing = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError:
            existing = None
        if existing == cert:
            if path.read_bytes() != data:
                write_public_file(path, data)
            return
        if not force:
            raise InvalidInput(
                f'file "{path}" already holds a different certificate; use --force to replace '
                "it, or --out FILE to save this one elsewhere"
            )
    write_public_file(path, data)


def _destination(data_dir: Path, filename: str, out: Path | None) -> Path:
    """``<data_dir>/<filename>.cer``, or ``out`` (a directory: ``out/<filename>.cer``)."""
    if out is None:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return data_dir / f"{filename}.cer"
    return out / f"{filename}.cer" if out.is_dir() else out


def _save(
    data_dir: Path, filename: str, cert: x509.Certificate, out: Path | None, *, force: bool
) -> tuple[Path, str]:
    """Save ``cert`` where ``filename`` and ``out`` say; (file, SHA-1 fingerprint)."""
    path = _destination(data_dir, filename, out)
    _save_certificate(path, cert, force=force)
    return path, fingerprint(cert)


def get_ca_certificate(
    store: Store,
    data_dir: Path,
    *,
    force: bool = False,
    client: CAClient | None = None,
    out: Path | None = None,
    expected: Fingerprint | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    trace: Callable[[WireExchange], object] | None = None,
) -> tuple[Path, str]:
    """GetCertificate("0"): save the CA certificate as ``<CA root>.cer``; (file, fingerprint).

    ``out`` saves it there instead (a directory: as ``<CA root>.cer`` in it).  ``trace`` is
    given every request and answer of the clients made here (``client_app.py --trace``).

    With ``expected`` (the fingerprint the CA administrator gave) the certificate is fetched
    before anything is trusted, must have that fingerprint, and is then pinned; over HTTPS
    the server must also prove, in a second call, that its own certificate comes from that
    CA and names its host.  Without it the pinned certificate decides: over HTTPS every call
    is verified against it, and the CA certificate sent must be it.

    Raises:
        NotConfigured: the client is not configured, the server has no CA certificate, or
            HTTPS without ``expected`` and nothing pinned.
        UntrustedServer: the fingerprint does not match, the server's TLS certificate does not
            verify, or (without ``expected``) the CA certificate is not the pinned one.
        InvalidInput: another CA certificate is pinned (and not ``force``), or
            ``<CA root>.cer`` exists and holds another certificate (and not ``force``).
        InvalidRoot: the server supplied an unsafe file name.
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault.
    """
    cfg = client_config(store)
    pinned = pinned_ca(data_dir)
    if expected is None:
        with client or make_client(cfg, data_dir, timeout=timeout, trace=trace) as ca_client:
            remote = _ca_certificate(cfg, ca_client)
        cert = remote.certificate
        if pinned is not None and cert != pinned:
            raise UntrustedServer(
                f"the CA server at {server_url(cfg)} sent a CA certificate (SHA-256 "
                f"{sha256_fingerprint(cert)}) that is not the pinned one (SHA-256 "
                f"{sha256_fingerprint(pinned)}); nothing was saved. To trust another CA, run "
                "get-ca --fingerprint with its fingerprint"
            )
    else:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Nothing is trusted yet: the fingerprint decides.
        with client or CAClient(
            server_url(cfg), timeout=timeout, verify=not cfg.tls, trace=trace
        ) as ca_client:
            remote = _ca_certificate(cfg, ca_client)
        cert = remote.certificate
        if not expected.matches(cert):
            raise UntrustedServer(
                f"the CA certificate the server at {server_url(cfg)} sent has the "
                f"{expected.algorithm} fingerprint {expected.of(cert)}, not {expected}; "
                "nothing was saved or pinned"
            )
        if pinned is not None and pinned != cert and not force:
            raise InvalidInput(
                f"another CA certificate is pinned (SHA-256 {sha256_fingerprint(pinned)}); "
                "use --force to pin this one instead"
            )
        if cfg.tls:
            _prove_server(cfg, data_dir, cert, timeout, trace)
        write_public_file(pinned_ca_path(data_dir), cert_pem(cert).encode("ascii"))
    return _save(data_dir, remote.filename, cert, out, force=force)


def _ca_certificate(cfg: ClientConfig, client: CAClient) -> RemoteCertificate:
    remote = client.get_certificate(0)
    if remote is None:
        raise NotConfigured(
            f"the CA server at {server_url(cfg)} has no CA certificate (is it configured?)"
        )
    return remote


def _prove_server(
    cfg: ClientConfig,
    data_dir: Path,
    ca: x509.Certificate,
    timeout: float,
    trace: Callable[[WireExchange], object] | None = None,
) -> None:
    """Call the server once more trusting only ``ca``: its TLS certificate must verify.

    Raises:
        UntrustedServer: it does not (another CA, or not for the configured host name).
    """
    candidate = data_dir / f".{PINNED_CA_FILE}.{secrets.token_hex(6)}.tmp"
    write_public_file(candidate, cert_pem(ca).encode("ascii"))
    try:
        with CAClient(server_url(cfg), timeout=timeout, cafile=candidate, trace=trace) as verified:
            verified.get_certificate(0)
    finally:
        candidate.unlink(missing_ok=True)


def list_certificates(
    store: Store, data_dir: Path, *, all: bool, client: CAClient | None = None
) -> list[CertificateRow]:
    """ListCertificates for this host and instance, or every certificate when ``all``.

    Raises:
        NotConfigured: the client is not configured.
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault.
    """
    cfg = client_config(store)
    with connected(cfg, data_dir, client) as ca_client:
        if all:
            return ca_client.list_certificates()
        return ca_client.list_certificates(cfg.hostname, cfg.instance)


def get_certificate(
    store: Store,
    data_dir: Path,
    number: int | str,
    *,
    force: bool = False,
    client: CAClient | None = None,
    out: Path | None = None,
) -> tuple[Path, str, int]:
    """GetCertificate(number): save it as ``<Filename>.cer``; (file, fingerprint, number).

    ``out`` saves it there instead (a directory: as ``<Filename>.cer`` in it), so a
    certificate whose Filename is taken by another one can still be kept.

    Raises:
        NotConfigured: the client is not configured.
        InvalidInput: ``number`` is not a decimal number, or the file exists and holds another
            certificate (and not ``force``).
        UnknownCertificate: the server has no certificate with that number.
        InvalidRoot: the server supplied an unsafe file name (nothing is written).
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault.
    """
    cfg = client_config(store)
    with connected(cfg, data_dir, client) as ca_client:
        remote: RemoteCertificate | None = ca_client.get_certificate(number)
    if remote is None:
        raise UnknownCertificate(
            f"the CA server at {server_url(cfg)} has no certificate number {str(number).strip()}"
        )
    path, saved_fingerprint = _save(data_dir, remote.filename, remote.certificate, out, force=force)
    return path, saved_fingerprint, remote.number
