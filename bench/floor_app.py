"""The floor: a minimal WSGI app on the same gunicorn settings, answering captured bytes.

It reads the request body (as any SOAP server must), looks up the answer captured from the
real server for the request's SOAPAction (for a request without one, e.g. OCSP: its method and
path, ``"GET /isc/pki/ocsp/..."``), and returns those exact bytes with the same status and
Content-Type.  Whatever the real server spends beyond this is the cost of our code.

Run as ``python bench/floor_app.py --bind 127.0.0.1:PORT --workers N --responses FILE``;
FILE is JSON ``{key: {"status": ..., "headers": [[name, value], ...], "body": base64}}``.
With ``--certfile F --keyfile K`` it serves HTTPS with the very settings ``serve --tls`` uses
(``pki_soap.tls.gunicorn_settings``).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the pki_soap package
from pki_soap import tls  # noqa: E402

# The same gunicorn settings `server_app.py serve` uses (pki_soap/cli/serve.py), so the only
# difference between the two servers is the application.
SERVE_OPTIONS: dict[str, Any] = {
    "worker_class": "sync",
    "timeout": 30,
    "max_requests": 10000,
    "max_requests_jitter": 1000,
    "preload_app": True,
    "accesslog": "-",
    "errorlog": "-",
    "loglevel": "info",
    "control_socket_disable": True,
}

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


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self._app, self._options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--responses", type=Path, required=True)
    parser.add_argument("--certfile", type=Path)
    parser.add_argument("--keyfile", type=Path)
    args = parser.parse_args()
    app = make_floor_app(load_answers(args.responses))
    options = {**SERVE_OPTIONS, "bind": args.bind, "workers": args.workers}
    if args.certfile is not None:
        options.update(tls.gunicorn_settings(args.certfile, args.keyfile))
    _Gunicorn(app, options).run()


if __name__ == "__main__":
    main()
