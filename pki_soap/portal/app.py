"""The portal's WSGI application: network guard, login, sessions, CSRF, routing, rendering."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, MapAdapter, Rule
from werkzeug.wrappers import Request, Response

from pki_soap.errors import PkiError
from pki_soap.escaping import for_shell
from pki_soap.portal import auth

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from pki_soap.server.datadir import ServerDataDirectory
    from pki_soap.server.tasks import CAServer
    from pki_soap.store import Store

COOKIE_NAME = "pki_portal_session"
IDLE_TIMEOUT_SECONDS = 15 * 60
# However active, an administrator signs in again after this long.
MAX_SESSION_SECONDS = 12 * 60 * 60
MAX_FORM_BYTES = 64 * 1024
MAX_FLASH_CHARS = 600

# No script runs anywhere; styles come from our own stylesheet only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

STRICT_TRANSPORT_SECURITY = "max-age=31536000"
"""HSTS for a year, sent when the portal is served over HTTPS (no includeSubDomains: the
portal speaks for its own host only)."""

Handler = Callable[..., Response]
_PUBLIC_ENDPOINTS = {"login", "static"}


@dataclass
class FormErrors:
    """Errors of one form: by field name, plus those that belong to no single field."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)

    def add(self, name: str | None, message: str) -> None:
        """Note ``message`` for the field ``name`` (its first one stays), or for the whole form."""
        if name is None:
            self.general.append(message)
        else:
            self.fields.setdefault(name, message)


class Page:
    """One request as a handler sees it: the form, the session, URLs, the stores, rendering."""

    def __init__(
        self,
        portal: Portal,
        request: Request,
        adapter: MapAdapter,
        session: auth.Session,
        endpoint: str,
    ) -> None:
        self.portal = portal
        self.endpoint = endpoint
        self.request = request
        self.adapter = adapter
        self.session = session
        self.data_dir = portal.data_dir

    def url_for(self, endpoint: str, **values: Any) -> str:
        """The path of ``endpoint`` below the script root (``/pki/...`` when mounted there)."""
        return self.adapter.build(endpoint, values)

    def secret(self, name: str) -> bytes | None:
        """A password field as bytes, or None when empty; never echoed back."""
        value = self.request.form.get(name, "")
        return value.encode("utf-8") if value else None

    def flash(self, kind: str, text: str) -> None:
        """Show ``text`` on the next page rendered for this session."""
        # It travels in the cookie, which browsers drop beyond 4 KB: keep it short.
        if len(text) > MAX_FLASH_CHARS:
            text = text[: MAX_FLASH_CHARS - 1] + "…"
        self.session.flashes.append((kind, text))

    def redirect(self, endpoint: str, **values: Any) -> Response:
        """A 303 to ``endpoint``: after a POST the browser asks again with GET."""
        return Response(status=303, headers={"Location": self.url_for(endpoint, **values)})

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        """Render ``template`` with the page's links, CSRF token and messages (shown once)."""
        flashes, self.session.flashes = self.session.flashes, []
        body = self.portal.templates.get_template(template).render(
            url_for=self.url_for,
            csrf_token=self.session.csrf,
            authenticated=self.session.authenticated,
            flashes=flashes,
            endpoint=self.endpoint,
            **context,
        )
        return Response(body, status=status, mimetype="text/html")

    def render_form(self, template: str, errors: FormErrors, **context: Any) -> Response:
        """Render a page with a form: status 400 when ``errors`` holds any, else 200."""
        return self.render(template, status=400 if errors else 200, errors=errors, **context)

    @property
    def store(self) -> Store:
        """The data directory's store (opened once per process)."""
        return self.portal.store()

    @property
    def server(self) -> CAServer:
        """The data directory's CA server (opened once per process)."""
        return self.portal.ca_server()


