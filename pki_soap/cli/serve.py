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

``--tls`` serves HTTPS (pki_soap/server/tls.py).  The server's own certificate is issued by its CA,
which needs the CA key password; the running server does not keep it.  So the password is
asked at start, as every administration command asks it (``--password-file``,
``$PKI_CA_PASSWORD``, a prompt), and only when the certificate must be made or renewed.
While serving, renewal happens without a person only when the password can be read again:
from ``--password-file`` (read anew at each renewal, never kept in memory), the environment
variable, or the demo CA's password file; otherwise the log says a restart is due.  The
renewal itself runs ``server_app.py https-certificate`` in a process of its own: gunicorn's
master never holds a database connection while it forks workers.
``--certfile/--keyfile`` serve a certificate from elsewhere instead (reloaded when the files
change).  ``--http-port`` also serves SOAP and the WSDL over plain HTTP, in a second gunicorn
master process (gunicorn's TLS setting holds for all its listeners); the portal is never
served over plain HTTP when TLS is on.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from gunicorn.app.base import BaseApplication

import pki_soap
from pki_soap import files
from pki_soap.ca import names
from pki_soap.cli import https_certificate
from pki_soap.cli import server_app as server_cli
from pki_soap.cli.server_app import (
    add_mode_arguments,
    ca_configured,
    mode_from_arguments,
    program_name,
)
from pki_soap.errors import InvalidInput, NotConfigured, PkiError
from pki_soap.portal.auth import parse_networks
from pki_soap.server import settings, tls
from pki_soap.server.datadir import check_writable, open_data_directory
from pki_soap.server.mail import SMTP_CAFILE_ENV
from pki_soap.server.tasks.submit import SubmissionLimits
from pki_soap.soap.service import DEFAULT_MAX_BODY, DEFAULT_PORT, PkiSoapApp, endpoint_url, make_app
from pki_soap.store import DATABASE_NAME

log = logging.getLogger(__name__)

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
GRACEFUL_TIMEOUT = 10
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
        help="URL clients use, written into the WSDL (default: the one `configure "
        "--public-url` stored, else http://<host name>:<port>)",
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
    https = serve.add_argument_group("HTTPS")
    https.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a certificate for the public host name issued by this CA "
        "(made at first start, renewed before it expires; <data-dir>/tls/)",
    )
    https.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name or IP address for the server's certificate; repeatable",
    )
    https.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="file holding the CA key password, to issue and renew the server's certificate "
        f"(or ${server_cli.CA_PASSWORD_ENV}, or a prompt at start)",
    )
    https.add_argument(
        "--certfile",
        type=Path,
        metavar="FILE",
        help="serve HTTPS with this PEM certificate chain instead (implies --tls)",
    )
    https.add_argument(
        "--keyfile", type=Path, metavar="FILE", help="the unencrypted key of --certfile"
    )
    https.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="with HTTPS, also serve SOAP and ?WSDL (not the portal) over plain HTTP on PORT",
    )
    add_mode_arguments(serve, for_serve=True)
    return serve


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn has no type information
    """gunicorn run programmatically: our options, the WSGI application ``build`` makes.

    ``build`` runs where gunicorn loads the application: in the master when the options
    preload it, else in each worker after the fork (gevent: after the worker's monkey-patch).
    """

    def __init__(self, build: Callable[[], Any], options: dict[str, Any]) -> None:
        self._build = build
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._build()


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
        # Requests take milliseconds and slow clients are cut by the deadlines above; and a
        # gevent worker told to stop in its first moments (its monkey-patch runs before
        # gunicorn installs its signal handlers) misses the signal: killed after this.
        "graceful_timeout": GRACEFUL_TIMEOUT,
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


def open_in_worker(app: PkiSoapApp, worker: Any) -> None:
    """gunicorn's ``post_worker_init`` hook: open this worker's data directory before any
    request is served.

    Under gevent the application was built (preloaded) before the worker's monkey-patch, so
    the data directory's lock is a real one; opened here, while nothing else runs, the later
    calls only take and give it back without a greenlet switch in between.  A failure is
    logged and left to the first request, which answers it as a Server fault.
    """
    try:
        app.data.get()
    except PkiError as exc:
        log.warning("cannot open the data directory yet: %s", exc.message)


def quiet_worker_patch_warning() -> None:
    """Silence gevent's warning that ssl was imported before a worker's monkey-patch.

    gunicorn and the preloaded application import ssl in the master; every SSL object the
    workers use (gunicorn's context, SMTP's STARTTLS) is made after their patch.
    """
    warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl has already")


def deadlined(
    build: Callable[[], WsgiApp], worker_class: str, body_timeout: int
) -> Callable[[], WsgiApp]:
    """``build``, its application put behind :class:`BodyDeadline` for gevent workers."""
    if worker_class != "gevent":
        return build
    return lambda: BodyDeadline(build(), body_timeout)


