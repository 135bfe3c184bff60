"""The floor: a minimal WSGI app served exactly as ``serve`` serves ours, answering captured bytes.

It reads the request body (as any SOAP server must), looks up the answer captured from the
real server for the request's SOAPAction (for a request without one, e.g. OCSP: its method and
path, ``"GET /isc/pki/ocsp/..."``), and returns those exact bytes with the same status and
Content-Type.  Whatever the real server spends beyond this is the cost of our code.

Run as ``python bench/floor_app.py --bind 127.0.0.1:PORT --workers N --responses FILE``;
FILE is JSON ``{key: {"status": ..., "headers": [[name, value], ...], "body": base64}}``.
With ``--certfile F --keyfile K`` it serves HTTPS with the very settings ``serve --tls`` uses
(``pki_soap.server.tls.gunicorn_settings``).
The gunicorn settings and the worker class (gevent: the body deadline in front) come from
pki_soap.cli.workers itself, so the two servers differ only in the application
(``--worker-class gevent|gthread|sync``, default serve's).
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the pki_soap package

from pki_soap.cli.serve_options import (  # noqa: E402
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_WORKER_CLASS,
    WORKER_CLASSES,
)
from pki_soap.cli.workers import (  # noqa: E402
    gunicorn_options,
    quiet_worker_patch_warning,
    run_gunicorn,
)
from pki_soap.server import tls  # noqa: E402

Answer = tuple[str, list[tuple[str, str]], bytes]


def load_answers(path: Path) -> dict[str, Answer]:
    """The captured answers of ``path``, keyed by SOAPAction (or method and path)."""
    raw = json.loads(path.read_text())
    return {
        action: (
            item["status"],
            [tuple(h) for h in item["headers"]],
            base64.b64decode(item["body"]),
        )
        for action, item in raw.items()
    }


def make_floor_app(answers: dict[str, Answer]) -> Callable[..., Iterable[bytes]]:
    """The floor WSGI app for ``answers`` (an unknown key gets a 404)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"].read(length)
        key = (
            environ.get("HTTP_SOAPACTION") or f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
        )
        answer = answers.get(key)
        if answer is None:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        status, headers, body = answer
        start_response(status, headers)
        return [body]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--responses", type=Path, required=True)
    parser.add_argument("--worker-class", choices=WORKER_CLASSES, default=DEFAULT_WORKER_CLASS)
    parser.add_argument("--certfile", type=Path)
    parser.add_argument("--keyfile", type=Path)
    args = parser.parse_args()
    answers = load_answers(args.responses)
    options = gunicorn_options(bind=args.bind, workers=args.workers, worker_class=args.worker_class)
    if args.certfile is not None:
        options.update(tls.gunicorn_settings(args.certfile, args.keyfile))
    build = functools.partial(make_floor_app, answers)
    quiet_worker_patch_warning()
    raise SystemExit(run_gunicorn(build, options, body_timeout=DEFAULT_BODY_TIMEOUT))


if __name__ == "__main__":
    main()
