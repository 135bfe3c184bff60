"""The portal's handlers through werkzeug's test client, mounted at /pki as service.py does."""

from __future__ import annotations

import html
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client, TestResponse
from werkzeug.wrappers import Response

from pki_soap import messages
from pki_soap.ca import fingerprints, keys, names
from pki_soap.ca.csr import build_csr, csr_pem, load_csr
from pki_soap.portal import make_portal
from pki_soap.portal.app import COOKIE_NAME
from pki_soap.portal.auth import (
    PASSWORD_FILE,
    SECRET_FILE,
    Session,
    SessionSigner,
    load_secret,
    set_password,
)
from pki_soap.server.tasks import CAServer
from pki_soap.store import PendingRequest, Store

PORTAL_PASSWORD = "portal admin secret"
HOSTILE = '<script>alert("x")</script>'
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


class Clock:
    """A clock the test moves by hand (the portal's idle timeout is measured on it)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Browser:
    """A werkzeug test client at a loopback address that keeps its cookies and CSRF token."""

    def __init__(self, app: object, remote_addr: str = "127.0.0.1") -> None:
        self.client = Client(app)  # type: ignore[arg-type]
        self.environ = {"REMOTE_ADDR": remote_addr}

    def get(self, path: str, **kwargs: object) -> TestResponse:
        return self.client.get(path, environ_base=self.environ, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str], **kwargs: object) -> TestResponse:
        return self.client.post(path, data=data, environ_base=self.environ, **kwargs)  # type: ignore[arg-type]

    def csrf(self, path: str) -> str:
        """The CSRF token of the form on ``path``."""
        page = self.get(path)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, f"no form on {path}: {page.status}"
        return found.group(1)

    def submit(self, path: str, data: dict[str, str], form_page: str | None = None) -> TestResponse:
        """POST ``data`` to ``path`` with the token of the form on ``form_page`` (or ``path``)."""
        token = self.csrf(form_page or path)
        return self.post(path, {**data, "csrf_token": token})

    def login(self, password: str = PORTAL_PASSWORD) -> TestResponse:
        return self.submit("/pki/login", {"password": password, "next": "/"})

    def cookie_header(self, response: TestResponse) -> str:
        return next(
            value
            for value in response.headers.getlist("Set-Cookie")
            if value.startswith(COOKIE_NAME + "=")
        )


def mounted(portal: object) -> DispatcherMiddleware:
    """The portal under /pki, as service.make_app mounts it."""
    return DispatcherMiddleware(Response("not the portal", status=404), {"/pki": portal})  # type: ignore[arg-type]


def messages_on(response: TestResponse) -> list[str]:
    """The texts of the messages and field errors on a page (unescaped)."""
    found = re.findall(r'class="(?:message|field-error)[^"]*"[^>]*>([^<]*)<', response.text)
    return [html.unescape(text) for text in found]


def field_error(response: TestResponse, name: str) -> str | None:
    found = re.search(rf'<span class="field-error" id="{name}-error">([^<]*)</span>', response.text)
    return html.unescape(found.group(1)) if found else None


def input_value(response: TestResponse, name: str) -> str | None:
    found = re.search(rf'<input [^>]*name="{name}" value="([^"]*)"', response.text)
    return html.unescape(found.group(1)) if found else None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def portal_dir(data_dir: Path) -> Path:
    set_password(data_dir, PORTAL_PASSWORD.encode())
    return data_dir


@pytest.fixture
def browser(portal_dir: Path, clock: Clock) -> Browser:
    """A signed-in browser on a portal whose CA server is not configured."""
    b = Browser(mounted(make_portal(portal_dir, clock=clock)))
    assert b.login().status_code == 303
    return b


@pytest.fixture
def ca_browser(configured_server: CAServer, portal_dir: Path, clock: Clock) -> Browser:
    """A signed-in browser on a portal whose CA server is configured (conftest's TestCA)."""
    b = Browser(mounted(make_portal(portal_dir, clock=clock)))
    assert b.login().status_code == 303
    return b


def pending_request(
    server: CAServer,
    *,
    filename: str = "webserver",
    contact_name: str = "Alice Admin",
    cn: str = "web.example",
    sans: str = "DNS:web.example,IP:192.0.2.7",
) -> PendingRequest:
    """Submit a fresh CSR to ``server`` as a client would; return it as stored."""
    key = keys.generate_key(keys.KeyType.EC256)
    csr = build_csr(
        key, names.subject_from_text(f"/C=US/O=Example/CN={cn}"), names.parse_sans(sans)
    )
    req = PendingRequest(
        name=f"client.example:IRIS:{filename}",
        hostname="client.example",
        instance="IRIS",
        filename=filename,
        contents=csr_pem(csr),
        subject=names.subject_text(csr.subject),
        contact_name=contact_name,
        contact_phone="+1 555 0100",
        contact_email="alice@example.com",
    )
    server.submit(req)
    return server.request(req.name)


# -- safety ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "remote_addr",
    ["192.0.2.10", "10.0.0.1", "2001:db8::1", "", "not-an-address"],
    ids=["ipv4", "private", "ipv6", "empty", "garbage"],
)
def test_non_loopback_client_is_refused(portal_dir: Path, remote_addr: str) -> None:
    b = Browser(mounted(make_portal(portal_dir)), remote_addr=remote_addr)
    for path in ("/pki/login", "/pki/", "/pki/static/portal.css"):
        response = b.get(path)
        assert response.status_code == 403
        assert "only clients on this machine" in response.text
        assert "Content-Security-Policy" in response.headers
    response = b.post("/pki/login", {"password": PORTAL_PASSWORD})
    assert response.status_code == 403
    assert COOKIE_NAME not in response.headers.get("Set-Cookie", "")