class Portal:
    """The WSGI application of the management portal for one data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        allow_networks: list[str] | None,
        secure_cookies: bool,
        idle_timeout: float,
        clock: Callable[[], float],
        data: ServerDataDirectory,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data = data
        self.allowed = auth.parse_networks(allow_networks)
        self.secure_cookies = secure_cookies
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.signer = auth.SessionSigner(auth.load_secret(self.data_dir))
        self.templates = Environment(
            loader=PackageLoader("pki_soap.portal", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.url_map = Map(strict_slashes=True, merge_slashes=False)
        self.handlers: dict[str, Handler] = {}
        self.add_page("/static/<name>", "static", _static, methods=("GET",))
        self.add_page("/login", "login", _login, methods=("GET", "POST"))
        self.add_page("/logout", "logout", _logout, methods=("POST",))

    def add_page(
        self, path: str, endpoint: str, handler: Handler, *, methods: Iterable[str]
    ) -> None:
        """Route ``path`` (below the script root) to ``handler``."""
        self.url_map.add(Rule(path, endpoint=endpoint, methods=list(methods)))
        self.handlers[endpoint] = handler

    def store(self) -> Store:
        """The data directory's store, opened once per process (shared with the service)."""
        return self.data.get().store

    def ca_server(self) -> CAServer:
        """The CA server's tasks; its e-mail goes through the process's outbox thread."""
        return self.data.get().server

    # -- the request cycle ---------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_FORM_BYTES
        request.max_form_memory_size = MAX_FORM_BYTES
        try:
            response = self._respond(request, environ)
        except HTTPException as exc:  # e.g. a form over MAX_FORM_BYTES
            response = _plain(exc.code or 400, exc.description or "Bad request.")
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if self.secure_cookies:
            # Served over HTTPS: browsers must never come back over plain HTTP.
            response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
        return response(environ, start_response)

    def _respond(self, request: Request, environ: WSGIEnvironment) -> Response:
        if not auth.client_allowed(request.remote_addr, self.allowed):
            return _plain(
                403,
                "The PKI portal answers only clients on this machine "
                "(start the server with --portal-network to admit other networks).",
            )
        if not environ.get("PATH_INFO"):
            # Mounted at /pki: relative links need the trailing slash.
            return Response(status=308, headers={"Location": request.script_root + "/"})
        adapter = self.url_map.bind_to_environ(environ)
        try:
            rule, args = adapter.match(return_rule=True)
        except MethodNotAllowed as exc:
            return _plain(405, "This page does not accept that method.", exc.valid_methods)
        except NotFound:
            return _plain(404, "No such page in the PKI portal.")
        except HTTPException as exc:  # redirects for slashes
            return exc.get_response(environ)
        if rule.endpoint == "static":
            return _static_file(args["name"])
        now = self.clock()
        session, ended = self._session(request, now)
        page = Page(self, request, adapter, session, str(rule.endpoint))
        if ended:
            page.flash("info", ended)
        if ended and rule.endpoint not in _PUBLIC_ENDPOINTS:
            # Not a CSRF refusal: the form was genuine, only the session is over.
            response = page.redirect("login", next=_here(request))
        elif request.method == "POST" and not self._csrf_ok(request, session):
            response = _plain(
                403,
                "The form was refused: it has expired or did not come from this portal. "
                "Reload the page and try again.",
            )
        elif rule.endpoint not in _PUBLIC_ENDPOINTS and not session.authenticated:
            response = page.redirect("login", next=_here(request))
        else:
            try:
                response = self.handlers[rule.endpoint](page, **args)
            except PkiError as exc:
                # Whatever a page did not expect to go wrong, said plainly (no traceback).
                response = page.render(
                    "error.html",
                    status=400 if exc.fault_side == "Client" else 500,
                    heading="The task failed",
                    message=exc.message[:1].upper() + exc.message[1:],
                )
        if page.session.authenticated:
            page.session.seen = now
        self._set_cookie(response, request, page.session)
        return response

    def _session(self, request: Request, now: float) -> tuple[auth.Session, str | None]:
        """The request's session, or a new anonymous one and why the old one just ended."""
        session = self.signer.loads(request.cookies.get(COOKIE_NAME))
        if session is None:
            return auth.Session(), None
        if session.authenticated:
            if session.password_tag != auth.password_tag(auth.password_hash(self.data_dir)):
                return auth.Session(), "The portal password was changed; sign in again."
            if now - session.seen > self.idle_timeout:
                self.store().remove_portal_session(session.id)
                return auth.Session(), "You were signed out after a period of inactivity."
            if not 0 <= now - session.started <= MAX_SESSION_SECONDS:
                self.store().remove_portal_session(session.id)
                return auth.Session(), "Your session has ended; sign in again."
            if not session.id or not self.store().portal_session_exists(session.id):
                # Signed out (perhaps in another browser holding a copy of this cookie).
                return auth.Session(), "Your session has ended; sign in again."
        return session, None

    @staticmethod
    def _csrf_ok(request: Request, session: auth.Session) -> bool:
        token = request.form.get("csrf_token", "")
        if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
            return False
        origin = request.headers.get("Origin")
        if origin and origin != "null":
            # A browser says where the form came from; it must be this very host.
            return urlsplit(origin).netloc == request.host
        return True

    def _set_cookie(self, response: Response, request: Request, session: auth.Session) -> None:
        response.set_cookie(
            COOKIE_NAME,
            self.signer.dumps(session),
            path=(request.script_root or "") + "/",
            httponly=True,
            secure=self.secure_cookies,
            samesite="Strict",
        )


