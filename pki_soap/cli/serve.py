"""``server_app.py serve``: run the SOAP service (and the portal) under gunicorn.

Sync workers, one per CPU by default: the work is CPU-bound lxml/spyne code, so processes
scale where threads do not.  ``--demo`` first configures a throw-away test CA when none is
configured, so ``make run`` works on an empty data directory.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from pki_soap import keys, names, settings
from pki_soap.cli.server import (
    add_mode_arguments,
    ca_configured,
    mode_from_arguments,
    program_name,
)
from pki_soap.datadir import check_writable, open_data_directory
from pki_soap.errors import InvalidInput, NotConfigured, PkiError
from pki_soap.notify import SMTP_CAFILE_ENV
from pki_soap.service import DEFAULT_MAX_BODY, DEFAULT_PORT, endpoint_url, make_app
from pki_soap.store import DATABASE_NAME

DEFAULT_DATA_DIR = Path("pki-data")
DEMO_ROOT = "DemoCA"
DEMO_DIRECTORY = "CAServer"
DEMO_PASSWORD_FILE = "demo-ca.password"
DEMO_SUBJECT = "/O=pki-soap demo/CN=pki-soap Demo CA"
DEMO_CA_DAYS = 3650
DEMO_DAYS = 365
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` command to ``subparsers`` (the ``server_app.py`` subcommands)."""
    serve: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve the CA over SOAP (and the portal) with gunicorn",
        description=(
            "Serve PKI.CAServer at POST /isc/pki/PKI.CAServer.cls (WSDL: ?WSDL) and the "
            "portal at /pki/, with gunicorn sync workers."
        ),
    )
    # SUPPRESS keeps a --data-dir given before the command when none is given after it.
    serve.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, metavar="DIR")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="gunicorn worker processes (default: the number of CPUs)",
    )
    serve.add_argument(
        "--timeout", type=int, default=30, help="seconds before a silent worker is restarted"
    )
    serve.add_argument(
        "--max-requests",
        type=int,
        default=10000,
        help="requests a worker serves before it is replaced (0: never)",
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        metavar="BYTES",
        help=f"largest request body accepted (default: {DEFAULT_MAX_BODY})",
    )
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="URL clients use, written into the WSDL (default: the one `configure "
        "--public-url` stored, else http://<host name>:<port>)",
    )
    serve.add_argument("--no-portal", action="store_true", help="do not serve the web pages")
    serve.add_argument(
        "--portal-network",
        action="append",
        metavar="CIDR",
        help="also admit this network to the portal (loopback always is); repeatable",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help=(
            f"if no CA is configured, configure a test CA ({DEMO_ROOT}, password in "
            f"<data-dir>/{DEMO_PASSWORD_FILE})"
        ),
    )
    add_mode_arguments(serve, for_serve=True)
    return serve


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn has no type information
    """gunicorn run programmatically: our options, our (preloaded) WSGI application."""

    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._app


def default_public_url(host: str, port: int) -> str:
    """``http://<host>:<port>``; a wildcard address becomes this machine's host name."""
    name = socket.gethostname() if host in _WILDCARDS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"http://{name}:{port}"


def configured_public_url(data_dir: Path) -> str | None:
    """The public URL ``configure --public-url`` stored for ``data_dir``, if any.

    Raises:
        PkiError: the store cannot be opened.
    """
    if not (data_dir / DATABASE_NAME).exists():
        return None
    # Opened and closed before gunicorn forks, as the demo set-up does.
    with open_data_directory(data_dir) as opened:
        cfg = opened.store.server_config()
    return cfg.public_url if cfg is not None else None


def configure_demo(data_dir: Path) -> tuple[bool, str]:
    """Configure the demo CA in ``data_dir`` unless a CA is configured; (created, fingerprint).

    The password is random, kept in ``<data_dir>/demo-ca.password`` (0600) and reused when
    that file exists (the CA files may outlive a reinitialisation).

    Raises:
        PkiError: the store or the CA files cannot be used (e.g. WrongPassword when the
            CA files exist but the password file does not match them).
    """
    with open_data_directory(data_dir, create=True) as opened:
        server = opened.server
        try:
            server.config()
        except NotConfigured:
            pass
        else:
            return False, server.authority().fingerprint
        password_file = data_dir / DEMO_PASSWORD_FILE
        if password_file.exists():
            password = password_file.read_bytes().strip()
        else:
            password = secrets.token_urlsafe(24).encode("ascii")
            keys.write_private_file(password_file, password + b"\n")
        result = server.configure(
            root=DEMO_ROOT,
            directory=DEMO_DIRECTORY,
            password=password,
            days=DEMO_DAYS,
            ca_days=DEMO_CA_DAYS,
            subject=names.subject_from_text(DEMO_SUBJECT),
        )
        return True, result.fingerprint