@pytest.mark.parametrize(
    "remote_addr",
    ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"],
    ids=["v4", "v4-range", "v6", "v4-mapped"],
)
def test_loopback_clients_are_answered(portal_dir: Path, remote_addr: str) -> None:
    b = Browser(mounted(make_portal(portal_dir)), remote_addr=remote_addr)
    assert b.get("/pki/login").status_code == 200


def test_allowed_network_is_answered_and_others_are_not(portal_dir: Path) -> None:
    app = mounted(make_portal(portal_dir, allow_networks=["192.0.2.0/24", "2001:db8::/32"]))
    assert Browser(app, "192.0.2.77").get("/pki/login").status_code == 200
    assert Browser(app, "2001:db8::5").get("/pki/login").status_code == 200
    assert Browser(app, "198.51.100.1").get("/pki/login").status_code == 403


def test_bad_allowed_network_is_refused_at_start(portal_dir: Path) -> None:
    from pki_soap.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"'192\.0\.2\.0/33' is not an IP address or network"):
        make_portal(portal_dir, allow_networks=["192.0.2.0/33"])


@pytest.mark.parametrize(
    "path",
    [
        "/pki/",
        "/pki/server/configure",
        "/pki/server/requests",
        "/pki/server/certificates",
        "/pki/server/certificates/0.pem",
        "/pki/server/reinitialize",
        "/pki/client/submit",
        "/pki/client/certificates",
        "/pki/client/files/TestCA.cer",
    ],
)
def test_unauthenticated_get_is_sent_to_login(portal_dir: Path, path: str) -> None:
    response = Browser(mounted(make_portal(portal_dir))).get(path)
    assert response.status_code == 303
    assert response.headers["Location"] == "/pki/login?next=" + path.removeprefix("/pki")


def test_unauthenticated_post_does_nothing(configured_server: CAServer, portal_dir: Path) -> None:
    b = Browser(mounted(make_portal(portal_dir)))
    token = b.csrf("/pki/login")  # a valid anonymous token: still no right to act
    response = b.post("/pki/server/reinitialize", {"csrf_token": token, "confirm": "yes"})
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/pki/login")
    assert configured_server.store.server_config() is not None


def test_login_page_says_how_to_set_a_password(data_dir: Path) -> None:
    response = Browser(mounted(make_portal(data_dir))).get("/pki/login")
    assert response.status_code == 200
    assert "No portal password is set yet" in response.text
    assert f"python server_app.py portal-password --data-dir {data_dir}" in response.text
    assert 'type="password"' not in response.text


def test_wrong_password_is_refused_next_to_the_field(portal_dir: Path) -> None:
    b = Browser(mounted(make_portal(portal_dir)))
    response = b.login("not the password")
    assert response.status_code == 401
    assert field_error(response, "password") == "Wrong password."
    assert b.get("/pki/").status_code == 303


