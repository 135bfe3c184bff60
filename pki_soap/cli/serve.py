"""``server_app.py serve``: run the SOAP service (and the portal) under gunicorn.

The options are cli/serve_options.py, gunicorn's settings and hooks cli/workers.py.
``--demo`` first configures a throw-away test CA when none is configured (cli/demo.py).
``--tls`` serves HTTPS with a certificate of the server's own CA, made or renewed at start
(cli/https_certificate.py); ``--certfile/--keyfile`` serve one from elsewhere instead
(reloaded when the files change).  ``--http-port`` also serves SOAP and the WSDL over plain
HTTP, in a second gunicorn master process (gunicorn's TLS setting holds for all its
listeners); the portal is never served over plain HTTP when TLS is on.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pki_soap.cli import admin, workers
from pki_soap.cli.demo import DEMO_PASSWORD_FILE, configure_demo
from pki_soap.cli.https_certificate import prepare_https
from pki_soap.cli.recording import mode_from_arguments
from pki_soap.cli.serve_options import check_options, wants_tls
from pki_soap.errors import InvalidInput
from pki_soap.portal.auth import parse_networks
from pki_soap.server import settings, tls
from pki_soap.server.datadir import check_writable, open_data_directory
from pki_soap.server.mail import SMTP_CAFILE_ENV
from pki_soap.server.tasks.submit import SubmissionLimits
from pki_soap.soap.wsdl import endpoint_url
from pki_soap.store import DATABASE_NAME
from pki_soap.wsgi import PkiSoapApp, make_app

_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def run_serve(args: argparse.Namespace) -> int:
    """Run ``serve`` until gunicorn stops; return its exit status.

    Raises:
        InvalidInput: a bad port, worker count, timeout, connection or submission limit,
            body limit, a bad public URL, unusable TLS options, or no CA key password when
            the HTTPS certificate must be issued.
        PkiError: the demo CA cannot be configured, or the service cannot start.
    """
    data_dir: Path = args.data_dir
    check_options(args)
    parse_networks(args.portal_network)  # refused now, not after the worker set-up below
    # Refused here rather than answered with a 500 on every call.  (The demo set-up below
    # opens and closes the store before gunicorn forks: no connection crosses a fork.)
    check_writable(data_dir)
    _prepare_ca(args, data_dir)
    https = wants_tls(args)
    public_url = _public_url(args, data_dir, "https" if https else "http")
    if not endpoint_url(public_url).startswith("https://") and https:
        raise InvalidInput(
            f"with HTTPS the public URL must be https://, not {public_url!r} (give --public-url "
            "https://...)"
        )
    if args.http_port is not None:
        _check_free(args.host, args.http_port)
    mode = _serve_mode(args, data_dir)
    make = functools.partial(
        make_app,
        data_dir,
        max_body=args.max_body,
        smtp_cafile=os.environ.get(SMTP_CAFILE_ENV) or None,
        limits=SubmissionLimits(
            per_address=args.submissions_per_minute,
            window=timedelta(minutes=1),
            pending=args.max_pending,
            pending_per_host=args.max_pending_per_host,
        ),
        strict_iris=mode.strict_iris,
        record=mode.record,
    )
    app = make(
        public_url=public_url, portal=not args.no_portal, portal_networks=args.portal_network
    )
    plain_url = None
    if args.http_port is not None:
        host_name = urlsplit(public_url).hostname or args.host
        plain_url = default_public_url(host_name, args.http_port)
    plain_app = make(public_url=plain_url, portal=False) if plain_url is not None else None
    served = prepare_https(args, public_url) if https else None
    strict, recording = settings.describe(mode)
    print(
        f"Serving PKI.CAServer at {endpoint_url(public_url)}\n"
        f"IRIS-strict mode: {strict}\nExchange recording: {recording}",
        flush=True,
    )
    options = workers.gunicorn_options(
        bind=_bind(args.host, args.port),
        **{name: getattr(args, name) for name in workers.GUNICORN_OPTIONS},
    )
    workers.quiet_worker_patch_warning()
    plain_pid = None
    if plain_app is not None:
        print(
            f"Also serving PKI.CAServer over plain HTTP (SOAP and WSDL, no portal) at "
            f"{endpoint_url(plain_url)}",
            flush=True,
        )
        plain_pid = workers.run_gunicorn_beside(
            lambda: plain_app,
            {**options, "bind": _bind(args.host, args.http_port), **_hook(plain_app)},
            body_timeout=args.body_timeout,
        )
    if served is not None:
        options.update(tls.gunicorn_settings(served.certfile, served.keyfile))
        if served.renewer is not None:
            served.renewer.start()
    try:
        return workers.run_gunicorn(
            lambda: app, {**options, **_hook(app)}, body_timeout=args.body_timeout
        )
    finally:
        if served is not None and served.renewer is not None:
            served.renewer.stop()
        if plain_pid is not None:
            workers.stop_beside(plain_pid)


def _hook(app: PkiSoapApp) -> dict[str, functools.partial[None]]:
    return {"post_worker_init": functools.partial(workers.open_in_worker, app)}


def _prepare_ca(args: argparse.Namespace, data_dir: Path) -> None:
    """Configure the demo CA (``--demo``), or warn that there is no CA to serve."""
    if args.demo:
        created, fingerprint = configure_demo(data_dir)
        state = "created" if created else "configured"
        print(
            f"DEMO CERTIFICATE AUTHORITY ({state}): for testing only - its key password is "
            f"in {data_dir / DEMO_PASSWORD_FILE}; never trust it for anything real.\n"
            f"Certificate Authority Certificate SHA-1 fingerprint:\n{fingerprint}",
            flush=True,
        )
    elif not admin.ca_configured(data_dir):
        # Serving starts anyway (the portal can configure the CA), but say why SubmitCSR fails.
        print(
            f"warning: no Certificate Authority is configured in {data_dir}: SubmitCSR answers "
            "a fault and there is no CA certificate to get until one is. Configure it with "
            f"`{admin.program_name()} configure ...` or in the portal (/pki/), or serve with "
            "--demo.",
            file=sys.stderr,
            flush=True,
        )


def _public_url(args: argparse.Namespace, data_dir: Path, scheme: str) -> str:
    """``--public-url``, else the configured one, else this host's name and port."""
    configured_url = configured_public_url(data_dir)
    if args.public_url and configured_url and args.public_url != configured_url:
        print(
            f"warning: --public-url {args.public_url} differs from the configured public URL "
            f"{configured_url}, which new certificates name for their CRL and OCSP",
            file=sys.stderr,
        )
    return str(
        args.public_url or configured_url or default_public_url(args.host, args.port, scheme)
    )


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


def _serve_mode(args: argparse.Namespace, data_dir: Path) -> settings.ServeSettings:
    """The stored settings with this run's options applied, left in the store for ``status``."""
    with open_data_directory(data_dir, create=True) as opened:
        mode = mode_from_arguments(args, settings.load(opened.store))
        started = settings.Serving(datetime.now(UTC), os.getpid(), mode)
        settings.save_serving(opened.store, started)
    return mode


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