def _here(request: Request) -> str:
    """Where the login page sends the administrator back to: this page, if it was a GET."""
    if request.method != "GET":
        return "/"
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def _plain(status: int, text: str, allow: Iterable[str] | None = None) -> Response:
    response = Response(text + "\n", status=status, mimetype="text/plain")
    if allow:
        response.headers["Allow"] = ", ".join(sorted(allow))
    return response


_STATIC_TYPES = {".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}


def _static_file(name: str) -> Response:
    suffix = Path(name).suffix
    if "/" in name or name.startswith(".") or suffix not in _STATIC_TYPES:
        return _plain(404, "No such file.")
    resource = resources.files("pki_soap.portal").joinpath("static", name)
    if not resource.is_file():
        return _plain(404, "No such file.")
    response = Response(resource.read_bytes(), mimetype=_STATIC_TYPES[suffix])
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def _static(page: Page, name: str) -> Response:  # routed, but answered before sessions
    return _static_file(name)


def _local_target(target: str) -> str:
    """A post-login destination inside the portal; anything else becomes the start page."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login(page: Page) -> Response:
    stored = auth.password_hash(page.data_dir)
    target = _local_target(page.request.values.get("next", "/"))
    errors = FormErrors()
    status = 200
    if page.request.method == "POST" and stored is not None:
        throttle = auth.LoginThrottle(page.store, page.portal.clock)
        address = page.request.remote_addr
        password = page.secret("password")
        wait = throttle.wait(address)
        if wait:
            # The password is not even checked: guessing gets one try per delay.
            errors.add(
                None,
                f"Too many failed sign-ins. Wait {wait} second{'s' if wait != 1 else ''} "
                "before trying again.",
            )
            status = 429
        elif password is None:
            errors.add("password", "Enter the portal password.")
            status = 401
        elif not auth.check_password(stored, password):
            throttle.failed(address)
            errors.add("password", "Wrong password.")
            status = 401
        else:
            throttle.succeeded(address)
            now = page.portal.clock()
            # A fresh session (new id and CSRF token) at login: a planted cookie gains nothing.
            page.session = auth.Session(
                authenticated=True,
                password_tag=auth.password_tag(stored),
                started=now,
                seen=now,
                id=auth.new_session_id(),
            )
            started = datetime.fromtimestamp(now, UTC)
            page.store.remove_portal_sessions(
                started_before=started - timedelta(seconds=MAX_SESSION_SECONDS)
            )
            page.store.add_portal_session(page.session.id, started)
            return Response(status=303, headers={"Location": page.request.script_root + target})
    return page.render(
        "login.html",
        status=status,
        password_set=stored is not None,
        set_password_command=(
            f"python server_app.py portal-password --data-dir {for_shell(str(page.data_dir))}"
        ),
        next=target,
        errors=errors,
    )


def _logout(page: Page) -> Response:
    if page.session.id:
        page.store.remove_portal_session(page.session.id)  # copies of the cookie end too
    page.session = auth.Session()
    page.flash("info", "Signed out.")
    return page.redirect("login")


def form_values(form: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The named fields of ``form`` (stripped) for re-showing a form; passwords not included."""
    return {name: form.get(name, "").strip() for name in names}
