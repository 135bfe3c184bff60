"""``server_app.py serve``: run the SOAP service (and the portal) under gunicorn.

gevent workers, one process per CPU by default: the work is CPU-bound lxml/spyne code, so
processes scale where threads do not, and inside each process a connection costs a greenlet,
not the worker.  An idle or slow client holds its own greenlet and nobody else's:

* request headers must arrive within ``--header-timeout`` seconds (also how long an idle
  kept-alive connection stays open; gunicorn's ``keepalive``, which its gevent worker
  applies to the wait for each request), which ends idle and slowloris sockets;
* a request body must arrive within ``--body-timeout`` seconds (:class:`BodyDeadline`),
  which ends bodies that trickle; the service answers 408;
* a worker holds at most ``--worker-connections`` connections; beyond, new ones wait in
  the listen queue.

``--worker-class sync`` (the earlier setup: a worker per connection, defenceless against
slow clients) and ``gthread`` exist for comparison in bench/; see docs/architecture.md for
the measurements behind the choice.  ``--demo`` first configures a throw-away test CA when
none is configured, so ``make run`` works on an empty data directory.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from pki_soap import keys, names
from pki_soap.cli.server import ca_configured, program_name
from pki_soap.datadir import check_writable, open_data_directory
from pki_soap.errors import InvalidInput, NotConfigured, PkiError
from pki_soap.notify import SMTP_CAFILE_ENV
from pki_soap.portal.auth import parse_networks
from pki_soap.server import SubmissionLimits
from pki_soap.service import DEFAULT_MAX_BODY, DEFAULT_PORT, endpoint_url, make_app

DEFAULT_DATA_DIR = Path("pki-data")
DEMO_ROOT = "DemoCA"
DEMO_DIRECTORY = "CAServer"
DEMO_PASSWORD_FILE = "demo-ca.password"
DEMO_SUBJECT = "/O=pki-soap demo/CN=pki-soap Demo CA"
DEMO_CA_DAYS = 3650
DEMO_DAYS = 365
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")
WORKER_CLASSES = ("gevent", "gthread", "sync")
DEFAULT_WORKER_CLASS = "gevent"
DEFAULT_WORKER_CONNECTIONS = 1000
DEFAULT_HEADER_TIMEOUT = 5
DEFAULT_BODY_TIMEOUT = 30
GTHREAD_THREADS = 4
_LIMITS = SubmissionLimits()

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` command to ``subparsers`` (the ``server_app.py`` subcommands)."""
    serve: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve the CA over SOAP (and the portal) with gunicorn",
        description=(
            "Serve PKI.CAServer at POST /isc/pki/PKI.CAServer.cls (WSDL: ?WSDL) and the "
            "portal at /pki/, with gunicorn gevent workers."
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
        "--worker-class",
        choices=WORKER_CLASSES,
        default=DEFAULT_WORKER_CLASS,
        help=(
            "gevent (default): slow or idle clients hold only their own connection; "
            "gthread and sync only for comparison (bench/)"
        ),
    )
    serve.add_argument(
        "--worker-connections",
        type=int,
        default=DEFAULT_WORKER_CONNECTIONS,
        metavar="N",
        help=f"connections one worker holds at once (default: {DEFAULT_WORKER_CONNECTIONS})",
    )
    serve.add_argument(
        "--header-timeout",
        type=int,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help=(
            "time for a request's headers to arrive, and for an idle kept-alive connection "
            f"(default: {DEFAULT_HEADER_TIMEOUT})"
        ),
    )
    serve.add_argument(
        "--body-timeout",
        type=int,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help=f"time for a request body to arrive (default: {DEFAULT_BODY_TIMEOUT})",
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
        help="URL clients use, written into the WSDL (default: http://<host name>:<port>)",
    )
    serve.add_argument(
        "--submissions-per-minute",
        type=int,
        default=_LIMITS.per_address,
        metavar="N",
        help=(
            "CSRs accepted from one client address (IPv6: one /64) per minute; 0: no limit "
            f"(default: {_LIMITS.per_address})"
        ),
    )
    serve.add_argument(
        "--max-pending",
        type=int,
        default=_LIMITS.pending,
        metavar="N",
        help=f"pending CSRs at most, overall; 0: no limit (default: {_LIMITS.pending})",
    )
    serve.add_argument(
        "--max-pending-per-host",
        type=int,
        default=_LIMITS.pending_per_host,
        metavar="N",
        help=(
            "pending CSRs at most with one Hostname; 0: no limit "
            f"(default: {_LIMITS.pending_per_host})"
        ),
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


class BodyDeadline:
    """WSGI middleware: a request body must arrive within ``seconds``, or reading it fails.

    Each read of ``wsgi.input`` runs under a gevent timeout for what is left of the
    deadline and raises :class:`TimeoutError` when it runs out (the service answers 408;
    anything else that lets it escape gets a plain 408 here).  Needs gevent workers: a
    sync or threaded worker's blocking read cannot be interrupted this way, so there the
    middleware is not installed.
    """

    def __init__(self, app: WsgiApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"] = _DeadlineInput(
            environ["wsgi.input"], time.monotonic() + self.seconds
        )
        try:
            return self.app(environ, start_response)
        except TimeoutError:
            body = b"The request body did not arrive in time.\n"
            start_response(
                "408 Request Timeout",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ],
                sys.exc_info(),
            )
            return [body]