def run_gunicorn(
    build: Callable[[], WsgiApp], options: dict[str, Any], *, body_timeout: int
) -> int:
    """Serve what ``build`` makes (see :class:`_Gunicorn`, :func:`deadlined`) until gunicorn
    stops; its exit status."""
    try:
        _Gunicorn(deadlined(build, options["worker_class"], body_timeout), options).run()
    except SystemExit as stop:  # gunicorn's arbiter leaves through sys.exit
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def default_public_url(host: str, port: int, scheme: str = "http") -> str:
    """``<scheme>://<host>:<port>``; a wildcard address becomes this machine's host name."""
    name = socket.gethostname() if host in _WILDCARDS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"{scheme}://{name}:{port}"


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
            files.write_private_file(password_file, password + b"\n")
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


@dataclass(frozen=True)
class _Https:
    """What ``serve`` serves HTTPS with."""

    certfile: Path
    keyfile: Path
    renewer: tls.Renewer | None
    """Keeps our own certificate fresh; None for ``--certfile/--keyfile``."""


def _wants_tls(args: argparse.Namespace) -> bool:
    return bool(args.tls or args.certfile or args.keyfile)


def _check_options(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise InvalidInput(f"port {args.port} is not between 1 and 65535")
    if args.workers < 1:
        raise InvalidInput("--workers must be at least 1")
    if args.timeout < 1 or args.max_requests < 0 or args.max_body < 1:
        raise InvalidInput("--timeout and --max-body must be positive, --max-requests >= 0")
    if (args.certfile is None) != (args.keyfile is None):
        raise InvalidInput("--certfile and --keyfile go together")
    if args.certfile is not None and args.tls_name:
        raise InvalidInput("--tls-name names our own certificate; not with --certfile")
    if args.worker_connections < 1 or args.header_timeout < 1 or args.body_timeout < 1:
        raise InvalidInput(
            "--worker-connections, --header-timeout and --body-timeout must be at least 1"
        )
    if args.http_port is not None:
        if not _wants_tls(args):
            raise InvalidInput("--http-port serves plain HTTP beside HTTPS: add --tls")
        if not 0 < args.http_port < 65536 or args.http_port == args.port:
            raise InvalidInput(f"--http-port {args.http_port} must be a port other than --port")


def _report(line: str) -> None:
    """One line of the running server's log (stderr, as gunicorn's)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S +0000")
    print(f"[{stamp}] [{os.getpid()}] [pki-soap] {line}", file=sys.stderr, flush=True)


def _start_password(args: argparse.Namespace, data_dir: Path) -> bytes:
    """The CA key password at start: as every command asks it; the demo CA's from its file."""
    demo_file = data_dir / DEMO_PASSWORD_FILE
    if args.password_file is None and args.demo and demo_file.exists():
        return server_cli.ca_password(demo_file)
    return server_cli.ca_password(args.password_file)


def renewal_action(
    args: argparse.Namespace, data_dir: Path, wanted: list[x509.GeneralName]
) -> Callable[[str], None]:
    """What the renewal thread does when the certificate falls due.

    It runs ``https-certificate`` in a process of its own, which reads the password anew from
    the password file (or the demo CA's), else from the environment; a prompt's answer is
    never kept, so without a file or variable it only says that a restart is due.
    """
    password_file: Path | None = args.password_file
    if password_file is None and args.demo and (data_dir / DEMO_PASSWORD_FILE).exists():
        password_file = data_dir / DEMO_PASSWORD_FILE
    unattended = password_file is not None or bool(
        os.environb.get(server_cli.CA_PASSWORD_ENV.encode())
    )
    command = [sys.executable, "-m", https_certificate.MODULE]
    command += ["--data-dir", str(data_dir.resolve())]
    for name in wanted:
        command += ["--name", str(name.value)]
    if password_file is not None:
        command += ["--password-file", str(password_file.resolve())]
    # The same package, wherever the server was started from.
    package_parent = str(Path(pki_soap.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))

    def renew(why: str) -> None:
        if not unattended:
            _report(
                f"the HTTPS certificate must be renewed ({why}), but there is no password "
                "file or environment variable to read the CA key password from: restart "
                "serve --tls, or start it with --password-file"
            )
            return
        _report(f"renewing the HTTPS certificate ({why})")
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": python_path},
            check=False,
        )
        for line in (done.stdout + done.stderr).splitlines():
            _report(line)

    return renew


