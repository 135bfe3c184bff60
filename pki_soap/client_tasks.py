"""The CA client's tasks (IRIS ``PKI.CAClient``): configure, get-ca, submit, list, get.

The command line and the portal both call these.  Files land directly in the data directory,
as the original's land in ``<install>/mgr/``: ``<root>.key`` (0600), ``<root>.csr``,
``<root>.cer`` and the CA certificate ``<CA root>.cer``.  A file name that comes from the
server is used only after it passed the file-name root rules (``CAClient.get_certificate``
refuses anything else), so nothing is ever written outside the data directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cryptography import x509

from pki_soap import messages
from pki_soap.client import (
    DEFAULT_PATH,
    CAClient,
    CertificateRow,
    RemoteCertificate,
    WireExchange,
)
from pki_soap.errors import (
    InvalidField,
    InvalidInput,
    MissingField,
    NotConfigured,
    PkiError,
    ServerUnreachable,
    UnknownCertificate,
)
from pki_soap.keys import (
    KeyType,
    build_csr,
    cert_pem,
    csr_pem,
    generate_key,
    key_pem,
    write_private_file,
    write_public_file,
)
from pki_soap.names import (
    DEFAULT_INSTANCE,
    check_root,
    fingerprint,
    is_hostname,
    subject_text,
)
from pki_soap.store import ClientConfig, Store

DEFAULT_TIMEOUT = 10.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# MAXLEN of the PKI.CAClient / PKI.CSR properties the configuration feeds (wire-protocol.md §4.1).
_MAX = {"server": 200, "path": 200, "contact": 50, "hostname": 100, "instance": 50}


def _check_text(label: str, value: str, limit: int) -> None:
    if _CONTROL.search(value):
        raise InvalidField(f"{label} holds a control character")
    if len(value) > limit:
        raise InvalidField(f"{label} is longer than {limit} characters")


def configure(
    store: Store,
    *,
    server: str,
    port: int,
    path: str = DEFAULT_PATH,
    contact_name: str,
    contact_phone: str | None = None,
    contact_email: str | None = None,
    hostname: str | None = None,
    instance: str | None = None,
) -> ClientConfig:
    """Store the client configuration; identity defaults to this node's name and ``PKI``.

    Raises:
        MissingField: no server or contact name.
        InvalidInput: a server that is not a host name or IP address, a port outside
            1..65535, a path not starting with ``/``, a host name or instance holding ``:``.
        InvalidField: a value too long or holding a control character.
    """
    server = server.strip()
    if not server:
        raise MissingField("the CA server host name is required")
    _check_text("the CA server host name", server, _MAX["server"])
    try:
        ipaddress.ip_address(server.strip("[]"))
    except ValueError:
        if not is_hostname(server):
            raise InvalidInput(
                f"CA server {server!r} is not a host name or IP address (no scheme, no port)"
            ) from None
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"CA server port {port!r} is not between 1 and 65535")
    path = path.strip() or DEFAULT_PATH
    _check_text("the CA server path", path, _MAX["path"])
    if not path.startswith("/") or any(ch in path for ch in " ?#"):
        raise InvalidInput(f"CA server path {path!r} must start with '/' (no query, no spaces)")
    contact_name = contact_name.strip()
    if not contact_name:
        raise MissingField("the contact name is required")
    _check_text("the contact name", contact_name, _MAX["contact"])
    phone = (contact_phone or "").strip() or None
    email = (contact_email or "").strip() or None
    for label, value in (("the contact phone", phone), ("the contact e-mail", email)):
        if value is not None:
            _check_text(label, value, _MAX["contact"])
    previous = store.client_config()
    hostname = (hostname or "").strip() or (previous.hostname if previous else "")
    hostname = hostname or socket.gethostname()
    instance = (instance or "").strip() or (previous.instance if previous else DEFAULT_INSTANCE)
    for label, value, limit in (
        ("the host name", hostname, _MAX["hostname"]),
        ("the instance name", instance, _MAX["instance"]),
    ):
        _check_text(label, value, limit)
        # The request Name is "<host>:<instance>:<root>"; a colon would make it ambiguous.
        if ":" in value:
            raise InvalidInput(f"{label} {value!r} may not contain ':'")
    cfg = ClientConfig(
        server=server,
        port=port,
        path=path,
        contact_name=contact_name,
        contact_phone=phone,
        contact_email=email,
        hostname=hostname,
        instance=instance,
    )
    store.save_client_config(cfg)
    return cfg


def client_config(store: Store) -> ClientConfig:
    """The stored configuration.

    Raises:
        NotConfigured: ``configure`` has not been run for this data directory.
    """
    cfg = store.client_config()
    if cfg is None:
        raise NotConfigured(
            "the CA client is not configured; run: client_app.py configure --server HOST "
            "--port PORT --contact-name NAME"
        )
    return cfg


def server_url(cfg: ClientConfig) -> str:
    """``http://<server>:<port><path>``, the SOAP endpoint of the configured CA server."""
    host = cfg.server.strip("[]")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{cfg.port}{cfg.path}"


def make_client(
    cfg: ClientConfig,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    trace: Callable[[WireExchange], object] | None = None,
) -> CAClient:
    """A CAClient for the configured server (callers keep and reuse it); ``trace`` is given
    the bytes of every request and answer (``client_app.py --trace``).

    Raises:
        InvalidInput: the configuration does not make a usable URL.
    """
    return CAClient(server_url(cfg), timeout=timeout, trace=trace)