def test_login_then_logout(portal_dir: Path) -> None:
    b = Browser(mounted(make_portal(portal_dir)))
    response = b.submit("/pki/login", {"password": PORTAL_PASSWORD, "next": "/server/requests"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/pki/server/requests"
    assert b.get("/pki/").status_code == 200
    response = b.submit("/pki/logout", {}, form_page="/pki/")
    assert response.headers["Location"] == "/pki/login"
    assert "Signed out." in messages_on(b.get("/pki/login"))
    assert b.get("/pki/").status_code == 303


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example"],
    ids=["scheme-relative", "absolute", "backslash"],
)
def test_login_never_redirects_off_the_portal(portal_dir: Path, target: str) -> None:
    b = Browser(mounted(make_portal(portal_dir)))
    response = b.submit("/pki/login", {"password": PORTAL_PASSWORD, "next": target})
    assert response.headers["Location"] == "/pki/"


def test_session_cookie_flags(portal_dir: Path) -> None:
    b = Browser(mounted(make_portal(portal_dir)))
    cookie = b.cookie_header(b.login())
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/pki/" in cookie
    assert "Secure" not in cookie
    secure = Browser(mounted(make_portal(portal_dir, secure_cookies=True)))
    assert "Secure" in secure.cookie_header(secure.login())


def test_secret_and_password_files_are_private(portal_dir: Path) -> None:
    make_portal(portal_dir)
    for name in (PASSWORD_FILE, SECRET_FILE):
        assert stat.S_IMODE((portal_dir / name).stat().st_mode) == 0o600
    assert PORTAL_PASSWORD not in (portal_dir / PASSWORD_FILE).read_text()
    assert "$argon2id$" in (portal_dir / PASSWORD_FILE).read_text()


def test_session_secret_is_made_once_and_a_short_one_replaced(tmp_path: Path) -> None:
    first = load_secret(tmp_path)
    assert len(first) == 32 and load_secret(tmp_path) == first
    (tmp_path / SECRET_FILE).write_bytes(b"short")
    renewed = load_secret(tmp_path)
    assert len(renewed) == 32 and renewed != first
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == [SECRET_FILE]


def test_cookie_signed_with_another_secret_is_refused() -> None:
    session = Session(authenticated=True, id="abc")
    value = SessionSigner(b"k" * 32).dumps(session)
    assert SessionSigner(b"k" * 32).loads(value) == session
    assert SessionSigner(b"j" * 32).loads(value) is None
    assert SessionSigner(b"k" * 32).loads(value + "x") is None


def test_forged_cookie_is_ignored(portal_dir: Path) -> None:
    b = Browser(mounted(make_portal(portal_dir)))
    b.login()
    value = b.client.get_cookie(COOKIE_NAME, path="/pki/")
    assert value is not None
    payload, _, mac = value.value.rpartition(".")
    b.client.set_cookie(COOKIE_NAME, payload + "." + mac[::-1], path="/pki/")
    assert b.get("/pki/").status_code == 303


def test_session_ends_after_inactivity(portal_dir: Path, clock: Clock) -> None:
    b = Browser(mounted(make_portal(portal_dir, clock=clock, idle_timeout=900)))
    b.login()
    clock.now += 899
    assert b.get("/pki/").status_code == 200  # activity renews the session
    clock.now += 899
    assert b.get("/pki/").status_code == 200
    clock.now += 901
    response = b.get("/pki/server/requests")
    assert response.status_code == 303
    assert response.headers["Location"] == "/pki/login?next=/server/requests"
    login_page = b.get(response.headers["Location"])
    assert "You were signed out after a period of inactivity." in messages_on(login_page)


def test_form_sent_after_inactivity_goes_to_login_and_does_nothing(
    configured_server: CAServer, portal_dir: Path, clock: Clock
) -> None:
    b = Browser(mounted(make_portal(portal_dir, clock=clock, idle_timeout=900)))
    b.login()
    token = b.csrf("/pki/server/reinitialize")
    clock.now += 1000
    response = b.post("/pki/server/reinitialize", {"csrf_token": token, "confirm": "yes"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/pki/login?next=/"
    assert configured_server.store.server_config() is not None


def test_new_password_ends_open_sessions(portal_dir: Path) -> None:
    b = Browser(mounted(make_portal(portal_dir)))
    b.login()
    assert b.get("/pki/").status_code == 200
    set_password(portal_dir, b"another password")
    response = b.get("/pki/")
    assert response.status_code == 303
    login_page = b.get(response.headers["Location"])
    assert "The portal password was changed; sign in again." in messages_on(login_page)


@pytest.mark.parametrize("token", [None, "", "wrong-token"], ids=["missing", "empty", "wrong"])
def test_post_without_the_right_csrf_token_is_refused(
    configured_server: CAServer, ca_browser: Browser, token: str | None
) -> None:
    data = {"confirm": "yes"}
    if token is not None:
        data["csrf_token"] = token
    response = ca_browser.post("/pki/server/reinitialize", data)
    assert response.status_code == 403
    assert "The form was refused" in response.text
    assert configured_server.store.server_config() is not None


def test_post_from_another_origin_is_refused(
    configured_server: CAServer, ca_browser: Browser
) -> None:
    token = ca_browser.csrf("/pki/server/reinitialize")
    response = ca_browser.post(
        "/pki/server/reinitialize",
        {"csrf_token": token, "confirm": "yes"},
        headers={"Origin": "http://evil.example"},
    )
    assert response.status_code == 403
    assert configured_server.store.server_config() is not None


def test_login_form_needs_its_csrf_token(portal_dir: Path) -> None:
    b = Browser(mounted(make_portal(portal_dir)))
    response = b.post("/pki/login", {"password": PORTAL_PASSWORD})
    assert response.status_code == 403
    assert b.get("/pki/").status_code == 303


def test_security_headers_on_every_page(ca_browser: Browser) -> None:
    for path in ("/pki/", "/pki/server/configure", "/pki/client/configure", "/pki/nope"):
        response = ca_browser.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src" not in policy  # default-src 'none' forbids every script
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = ca_browser.get("/pki/").text
    assert "<script" not in page
    assert " style=" not in page


def test_mounted_without_trailing_slash_redirects(portal_dir: Path) -> None:
    response = Browser(mounted(make_portal(portal_dir))).get("/pki")
    assert response.status_code == 308
    assert response.headers["Location"] == "/pki/"


def test_links_follow_the_mount_point(portal_dir: Path) -> None:
    app = DispatcherMiddleware(Response("", 404), {"/admin/pki": make_portal(portal_dir)})
    b = Browser(app)
    response = b.submit("/admin/pki/login", {"password": PORTAL_PASSWORD, "next": "/"})
    assert response.headers["Location"] == "/admin/pki/"
    page = b.get("/admin/pki/").text
    assert 'href="/admin/pki/server/configure"' in page
    assert 'href="/admin/pki/static/portal.css"' in page


def test_oversized_form_is_refused(ca_browser: Browser) -> None:
    token = ca_browser.csrf("/pki/server/configure")
    response = ca_browser.post(
        "/pki/server/configure", {"csrf_token": token, "root": "x" * 100_000}
    )
    assert response.status_code == 413


# -- CA server pages ------------------------------------------------------------------------------


def test_configure_creates_a_new_ca_and_shows_the_original_message(
    browser: Browser, portal_dir: Path
) -> None:
    response = browser.submit(
        "/pki/server/configure",
        {
            "root": "PortalCA", "directory": "CAServer", "password": "ca secret 1",
            "password_confirm": "ca secret 1", "country": "us", "organization": "Example",
            "common_name": "Portal Test CA", "ca_days": "3650", "days": "365",
            "key_type": "ec256", "instance": "PKI", "node": "ca.example",
        },
    )  # fmt: skip
    assert response.status_code == 200
    shown = messages_on(response)
    with Store.open(portal_dir) as store:
        cfg = store.server_config()
        ca_cert = store.certificate(0)
    assert cfg is not None and ca_cert is not None
    cer = portal_dir / "CAServer" / "PortalCA.cer"
    fingerprint = fingerprints.fingerprint(x509.load_pem_x509_certificate(cer.read_bytes()))
    assert shown == [
        messages.server_configured(created=True, cer=cer, fingerprint=fingerprint, mailed_to=None)
    ]
    assert ca_cert.subject == "/C=US/O=Example/CN=Portal Test CA"
    assert "ca secret 1" not in response.text


def test_configure_uses_existing_files(
    configured_server: CAServer, ca_browser: Browser, data_dir: Path, ca_password: bytes
) -> None:
    response = ca_browser.submit(
        "/pki/server/configure",
        {
            "root": "TestCA",
            "directory": "CAServer",
            "password": ca_password.decode(),
            "password_confirm": ca_password.decode(),
            "days": "90",
        },
    )
    assert response.status_code == 200
    (shown,) = messages_on(response)
    stem = data_dir / "CAServer" / "TestCA"
    assert shown.startswith(
        "Certificate Authority server successfully configured.\n"
        f"Using existing files: {stem}.cer and .key"
    )
    assert configured_server.config().days == 90


def test_configure_errors_sit_next_to_their_fields_and_values_stay(browser: Browser) -> None:
    response = browser.submit(
        "/pki/server/configure",
        {
            "root": "cache", "directory": "CAServer", "password": "one password",
            "password_confirm": "another one", "country": "USA", "organization": HOSTILE,
            "ca_days": "0", "days": "many", "smtp_port": "70000", "admin_email": "nobody",
            "smtp_password": "smtp secret", "smtp_password_confirm": "smtp secret",
        },
    )  # fmt: skip
    assert response.status_code == 400
    assert field_error(response, "root") == "File name root may not be 'cache'."
    assert field_error(response, "password_confirm") == "The two passwords differ."
    assert field_error(response, "country") == "Country must be a two-letter code, not 'USA'."
    assert field_error(response, "ca_days") == "Enter a number of days from 1 to 36600."
    assert field_error(response, "days") == "Enter a number of days from 1 to 36600."
    assert field_error(response, "smtp_port") == "Enter a port number from 1 to 65535."
    assert field_error(response, "admin_email") is not None
    # Everything typed comes back, except the passwords; the hostile value stays inert text.
    assert input_value(response, "root") == "cache"
    assert input_value(response, "organization") == HOSTILE
    assert "<script>" not in response.text
    assert input_value(response, "password") == ""
    assert input_value(response, "smtp_password") == ""
    assert "one password" not in response.text and "smtp secret" not in response.text


def test_configure_new_ca_needs_a_subject(browser: Browser) -> None:
    response = browser.submit(
        "/pki/server/configure",
        {
            "root": "NewCA",
            "directory": "CAServer",
            "password": "ca secret 1",
            "password_confirm": "ca secret 1",
            "days": "30",
            "ca_days": "300",
        },
    )
    assert response.status_code == 400
    assert field_error(response, "subject") == (
        "Fill in at least one subject field (C, ST, L, O, OU, CN)."
    )


def test_configure_wrong_password_for_existing_key(
    configured_server: CAServer, ca_browser: Browser
) -> None:
    response = ca_browser.submit(
        "/pki/server/configure",
        {
            "root": "TestCA",
            "directory": "CAServer",
            "password": "not the ca password",
            "password_confirm": "not the ca password",
            "days": "30",
        },
    )
    assert response.status_code == 400
    assert field_error(response, "password") is not None


def test_pending_list_and_process_page_show_everything_escaped(
    configured_server: CAServer, ca_browser: Browser
) -> None:
    req = pending_request(configured_server, contact_name=HOSTILE)
    listing = ca_browser.get("/pki/server/requests")
    assert listing.status_code == 200
    assert "webserver" in listing.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in listing.text
    assert "<script>" not in listing.text
    process_link = re.search(r'href="([^"]*/server/process\?name=[^"]+)"', listing.text)
    assert process_link is not None
    page = ca_browser.get(html.unescape(process_link.group(1)))
    assert page.status_code == 200
    text = html.unescape(page.text)
    csr = load_csr(req.contents)
    for expected in (
        "/C=US/O=Example/CN=web.example",
        "DNS:web.example, IP:192.0.2.7",
        "client.example",
        "IRIS",
        "webserver",
        "+1 555 0100",
        "alice@example.com",
        fingerprints.fingerprint(csr),
        "EC P-256",
        HOSTILE,
    ):
        assert expected in text, expected
    assert "<script>" not in page.text
    authority = configured_server.authority()
    for usage_label in (
        "TLS/SSL and XML security",
        "Intermediate Certificate Authority",
        "Code signing",
    ):
        assert f"Issued as {usage_label}" in text
    from pki_soap.ca.authority import Usage

    for line in authority.preview_extensions(csr, Usage.TLS):
        assert line in text
    assert "subjectAltName: DNS:web.example, IP:192.0.2.7" in text  # the requested side


def test_issue_with_wrong_password_shows_it_next_to_the_field(
    configured_server: CAServer, ca_browser: Browser
) -> None:
    req = pending_request(configured_server)
    path = f"/pki/server/process?name={req.name}"
    response = ca_browser.submit(path, {"usage": "tls", "password": "wrong password"})
    assert response.status_code == 400
    assert field_error(response, "password") is not None
    assert 'value="tls" checked' in response.text  # the usage choice is kept
    assert input_value(response, "password") == ""
    assert configured_server.pending() != []


def test_issue_needs_a_usage_and_a_password(
    configured_server: CAServer, ca_browser: Browser
) -> None:
    req = pending_request(configured_server)
    response = ca_browser.submit(f"/pki/server/process?name={req.name}", {})
    assert field_error(response, "usage") == "Choose the certificate usage."
    assert field_error(response, "password") == "Enter the CA private key password."


def test_issue_shows_the_original_message_and_the_certificate(
    configured_server: CAServer, ca_browser: Browser, ca_password: bytes
) -> None:
    req = pending_request(configured_server)
    response = ca_browser.submit(
        f"/pki/server/process?name={req.name}",
        {"usage": "tls", "password": ca_password.decode()},
    )
    assert response.status_code == 303
    assert configured_server.pending() == []
    (issued,) = list(configured_server.certificates())
    page = ca_browser.get(response.headers["Location"])
    assert messages.certificate_issued(issued.number, req.name) in messages_on(page)
    assert f"<td>{issued.number}</td>" in page.text
    assert "<td>TLS/SSL and XML security</td>" in page.text
    pem = ca_browser.get(f"/pki/server/certificates/{issued.number}.pem")
    assert pem.status_code == 200
    assert pem.headers["Content-Disposition"] == 'attachment; filename="webserver.cer"'
    assert pem.text == issued.contents
    cert = x509.load_pem_x509_certificate(pem.data)
    assert cert.issuer == configured_server.authority().certificate.subject


def test_process_unknown_request_goes_back_to_the_list(ca_browser: Browser) -> None:
    response = ca_browser.get("/pki/server/process?name=nobody:IRIS:nothing")
    assert response.headers["Location"] == "/pki/server/requests"
    page = ca_browser.get("/pki/server/requests")
    assert 'No pending Certificate Signing Request is named "nobody:IRIS:nothing".' in (
        messages_on(page)
    )


def test_long_name_in_a_flash_keeps_the_session(ca_browser: Browser) -> None:
    response = ca_browser.get("/pki/server/process?name=" + "n" * 5000)
    assert len(ca_browser.cookie_header(response)) < 3000
    page = ca_browser.get(response.headers["Location"])
    assert page.status_code == 200  # still signed in
    (message,) = messages_on(page)
    assert message.startswith('No pending Certificate Signing Request is named "nnn')
    assert message.endswith("…")


def test_delete_asks_then_deletes(configured_server: CAServer, ca_browser: Browser) -> None:
    req = pending_request(configured_server)
    confirm = ca_browser.get(f"/pki/server/delete?name={req.name}")
    assert confirm.status_code == 200
    assert configured_server.pending() != []  # the GET only asks
    response = ca_browser.submit(f"/pki/server/delete?name={req.name}", {})
    assert response.status_code == 303
    assert configured_server.pending() == []
    page = ca_browser.get(response.headers["Location"])
    assert messages.request_deleted(req.name) in messages_on(page)


def test_certificates_search(
    configured_server: CAServer, ca_browser: Browser, ca_password: bytes
) -> None:
    from pki_soap.ca.authority import Usage

    for filename, cn in (("alpha", "alpha.example"), ("beta", "beta.example")):
        req = pending_request(configured_server, filename=filename, cn=cn, sans=f"DNS:{cn}")
        configured_server.issue(req.name, Usage.TLS, ca_password)

    def numbers(query: str) -> list[str]:
        page = ca_browser.get(f"/pki/server/certificates?{query}")
        return re.findall(r"<tr>\s*<td>(\d+)</td>", page.text)

    assert numbers("") == ["0", "1", "2"]
    assert numbers("filename=BET") == ["2"]
    assert numbers("subject=alpha.example") == ["1"]
    assert numbers("number=0") == ["0"]
    assert numbers("hostname=client.example&instance=IRIS") == ["1", "2"]
    assert numbers("hostname=nowhere") == []


def test_unknown_certificate_download_is_404(ca_browser: Browser) -> None:
    assert ca_browser.get("/pki/server/certificates/99.pem").status_code == 404


def test_reinitialize_needs_the_confirmation(
    configured_server: CAServer, ca_browser: Browser
) -> None:
    pending_request(configured_server)
    page = ca_browser.get("/pki/server/reinitialize")
    assert "1 pending request " in page.text
    response = ca_browser.submit("/pki/server/reinitialize", {})
    assert response.status_code == 400
    assert field_error(response, "confirm") == "Tick the box to confirm."
    assert configured_server.store.server_config() is not None
    response = ca_browser.submit("/pki/server/reinitialize", {"confirm": "yes"})
    assert response.status_code == 303
    assert configured_server.store.server_config() is None
    assert configured_server.store.count_requests() == 0
    page = ca_browser.get(response.headers["Location"])
    assert messages.server_reinitialized() in messages_on(page)
    assert (configured_server.data_dir / "CAServer" / "TestCA.key").exists()


def test_overview_shows_the_ca(configured_server: CAServer, ca_browser: Browser) -> None:
    page = ca_browser.get("/pki/")
    assert configured_server.authority().fingerprint in page.text
    assert "0 pending requests" in page.text


# -- CA client pages that need no CA server ------------------------------------------------------


def test_client_configure_message_and_errors(browser: Browser, portal_dir: Path) -> None:
    response = browser.submit(
        "/pki/client/configure",
        {
            "server": "bad host!",
            "port": "0",
            "path": "isc",
            "contact_name": "",
            "contact_email": "nobody",
        },
    )
    assert response.status_code == 400
    assert field_error(response, "server") == "Enter a host name or an IP address."
    assert field_error(response, "port") == "Enter a port number from 1 to 65535."
    assert field_error(response, "path") is not None
    assert field_error(response, "contact_name") == "Required."
    assert input_value(response, "server") == "bad host!"
    response = browser.submit(
        "/pki/client/configure",
        {
            "server": "ca.example",
            "port": "52773",
            "path": "/isc/pki/PKI.CAServer.cls",
            "contact_name": "Bob",
            "contact_email": "bob@example.com",
            "hostname": "client1",
            "instance": "IRIS",
        },
    )
    assert response.status_code == 200
    assert messages_on(response) == [messages.client_configured()]
    with Store.open(portal_dir) as store:
        cfg = store.client_config()
    assert cfg is not None and (cfg.server, cfg.port, cfg.hostname) == (
        "ca.example",
        52773,
        "client1",
    )


def test_client_pages_say_when_not_configured(browser: Browser) -> None:
    for path in ("/pki/client/submit", "/pki/client/ca-certificate", "/pki/client/certificates"):
        assert "The client is not configured." in browser.get(path).text


def test_client_submit_checks_fields_before_anything(browser: Browser, portal_dir: Path) -> None:
    response = browser.submit(
        "/pki/client/submit",
        {
            "root": "bad/root",
            "password": "a",
            "password_confirm": "b",
            "sans": "URI:http://x",
            "common_name": HOSTILE,
        },
    )
    assert response.status_code == 400
    assert field_error(response, "root") is not None
    assert field_error(response, "password_confirm") == "The two passwords differ."
    assert field_error(response, "sans") is not None
    assert input_value(response, "common_name") == HOSTILE
    assert "<script>" not in response.text
    assert list(portal_dir.glob("*.key")) == []
    assert list(portal_dir.glob("*.csr")) == []


def test_saved_file_download_is_limited_to_certificate_files(
    browser: Browser, portal_dir: Path
) -> None:
    (portal_dir / "MyCA.cer").write_text("-----BEGIN CERTIFICATE-----\n")
    (portal_dir / "client.key").write_text("secret key")
    response = browser.get("/pki/client/files/MyCA.cer")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="MyCA.cer"'
    for name in ("client.key", "pki.sqlite3", "portal.json", "..cer", "missing.cer"):
        assert browser.get(f"/pki/client/files/{name}").status_code == 404
