"""Submission limits: rate per client address, pending caps, one mail per few minutes, one
ContactEmail address - so a flood of anonymous submissions cannot hurt the administrator."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pki_soap.ca import keys, names
from pki_soap.ca.csr import build_csr, csr_pem
from pki_soap.ca.keys import KeyType
from pki_soap.client.soap_client import CAClient
from pki_soap.errors import InvalidField, InvalidInput, TooManyRequests
from pki_soap.server.mail import DIGEST_INTERVAL, Notifier
from pki_soap.server.tasks import CAServer
from pki_soap.server.tasks.submit import SubmissionLimits, client_key
from pki_soap.soap.envelope import fault_bytes
from pki_soap.soap.wsdl import SERVICE_PATH
from pki_soap.store import PendingRequest, Store
from tests.service_support import (
    ACTION,
    GOLDEN,
    configure_ca,
    iris_submit,
    live_server,
    soap_post,
)
from tests.smtp_support import MailServer

ADMIN = "ca-admin@example.test"
RATE_MESSAGE = (
    "too many Certificate Signing Requests from 127.0.0.1: at most 2 per 60 seconds "
    "from one address; try again later"
)


def _csr_pem(cn: str = "host.example.com") -> str:
    key = keys.generate_key(KeyType.EC256)
    return csr_pem(build_csr(key, names.subject_from_text(f"/CN={cn}")))


def _iris_fields(filename: str, hostname: str = "client.example.com", **changes: str) -> dict:
    fields: dict[str, str | None] = {
        "Hostname": hostname,
        "Instance": "IRIS",
        "Filename": filename,
        "Contents": _csr_pem(),
        "ContactName": "Contact",
        "ContactEmail": "contact@example.com",
    }
    fields.update(changes)
    return fields


def _submit(url: str, fields: dict) -> tuple[int, bytes]:
    answer = soap_post(url, iris_submit(fields), ACTION + "SubmitCSR")
    return answer.status, answer.body


# -- rate per client address ------------------------------------------------------------------


def test_rate_fault_is_the_originals_shape() -> None:
    error = TooManyRequests(RATE_MESSAGE)
    assert (
        fault_bytes(error.fault_side, error.message, [error.detail_text])
        == (GOLDEN / "fault_rate_limit.xml").read_bytes()
    )


def test_rate_per_address_answers_a_server_fault_with_a_clear_message(data_dir: Path) -> None:
    configure_ca(data_dir)
    limits = SubmissionLimits(per_address=2, pending=0, pending_per_host=0)
    with live_server(data_dir, portal=False, limits=limits) as url:
        first = _submit(url, _iris_fields("first"))
        second = _submit(url, _iris_fields("second", hostname="other.example.com"))
        third = _submit(url, _iris_fields("third", hostname="third.example.com"))
        client = CAClient(url + SERVICE_PATH)
        with pytest.raises(TooManyRequests, match="at most 2 per 60 seconds from one address"):
            client.submit_csr(
                name="zeep.example.com:IRIS:zeep",
                hostname="zeep.example.com",
                instance="IRIS",
                filename="zeep",
                contents=_csr_pem(),
                subject="",
                contact_name="Zeep",
            )
        # Lookups are not submissions: they stay answered.
        assert soap_post(url, _get_ca(), ACTION + "GetCertificate").status == 200
    assert [first[0], second[0]] == [200, 200]
    assert third == (500, (GOLDEN / "fault_rate_limit.xml").read_bytes())
    with Store.open(data_dir) as store:
        assert store.count_requests() == 2


def _get_ca() -> bytes:
    from tests.service_support import wget_get_certificate

    return wget_get_certificate("0")


def test_rate_window_slides(configured_server: CAServer) -> None:
    window = timedelta(seconds=1)
    limits = SubmissionLimits(per_address=1, window=window, pending=0, pending_per_host=0)
    submit = functools.partial(configured_server.submit, limits=limits)
    submit(_request("one"), client_address="192.0.2.1")
    with pytest.raises(TooManyRequests, match="at most 1 per 1 seconds"):
        submit(_request("two"), client_address="192.0.2.1")
    submit(_request("three"), client_address="192.0.2.2")  # another address
    time.sleep(window.total_seconds() + 0.1)  # the first is now older than the window
    submit(_request("four"), client_address="192.0.2.1")
    assert configured_server.store.count_requests() == 3


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.9", "192.0.2.9"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, None),
    ],
)
def test_ipv6_clients_are_counted_per_64(address: str | None, key: str | None) -> None:
    assert client_key(address) == key


# -- pending caps -----------------------------------------------------------------------------


def _request(filename: str, hostname: str = "client.example.com") -> PendingRequest:
    return PendingRequest(
        name="",
        hostname=hostname,
        instance="IRIS",
        filename=filename,
        contents=_csr_pem(),
        subject="",
        contact_name="Contact",
    )


def test_pending_cap_per_hostname(configured_server: CAServer) -> None:
    limits = SubmissionLimits(per_address=0, pending=0, pending_per_host=2)
    submit = functools.partial(configured_server.submit, limits=limits)
    submit(_request("a"))
    submit(_request("b"))
    with pytest.raises(TooManyRequests, match=r"host client\.example\.com already has 2 pending"):
        submit(_request("c"))
    submit(_request("c", hostname="other.example.com"))
    # Processing one makes room again.
    configured_server.delete_request("client.example.com:IRIS:a")
    submit(_request("c"))
    assert configured_server.store.count_requests(hostname="client.example.com") == 2


def test_pending_cap_overall_over_soap(data_dir: Path) -> None:
    configure_ca(data_dir)
    limits = SubmissionLimits(per_address=0, pending=3, pending_per_host=0)
    with live_server(data_dir, portal=False, limits=limits) as url:
        answers = [_submit(url, _iris_fields(f"f{n}", hostname=f"h{n}.example")) for n in range(4)]
    assert [status for status, _ in answers] == [200, 200, 200, 500]
    assert b"already has 3 pending Certificate Signing Requests, its limit" in answers[3][1]
    assert b"<faultcode>SOAP-ENV:Server</faultcode>" in answers[3][1]
    with Store.open(data_dir) as store:
        assert store.count_requests() == 3


def test_service_has_limits_by_default(data_dir: Path) -> None:
    # 35,947 pending requests from one client in 45 s, before: now the 21st in a minute stops.
    configure_ca(data_dir)
    defaults = SubmissionLimits()
    with live_server(data_dir, portal=False) as url:
        statuses = [
            _submit(url, _iris_fields(f"n{n}", hostname=f"h{n}.example"))[0]
            for n in range(defaults.per_address + 1)
        ]
    assert statuses == [200] * defaults.per_address + [500]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(InvalidInput):
        SubmissionLimits(per_address=-1)
    with pytest.raises(InvalidInput):
        SubmissionLimits(window=timedelta(0))


# -- the administrator's mail: one digest per few minutes -------------------------------------


class _Clock:
    """The real time, moved forward by hand (the outbox stamps messages with the real time)."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[MailServer]:
    with MailServer(tmp_path) as server:
        yield server