@contextlib.contextmanager
def _connected(cfg: ClientConfig, client: CAClient | None) -> Iterator[CAClient]:
    """The caller's client, or a new one closed afterwards (no sockets left to the GC)."""
    if client is not None:
        yield client
        return
    with make_client(cfg) as own:
        yield own


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
                f'file "{path}" already holds a different certificate; use --force to replace it'
            )
    write_public_file(path, data)


def get_ca_certificate(
    store: Store, data_dir: Path, *, force: bool = False, client: CAClient | None = None
) -> tuple[Path, str]:
    """GetCertificate("0"): save the CA certificate as ``<CA root>.cer``; (file, fingerprint).

    Raises:
        NotConfigured: the client is not configured, or the server has no CA certificate.
        InvalidInput: ``<CA root>.cer`` exists and holds another certificate (and not ``force``).
        InvalidRoot: the server supplied an unsafe file name.
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault.
    """
    cfg = client_config(store)
    with _connected(cfg, client) as connected:
        remote = connected.get_certificate(0)
    if remote is None:
        raise NotConfigured(
            f"the CA server at {server_url(cfg)} has no CA certificate (is it configured?)"
        )
    path = data_dir / f"{remote.filename}.cer"
    cert = remote.certificate
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _save_certificate(path, cert, force=force)
    return path, fingerprint(cert)


def submit(
    store: Store,
    data_dir: Path,
    *,
    root: str,
    subject: x509.Name,
    password: bytes | None,
    key_type: KeyType = KeyType.RSA2048,
    sans: Sequence[x509.GeneralName] = (),
    client: CAClient | None = None,
) -> str:
    """Generate ``<root>.key`` and ``<root>.csr``, submit the CSR; the message to show.

    The key is written (0600, encrypted when ``password`` is given) before the CSR leaves, so
    an issued certificate always has its key.  When the submission fails both new files are
    removed again, so the same root can be used for the next attempt - unless the request may
    have reached the server (no answer in time, an unreadable answer): then both are kept.

    Raises:
        NotConfigured: the client is not configured.
        InvalidRoot: ``root`` breaks the file-name rules.
        InvalidInput: ``<root>.key`` or ``<root>.csr`` exists already (a key is never
            overwritten), or a field the server would refuse.
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault (e.g. DuplicateRequest for a pending CSR of that name).
    """
    cfg = client_config(store)
    check_root(root)
    if password is not None and not password:
        raise InvalidInput("the key password is empty (give none to leave the key unencrypted)")
    key_path = data_dir / f"{root}.key"
    csr_path = data_dir / f"{root}.csr"
    for path in (key_path, csr_path):
        if path.exists() or path.is_symlink():
            raise InvalidInput(
                f'file "{path}" already exists; choose another root (a key is never overwritten)'
            )
    key = generate_key(key_type)
    csr = build_csr(key, subject, list(sans))
    contents = csr_pem(csr)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        write_private_file(key_path, key_pem(key, password))
        written.append(key_path)
        write_public_file(csr_path, contents.encode("ascii"))
        written.append(csr_path)
        with _connected(cfg, client) as connected:
            sentence = connected.submit_csr(
                name=f"{cfg.hostname}:{cfg.instance}:{root}",
                hostname=cfg.hostname,
                instance=cfg.instance,
                filename=root,
                contents=contents,
                subject=subject_text(subject),
                contact_name=cfg.contact_name,
                contact_phone=cfg.contact_phone,
                contact_email=cfg.contact_email,
            )
    except ServerUnreachable as exc:
        if not exc.maybe_received:
            _remove(written)
            raise
        # The server may have stored the request: its certificate will need this key.
        kept = " and ".join(str(path) for path in written)
        raise ServerUnreachable(
            f"{exc.message}; the request may have reached the server, so {kept} "
            "are kept (run `list` later, or ask the CA administrator)",
            maybe_received=True,
        ) from exc
    except (PkiError, OSError, KeyboardInterrupt):
        _remove(written)
        raise
    return messages.request_submitted(fingerprint(csr), sentence)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def list_certificates(
    store: Store, *, all: bool, client: CAClient | None = None
) -> list[CertificateRow]:
    """ListCertificates for this host and instance, or every certificate when ``all``.

    Raises:
        NotConfigured: the client is not configured.
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault.
    """
    cfg = client_config(store)
    with _connected(cfg, client) as connected:
        if all:
            return connected.list_certificates()
        return connected.list_certificates(cfg.hostname, cfg.instance)


def get_certificate(
    store: Store,
    data_dir: Path,
    number: int | str,
    *,
    force: bool = False,
    client: CAClient | None = None,
) -> tuple[Path, str, int]:
    """GetCertificate(number): save it as ``<Filename>.cer``; (file, fingerprint, number).

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
    with _connected(cfg, client) as connected:
        remote: RemoteCertificate | None = connected.get_certificate(number)
    if remote is None:
        raise UnknownCertificate(
            f"the CA server at {server_url(cfg)} has no certificate number {str(number).strip()}"
        )
    path = data_dir / f"{remote.filename}.cer"
    cert = remote.certificate
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _save_certificate(path, cert, force=force)
    return path, fingerprint(cert), remote.number
