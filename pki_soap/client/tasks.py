"""The CA client's tasks (IRIS ``PKI.CAClient``): configure, get-ca, submit, list, get, export.

The command line and the portal both call these.  Files land directly in the data directory,
as the original's land in ``<install>/mgr/``: ``<root>.key`` (0600), ``<root>.csr``,
``<root>.cer`` and the CA certificate ``<CA root>.cer``.  A file name that comes from the
server is used only after it passed the file-name root rules (``CAClient.get_certificate``
refuses anything else), so nothing is ever written outside the data directory.

Trust: ``get-ca --fingerprint`` checks the CA certificate the server sends against a
fingerprint the CA administrator gave out of band and pins it (``pinned-ca.pem``, which no
file-name root can collide with).  A client configured for HTTPS verifies every call against
that certificate alone, host name included; before it is pinned, only ``get-ca
--fingerprint`` can talk to the server.  Over plain HTTP the pin still guards ``get-ca``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from pki_soap import messages
from pki_soap.ca import names
from pki_soap.ca.csr import build_csr, cert_pem, csr_pem, load_csr
from pki_soap.ca.export import ExportFormat, chain, issuers, pem_bundle, pkcs12_bytes
from pki_soap.ca.fingerprints import Fingerprint, fingerprint, sha256_fingerprint
from pki_soap.ca.keys import (
    KeyType,
    generate_key,
    key_is_encrypted,
    key_pem,
    load_key,
    same_public_key,
)
from pki_soap.ca.names import DEFAULT_INSTANCE, check_root, is_hostname, subject_text
from pki_soap.client.soap_client import (
    DEFAULT_PATH,
    CAClient,
    CertificateRow,
    RemoteCertificate,
    WireExchange,
)
from pki_soap.errors import (
    DuplicateRequest,
    InvalidField,
    InvalidInput,
    MissingField,
    NotConfigured,
    NotFound,
    PkiError,
    ServerUnreachable,
    UnknownCertificate,
    UntrustedServer,
)
from pki_soap.escaping import has_control
from pki_soap.files import write_private_file, write_public_file
from pki_soap.store import ClientConfig, Store

DEFAULT_TIMEOUT = 10.0
PINNED_CA_FILE = "pinned-ca.pem"
# MAXLEN of the PKI.CAClient / PKI.CSR properties the configuration feeds (wire-protocol.md §4.1).
_MAX = {"server": 200, "path": 200, "contact": 50, "hostname": 100, "instance": 50}


def _check_text(label: str, value: str, limit: int) -> None:
    if has_control(value):
        raise InvalidField(f"{label} holds a control character")
    if len(value) > limit:
        raise InvalidField(f"{label} is longer than {limit} characters")


def configure(
    store: Store,
    *,
    server: str | None = None,
    port: int | None = None,
    path: str | None = None,
    contact_name: str | None = None,
    contact_phone: str | None = None,
    contact_email: str | None = None,
    hostname: str | None = None,
    instance: str | None = None,
    tls: bool | None = None,
) -> ClientConfig:
    """Store the client configuration; a setting not given (None) keeps its stored value.

    So ``configure(store, contact_email="x@example.com")`` changes only the e-mail.  The first
    configuration needs the server, port and contact name; the path defaults to IRIS's, the
    identity to this node's name and ``PKI``.  An empty phone or e-mail removes it.
    ``tls`` reaches the server over HTTPS (default: plain HTTP); a pinned CA certificate
    stays pinned.

    Raises:
        MissingField: the first configuration lacks the server, port or contact name, or
            one of them is given empty.
        InvalidInput: a server that is not a host name or IP address, a port outside
            1..65535, a path not starting with ``/``, a host name or instance holding ``:``.
        InvalidField: a value too long or holding a control character.
    """
    previous = store.client_config()
    if previous is None:
        absent = [
            option
            for option, value in (
                ("--server", server),
                ("--port", port),
                ("--contact-name", contact_name),
            )
            if value is None
        ]
        if absent:
            raise MissingField(
                "the first configuration of the CA client needs the CA server, its port and "
                f"a contact name (missing: {', '.join(absent)})"
            )
    server = (server if server is not None else previous.server if previous else "").strip()
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
    if port is None and previous is not None:
        port = previous.port
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"CA server port {port!r} is not between 1 and 65535")
    if path is None:
        path = previous.path if previous else DEFAULT_PATH
    path = path.strip() or DEFAULT_PATH
    _check_text("the CA server path", path, _MAX["path"])
    if not path.startswith("/") or any(ch in path for ch in " ?#"):
        raise InvalidInput(f"CA server path {path!r} must start with '/' (no query, no spaces)")
    if contact_name is None:
        contact_name = previous.contact_name if previous else ""
    contact_name = contact_name.strip()
    if not contact_name:
        raise MissingField("the contact name is required")
    _check_text("the contact name", contact_name, _MAX["contact"])
    if contact_phone is None and previous is not None:
        contact_phone = previous.contact_phone
    if contact_email is None and previous is not None:
        contact_email = previous.contact_email
    phone = (contact_phone or "").strip() or None
    email = (contact_email or "").strip() or None
    for label, value in (("the contact phone", phone), ("the contact e-mail", email)):
        if value is not None:
            _check_text(label, value, _MAX["contact"])
    if email is not None and not names.is_email_address(email):
        raise InvalidInput(f"the contact e-mail {email!r} is not one e-mail address")
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
        tls=tls if tls is not None else bool(previous and previous.tls),
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
    """``http(s)://<server>:<port><path>``, the SOAP endpoint of the configured CA server."""
    host = cfg.server.strip("[]")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"{'https' if cfg.tls else 'http'}://{host}:{cfg.port}{cfg.path}"