def test_a_flood_of_submissions_sends_one_mail_then_one_digest(
    configured_server: CAServer, smtp: MailServer
) -> None:
    store = configured_server.store
    cfg = store.server_config()
    assert cfg is not None
    store.save_server_config(
        dataclasses.replace(cfg, smtp_server="127.0.0.1", smtp_port=smtp.port, admin_email=ADMIN)
    )
    clock = _Clock()
    notifier = Notifier(store, clock=clock)
    configured_server.notifier = notifier
    for n in range(300):  # before: 300 submissions, 300 mails through the SMTP account
        configured_server.submit(_request(f"flood{n}", hostname=f"h{n}.example"))
    [first] = smtp.messages
    assert first.subject == 'New Certificate Signing Request "flood0" from h0.example'

    assert notifier.deliver_due() == 0  # not yet: at most one mail per interval
    clock.ahead += DIGEST_INTERVAL
    assert notifier.deliver_due() == 1
    assert notifier.deliver_due() == 0  # nothing new arrived
    [_, digest] = smtp.messages
    assert digest.rcpt_tos == [ADMIN]
    assert digest.subject == "299 new Certificate Signing Requests"
    body = digest.body
    assert body.count("SHA-1 fingerprint of the request:") == 20  # described in full
    assert "  server_app.py show h1.example:IRIS:flood1" in body
    assert "Also received (279; `server_app.py pending` lists them all):" in body
    assert "  h200.example:IRIS:flood200  from h200.example  SHA-1 " in body
    assert "flood201" not in body
    assert "  ... and 99 more." in body
    assert len(body) < 64 * 1024


