"""The CA client's commands: configure, get-ca, submit, list, get and export.

The key password comes from ``--password-file``, the ``PKI_KEY_PASSWORD`` environment
variable, or a prompt with confirmation when stdin is a terminal -- never from the command
line (pki_soap/cli/passwords.py).  ``export --p12`` asks the PKCS#12 password the same way
(``--password-file``, ``PKI_P12_PASSWORD``, a prompt) and the key's own password, only if the
key is encrypted, from ``--key-password-file``, ``PKI_KEY_PASSWORD`` or a prompt.  What the
server sends is printed escaped for the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from cryptography import x509

from pki_soap import messages
from pki_soap.ca.export import ExportFormat
from pki_soap.ca.fingerprints import parse_fingerprint, sha256_fingerprint
from pki_soap.ca.keys import KeyType
from pki_soap.ca.names import check_root, parse_sans, subject_from_fields, subject_from_text
from pki_soap.cli import terminal
from pki_soap.cli.passwords import Prompt, read_password, required_password
from pki_soap.client import configuration, exporting, fetching, submission
from pki_soap.client.soap_client import DEFAULT_PATH, CAClient
from pki_soap.client.transport import WireExchange
from pki_soap.errors import InvalidInput
from pki_soap.escaping import for_terminal
from pki_soap.server.exchanges import readable
from pki_soap.store import ClientConfig, Store

PROG = "client_app.py"
INSTALLED_PROG = "pki-client"
PASSWORD_ENV = "PKI_KEY_PASSWORD"
P12_PASSWORD_ENV = "PKI_P12_PASSWORD"
SUBJECT_FIELDS = ("country", "state", "locality", "organization", "org_unit", "common_name")


def program_name() -> str:
    """``pki-client`` when run as the installed command, else ``client_app.py``."""
    return terminal.program_name(PROG, INSTALLED_PROG)


def invocation() -> str:
    """How the user runs this program, for the next steps we print."""
    return f"python {PROG}" if program_name() == PROG else INSTALLED_PROG


def one_line(text: str) -> str:
    """``text`` on one line, escaped for the terminal."""
    return for_terminal(" ".join(text.split()))


def print_escaped(text: str) -> None:
    """Print ``text`` (the server's words among ours), each line escaped for the terminal."""
    print("\n".join(for_terminal(line) for line in text.split("\n")))


def open_store(args: argparse.Namespace) -> Store:
    """The client's store in ``--data-dir``."""
    return Store.open(args.data_dir)


@contextlib.contextmanager
def _connected(args: argparse.Namespace) -> Iterator[tuple[Store, ClientConfig, CAClient]]:
    """The store, the configuration and a client of the configured CA server."""
    with open_store(args) as opened:
        cfg = configuration.client_config(opened)
        with configuration.make_client(
            cfg, args.data_dir, timeout=args.timeout, trace=_tracer(args)
        ) as client:
            yield opened, cfg, client


def _key_password(args: argparse.Namespace) -> bytes | None:
    """The new key's password, or None for an unencrypted key."""
    prompt = Prompt(
        "Password for the private key (empty for none): ", again="Confirm the password: "
    )
    return read_password(args.password_file, PASSWORD_ENV, prompt, missing=None)


def _existing_key_password(args: argparse.Namespace) -> bytes | None:
    """The password of an encrypted ``<root>.key``: its file, ``$PKI_KEY_PASSWORD``, a prompt."""
    return read_password(
        args.key_password_file,
        PASSWORD_ENV,
        Prompt(f"Password of {args.name}.key: "),
        missing=f"{args.name}.key is encrypted: use --key-password-file FILE or ${PASSWORD_ENV}",
    )


def _p12_password(args: argparse.Namespace) -> bytes:
    """The new PKCS#12 file's password: ``--password-file``, ``$PKI_P12_PASSWORD``, a prompt."""
    prompt = Prompt(
        "The PKCS#12 password: ",
        again="Confirm the password: ",
        empty="the PKCS#12 password may not be empty",
    )
    return required_password(
        args.password_file,
        P12_PASSWORD_ENV,
        prompt,
        missing=f"the PKCS#12 password is needed: use --password-file FILE or ${P12_PASSWORD_ENV}",
    )


def _subject(args: argparse.Namespace, parser: argparse.ArgumentParser) -> x509.Name:
    fields = {name: getattr(args, name) for name in SUBJECT_FIELDS}
    if args.subject is not None:
        if any(value is not None for value in fields.values()):
            parser.error("give either --subject or the attribute options, not both")
        return subject_from_text(args.subject)
    return subject_from_fields(**fields)


def _tracer(args: argparse.Namespace) -> Callable[[WireExchange], None] | None:
    """With ``--trace``: print each request and answer on stderr, escaped for the terminal."""
    if not getattr(args, "trace", False):
        return None
    return _print_exchange


def _lines(data: bytes) -> list[str]:
    # The last line end is the body's own, not an empty line after it.
    return readable(data).removesuffix("\n").split("\n")


def _print_exchange(exchange: WireExchange) -> None:
    lines = [f"> {exchange.method} {exchange.url}"]
    lines += [f"> {name}: {value}" for name, value in exchange.request_headers]
    if exchange.method != "GET":
        lines += [">"] + [f"> {line}" for line in _lines(exchange.request)]
    lines.append(f"< HTTP {exchange.status} {exchange.reason}".rstrip())
    lines += [f"< {name}: {value}" for name, value in exchange.answer_headers]
    if exchange.method == "GET":
        lines.append(f"< ({len(exchange.answer):,} bytes of WSDL, not shown)")
    else:
        lines += ["<"] + [f"< {line}" for line in _lines(exchange.answer)]
    print("\n".join(readable(line) for line in lines), file=sys.stderr, flush=True)


_CONFIGURE_OPTIONS = (
    "server", "port", "path", "contact_name", "contact_phone", "contact_email", "hostname",
    "instance", "tls",
)  # fmt: skip


def _server_address(
    args: argparse.Namespace,
) -> tuple[str | None, int | None, str | None, bool | None]:
    """(host, port, path, tls) from ``--server`` (a host or an http(s) URL) and the options;
    None for what is not given (kept as stored).

    Raises:
        InvalidInput: an unusable URL, or a port or path given twice differently.
    """
    if args.server is None or "://" not in args.server:
        return args.server, args.port, args.path, args.tls
    text = args.server.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise InvalidInput(f"--server {text!r}: use http(s)://host:port[/path] or a host name")
    if args.tls is not None and args.tls != (parts.scheme == "https"):
        raise InvalidInput(f"--server {text!r} and --{'' if args.tls else 'no-'}tls disagree")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"--server {text!r}: the port is not a number from 1 to 65535") from None
    if port is not None and args.port is not None and port != args.port:
        raise InvalidInput(f"--server {text!r} and --port {args.port} name different ports")
    port = port or args.port or (443 if parts.scheme == "https" else 80)
    if parts.path not in ("", "/") and args.path is not None and parts.path != args.path:
        raise InvalidInput(f"--server {text!r} and --path {args.path} name different paths")
    # A URL names the whole endpoint: without a path, IRIS's, not a path stored before.
    path = parts.path if parts.path not in ("", "/") else (args.path or DEFAULT_PATH)
    return parts.hostname, port, path, parts.scheme == "https"