def pinned_ca_path(data_dir: Path) -> Path:
    """Where the pinned CA certificate is kept."""
    return Path(data_dir) / PINNED_CA_FILE


def pinned_ca(data_dir: Path) -> x509.Certificate | None:
    """The pinned CA certificate, or None before ``get-ca --fingerprint`` pinned one.

    Raises:
        PkiError: the file exists but does not hold a PEM certificate.
    """
    path = pinned_ca_path(data_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f'the pinned CA certificate "{path}" is unreadable: {exc}') from exc


def make_client(
    cfg: ClientConfig,
    data_dir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    trace: Callable[[WireExchange], object] | None = None,
) -> CAClient:
    """A CAClient for the configured server (callers keep and reuse it); ``trace`` is given
    the bytes of every request and answer (``client_app.py --trace``).

    Over HTTPS it trusts the pinned CA certificate and nothing else.

    Raises:
        InvalidInput: the configuration does not make a usable URL.
        NotConfigured: HTTPS, and no CA certificate is pinned yet.
    """
    if not cfg.tls:
        return CAClient(server_url(cfg), timeout=timeout, trace=trace)
    pin = pinned_ca_path(data_dir)
    if not pin.is_file():
        raise NotConfigured(
            f"the CA server at {server_url(cfg)} is reached over HTTPS and no CA certificate "
            "is trusted yet: first run client_app.py get-ca --fingerprint SHA256:... with the "
            "fingerprint the CA administrator gives you (server_app.py status shows it)"
        )
    return CAClient(server_url(cfg), timeout=timeout, cafile=pin, trace=trace)


@contextlib.contextmanager
def _connected(cfg: ClientConfig, data_dir: Path, client: CAClient | None) -> Iterator[CAClient]:
    """The caller's client, or a new one closed afterwards (no sockets left to the GC)."""
    if client is not None:
        yield client
        return
    with make_client(cfg, data_dir) as own:
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
        with client or make_client(cfg, data_dir, timeout=timeout, trace=trace) as connected:
            remote = _ca_certificate(cfg, connected)
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
        ) as connected:
            remote = _ca_certificate(cfg, connected)
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
    path = _destination(data_dir, remote.filename, out)
    _save_certificate(path, cert, force=force)
    return path, fingerprint(cert)


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
        with _connected(cfg, data_dir, client) as connected:
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
    except DuplicateRequest as exc:
        _remove(written)
        raise _duplicate(cfg, root, exc) from exc
    except (PkiError, OSError, KeyboardInterrupt):
        _remove(written)
        raise
    return messages.request_submitted(fingerprint(csr), sentence)


def _duplicate(cfg: ClientConfig, root: str, exc: DuplicateRequest) -> DuplicateRequest:
    """The server's "ID key not unique" with what it means and what to do next."""
    name = f"{cfg.hostname}:{cfg.instance}:{root}"
    return DuplicateRequest(
        f'a request named "{name}" is already pending at the CA ({exc.message}); wait until '
        "the CA administrator issues or deletes it, or use another file name root (or, if "
        "another client uses this host name and instance, configure another --hostname or "
        "--instance)"
    )


