"""The portal's Revoke action and certificate states, through werkzeug's test client."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from pki_soap.portal import make_portal
from pki_soap.portal.auth import set_password
from pki_soap.server.crl import Reason
from pki_soap.server.tasks import CAServer
from tests.revocation_support import issue
from tests.test_portal import PORTAL_PASSWORD, Browser, Clock, field_error, messages_on, mounted


@pytest.fixture
def ca_browser(configured_server: CAServer, data_dir: Path) -> Browser:
    set_password(data_dir, PORTAL_PASSWORD.encode())
    browser = Browser(mounted(make_portal(data_dir, clock=Clock())))
    assert browser.login().status_code == 303
    return browser


def _states(page_text: str) -> dict[str, str]:
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>.*?<td class=\"state (\w+)\">", page_text, re.S)
    return dict(rows)


def test_revoke_asks_for_confirmation_and_the_password_then_revokes(
    configured_server: CAServer, ca_browser: Browser, ca_password: bytes
) -> None:
    cert, _ = issue(configured_server, ca_password, "web")
    listing = ca_browser.get("/pki/server/certificates")
    assert _states(listing.text) == {"0": "valid", str(cert.number): "valid"}
    assert f"/pki/server/revoke?number={cert.number}" in html.unescape(listing.text)
    assert "/pki/server/revoke?number=0" not in html.unescape(listing.text)

    form = f"/pki/server/revoke?number={cert.number}"
    page = ca_browser.get(form)
    assert page.status_code == 200 and "web.example" in page.text
    assert configured_server.revocations().revocation(cert.number) is None  # GET only asks

    unconfirmed = ca_browser.submit(form, {"reason": "keyCompromise", "password": "x"})
    assert unconfirmed.status_code == 400
    assert field_error(unconfirmed, "confirm") == "Tick the box to confirm."
    wrong = ca_browser.submit(
        form, {"reason": "keyCompromise", "password": "wrong", "confirm": "yes"}
    )
    assert wrong.status_code == 400 and field_error(wrong, "password")
    bad_reason = ca_browser.submit(
        form, {"reason": "removeFromCRL", "password": ca_password.decode(), "confirm": "yes"}
    )
    assert field_error(bad_reason, "reason") == "Choose one of the reasons offered."
    assert configured_server.revocations().revocation(cert.number) is None

    done = ca_browser.submit(
        form, {"reason": "keyCompromise", "password": ca_password.decode(), "confirm": "yes"}
    )
    assert done.status_code == 303
    recorded = configured_server.revocations().revocation(cert.number)
    assert recorded is not None and recorded.reason == "keyCompromise"
    assert recorded.revoked_by == "portal administrator at 127.0.0.1"
    shown = ca_browser.get(done.headers["Location"])
    flashed = "\n".join(messages_on(shown))
    assert f"Certificate number {cert.number} revoked (reason: keyCompromise)." in flashed
    assert "CRL number 2 signed: 1 revoked certificate(s)" in flashed
    assert _states(shown.text) == {str(cert.number): "revoked"}
    # Revoked for good: no action offered, and asking anyway is refused.
    assert f"/pki/server/revoke?number={cert.number}" not in html.unescape(shown.text)
    again = ca_browser.get(form)
    assert again.status_code == 303
    assert any(
        "already revoked" in m for m in messages_on(ca_browser.get("/pki/server/certificates"))
    )


def test_a_hold_can_be_released_from_the_portal(
    configured_server: CAServer, ca_browser: Browser, ca_password: bytes
) -> None:
    cert, _ = issue(configured_server, ca_password, "held")
    configured_server.revoke(cert.number, Reason.CERTIFICATE_HOLD, ca_password, revoked_by="t")
    form = f"/pki/server/revoke?number={cert.number}"
    page = ca_browser.get(form)
    assert 'value="removeFromCRL"' in page.text and 'value="certificateHold"' not in page.text

    done = ca_browser.submit(
        form, {"reason": "removeFromCRL", "password": ca_password.decode(), "confirm": "yes"}
    )
    assert done.status_code == 303
    assert configured_server.revocations().revocation(cert.number) is None
    shown = ca_browser.get(done.headers["Location"])
    assert f"Certificate number {cert.number} released from hold: it is valid again." in (
        "\n".join(messages_on(shown))
    )


@pytest.mark.parametrize("number", ["0", "77", "abc", "9" * 40])
def test_revoke_of_what_cannot_be_revoked_goes_back_to_the_list(
    ca_browser: Browser, number: str
) -> None:
    response = ca_browser.get(f"/pki/server/revoke?number={number}")
    assert response.status_code == 303
    assert response.headers["Location"] == "/pki/server/certificates"
    assert messages_on(ca_browser.get("/pki/server/certificates"))


def test_revoke_needs_the_csrf_token(
    configured_server: CAServer, ca_browser: Browser, ca_password: bytes
) -> None:
    cert, _ = issue(configured_server, ca_password, "web")
    response = ca_browser.post(
        f"/pki/server/revoke?number={cert.number}",
        {"reason": "keyCompromise", "password": ca_password.decode(), "confirm": "yes"},
    )
    assert response.status_code == 403
    assert configured_server.revocations().revocation(cert.number) is None


def test_configure_keeps_the_revocation_settings(
    configured_server: CAServer, ca_browser: Browser, ca_password: bytes
) -> None:
    values = {
        "root": "TestCA",
        "directory": "CAServer",
        "password": ca_password.decode(),
        "password_confirm": ca_password.decode(),
        "days": "30",
        "public_url": "http://ca.example.test:52773",
        "crl_days": "3",
        "revocation_urls": "yes",
    }
    done = ca_browser.submit("/pki/server/configure", values)
    assert done.status_code == 200, messages_on(done)
    cfg = configured_server.config()
    assert (cfg.public_url, cfg.crl_days, cfg.revocation_urls) == (
        "http://ca.example.test:52773",
        3,
        True,
    )
    refused = ca_browser.submit("/pki/server/configure", {**values, "public_url": "gopher://x"})
    assert refused.status_code == 400
    assert field_error(refused, "public_url") == (
        "Public URL 'gopher://x' is not an http:// or https:// URL."
    )
    page = ca_browser.get("/pki/server/configure")
    assert 'value="http://ca.example.test:52773"' in page.text and 'value="3"' in page.text
    emptied = ca_browser.submit("/pki/server/configure", {**values, "public_url": ""})
    assert emptied.status_code == 200
    assert configured_server.config().public_url is None