def _prepare_https(args: argparse.Namespace, data_dir: Path, public_url: str) -> _Https:
    """Check ``--certfile/--keyfile``, or make sure our own certificate is there and fresh.

    Raises:
        InvalidInput: unusable files or names, or no CA key password when one is needed.
        NotConfigured: no CA is configured (nobody could issue our certificate).
        WrongPassword, CAFileError: the CA key cannot sign.
    """
    if args.certfile is not None:
        tls.check_files(args.certfile, args.keyfile)
        print(f"HTTPS with {args.certfile} (reloaded when it changes)", flush=True)
        return _Https(args.certfile, args.keyfile, None)
    host = urlsplit(public_url).hostname or ""
    wanted = tls.server_names(host, args.tls_name)
    # Opened and closed here, before gunicorn forks (as the demo set-up).
    ca_certificate = https_certificate.ensure(
        data_dir, wanted, lambda: _start_password(args, data_dir)
    )
    print(
        "Clients trust this CA with:\n  client_app.py get-ca --fingerprint "
        f"SHA256:{names.sha256_fingerprint(ca_certificate)}",
        flush=True,
    )
    files = tls.ServerFiles.of(data_dir)
    renewer = tls.Renewer(files, ca_certificate, wanted, renewal_action(args, data_dir, wanted))
    return _Https(files.cer, files.key, renewer)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _check_free(host: str, port: int) -> None:
    """Fail now, with a clear message, if ``host:port`` cannot be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def _die_with_parent() -> None:
    # Linux: the plain-HTTP master gets SIGTERM when the HTTPS one goes, however it goes.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _serve_plain_beside(build: Callable[[], Any], options: dict[str, Any]) -> int:
    """Fork a second gunicorn master serving what ``build`` makes over plain HTTP; its pid."""
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller's code
        code = 1
        try:
            _die_with_parent()
            _Gunicorn(build, options).run()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 0
        finally:
            os._exit(code)
    return pid


def _stop_plain(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # already gone (gunicorn's master may have reaped it)


def run_serve(args: argparse.Namespace) -> int:
    """Run ``serve`` until gunicorn stops; return its exit status.

    Raises:
        InvalidInput: a bad port, worker count, timeout, connection or submission limit,
            body limit, a bad public URL, unusable TLS options, or no CA key password when
            the HTTPS certificate must be issued.
        PkiError: the demo CA cannot be configured, or the service cannot start.
    """
    data_dir: Path = getattr(args, "data_dir", DEFAULT_DATA_DIR)
    _check_options(args)
    limits = SubmissionLimits(
        per_address=args.submissions_per_minute,
        window=timedelta(minutes=1),
        pending=args.max_pending,
        pending_per_host=args.max_pending_per_host,
    )
    parse_networks(args.portal_network)  # refused now, not after the worker set-up below
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
    https = _wants_tls(args)
    configured_url = configured_public_url(data_dir)
    if args.public_url and configured_url and args.public_url != configured_url:
        print(
            f"warning: --public-url {args.public_url} differs from the configured public URL "
            f"{configured_url}, which new certificates name for their CRL and OCSP",
            file=sys.stderr,
        )
    public_url = (
        args.public_url
        or configured_url
        or default_public_url(args.host, args.port, "https" if https else "http")
    )
    if not endpoint_url(public_url).startswith("https://") and https:
        raise InvalidInput(
            f"with HTTPS the public URL must be https://, not {public_url!r} (give --public-url "
            "https://...)"
        )
    if args.http_port is not None:
        _check_free(args.host, args.http_port)
    smtp_cafile = os.environ.get(SMTP_CAFILE_ENV) or None
    mode = _serve_mode(args, data_dir)
    app = make_app(
        data_dir,
        public_url=public_url,
        max_body=args.max_body,
        portal=not args.no_portal,
        portal_networks=args.portal_network,
        smtp_cafile=smtp_cafile,
        limits=limits,
        strict_iris=mode.strict_iris,
        record=mode.record,
    )
    plain_app = None
    if args.http_port is not None:
        host_name = urlsplit(public_url).hostname or args.host
        plain_url = default_public_url(host_name, args.http_port)
        plain_app = make_app(
            data_dir,
            public_url=plain_url,
            max_body=args.max_body,
            portal=False,
            smtp_cafile=smtp_cafile,
            limits=limits,
            strict_iris=mode.strict_iris,
            record=mode.record,
        )
    served = _prepare_https(args, data_dir, public_url) if https else None
    strict, recording = settings.describe(mode)
    print(
        f"Serving PKI.CAServer at {endpoint_url(public_url)}\n"
        f"IRIS-strict mode: {strict}\nExchange recording: {recording}",
        flush=True,
    )
    options = gunicorn_options(
        bind=_bind(args.host, args.port),
        workers=args.workers,
        worker_class=args.worker_class,
        worker_connections=args.worker_connections,
        header_timeout=args.header_timeout,
        timeout=args.timeout,
        max_requests=args.max_requests,
    )
    quiet_worker_patch_warning()
    plain_pid = None
    if plain_app is not None:
        print(
            f"Also serving PKI.CAServer over plain HTTP (SOAP and WSDL, no portal) at "
            f"{endpoint_url(plain_url)}",
            flush=True,
        )
        plain_pid = _serve_plain_beside(
            deadlined(lambda: plain_app, args.worker_class, args.body_timeout),
            {
                **options,
                "bind": _bind(args.host, args.http_port),
                "post_worker_init": functools.partial(open_in_worker, plain_app),
            },
        )
    if served is not None:
        options.update(tls.gunicorn_settings(served.certfile, served.keyfile))
        if served.renewer is not None:
            served.renewer.start()
    try:
        options["post_worker_init"] = functools.partial(open_in_worker, app)
        _Gunicorn(deadlined(lambda: app, args.worker_class, args.body_timeout), options).run()
    except SystemExit as stop:  # gunicorn's arbiter leaves through sys.exit
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        if served is not None and served.renewer is not None:
            served.renewer.stop()
        if plain_pid is not None:
            _stop_plain(plain_pid)
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