def resubmit(store: Store, data_dir: Path, *, root: str, client: CAClient | None = None) -> str:
    """Send ``<root>.csr`` again, with its key kept; the message to show.

    For a request the CA administrator deleted (or one lost on the way): a new submission
    would need a new root, since a key is never overwritten.  Nothing is written.

    Raises:
        NotConfigured: the client is not configured.
        InvalidRoot: ``root`` breaks the file-name rules.
        InvalidInput: ``<root>.key`` or ``<root>.csr`` is missing, or the key (when it is
            not encrypted) is not the CSR's.
        InvalidCsr: ``<root>.csr`` is not a valid CSR.
        DuplicateRequest: the request is still pending at the CA.
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault.
    """
    cfg = client_config(store)
    check_root(root)
    key_path = data_dir / f"{root}.key"
    csr_path = data_dir / f"{root}.csr"
    if not csr_path.is_file():
        raise InvalidInput(f'there is no "{csr_path}" to send again; submit a new request')
    if not key_path.is_file():
        raise InvalidInput(
            f'"{key_path}" is missing: a certificate for "{csr_path}" would be useless without '
            "it; submit a new request under another root"
        )
    csr = load_csr(csr_path.read_bytes())
    key_data = key_path.read_bytes()
    # An encrypted key would need its password to compare; the user chose that key.
    if not key_is_encrypted(key_data):
        key = load_key(key_data, None)
        if not same_public_key(key.public_key(), csr.public_key()):
            raise InvalidInput(f'"{key_path}" is not the key of "{csr_path}"')
    try:
        with _connected(cfg, data_dir, client) as connected:
            sentence = connected.submit_csr(
                name=f"{cfg.hostname}:{cfg.instance}:{root}",
                hostname=cfg.hostname,
                instance=cfg.instance,
                filename=root,
                contents=csr_pem(csr),
                subject=subject_text(csr.subject),
                contact_name=cfg.contact_name,
                contact_phone=cfg.contact_phone,
                contact_email=cfg.contact_email,
            )
    except DuplicateRequest as exc:
        raise _duplicate(cfg, root, exc) from exc
    return messages.request_submitted(fingerprint(csr), sentence)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


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
    with _connected(cfg, data_dir, client) as connected:
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
    with _connected(cfg, data_dir, client) as connected:
        remote: RemoteCertificate | None = connected.get_certificate(number)
    if remote is None:
        raise UnknownCertificate(
            f"the CA server at {server_url(cfg)} has no certificate number {str(number).strip()}"
        )
    path = _destination(data_dir, remote.filename, out)
    cert = remote.certificate
    _save_certificate(path, cert, force=force)
    return path, fingerprint(cert), remote.number


# -- what the client knows: `client_app.py` with no command -------------------------------


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
            with _connected(cfg, data_dir, client) as connected:
                server_ca = connected.get_certificate(0)
                issued = connected.list_certificates(cfg.hostname, cfg.instance)
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


def export(
    data_dir: Path,
    root: str,
    kind: ExportFormat,
    *,
    out: Path | None = None,
    force: bool = False,
    password: bytes | None = None,
    key_password: Callable[[], bytes | None] = lambda: None,
) -> tuple[Path, int]:
    """Write ``<root>.cer`` (and for PKCS#12 ``<root>.key``) in another format; (file, CAs).

    The CA certificates come from the data directory: the pinned one and the ``.cer`` files
    that are CA certificates (``get-ca`` saves the CA's).  ``password`` protects a PKCS#12
    file; ``key_password`` is asked only when ``<root>.key`` is encrypted.  The file is
    ``out`` or the format's default name in the data directory (a PKCS#12 file gets mode
    0600); an existing file is replaced only with ``force``.

    Raises:
        InvalidRoot: ``root`` breaks the file-name rules.
        NotFound: ``<root>.cer`` (or ``<root>.key``) is missing, or the CA certificates needed
            are not in the data directory.
        WrongPassword: the key password does not decrypt ``<root>.key``.
        InvalidInput: no or an empty PKCS#12 password, a key that is not the certificate's,
            or the target file exists (and not ``force``).
    """
    check_root(root)
    cert_path = data_dir / f"{root}.cer"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError:
        raise NotFound(f'no certificate "{cert_path}" (client_app.py get saves it)') from None
    except ValueError as exc:
        raise InvalidInput(f'"{cert_path}" is not a PEM certificate') from exc
    known = _certificates_at_hand(data_dir)
    try:
        cas = issuers(cert, known)
    except NotFound as exc:
        raise NotFound(
            f"{root}.cer: {exc.message} in {data_dir} (run client_app.py get-ca first)"
        ) from exc
    target = out or data_dir / kind.file_name(root)
    if (target.exists() or target.is_symlink()) and not force:
        raise InvalidInput(f'file "{target}" already exists; use --force to replace it')
    if kind is ExportFormat.P12:
        if password is None:
            raise InvalidInput("a PKCS#12 file needs a password")
        key_path = data_dir / f"{root}.key"
        try:
            pem = key_path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f'no private key "{key_path}"') from None
        key = load_key(pem, key_password() if key_is_encrypted(pem) else None)
        data = pkcs12_bytes(root, key, cert, cas, password)
        write_private_file(target, data)
        return target, len(cas)
    certs = chain(cert, cas, full=kind is ExportFormat.FULLCHAIN)
    write_public_file(target, pem_bundle(certs))
    return target, len(certs) - 1


def _certificates_at_hand(data_dir: Path) -> list[x509.Certificate]:
    """The pinned CA certificate and every readable ``.cer`` certificate in ``data_dir``."""
    found: list[x509.Certificate] = []
    for path in [pinned_ca_path(data_dir), *sorted(data_dir.glob("*.cer"))]:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue
        if cert not in found:
            found.append(cert)
    return found