def configure(args: argparse.Namespace) -> int:
    """Store where the CA server is and who the technical contact is. The first time,
    --server, --port and --contact-name are needed; later, only what changes (an empty
    --contact-phone "" or --contact-email "" removes it).
    """
    if all(getattr(args, name) is None for name in _CONFIGURE_OPTIONS):
        raise InvalidInput(
            "give the settings to store (see configure --help); "
            f"`{invocation()} show` shows the configuration"
        )
    given = {name: getattr(args, name) for name in _CONFIGURE_OPTIONS}
    given["server"], given["port"], given["path"], given["tls"] = _server_address(args)
    with open_store(args) as store:
        configuration.configure(store, **given)
    print(messages.client_configured())
    return 0


def get_ca(args: argparse.Namespace) -> int:
    """Save the CA certificate as <CA root>.cer (and pin it)."""
    expected = parse_fingerprint(args.fingerprint) if args.fingerprint is not None else None
    with open_store(args) as store:
        cfg = configuration.client_config(store)
        path, fp = fetching.get_ca_certificate(
            store,
            args.data_dir,
            force=args.force,
            out=args.out,
            expected=expected,
            timeout=args.timeout,
            trace=_tracer(args),
        )
        pinned = configuration.pinned_ca(args.data_dir)
    print(messages.ca_certificate_saved(fp, path))
    if expected is not None and pinned is not None:
        checked = (
            "every call to the CA server is verified against it"
            if cfg.tls
            else "get-ca compares it with what the server sends (plain HTTP itself is not verified)"
        )
        print(
            f"Pinned as the trusted CA certificate ({expected.algorithm} fingerprint matched; "
            f"SHA-256 {sha256_fingerprint(pinned)}): {checked}."
        )
    return 0


