"""``client_app.py``: the CA client on the command line (configure, get-ca, submit, list, get,
export).

Without a command (or with ``show``) it shows where the client stands and the next step.
Prints the original's messages; on failure prints one ``error: <message>`` line on stderr and
returns the error's exit code (2 for usage errors), never a traceback.  The key password comes
from ``--password-file``, the ``PKI_KEY_PASSWORD`` environment variable, or a prompt with
confirmation when stdin is a terminal -- never from the command line.  ``export --p12`` asks
the PKCS#12 password the same way (``--password-file``, ``PKI_P12_PASSWORD``, a prompt) and
the key's own password, only if the key is encrypted, from ``--key-password-file``,
``PKI_KEY_PASSWORD`` or a prompt.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from pki_soap import messages
from pki_soap.ca.export import ExportFormat
from pki_soap.ca.fingerprints import parse_fingerprint, sha256_fingerprint
from pki_soap.ca.keys import KeyType
from pki_soap.ca.names import (
    DEFAULT_INSTANCE,
    check_root,
    parse_sans,
    subject_from_fields,
    subject_from_text,
)
from pki_soap.cli import Commands
from pki_soap.client import configuration, exporting, fetching, overview, submission
from pki_soap.client.soap_client import DEFAULT_PATH
from pki_soap.client.transport import WireExchange
from pki_soap.errors import InvalidInput, PkiError
from pki_soap.escaping import for_terminal
from pki_soap.server.exchanges import readable
from pki_soap.store import DATABASE_NAME, Store

PROG = "client_app.py"
INSTALLED_PROG = "pki-client"
PASSWORD_ENV = "PKI_KEY_PASSWORD"
P12_PASSWORD_ENV = "PKI_P12_PASSWORD"
DEFAULT_DATA_DIR = Path("pki-data")
_SUBJECT_FIELDS = ("country", "state", "locality", "organization", "org_unit", "common_name")


def _printable(text: str) -> str:
    """``text`` safe for a terminal: server-supplied values could carry escape sequences."""
    return for_terminal(text)


def _one_line(text: str) -> str:
    return _printable(" ".join(text.split()))


def _read_password_file(path: Path) -> bytes:
    data = path.read_bytes()
    # One trailing line end is the file's, not the password's (echo "pw" > file).
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise InvalidInput(f'password file "{path}" is empty')
    return data


def _key_password(args: argparse.Namespace) -> bytes | None:
    """The key password, or None for an unencrypted key."""
    if args.password_file is not None:
        return _read_password_file(args.password_file)
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env.encode("utf-8")
    if sys.stdin.isatty():
        first = getpass.getpass("Password for the private key (empty for none): ")
        if not first:
            return None
        if getpass.getpass("Confirm the password: ") != first:
            raise InvalidInput("the passwords do not match")
        return first.encode("utf-8")
    return None


def _subject(args: argparse.Namespace, parser: argparse.ArgumentParser) -> x509.Name:
    fields = {name: getattr(args, name) for name in _SUBJECT_FIELDS}
    if args.subject is not None:
        if any(value is not None for value in fields.values()):
            parser.error("give either --subject or the attribute options, not both")
        return subject_from_text(args.subject)
    return subject_from_fields(**fields)


def _store(args: argparse.Namespace) -> Store:
    return Store.open(args.data_dir)


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


def program_name() -> str:
    """``pki-client`` when run as the installed command, else ``client_app.py``."""
    return INSTALLED_PROG if Path(sys.argv[0]).name == INSTALLED_PROG else PROG


def _invocation() -> str:
    """How the user runs this program, for the next steps we print."""
    return f"python {PROG}" if program_name() == PROG else INSTALLED_PROG


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


def _configure(args: argparse.Namespace) -> int:
    if all(getattr(args, name) is None for name in _CONFIGURE_OPTIONS):
        raise InvalidInput(
            "give the settings to store (see configure --help); "
            f"`{_invocation()} show` shows the configuration"
        )
    server, port, path, tls = _server_address(args)
    with _store(args) as store:
        configuration.configure(
            store,
            server=server,
            port=port,
            path=path,
            tls=tls,
            contact_name=args.contact_name,
            contact_phone=args.contact_phone,
            contact_email=args.contact_email,
            hostname=args.hostname,
            instance=args.instance,
        )
    print(messages.client_configured())
    return 0


def _get_ca(args: argparse.Namespace) -> int:
    expected = parse_fingerprint(args.fingerprint) if args.fingerprint is not None else None
    with _store(args) as store:
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


def _submit(args: argparse.Namespace) -> int:
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
                f"e.g. after the CA administrator deleted it, run `{_invocation()} submit "
                f"--root {args.root} --resubmit`; for a new key, choose another --root"
            )
    with contextlib.ExitStack() as stack, _store(args) as store:
        cfg = configuration.client_config(store)
        client = stack.enter_context(
            configuration.make_client(cfg, args.data_dir, timeout=args.timeout, trace=_tracer(args))
        )
        password = _key_password(args)
        text = submission.submit(
            store,
            args.data_dir,
            root=args.root,
            subject=subject,
            password=password,
            key_type=KeyType(args.key_type),
            sans=sans,
            client=client,
        )
    print("\n".join(_printable(line) for line in text.split("\n")))
    return 0


def _resubmit(args: argparse.Namespace) -> int:
    if args.subject is not None or args.san or any(getattr(args, n) for n in _SUBJECT_FIELDS):
        args.parser.error("--resubmit sends <root>.csr as it is: give no subject and no --san")
    with contextlib.ExitStack() as stack, _store(args) as store:
        cfg = configuration.client_config(store)
        client = stack.enter_context(
            configuration.make_client(cfg, args.data_dir, timeout=args.timeout, trace=_tracer(args))
        )
        text = submission.resubmit(store, args.data_dir, root=args.root, client=client)
    print("\n".join(_printable(line) for line in text.split("\n")))
    return 0


def _list(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack, _store(args) as store:
        cfg = configuration.client_config(store)
        client = stack.enter_context(
            configuration.make_client(cfg, args.data_dir, timeout=args.timeout, trace=_tracer(args))
        )
        rows = fetching.list_certificates(store, args.data_dir, all=args.all, client=client)
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
        print(_printable(f"No certificates{where}."))
        return 0
    cells = [tuple(_printable(cell) for cell in line) for line in [header, *table]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    cells.insert(1, tuple("-" * width for width in widths))
    for line in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    return 0


def _get(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack, _store(args) as store:
        cfg = configuration.client_config(store)
        client = stack.enter_context(
            configuration.make_client(cfg, args.data_dir, timeout=args.timeout, trace=_tracer(args))
        )
        path, fp, number = fetching.get_certificate(
            store, args.data_dir, args.number, force=args.force, client=client, out=args.out
        )
    print(messages.certificate_saved(number, fp, path))
    return 0


def _show(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    cfg = None
    if (data_dir / DATABASE_NAME).is_file():  # looking must not create a data directory
        with _store(args) as store:
            cfg = store.client_config()
    client = None
    if cfg is not None and (not cfg.tls or configuration.pinned_ca(data_dir) is not None):
        client = configuration.make_client(cfg, data_dir, timeout=args.timeout)
    with client or contextlib.nullcontext():
        seen = overview.overview(data_dir, cfg, client=client)
    for line in _overview_lines(seen, data_dir):
        print(_printable(line))
    return 0


def _overview_lines(seen: overview.Overview, data_dir: Path) -> list[str]:
    run = _invocation()
    cfg = seen.config
    lines = [f"Certificate Authority client, data directory {data_dir}"]
    if cfg is None:
        lines += [
            "Configuration:   none yet",
            "",
            "Next step: say where the CA server is and who the technical contact is:",
            f'  {run} configure --server HOST --port 52773 --contact-name "Your Name"'
            " [--contact-email you@example.com]",
        ]
        return lines
    contact = ", ".join(x for x in (cfg.contact_phone, cfg.contact_email) if x)
    if seen.server_error is not None:
        answer = f"NO ANSWER: {_one_line(seen.server_error)}"
    elif seen.server_ca is None:
        answer = "answers, but has no CA certificate (is the CA configured?)"
    else:
        answer = "answers"
    pinned = configuration.pinned_ca(data_dir)
    lines.append(f"CA server:       {seen.url} ({answer})")
    if pinned is not None:
        lines.append(
            f"Trust:           pinned CA certificate, SHA-256 {sha256_fingerprint(pinned)}"
        )
    elif cfg.tls:
        lines.append("Trust:           no CA certificate pinned yet (get-ca --fingerprint)")
    lines += [
        f"This client:     host {cfg.hostname}, instance {cfg.instance}",
        f"Contact:         {cfg.contact_name}" + (f" ({contact})" if contact else ""),
    ]
    if seen.ca_file is None:
        lines.append("CA certificate:  none saved")
    else:
        match = {True: "", False: " - NOT the server's CA certificate", None: ""}
        lines.append(
            f"CA certificate:  {seen.ca_file} (SHA-1 {seen.ca_fingerprint})"
            + match[seen.ca_matches]
        )
    lines += ["", "Requests and certificates:"]
    if not seen.requests:
        lines.append("  none")
    for req in seen.requests:
        lines.append(f"  {req.root}: " + _request_state(req, seen))
    lines += ["", "Next step: " + _next_step(seen, run, pinned is not None)]
    return lines


def _request_state(req: overview.LocalRequest, seen: overview.Overview) -> str:
    if req.certificate is not None:
        until = req.certificate.not_valid_after_utc.strftime("%Y-%m-%d")
        return f"certificate number {req.certificate.serial_number} saved, valid until {until}"
    if req.issued_number is not None:
        return f"issued as number {req.issued_number}, not saved yet"
    fp = f"CSR SHA-1 {req.csr_fingerprint}" if req.csr_fingerprint else "no readable CSR"
    if not req.has_key:
        return f"{fp}; its key is missing"
    if seen.server_error is not None:
        return f"{fp}; not issued as far as known"
    return f"{fp}; not issued yet (pending, or deleted by the CA administrator)"


def _next_step(seen: overview.Overview, run: str, pinned: bool) -> str:
    cfg = seen.config
    assert cfg is not None
    if cfg.tls and not pinned:
        return (
            "trust the CA certificate by the fingerprint the CA administrator gives you "
            f"(`server_app.py status` shows it): `{run} get-ca --fingerprint SHA256:...`."
        )
    if seen.server_error is not None:
        return (
            f"check that the CA server runs at {seen.url} and that port {cfg.port} is open to "
            f"this host (`{run} configure --server HOST --port PORT` fixes the address)."
        )
    if seen.server_ca is None:
        return "ask the CA administrator to configure the CA server, then run this again."
    if seen.ca_file is None or seen.ca_matches is False:
        force = " --force" if seen.ca_matches is False else ""
        return f"save the CA certificate: `{run} get-ca{force}`."
    ready = [r for r in seen.requests if r.certificate is None and r.issued_number is not None]
    if ready:
        return f"save your certificate: `{run} get {ready[0].issued_number}`."
    waiting = [r for r in seen.requests if r.certificate is None and r.has_key]
    if waiting:
        root = waiting[0].root
        return (
            "read the CSR's SHA-1 fingerprint to the CA administrator and wait for the "
            f"certificate (`{run}` again shows it); if the request was deleted: "
            f"`{run} submit --root {root} --resubmit`."
        )
    if not seen.requests:
        return (
            f'request a certificate: `{run} submit --root NAME --subject "/CN={cfg.hostname}"'
            f" --san DNS:{cfg.hostname}`."
        )
    return f"nothing to do; `{run} list --all` shows every certificate of the CA."


def _export(args: argparse.Namespace) -> int:
    kind = ExportFormat(args.format)
    check_root(args.name)
    password = None
    if kind is ExportFormat.P12:
        password = _new_password(args.password_file, P12_PASSWORD_ENV, "the PKCS#12 password")
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
    print(_printable(f'Wrote "{path}": {what} {cas} CA certificate(s).'))
    return 0


def _new_password(file: Path | None, env: str, what: str) -> bytes:
    """A password to protect something new: ``file``, ``$env`` or a prompt with confirmation.

    Raises:
        InvalidInput: empty, the two answers differ, or nowhere to get it from.
    """
    if file is not None:
        return _read_password_file(file)
    from_env = os.environ.get(env)
    if from_env:
        return from_env.encode("utf-8")
    if not sys.stdin.isatty():
        raise InvalidInput(f"{what} is needed: use --password-file FILE or ${env}")
    first = getpass.getpass(f"{what[0].upper()}{what[1:]}: ")
    if not first:
        raise InvalidInput(f"{what} may not be empty")
    if getpass.getpass("Confirm the password: ") != first:
        raise InvalidInput("the passwords do not match")
    return first.encode("utf-8")


def _existing_key_password(args: argparse.Namespace) -> bytes | None:
    """The password of an encrypted ``<root>.key``: its file, ``$PKI_KEY_PASSWORD``, a prompt."""
    if args.key_password_file is not None:
        return _read_password_file(args.key_password_file)
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env.encode("utf-8")
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"{args.name}.key is encrypted: use --key-password-file FILE or ${PASSWORD_ENV}"
        )
    return getpass.getpass(f"Password of {args.name}.key: ").encode("utf-8") or None


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("the timeout must be between 0 and 3600 seconds")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``client_app.py``."""
    prog = program_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        epilog=(
            "Without a command it shows where this client stands (as `show`). Every command\n"
            f"takes --data-dir; `{prog} COMMAND --help` shows its options."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="directory of the client's files and database (default: ./pki-data)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print the bytes of each SOAP request and answer on stderr",
    )
    # Each subcommand accepts --data-dir too; SUPPRESS keeps the global value when it is absent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    network = argparse.ArgumentParser(add_help=False, parents=[common])
    network.add_argument(
        "--trace",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the bytes of each request and answer on stderr",
    )
    network.add_argument(
        "--timeout",
        type=_timeout,
        default=configuration.DEFAULT_TIMEOUT,
        help="seconds to wait for the CA server (default: %(default)s)",
    )
    commands = Commands(
        parser, "%(prog)s [-h] [--data-dir DIR] [COMMAND [options]]", metavar="COMMAND"
    )
    parser.set_defaults(run=_show, parser=parser, timeout=configuration.DEFAULT_TIMEOUT)

    def command(
        name: str, run: Callable[[argparse.Namespace], int], help: str, *, net: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add(name, help, parents=[network if net else common])
        sub.set_defaults(run=run, parser=sub)
        return sub

    command("show", _show, "configuration, server, CA certificate, requests, next step")

    sub = command(
        "configure", _configure, "store the CA server and contact (or change one)", net=False
    )
    sub.description = (
        "Store where the CA server is and who the technical contact is. The first time, "
        "--server, --port and --contact-name are needed; later, only what changes "
        '(an empty --contact-phone "" or --contact-email "" removes it).'
    )
    sub.add_argument(
        "--server", help="CA server host name or IP address, or its URL https://host:port[/path]"
    )
    sub.add_argument("--port", type=_port, help="CA web server port (unless in --server's URL)")
    sub.add_argument("--path", help=f"CA server path (default: {DEFAULT_PATH})")
    sub.add_argument("--contact-name", help="local technical contact")
    sub.add_argument("--contact-phone")
    sub.add_argument("--contact-email", help="receives the 'certificate issued' notice")
    sub.add_argument("--hostname", help="this host's name (default: the node name)")
    sub.add_argument("--instance", help=f"this instance's name (default: {DEFAULT_INSTANCE})")
    sub.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reach the server over HTTPS, as --server https://... does (then run get-ca "
        "--fingerprint); --no-tls: plain HTTP again",
    )

    sub = command("get-ca", _get_ca, "save the CA certificate as <CA root>.cer (and pin it)")
    sub.add_argument(
        "--force",
        action="store_true",
        help="replace a different <CA root>.cer (and, with --fingerprint, another pin)",
    )
    sub.add_argument(
        "--out", type=Path, metavar="FILE", help="save it as FILE (or in directory FILE)"
    )
    sub.add_argument(
        "--fingerprint",
        metavar="FP",
        help="the CA certificate's fingerprint from the CA administrator (SHA256:AB:CD:... or "
        "the SHA-1 form E3:FB:...): checked, then the certificate is pinned and trusted",
    )

    sub = command("submit", _submit, "generate a key and CSR and submit the CSR")
    sub.add_argument("--root", required=True, help="file name root of <root>.key/.csr/.cer")
    sub.add_argument(
        "--resubmit",
        action="store_true",
        help="send the existing <root>.csr again (its key kept), e.g. after a deletion",
    )
    sub.add_argument("--subject", help='e.g. "/C=US/O=Example/CN=host.example.com"')
    sub.add_argument("--country")
    sub.add_argument("--state")
    sub.add_argument("--locality")
    sub.add_argument("--organization")
    sub.add_argument("--org-unit")
    sub.add_argument("--common-name")
    sub.add_argument(
        "--password-file",
        type=Path,
        help=f"file holding the key password (else ${PASSWORD_ENV}, else a prompt on a terminal;"
        " no password: the key is stored unencrypted, mode 0600)",
    )
    sub.add_argument(
        "--key-type",
        choices=[kind.value for kind in KeyType],
        default=KeyType.RSA2048.value,
        help="default: %(default)s",
    )
    sub.add_argument(
        "--san", action="append", default=[], help="subjectAltNames, e.g. DNS:x,IP:1.2.3.4"
    )

    sub = command("list", _list, "list this instance's certificates (--all: every one)")
    sub.add_argument("--all", action="store_true", help="every certificate the CA issued")

    sub = command("get", _get, "save certificate NUMBER as <Filename>.cer")
    sub.add_argument("number", metavar="NUMBER", help="certificate (serial) number")
    sub.add_argument("--force", action="store_true", help="replace a different existing file")
    sub.add_argument(
        "--out", type=Path, metavar="FILE", help="save it as FILE (or in directory FILE)"
    )
    sub = command(
        "export", _export, "write NAME.cer (and NAME.key) as PKCS#12 or a PEM chain", net=False
    )
    sub.add_argument("name", metavar="NAME", help="file name root of NAME.cer / NAME.key")
    formats = sub.add_mutually_exclusive_group(required=True)
    formats.add_argument(
        "--p12",
        dest="format",
        action="store_const",
        const=ExportFormat.P12.value,
        help="PKCS#12 with key, certificate and CA chain (Java keytool, .NET): NAME.p12",
    )
    formats.add_argument(
        "--chain",
        dest="format",
        action="store_const",
        const=ExportFormat.CHAIN.value,
        help="PEM: the certificate and its intermediate CAs: NAME-chain.pem",
    )
    formats.add_argument(
        "--fullchain",
        dest="format",
        action="store_const",
        const=ExportFormat.FULLCHAIN.value,
        help="PEM: the certificate and every CA up to the root: NAME-fullchain.pem",
    )
    sub.add_argument(
        "--password-file",
        type=Path,
        help=f"file holding the PKCS#12 password (else ${P12_PASSWORD_ENV}, else a prompt)",
    )
    sub.add_argument(
        "--key-password-file",
        type=Path,
        help=f"file holding NAME.key's password if encrypted (else ${PASSWORD_ENV}, a prompt)",
    )
    sub.add_argument("--out", type=Path, help="the file to write (default: in the data directory)")
    sub.add_argument("--force", action="store_true", help="replace an existing file")
    parser.description = (
        "CA client of the InterSystems-compatible PKI (PKI.CAServer over SOAP).\n\n"
        + commands.listing()
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``client_app.py``; returns the exit code.

    Raises:
        SystemExit: only from argparse (usage errors exit 2, ``--help`` exits 0).
    """
    args = build_parser().parse_args(argv)
    try:
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except PkiError as exc:
        print(f"error: {_one_line(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {_one_line(exc.strerror or str(exc))}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"error: internal error: {type(exc).__name__}", file=sys.stderr)
        return 1