class _DeadlineInput:
    """``wsgi.input`` whose reads all end by one deadline (gevent timeouts)."""

    def __init__(self, stream: Any, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _within(self, read: Callable[..., bytes], *args: Any) -> bytes:
        import gevent

        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request body did not arrive in time")
        with gevent.Timeout(remaining, TimeoutError("the request body did not arrive in time")):
            return read(*args)

    def read(self, size: int | None = -1) -> bytes:
        return self._within(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._within(self._stream.readline, size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        for line in self:
            lines.append(line)
            if 0 <= hint <= sum(map(len, lines)):
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def prepare_workers(worker_class: str) -> None:
    """Get the process ready for ``worker_class`` before the application is built.

    For gevent, monkey-patch now: the application is built here and preloaded, so the
    locks and threads it makes must be gevent's already (gunicorn patches again in each
    worker, harmlessly).
    """
    if worker_class == "gevent":
        from gevent import monkey

        with warnings.catch_warnings():
            # gunicorn and spyne import ssl before this point, but no SSL object exists yet
            # (the workers make theirs after the patch), which is what the warning is about.
            warnings.simplefilter("ignore", monkey.MonkeyPatchWarning)
            monkey.patch_all()


def gunicorn_options(
    *,
    bind: str,
    workers: int,
    worker_class: str = DEFAULT_WORKER_CLASS,
    worker_connections: int = DEFAULT_WORKER_CONNECTIONS,
    header_timeout: int = DEFAULT_HEADER_TIMEOUT,
    timeout: int = 30,
    max_requests: int = 10000,
) -> dict[str, Any]:
    """The gunicorn settings of ``serve`` (bench/floor_app.py serves its floor with them)."""
    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers,
        "worker_class": worker_class,
        "worker_connections": worker_connections,
        # The gevent worker bounds the wait for each request's headers by keepalive.
        "keepalive": header_timeout,
        "timeout": timeout,
        "max_requests": max_requests,
        "max_requests_jitter": max_requests // 10,
        "preload_app": True,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        # gunicorn 27 otherwise opens a control socket in the home directory.
        "control_socket_disable": True,
    }
    if worker_class == "gthread":
        options["threads"] = GTHREAD_THREADS
    return options


def run_gunicorn(app: WsgiApp, options: dict[str, Any], *, body_timeout: int) -> int:
    """Serve ``app`` with gunicorn and ``options`` until it stops; its exit status."""
    if options["worker_class"] == "gevent":
        app = BodyDeadline(app, body_timeout)
    try:
        _Gunicorn(app, options).run()
    except SystemExit as stop:  # gunicorn's arbiter leaves through sys.exit
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def default_public_url(host: str, port: int) -> str:
    """``http://<host>:<port>``; a wildcard address becomes this machine's host name."""
    name = socket.gethostname() if host in _WILDCARDS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"http://{name}:{port}"


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


def run_serve(args: argparse.Namespace) -> int:
    """Run ``serve`` until gunicorn stops; return its exit status.

    Raises:
        InvalidInput: a bad port, worker count, timeout, connection or submission limit,
            body limit, or a bad public URL.
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
    if args.worker_connections < 1 or args.header_timeout < 1 or args.body_timeout < 1:
        raise InvalidInput(
            "--worker-connections, --header-timeout and --body-timeout must be at least 1"
        )
    limits = SubmissionLimits(
        per_address=args.submissions_per_minute,
        window=timedelta(minutes=1),
        pending=args.max_pending,
        pending_per_host=args.max_pending_per_host,
    )
    public_url = args.public_url or default_public_url(args.host, args.port)
    # Everything make_app could refuse is checked before the worker set-up patches this
    # process for gevent: a refused start leaves the process as it was.
    endpoint_url(public_url)
    parse_networks(args.portal_network)
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
    prepare_workers(args.worker_class)
    app = make_app(
        data_dir,
        public_url=public_url,
        max_body=args.max_body,
        portal=not args.no_portal,
        portal_networks=args.portal_network,
        smtp_cafile=os.environ.get(SMTP_CAFILE_ENV) or None,
        limits=limits,
    )
    host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    print(f"Serving PKI.CAServer at {endpoint_url(public_url)}", flush=True)
    options = gunicorn_options(
        bind=f"{host}:{args.port}",
        workers=args.workers,
        worker_class=args.worker_class,
        worker_connections=args.worker_connections,
        header_timeout=args.header_timeout,
        timeout=args.timeout,
        max_requests=args.max_requests,
    )
    return run_gunicorn(app, options, body_timeout=args.body_timeout)


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
