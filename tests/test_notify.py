"""Notifier against a real SMTP server (aiosmtpd on loopback) and a real SQLite outbox."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pki_soap.server.mail import LONGEST_RETRY, Notifier, retry_delay
from pki_soap.store import IssuedCertificate, PendingRequest, Revocation, ServerConfig, Store
from tests.smtp_support import PASSWORD, USER, MailServer

ADMIN = "ca-admin@example.test"
CONTACT = "jane.doe@example.test"
FINGERPRINT = "0C:DA:5F:06:04:C7:AE:64:61:9C:5C:29:35:49:88:0D:B6:E5:7D:98"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[MailServer]:
    with MailServer(tmp_path) as server:
        yield server


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[MailServer]:
    with MailServer(tmp_path, tls=True) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as opened:
        yield opened


def _config(port: int | None, **changes: object) -> ServerConfig:
    cfg = ServerConfig(
        root="TestCA",
        directory="CAServer",
        days=365,
        instance="PKITEST",
        node="ca.example.test",
        smtp_server="127.0.0.1" if port else None,
        smtp_port=port,
        admin_email=ADMIN,
    )
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def _request(**changes: object) -> PendingRequest:
    req = PendingRequest(
        name="web1:IRIS:web1_client",
        hostname="web1",
        instance="IRIS",
        filename="web1_client",
        contents="-----BEGIN CERTIFICATE REQUEST-----\n...\n-----END CERTIFICATE REQUEST-----\n",
        subject="/C=US/O=Example/CN=web1.example.test",
        contact_name="Jane Doe",
        contact_phone="+1 617 555 0100",
        contact_email=CONTACT,
    )
    for name, value in changes.items():
        setattr(req, name, value)
    return req


def _certificate(number: int = 31) -> IssuedCertificate:
    return IssuedCertificate(
        number=number,
        hostname="web1",
        instance="IRIS",
        filename="web1_client",
        contents="-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
        subject="/C=US/O=Example/CN=web1.example.test",
        usage="tls",
        issued=datetime.now(UTC),
        not_after=None,
    )


def _later(hours: float = 2) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def test_configure_confirmation_goes_to_the_admin(store: Store, smtp: MailServer) -> None:
    cfg = _config(smtp.port)
    store.save_server_config(cfg)

    assert Notifier(store).ca_configured(cfg, FINGERPRINT) == ADMIN

    [mail] = smtp.messages
    assert mail.rcpt_tos == [ADMIN]
    assert mail.subject == "Certificate Authority server configured"
    assert "at instance PKITEST on node ca.example.test" in mail.body
    assert FINGERPRINT in mail.body
    assert str(Path("CAServer") / "TestCA.cer") in mail.body
    assert "valid for 365 days" in mail.body
    assert store.undelivered() == []


def test_configure_confirmation_uses_the_settings_given_before_they_are_saved(
    store: Store, smtp: MailServer
) -> None:
    # The server may notify before it saves the new configuration.
    assert Notifier(store).ca_configured(_config(smtp.port), FINGERPRINT) == ADMIN
    assert [m.rcpt_tos for m in smtp.messages] == [[ADMIN]]


def test_new_request_notice_tells_the_admin_everything_to_verify(
    store: Store, smtp: MailServer
) -> None:
    store.save_server_config(_config(smtp.port))

    Notifier(store).request_received(_request(), FINGERPRINT)

    [mail] = smtp.messages
    assert mail.rcpt_tos == [ADMIN]
    assert mail.subject == 'New Certificate Signing Request "web1_client" from web1'
    for expected in (
        "Request name:   web1:IRIS:web1_client",
        "Host name:      web1",
        "Instance:       IRIS",
        "File name:      web1_client",
        "Subject:        /C=US/O=Example/CN=web1.example.test",
        "Contact name:   Jane Doe",
        "Contact phone:  +1 617 555 0100",
        f"Contact e-mail: {CONTACT}",
        FINGERPRINT,
        "  server_app.py issue web1:IRIS:web1_client --usage tls",
        "at instance PKITEST on node ca.example.test",
    ):
        assert expected in mail.body


def test_new_request_notice_marks_missing_fields(store: Store, smtp: MailServer) -> None:
    store.save_server_config(_config(smtp.port))

    Notifier(store).request_received(
        _request(subject="", contact_phone=None, contact_email=None), FINGERPRINT
    )

    [mail] = smtp.messages
    assert "Subject:        (none given)" in mail.body
    assert "Contact phone:  (none given)" in mail.body
    assert "Contact e-mail: (none given)" in mail.body


def test_issued_notice_tells_the_contact_how_to_download(store: Store, smtp: MailServer) -> None:
    store.save_server_config(_config(smtp.port))

    Notifier(store).certificate_issued(_certificate(31), _request())

    [mail] = smtp.messages
    assert mail.rcpt_tos == [CONTACT]
    assert mail.mail_from == ADMIN
    assert mail.subject == 'Certificate number 31 issued for "web1_client"'
    assert "Dear Jane Doe," in mail.body
    assert "Certificate number: 31" in mail.body
    assert "File name:          web1_client" in mail.body
    assert "client_app.py get 31" in mail.body
    assert "GetCertificate" in mail.body


def test_deleted_notice_tells_the_contact_it_was_not_approved(
    store: Store, smtp: MailServer
) -> None:
    store.save_server_config(_config(smtp.port))

    Notifier(store).request_deleted(_request())

    [mail] = smtp.messages
    assert mail.rcpt_tos == [CONTACT]
    assert mail.subject == 'Certificate Signing Request "web1_client" not approved'
    assert "was not approved" in mail.body
    assert ADMIN in mail.body


@pytest.mark.parametrize(
    "send",
    [
        lambda n: n.certificate_issued(_certificate(), _request(contact_email=None)),
        lambda n: n.request_deleted(_request(contact_email="")),
        # A contact field holding a name (as the wget client fills it) is never mailed.
        lambda n: n.certificate_revoked(
            dataclasses.replace(_certificate(), contact_email="ContactPerson"),
            Revocation(31, datetime.now(UTC), "keyCompromise", "admin", None),
        ),
        lambda n: n.hold_released(dataclasses.replace(_certificate(), contact_email="Jane Doe")),
    ],
    ids=["issued", "deleted", "revoked-to-a-name", "released-to-a-name"],
)
def test_no_contact_email_queues_nothing(store: Store, smtp: MailServer, send: object) -> None:
    store.save_server_config(_config(smtp.port))

    send(Notifier(store))  # type: ignore[operator]

    assert smtp.messages == []
    assert store.undelivered() == []
    assert store.due_mail(_later()) == []


def test_no_admin_email_queues_nothing(store: Store, smtp: MailServer) -> None:
    cfg = _config(smtp.port, admin_email=None)
    store.save_server_config(cfg)
    notifier = Notifier(store)

    assert notifier.ca_configured(cfg, FINGERPRINT) is None
    notifier.request_received(_request(), FINGERPRINT)

    assert smtp.messages == []
    assert store.undelivered() == []


def test_no_smtp_server_means_no_mail_at_all(store: Store, tmp_path: Path) -> None:
    cfg = _config(None)
    store.save_server_config(cfg)
    notifier = Notifier(store)

    assert notifier.ca_configured(cfg, FINGERPRINT) is None
    notifier.request_received(_request(), FINGERPRINT)
    notifier.certificate_issued(_certificate(), _request())
    notifier.request_deleted(_request())

    assert store.undelivered() == []
    assert notifier.deliver_due() == 0


def test_smtp_down_queues_then_delivers_once_when_back(store: Store, smtp: MailServer) -> None:
    store.save_server_config(_config(smtp.port))
    smtp.stop()
    notifier = Notifier(store, timeout=5)

    notifier.request_received(_request(), FINGERPRINT)  # must not raise
    notifier.certificate_issued(_certificate(), _request())

    waiting = store.undelivered()
    assert [m.recipient for m in waiting] == [ADMIN, CONTACT]
    assert all(m.attempts == 1 for m in waiting)
    assert all("cannot connect to SMTP server 127.0.0.1" in (m.last_error or "") for m in waiting)
    assert notifier.last_error is not None

    smtp.start()
    # Backed off: not due yet, so nothing is sent now.
    assert notifier.deliver_due() == 0
    assert smtp.messages == []

    later = Notifier(store, clock=_later)
    assert later.deliver_due() == 2
    assert later.deliver_due() == 0
    assert Notifier(store, clock=lambda: _later(48)).deliver_due() == 0
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == [ADMIN, CONTACT]
    assert store.undelivered() == []


def test_temporary_refusal_is_recorded_with_the_server_reply(
    store: Store, smtp: MailServer
) -> None:
    store.save_server_config(_config(smtp.port))
    smtp.refuse("451 4.3.0 Mailbox busy, try later")

    Notifier(store).request_deleted(_request())

    [mail] = store.undelivered()
    assert mail.last_error is not None
    assert "451" in mail.last_error
    assert "Mailbox busy" in mail.last_error
    smtp.refuse(None)
    assert Notifier(store, clock=_later).deliver_due() == 1
    assert len(smtp.messages) == 1


def test_a_refused_recipient_does_not_hold_up_the_others(store: Store, smtp: MailServer) -> None:
    store.save_server_config(_config(smtp.port))
    smtp.stop()
    notifier = Notifier(store)
    notifier.request_deleted(_request())
    notifier.request_received(_request(), FINGERPRINT)
    smtp.start()
    smtp.refuse("550 5.1.1 No such user here", only={CONTACT})

    assert Notifier(store, clock=_later).deliver_due() == 1

    assert [m.rcpt_tos for m in smtp.messages] == [[ADMIN]]
    [waiting] = store.undelivered()
    assert waiting.recipient == CONTACT
    assert waiting.last_error == f"recipient refused: {CONTACT}: 550 5.1.1 No such user here"


def test_starttls_and_login(store: Store, tls_smtp: MailServer) -> None:
    store.save_server_config(_config(tls_smtp.port, smtp_user=USER, smtp_password=PASSWORD))

    Notifier(store, cafile=tls_smtp.cafile).request_received(_request(), FINGERPRINT)

    [mail] = tls_smtp.messages
    assert mail.authenticated_as == USER
    assert mail.rcpt_tos == [ADMIN]
    assert store.undelivered() == []


def test_untrusted_smtp_certificate_is_not_used(store: Store, tls_smtp: MailServer) -> None:
    store.save_server_config(_config(tls_smtp.port, smtp_user=USER, smtp_password=PASSWORD))

    Notifier(store).request_received(_request(), FINGERPRINT)

    assert tls_smtp.messages == []
    [mail] = store.undelivered()
    assert "certificate of the SMTP server not trusted" in (mail.last_error or "")


def test_wrong_smtp_password_is_recorded(store: Store, tls_smtp: MailServer) -> None:
    store.save_server_config(_config(tls_smtp.port, smtp_user=USER, smtp_password="wrong"))

    Notifier(store, cafile=tls_smtp.cafile).request_received(_request(), FINGERPRINT)

    assert tls_smtp.messages == []
    [mail] = store.undelivered()
    assert (mail.last_error or "").startswith("SMTP error 535")
    assert "wrong" not in (mail.last_error or "")


def test_password_is_never_sent_without_tls(store: Store, smtp: MailServer) -> None:
    store.save_server_config(_config(smtp.port, smtp_user=USER, smtp_password=PASSWORD))

    Notifier(store).request_received(_request(), FINGERPRINT)

    assert smtp.messages == []
    [mail] = store.undelivered()
    assert "refusing to send the SMTP password unencrypted" in (mail.last_error or "")


def test_messages_wait_while_no_smtp_server_is_configured(store: Store, smtp: MailServer) -> None:
    store.save_server_config(_config(smtp.port))
    smtp.stop()
    Notifier(store).request_deleted(_request())
    store.save_server_config(_config(None))

    assert Notifier(store, clock=_later).deliver_due() == 0

    [mail] = store.undelivered()
    assert mail.last_error == "no SMTP server is configured"


def test_concurrent_retries_deliver_each_message_once(
    store: Store, smtp: MailServer, tmp_path: Path
) -> None:
    store.save_server_config(_config(smtp.port))
    smtp.stop()
    notifier = Notifier(store)
    for number in range(1, 7):
        notifier.certificate_issued(_certificate(number), _request())
    smtp.start()
    # Separate stores and notifiers, as separate processes would have.
    stores = [Store.open(tmp_path / "data") for _ in range(4)]
    senders = [Notifier(sender_store, clock=_later) for sender_store in stores]
    start = threading.Barrier(len(senders))
    counts: list[int] = []

    def run(sender: Notifier) -> None:
        start.wait()
        counts.append(sender.deliver_due())

    threads = [threading.Thread(target=run, args=(sender,)) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Whoever lost the race for the lock retries afterwards and finds nothing due.
    counts.extend(sender.deliver_due() for sender in senders)
    for sender_store in stores:
        sender_store.close()

    assert sum(counts) == 6
    subjects = sorted(m.subject for m in smtp.messages)
    assert subjects == sorted(
        f'Certificate number {n} issued for "web1_client"' for n in range(1, 7)
    )
    assert store.undelivered() == []


def test_retry_loop_delivers_and_stops(store: Store, smtp: MailServer) -> None:
    store.save_server_config(_config(smtp.port))
    smtp.stop()
    Notifier(store).request_deleted(_request())
    smtp.start()
    stop = threading.Event()
    retrier = Notifier(store, clock=_later)
    thread = threading.Thread(target=retrier.retry_until, args=(stop, 0.05))
    thread.start()
    try:
        for _ in range(200):
            if store.undelivered() == []:
                break
            threading.Event().wait(0.05)
    finally:
        stop.set()
        thread.join()

    assert len(smtp.messages) == 1
    assert store.undelivered() == []


def test_message_id_is_stable_and_unique(store: Store, smtp: MailServer) -> None:
    store.save_server_config(_config(smtp.port))
    notifier = Notifier(store)
    notifier.request_deleted(_request())
    notifier.request_deleted(_request(name="other", filename="other"))

    ids = [str(m.message["Message-ID"]) for m in smtp.messages]
    assert len(set(ids)) == 2
    assert all(i.startswith("<pki-soap.") and i.endswith("@example.test>") for i in ids)


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [
        (1, timedelta(minutes=1)),
        (2, timedelta(minutes=2)),
        (3, timedelta(minutes=4)),
        (6, timedelta(minutes=32)),
        (7, LONGEST_RETRY),
        (10_000, LONGEST_RETRY),
    ],
    ids=["first", "second", "third", "sixth", "capped", "huge"],
)
def test_retry_delay_doubles_up_to_an_hour(attempts: int, delay: timedelta) -> None:
    assert retry_delay(attempts) == delay
