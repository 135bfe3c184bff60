"""The portal against guessers, stolen cookies and floods: login throttling, sessions ended
on the server, the right option in the 403 page, a paginated request list, policy shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pki_soap.ca import keys
from pki_soap.ca.csr import build_csr, csr_pem
from pki_soap.ca.keys import KeyType
from pki_soap.portal import make_portal
from pki_soap.portal.app import COOKIE_NAME
from pki_soap.portal.auth import ACCOUNT_RULE, ADDRESS_RULE, set_password
from pki_soap.server.tasks import CAServer
from pki_soap.store import PendingRequest
from tests.test_portal import (
    PORTAL_PASSWORD,
    Browser,
    Clock,
    field_error,
    messages_on,
    mounted,
    pending_request,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def portal_dir(data_dir: Path) -> Path:
    set_password(data_dir, PORTAL_PASSWORD.encode())
    return data_dir


# -- sign-in throttling -----------------------------------------------------------------------


def test_guessing_from_one_address_is_slowed_and_says_so(portal_dir: Path, clock: Clock) -> None:
    app = mounted(make_portal(portal_dir, clock=clock))
    guesser = Browser(app, remote_addr="127.0.0.1")
    statuses = [guesser.login(f"guess {n}").status_code for n in range(30)]
    # Before: 30 wrong passwords in 3.5 s, then the right one accepted.  Now the first few
    # are answered, then every try waits, unchecked, however right it is.
    assert statuses == [401] * ADDRESS_RULE.free + [429] * (30 - ADDRESS_RULE.free)
    refused = guesser.login(PORTAL_PASSWORD)
    assert refused.status_code == 429
    assert messages_on(refused) == ["Too many failed sign-ins. Wait 1 second before trying again."]
    assert guesser.get("/pki/").status_code == 303  # not signed in
    # The delay doubles with each further failure.
    clock.now += 1
    assert guesser.login("wrong again").status_code == 401
    assert "Wait 2 seconds" in messages_on(guesser.login(PORTAL_PASSWORD))[0]
    clock.now += 2
    assert guesser.login(PORTAL_PASSWORD).status_code == 303
    # A success forgets the failures.
    assert guesser.login("one typo").status_code == 401


def test_another_address_is_not_slowed_by_a_guesser(portal_dir: Path, clock: Clock) -> None:
    app = mounted(make_portal(portal_dir, clock=clock, allow_networks=["192.0.2.0/24"]))
    guesser = Browser(app, remote_addr="192.0.2.66")
    for n in range(ADDRESS_RULE.free + 3):
        guesser.login(f"guess {n}")
    admin = Browser(app, remote_addr="127.0.0.1")
    assert admin.login().status_code == 303


def test_guessing_from_many_addresses_is_slowed_for_the_account(
    portal_dir: Path, clock: Clock
) -> None:
    app = mounted(make_portal(portal_dir, clock=clock, allow_networks=["192.0.2.0/24"]))
    for n in range(ACCOUNT_RULE.free):
        one_try = Browser(app, remote_addr=f"192.0.2.{n + 1}")
        assert one_try.login(f"guess {n}").status_code == 401
    fresh = Browser(app, remote_addr="192.0.2.200")
    assert fresh.login(PORTAL_PASSWORD).status_code == 429
    clock.now += ACCOUNT_RULE.first
    assert fresh.login(PORTAL_PASSWORD).status_code == 303


# -- sessions ended on the server -------------------------------------------------------------


def test_a_copied_cookie_stops_working_at_logout(portal_dir: Path, clock: Clock) -> None:
    app = mounted(make_portal(portal_dir, clock=clock))
    owner = Browser(app)
    owner.login()
    cookie = owner.client.get_cookie(COOKIE_NAME, path="/pki/")
    assert cookie is not None
    thief = Browser(app)
    thief.client.set_cookie(COOKIE_NAME, cookie.value, path="/pki/")
    assert thief.get("/pki/").status_code == 200  # a copy works while the session is open
    owner.submit("/pki/logout", {}, form_page="/pki/")
    answer = thief.get("/pki/server/requests")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/pki/login?next=/server/requests"
    assert "Your session has ended; sign in again." in messages_on(thief.get("/pki/login"))


def test_a_new_password_ends_sessions_on_the_server(portal_dir: Path, clock: Clock) -> None:
    portal = make_portal(portal_dir, clock=clock)
    b = Browser(mounted(portal))
    b.login()
    cookie = b.client.get_cookie(COOKIE_NAME, path="/pki/")
    assert cookie is not None
    session = portal.signer.loads(cookie.value)
    assert session is not None and session.id
    assert portal.store().portal_session_exists(session.id)
    set_password(portal_dir, b"another password", store=portal.store())
    assert not portal.store().portal_session_exists(session.id)
    assert b.get("/pki/").status_code == 303


# -- the 403 page -----------------------------------------------------------------------------


def test_refused_network_is_told_the_real_option(portal_dir: Path) -> None:
    answer = Browser(mounted(make_portal(portal_dir)), remote_addr="192.0.2.10").get("/pki/")
    assert answer.status_code == 403
    assert "--portal-network" in answer.text
    assert "--portal-allow" not in answer.text


# -- the request list, a page at a time -------------------------------------------------------


def _flood(server: CAServer, count: int) -> None:
    key = keys.generate_key(KeyType.EC256)
    csr = build_csr(key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "f.example")]))
    pem = csr_pem(csr)
    with server.store.transaction():
        for n in range(count):
            server.store.add_request(
                PendingRequest(
                    name=f"flood:{n:05d}",
                    hostname="flood.example",
                    instance="IRIS",
                    filename=f"f{n:05d}",
                    contents=pem,
                    subject="/CN=f.example",
                    contact_name="Flood",
                )
            )


def test_request_list_is_paginated(
    configured_server: CAServer, portal_dir: Path, clock: Clock
) -> None:
    _flood(configured_server, 2120)  # before: every request on one page (11 MB for 36k)
    b = Browser(mounted(make_portal(portal_dir, clock=clock)))
    b.login()
    first = b.get("/pki/server/requests")
    assert first.status_code == 200
    assert first.text.count(">Process</a>") == 50
    assert "Requests 1–50 of 2120, oldest first." in first.text
    assert 'href="/pki/server/requests?page=2">Next page' in first.text
    assert len(first.text) < 100_000
    last = b.get("/pki/server/requests?page=43")
    assert last.text.count(">Process</a>") == 20
    assert "Requests 2101–2120 of 2120" in last.text
    assert "flood:02119" in last.text and "flood:02099" not in last.text
    assert b.get("/pki/server/requests?page=999").text.count("Process</a>") == 20
    assert b.get("/pki/server/requests?page=x").text.count("Process</a>") == 50


# -- the policy, before the administrator chooses ---------------------------------------------


def test_process_page_says_what_the_policy_refuses(
    configured_server: CAServer, portal_dir: Path, clock: Clock
) -> None:
    ok = pending_request(configured_server, filename="fine")
    key = keys.generate_key(KeyType.EC256)
    csr = build_csr(
        key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "*.com")]),
        [x509.DNSName("*.com")],
    )
    configured_server.store.add_request(
        PendingRequest(
            name="c:IRIS:wild",
            hostname="c",
            instance="IRIS",
            filename="wild",
            contents=csr_pem(csr),
            subject="/CN=*.com",
            contact_name="W",
        )
    )
    b = Browser(mounted(make_portal(portal_dir, clock=clock)))
    b.login()
    page = b.get("/pki/server/process?name=c:IRIS:wild")
    assert "The issuance policy refuses this request" in page.text
    assert re.search(r"DNS:&#39;\*\.com&#39;: a wildcard needs at least two labels", page.text)
    fine = b.get(f"/pki/server/process?name={ok.name}")
    assert "The issuance policy refuses" not in fine.text
    assert field_error(fine, "usage") is None