def submit(args: argparse.Namespace) -> int:
    """Generate a key and CSR and submit the CSR."""
    if args.resubmit:
        return _resubmit(args)
    # Everything that can be refused is checked before the password is asked for.
    subject = _subject(args, args.parser)
    sans = parse_sans(",".join(args.san)) if args.san else []
    check_root(args.root)
    for suffix in (".key", ".csr"):
        existing = args.data_dir / f"{args.root}{suffix}"
        if existing.exists() or existing.is_symlink():
            raise InvalidInput(
                f'"{existing}" exists (a key is never overwritten): to send that request again, '
                f"e.g. after the CA administrator deleted it, run `{invocation()} submit "
                f"--root {args.root} --resubmit`; for a new key, choose another --root"
            )
    with _connected(args) as (opened, _, client):
        password = _key_password(args)
        text = submission.submit(
            opened,
            args.data_dir,
            root=args.root,
            subject=subject,
            password=password,
            key_type=KeyType(args.key_type),
            sans=sans,
            client=client,
        )
    print_escaped(text)
    return 0


def _resubmit(args: argparse.Namespace) -> int:
    if args.subject is not None or args.san or any(getattr(args, n) for n in SUBJECT_FIELDS):
        args.parser.error("--resubmit sends <root>.csr as it is: give no subject and no --san")
    with _connected(args) as (opened, _, client):
        text = submission.resubmit(opened, args.data_dir, root=args.root, client=client)
    print_escaped(text)
    return 0


def list_certificates(args: argparse.Namespace) -> int:
    """List this instance's certificates (--all: every one)."""
    with _connected(args) as (opened, cfg, client):
        rows = fetching.list_certificates(opened, args.data_dir, all=args.all, client=client)
    header: tuple[str, ...]
    table: list[tuple[str, ...]]
    if args.all:
        header = ("Serial Number", "Hostname", "Instance", "Filename")
        table = [
            (str(row.number), row.hostname or "", row.instance or "", row.filename) for row in rows
        ]
    else:
        header = ("Serial Number", "Filename")
        table = [(str(row.number), row.filename) for row in rows]
    if not table:
        where = "" if args.all else f" for host {cfg.hostname}, instance {cfg.instance}"
        print(for_terminal(f"No certificates{where}."))
        return 0
    print(terminal.table(header, table))
    return 0


def get(args: argparse.Namespace) -> int:
    """Save certificate NUMBER as <Filename>.cer."""
    with _connected(args) as (opened, _, client):
        path, fp, number = fetching.get_certificate(
            opened, args.data_dir, args.number, force=args.force, client=client, out=args.out
        )
    print(messages.certificate_saved(number, fp, path))
    return 0


def export(args: argparse.Namespace) -> int:
    """Write NAME.cer (and NAME.key) as PKCS#12 or a PEM chain."""
    kind = ExportFormat(args.format)
    check_root(args.name)
    password = None
    if kind is ExportFormat.P12:
        password = _p12_password(args)
    elif args.password_file is not None:
        raise InvalidInput("--password-file is the PKCS#12 password: only with --p12")
    path, cas = exporting.export(
        args.data_dir,
        args.name,
        kind,
        out=args.out,
        force=args.force,
        password=password,
        key_password=lambda: _existing_key_password(args),
    )
    what = {
        ExportFormat.P12: "key, certificate and",
        ExportFormat.CHAIN: "certificate and",
        ExportFormat.FULLCHAIN: "certificate and",
    }[kind]
    print(for_terminal(f'Wrote "{path}": {what} {cas} CA certificate(s).'))
    return 0
