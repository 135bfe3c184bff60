"""gunicorn as ``serve`` runs it: its settings, the body deadline, the worker hooks.

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
slow clients) and ``gthread`` exist for comparison in bench/ (bench/floor_app.py serves its
floor with this module); see docs/decisions.md for the measurements behind the choice.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gunicorn.app.base import BaseApplication

from pki_soap.cli.serve_options import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_WORKER_CLASS,
    DEFAULT_WORKER_CONNECTIONS,
)
from pki_soap.errors import PkiError
from pki_soap.wsgi import PkiSoapApp

log = logging.getLogger(__name__)

GUNICORN_OPTIONS = (
    "workers",
    "worker_class",
    "worker_connections",
    "header_timeout",
    "timeout",
    "max_requests",
)
"""``serve``'s options that :func:`gunicorn_options` takes as they are."""
GTHREAD_THREADS = 4
GRACEFUL_TIMEOUT = 10

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


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

    Then everything loaded so far (spyne, lxml, cryptography, the portal's templates) is moved
    out of the garbage collector's sight with :func:`gc.freeze`, the standard library's
    remedy for forking servers: spyne runs a full ``gc.collect()`` at most once a second after
    a request, and over the whole loaded application that took 55-130 ms, a stall every
    second (bench section 1); over what requests allocate it takes well under a millisecond.
    """
    try:
        app.data.get()
    except PkiError as exc:
        log.warning("cannot open the data directory yet: %s", exc.message)
    gc.freeze()


def quiet_worker_patch_warning() -> None:
    """Silence gevent's warning that ssl was imported before a worker's monkey-patch.

    gunicorn and the preloaded application import ssl in the master; every SSL object the
    workers use (gunicorn's context, SMTP's STARTTLS) is made after their patch.
    """
    warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl has already")


def run_gunicorn(
    build: Callable[[], WsgiApp], options: dict[str, Any], *, body_timeout: int
) -> int:
    """Serve what ``build`` makes until gunicorn stops; its exit status.

    For gevent workers the application is put behind :class:`BodyDeadline`.
    """
    if options["worker_class"] == "gevent":
        build = _behind_deadline(build, body_timeout)
    try:
        _Gunicorn(build, options).run()
    except SystemExit as stop:  # gunicorn's arbiter leaves through sys.exit
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _behind_deadline(build: Callable[[], WsgiApp], seconds: int) -> Callable[[], WsgiApp]:
    return lambda: BodyDeadline(build(), seconds)


def run_gunicorn_beside(
    build: Callable[[], WsgiApp], options: dict[str, Any], *, body_timeout: int
) -> int:
    """Fork a second gunicorn master serving what ``build`` makes (:func:`run_gunicorn`),
    which ends when this process does; its pid."""
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller's code
        code = 1
        try:
            _die_with_parent()
            code = run_gunicorn(build, options, body_timeout=body_timeout)
        finally:
            os._exit(code)
    return pid


def stop_beside(pid: int) -> None:
    """Stop the gunicorn master of :func:`run_gunicorn_beside` and wait for it."""
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # already gone (gunicorn's master may have reaped it)


def _die_with_parent() -> None:
    # Linux: the plain-HTTP master gets SIGTERM when the HTTPS one goes, however it goes.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
