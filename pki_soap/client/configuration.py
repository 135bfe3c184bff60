"""The CA client's configuration: the CA server, the contact, this node's identity, the pin.

Trust: ``get-ca --fingerprint`` (pki_soap.client.fetching) checks the CA certificate the
server sends against a fingerprint the CA administrator gave out of band and pins it
(``pinned-ca.pem``, which no file-name root can collide with).  A client configured for HTTPS
verifies every call against that certificate alone, host name included; before it is pinned,
only ``get-ca --fingerprint`` can talk to the server.  Over plain HTTP the pin still guards
``get-ca``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography import x509

from pki_soap.ca import names
from pki_soap.ca.names import DEFAULT_INSTANCE, is_hostname
from pki_soap.client.soap_client import DEFAULT_PATH, CAClient
from pki_soap.client.transport import WireExchange
from pki_soap.errors import InvalidField, InvalidInput, MissingField, NotConfigured, PkiError
from pki_soap.escaping import has_control
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
def connected(cfg: ClientConfig, data_dir: Path, client: CAClient | None) -> Iterator[CAClient]:
    """The caller's client, or a new one closed afterwards (no sockets left to the GC)."""
    if client is not None:
        yield client
        return
    with make_client(cfg, data_dir) as own:
        yield own