def _serve_mode(args: argparse.Namespace, data_dir: Path) -> settings.ServeSettings:
    """The stored settings with this run's options applied, left in the store for ``status``."""
    with open_data_directory(data_dir, create=True) as opened:
        mode = mode_from_arguments(args, settings.load(opened.store))
        started = settings.Serving(datetime.now(UTC), os.getpid(), mode)
        settings.save_serving(opened.store, started)
    return mode


def run_serve(args: argparse.Namespace) -> int:
    """Run ``serve`` until gunicorn stops; return its exit status.

    Raises:
        InvalidInput: a bad port, worker count, timeout or body limit, or a bad public URL.
        PkiError: the demo CA cannot be configured, or the service cannot start.
    """
    data_dir: Path = getattr(args, "data_dir", DEFAULT_DATA_DIR)
    if not 0 < args.port < 65536:
        raise InvalidInput(f"port {args.port} is not between 1 and 65535")
    if args.workers < 1:
        raise InvalidInput("--workers must be at least 1")
    if args.timeout < 1 or args.max_requests < 0 or args.max_body < 1:
        raise InvalidInput("--timeout and --max-body must be positive, --max-requests >= 0")
    # Refused here rather than answered with a 500 on every call.  (The demo set-up below
    # opens and closes the store before gunicorn forks: no connection crosses a fork.)
    check_writable(data_dir)
    if not args.demo and not ca_configured(data_dir):
        # Serving starts anyway (the portal can configure the CA), but say why SubmitCSR fails.
        print(
            f"warning: no Certificate Authority is configured in {data_dir}: SubmitCSR answers "
            "a fault and there is no CA certificate to get until one is. Configure it with "
            f"`{program_name()} configure ...` or in the portal (/pki/), or serve with --demo.",
            file=sys.stderr,
            flush=True,
        )
    if args.demo:
        created, fingerprint = configure_demo(data_dir)
        state = "created" if created else "configured"
        print(
            f"DEMO CERTIFICATE AUTHORITY ({state}): for testing only - its key password is "
            f"in {data_dir / DEMO_PASSWORD_FILE}; never trust it for anything real.\n"
            f"Certificate Authority Certificate SHA-1 fingerprint:\n{fingerprint}",
            flush=True,
        )
    configured_url = configured_public_url(data_dir)
    if args.public_url and configured_url and args.public_url != configured_url:
        print(
            f"warning: --public-url {args.public_url} differs from the configured public URL "
            f"{configured_url}, which new certificates name for their CRL and OCSP",
            file=sys.stderr,
        )
    public_url = args.public_url or configured_url or default_public_url(args.host, args.port)
    mode = _serve_mode(args, data_dir)
    app = make_app(
        data_dir,
        public_url=public_url,
        max_body=args.max_body,
        portal=not args.no_portal,
        portal_networks=args.portal_network,
        smtp_cafile=os.environ.get(SMTP_CAFILE_ENV) or None,
        strict_iris=mode.strict_iris,
        record=mode.record,
    )
    host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    strict, recording = settings.describe(mode)
    print(
        f"Serving PKI.CAServer at {endpoint_url(public_url)}\n"
        f"IRIS-strict mode: {strict}\nExchange recording: {recording}",
        flush=True,
    )
    options = {
        "bind": f"{host}:{args.port}",
        "workers": args.workers,
        "worker_class": "sync",
        "timeout": args.timeout,
        "max_requests": args.max_requests,
        "max_requests_jitter": args.max_requests // 10,
        "preload_app": True,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        # gunicorn 27 otherwise opens a control socket in the home directory.
        "control_socket_disable": True,
    }
    try:
        _Gunicorn(app, options).run()
    except SystemExit as stop:  # gunicorn's arbiter leaves through sys.exit
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pki_soap.cli.serve [options]``: the ``serve`` command on its own."""
    parser = argparse.ArgumentParser(prog="python -m pki_soap.cli.serve")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_serve(args)
    except PkiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
