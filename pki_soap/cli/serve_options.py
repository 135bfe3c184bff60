"""The options of ``server_app.py serve``, and their checks; serving itself is cli/serve.py.

Kept apart so that building the parser imports neither spyne nor gunicorn nor the portal: they
are imported only when ``serve`` runs (about a second that ``--help`` and the administration
commands do not pay).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from pki_soap.cli import Commands, admin
from pki_soap.cli.demo import DEMO_PASSWORD_FILE, DEMO_ROOT
from pki_soap.cli.recording import add_mode_arguments
from pki_soap.errors import InvalidInput
from pki_soap.server.tasks.submit import SubmissionLimits

DEFAULT_PORT = 52773
"""IRIS's web server port, where its clients look; the service's own default (a test keeps
the two equal: the service module is not imported here)."""
DEFAULT_MAX_BODY = 256 * 1024
"""The service's default body limit (see DEFAULT_PORT)."""
WORKER_CLASSES = ("gevent", "gthread", "sync")
DEFAULT_WORKER_CLASS = "gevent"
DEFAULT_WORKER_CONNECTIONS = 1000
DEFAULT_HEADER_TIMEOUT = 5
DEFAULT_BODY_TIMEOUT = 30
_LIMITS = SubmissionLimits()


def add_commands(commands: Commands, run: Callable[[argparse.Namespace], int]) -> None:
    """Add ``serve``, run by ``run`` (cli/server_app.py's, which imports cli/serve.py then)."""
    serve = commands.add("serve", "serve the CA over SOAP and the portal (the default)", run)
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
    _add_https_arguments(serve)
    add_mode_arguments(serve, for_serve=True)


def _add_https_arguments(serve: argparse.ArgumentParser) -> None:
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
        f"(or ${admin.CA_PASSWORD_ENV}, or a prompt at start)",
    )
    for flag, text in (
        ("--certfile", "serve HTTPS with this PEM certificate chain instead (implies --tls)"),
        ("--keyfile", "the unencrypted key of --certfile"),
    ):
        https.add_argument(flag, type=Path, metavar="FILE", help=text)
    https.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="with HTTPS, also serve SOAP and ?WSDL (not the portal) over plain HTTP on PORT",
    )


def wants_tls(args: argparse.Namespace) -> bool:
    """Whether ``serve`` serves HTTPS (``--tls``, or a certificate of its own given)."""
    return bool(args.tls or args.certfile or args.keyfile)


def check_options(args: argparse.Namespace) -> None:
    """Refuse what ``serve`` cannot start with, before anything is opened.

    Raises:
        InvalidInput: a bad port, worker count, timeout, limit or TLS option.
    """
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
        if not wants_tls(args):
            raise InvalidInput("--http-port serves plain HTTP beside HTTPS: add --tls")
        if not 0 < args.http_port < 65536 or args.http_port == args.port:
            raise InvalidInput(f"--http-port {args.http_port} must be a port other than --port")