def test_requests_arriving_after_a_quiet_period_are_told_at_once(
    configured_server: CAServer, smtp: MailServer
) -> None:
    store = configured_server.store
    cfg = store.server_config()
    assert cfg is not None
    store.save_server_config(
        dataclasses.replace(cfg, smtp_server="127.0.0.1", smtp_port=smtp.port, admin_email=ADMIN)
    )
    clock = _Clock()
    configured_server.notifier = Notifier(store, clock=clock)
    configured_server.submit(_request("one"))
    clock.ahead += DIGEST_INTERVAL
    configured_server.submit(_request("two"))
    assert [m.subject for m in smtp.messages] == [
        'New Certificate Signing Request "one" from client.example.com',
        'New Certificate Signing Request "two" from client.example.com',
    ]


# -- ContactEmail: one address ----------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "a@example.com, b@example.org",
        "a@example.com;b@example.org",
        "Jane <jane@example.com>",
        "jane@example.com b@example.org",
        "a@b@example.com",
        "jane@",
        "@example.com",
        "jane@exa mple.com",
        "jane@*.example.com",
    ],
)
def test_contact_email_must_be_one_address(configured_server: CAServer, email: str) -> None:
    req = dataclasses.replace(_request("mail"), contact_email=email)
    with pytest.raises(InvalidField, match="ContactEmail must be one e-mail address"):
        configured_server.submit(req)
    assert configured_server.store.count_requests() == 0


def test_two_addresses_over_soap_are_a_client_fault(data_dir: Path) -> None:
    configure_ca(data_dir)
    with live_server(data_dir, portal=False) as url:
        status, body = _submit(
            url, _iris_fields("two", ContactEmail="a@example.com, b@example.org")
        )
    assert status == 400
    assert b"ERROR #7201: ContactEmail must be one e-mail address" in body


@pytest.mark.parametrize(
    "email", ["jane@example.com", "jane.doe+pki@mail.example.co.uk", "a@localhost"]
)
def test_one_address_is_accepted(configured_server: CAServer, email: str) -> None:
    configured_server.submit(dataclasses.replace(_request("ok"), contact_email=email))
    assert configured_server.request("client.example.com:IRIS:ok").contact_email == email


def test_a_name_in_the_email_field_is_kept_and_never_mailed(
    configured_server: CAServer, smtp: MailServer
) -> None:
    # The real wget client fills ContactEmail with the contact's name: IRIS stores it, so do
    # we; it is not an address, so no notice goes to it.
    store = configured_server.store
    cfg = store.server_config()
    assert cfg is not None
    store.save_server_config(dataclasses.replace(cfg, smtp_server="127.0.0.1", smtp_port=smtp.port))
    configured_server.notifier = Notifier(store)
    configured_server.submit(dataclasses.replace(_request("named"), contact_email="ContactPerson"))
    stored = configured_server.request("client.example.com:IRIS:named")
    assert stored.contact_email == "ContactPerson"
    configured_server.delete_request(stored.name)
    assert smtp.messages == []


def test_a_stored_address_list_is_never_mailed(
    configured_server: CAServer, smtp: MailServer
) -> None:
    # A request stored before the check: deleting it notifies nobody rather than two people.
    store = configured_server.store
    cfg = store.server_config()
    assert cfg is not None
    store.save_server_config(
        dataclasses.replace(cfg, smtp_server="127.0.0.1", smtp_port=smtp.port, admin_email=ADMIN)
    )
    configured_server.notifier = Notifier(store)
    req = dataclasses.replace(
        _request("old"), name="old", contact_email="a@example.com, b@example.org"
    )
    store.add_request(req)
    configured_server.delete_request("old")
    assert smtp.messages == []
