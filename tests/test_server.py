"""The CA server's tasks on a real store and CA files, with concurrent and killed issuers."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import stat
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from pki_soap import messages
from pki_soap.ca import fingerprints, keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import build_csr, csr_pem, load_csr
from pki_soap.ca.keys import KeyType
from pki_soap.ca.names import DEFAULT_INSTANCE
from pki_soap.errors import (
    CAFileError,
    DuplicateRequest,
    InvalidCsr,
    InvalidField,
    InvalidInput,
    InvalidRoot,
    MissingField,
    NotConfigured,
    PkiError,
    UnacceptableKey,
    UnknownRequest,
    WrongPassword,
)
from pki_soap.escaping import has_control
from pki_soap.server.mail import Notifier
from pki_soap.server.tasks import CAServer
from pki_soap.server.tasks.issue import IssueResult
from pki_soap.store import IssuedCertificate, PendingRequest, ServerConfig, Store
from tests.conftest import CA_DIRECTORY, CA_INSTANCE, CA_NODE, CA_ROOT, ISSUED_DAYS
from tests.engine_support import open_server

SUBJECT = names.subject_from_text("/C=US/O=Example/CN=Example Test CA")


def _csr_pem(common_name: str = "host.example", key_type: KeyType = KeyType.EC256) -> str:
    key = keys.generate_key(key_type)
    return csr_pem(build_csr(key, names.subject_from_text(f"/CN={common_name}")))


def _request(filename: str = "web_client", **changes: Any) -> PendingRequest:
    fields: dict[str, Any] = dict(
        name="",
        hostname="web.example",
        instance="IRIS",
        filename=filename,
        contents=changes.pop("contents", None) or _csr_pem(),
        subject="/CN=host.example",
        contact_name="Ann Example",
        contact_phone="+1 555 0100",
        contact_email="ann@example.com",
    )
    fields.update(changes)
    return PendingRequest(**fields)


def _srl(server: CAServer) -> int:
    return server.authority().serials.current()


class _Recorder:
    """Keeps every notice it is given (the CAServer's side of the notifier contract)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def ca_configured(self, cfg: ServerConfig, fingerprint: str) -> str | None:
        self.calls.append(("ca_configured", (cfg, fingerprint)))
        return cfg.admin_email

    def request_received(self, req: PendingRequest, fingerprint: str) -> None:
        self.calls.append(("request_received", (req, fingerprint)))

    def certificate_issued(self, cert: IssuedCertificate, req: PendingRequest) -> None:
        self.calls.append(("certificate_issued", (cert, req)))

    def request_deleted(self, req: PendingRequest) -> None:
        self.calls.append(("request_deleted", (req,)))


class _Broken:
    """A notifier whose every call fails, as a crashed mail subsystem would."""

    def ca_configured(self, cfg: ServerConfig, fingerprint: str) -> str | None:
        raise RuntimeError("mail subsystem down")

    def request_received(self, req: PendingRequest, fingerprint: str) -> None:
        raise RuntimeError("mail subsystem down")

    def certificate_issued(self, cert: IssuedCertificate, req: PendingRequest) -> None:
        raise RuntimeError("mail subsystem down")

    def request_deleted(self, req: PendingRequest) -> None:
        raise RuntimeError("mail subsystem down")


# -- configure ------------------------------------------------------------------------------


def test_configure_creates_the_ca_and_stores_it_as_number_zero(
    data_dir: Path, ca_password: bytes
) -> None:
    with open_server(data_dir) as server:
        result = server.configure(
            root="MyCA",
            directory="CAServer",
            password=ca_password,
            days=365,
            subject=SUBJECT,
            ca_days=3650,
            key_type=KeyType.EC256,
            instance="CAINST",
            node="ca.example",
        )
        ca_dir = data_dir / "CAServer"
        assert result.created is True
        assert result.paths.cer == ca_dir / "MyCA.cer"
        assert result.mailed_to is None
        assert (ca_dir / "MyCA.srl").read_text() == "00\n"
        assert stat.S_IMODE((ca_dir / "MyCA.key").stat().st_mode) == 0o600
        ca_cert = x509.load_pem_x509_certificate((ca_dir / "MyCA.cer").read_bytes())
        assert result.fingerprint == fingerprints.fingerprint(ca_cert)
        assert server.config() == ServerConfig("MyCA", "CAServer", 365, "CAINST", "ca.example")
        zero = server.certificate("0")
        assert zero is not None
        assert (zero.number, zero.filename, zero.hostname, zero.instance) == (
            0,
            "MyCA",
            "ca.example",
            "CAINST",
        )
        assert zero.subject == "/C=US/O=Example/CN=Example Test CA"
        assert zero.contents == (ca_dir / "MyCA.cer").read_text()
        assert zero.not_after == ca_cert.not_valid_after_utc
        assert list(server.certificates()) == []
        message = messages.server_configured(
            created=result.created,
            cer=result.paths.cer,
            fingerprint=result.fingerprint,
            mailed_to=result.mailed_to,
        )
        assert "Created new files:" in message


def test_configure_defaults_instance_and_node(data_dir: Path, ca_password: bytes) -> None:
    with open_server(data_dir) as server:
        server.configure(
            root="CA",
            directory="CAServer",
            password=ca_password,
            days=10,
            subject=SUBJECT,
            ca_days=100,
            key_type=KeyType.EC256,
        )
        cfg = server.config()
        assert (cfg.instance, cfg.node) == (DEFAULT_INSTANCE, socket.gethostname())
        assert "at instance PKI on node " + socket.gethostname() in server.submit(_request())


def test_configure_with_an_absolute_directory(
    data_dir: Path, tmp_path: Path, ca_password: bytes
) -> None:
    elsewhere = tmp_path / "removable" / "ca"
    with open_server(data_dir) as server:
        result = server.configure(
            root="CA",
            directory=str(elsewhere),
            password=ca_password,
            days=10,
            subject=SUBJECT,
            ca_days=100,
            key_type=KeyType.EC256,
        )
        assert result.paths.cer == elsewhere / "CA.cer"
        assert (elsewhere / "CA.key").exists()
        assert server.authority().paths.directory == elsewhere


def test_configure_again_reuses_files_and_updates_settings(
    configured_server: CAServer, ca_password: bytes
) -> None:
    server = configured_server
    before = server.authority()
    server.issue(_issued_name(server), Usage.TLS, ca_password)
    recorder = _Recorder()
    server.notifier = recorder
    result = server.configure(
        root=CA_ROOT,
        directory=CA_DIRECTORY,
        password=ca_password,
        days=90,
        smtp_server="smtp.example",
        smtp_port=587,
        smtp_user="mailer",
        smtp_password="mail secret",
        admin_email="admin@example.com",
    )
    assert result.created is False
    assert result.fingerprint == before.fingerprint
    assert result.mailed_to == "admin@example.com"
    cfg = server.config()
    assert (cfg.days, cfg.smtp_server, cfg.smtp_port, cfg.admin_email) == (
        90,
        "smtp.example",
        587,
        "admin@example.com",
    )
    # Instance and node were not given again: the earlier ones stay.
    assert (cfg.instance, cfg.node) == (CA_INSTANCE, CA_NODE)
    assert _srl(server) == 1
    assert [c.number for c in server.certificates()] == [1]
    assert [name for name, _ in recorder.calls] == ["ca_configured"]
    assert recorder.calls[0][1][1] == before.fingerprint


def test_configure_again_with_a_wrong_password_changes_nothing(
    configured_server: CAServer,
) -> None:
    with pytest.raises(WrongPassword):
        configured_server.configure(
            root=CA_ROOT, directory=CA_DIRECTORY, password=b"wrong", days=90
        )
    assert configured_server.config().days == ISSUED_DAYS


CONFIGURE_REFUSALS: list[tuple[str, dict[str, Any], type[PkiError], str]] = [
    ("root-cache", {"root": "cache"}, InvalidRoot, "may not be 'cache'"),
    ("root-path", {"root": "../up"}, InvalidRoot, "only letters"),
    ("no-directory", {"directory": " "}, MissingField, "directory is required"),
    ("directory-newline", {"directory": "CA\nServer"}, InvalidField, "control character"),
    ("days-zero", {"days": 0}, InvalidInput, "issued certificates must be"),
    ("days-bool", {"days": True}, InvalidInput, "issued certificates must be"),
    ("ca-days-negative", {"ca_days": -1}, InvalidInput, "CA certificate must be"),
    ("smtp-port", {"smtp_port": 70000}, InvalidInput, "SMTP port 70000"),
    (
        "admin-email-header",
        {"admin_email": "a@example.com\nBcc: all@example.com"},
        InvalidField,
        "e-mail",
    ),
    ("smtp-server-cr", {"smtp_server": "smtp\r.example"}, InvalidField, "SMTP server"),
    ("long-instance", {"instance": "I" * 51}, InvalidField, "Instance is longer than 50"),
    ("long-node", {"node": "n" * 101}, InvalidField, "Hostname is longer than 100"),
    ("no-subject", {"subject": None}, InvalidInput, "needs a subject"),
    ("no-ca-days", {"ca_days": None}, InvalidInput, "validity in days"),
    ("empty-password", {"password": b""}, InvalidInput, "password is required"),
]


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [case[1:] for case in CONFIGURE_REFUSALS],
    ids=[case[0] for case in CONFIGURE_REFUSALS],
)
def test_configure_refuses_bad_settings_before_touching_files(
    data_dir: Path,
    ca_password: bytes,
    changes: dict[str, Any],
    error: type[PkiError],
    match: str,
) -> None:
    settings: dict[str, Any] = dict(
        root="CA",
        directory="CAServer",
        password=ca_password,
        days=30,
        subject=SUBJECT,
        ca_days=100,
        key_type=KeyType.EC256,
    )
    settings.update(changes)
    with open_server(data_dir) as server:
        with pytest.raises(error, match=match):
            server.configure(**settings)
        assert server.store.server_config() is None
        assert server.store.certificate(0) is None
    assert not (data_dir / "CAServer").exists()


def test_nothing_works_before_configure(data_dir: Path, ca_password: bytes) -> None:
    with open_server(data_dir) as server:
        for call in (
            server.config,
            server.authority,
            lambda: server.submit(_request()),
            lambda: server.issue("x", Usage.TLS, ca_password),
        ):
            with pytest.raises(NotConfigured, match="not configured"):
                call()
        assert server.store.count_requests() == 0
        assert server.certificate("0") is None
        assert list(server.certificates()) == []


def test_open_uses_the_real_notifier(data_dir: Path) -> None:
    with open_server(data_dir) as server:
        assert isinstance(server.notifier, Notifier)


# -- submit ---------------------------------------------------------------------------------


def test_submit_stores_the_request_and_answers_the_sentence(configured_server: CAServer) -> None:
    recorder = _Recorder()
    configured_server.notifier = recorder
    req = _request(contents=_csr_pem().replace("\n", "\r\n"))
    answer = configured_server.submit(req)
    assert answer == (
        'Certificate Signing Request "web_client" successfully submitted to the '
        "Certificate Authority at instance PKI on node ca.example"
    )
    [stored] = configured_server.pending()
    assert stored.name == "web.example:IRIS:web_client"
    assert "\r" not in stored.contents and stored.contents.endswith("-----\n")
    csr = load_csr(stored.contents)
    assert csr_pem(csr) == req.contents.replace("\r\n", "\n")
    assert stored.received is not None
    assert (stored.contact_name, stored.contact_phone, stored.contact_email) == (
        "Ann Example",
        "+1 555 0100",
        "ann@example.com",
    )
    assert recorder.calls == [("request_received", (stored, fingerprints.fingerprint(csr)))]


def test_submit_keeps_a_given_name_and_empty_optional_fields(
    configured_server: CAServer,
) -> None:
    configured_server.submit(
        _request(name="chosen name", subject="", contact_phone="", contact_email=None)
    )
    stored = configured_server.request("chosen name")
    assert (stored.subject, stored.contact_phone, stored.contact_email) == ("", None, None)


def test_duplicate_pending_name_is_refused_and_the_first_kept(
    configured_server: CAServer,
) -> None:
    configured_server.submit(_request(contact_name="First"))
    with pytest.raises(DuplicateRequest, match=r"ID key not unique for extent 'PKI\.CSR'"):
        configured_server.submit(_request(contact_name="Second"))
    assert [r.contact_name for r in configured_server.pending()] == ["First"]


def _tampered_csr() -> str:
    pem = _csr_pem()
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(Encoding.DER))
    der[-1] ^= 0x01  # last byte of the signature
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _weak_csr() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return csr_pem(build_csr(key, names.subject_from_text("/CN=weak.example")))


SUBMIT_REFUSALS: list[tuple[str, dict[str, Any], type[PkiError], str]] = [
    ("no-hostname", {"hostname": ""}, MissingField, "Hostname is required"),
    ("blank-instance", {"instance": "  "}, MissingField, "Instance is required"),
    ("no-filename", {"filename": ""}, MissingField, "Filename is required"),
    ("no-contents", {"contents": ""}, MissingField, "Contents is required"),
    ("no-contact", {"contact_name": None}, MissingField, "ContactName is required"),
    ("long-name", {"name": "n" * 201}, InvalidField, "Name is longer than 200"),
    ("long-hostname", {"hostname": "h" * 101}, InvalidField, "Hostname is longer than 100"),
    ("long-instance", {"instance": "i" * 51}, InvalidField, "Instance is longer than 50"),
    ("long-filename", {"filename": "f" * 51}, InvalidField, "Filename is longer than 50"),
    ("long-subject", {"subject": "/CN=" + "s" * 197}, InvalidField, "Subject is longer"),
    ("long-contact", {"contact_name": "c" * 51}, InvalidField, "ContactName is longer"),
    ("long-phone", {"contact_phone": "5" * 51}, InvalidField, "ContactPhone is longer"),
    ("long-email", {"contact_email": "e" * 51}, InvalidField, "ContactEmail is longer"),
    ("long-contents", {"contents": "A" * 5001}, InvalidField, "Contents is longer than 5000"),
    ("nul-hostname", {"hostname": "web\x00"}, InvalidField, "Hostname holds a control"),
    ("tab-instance", {"instance": "IR\tIS"}, InvalidField, "Instance holds a control"),
    ("newline-name", {"name": "a\nb"}, InvalidField, "Name holds a control"),
    (
        "header-injection",
        {"contact_email": "a@b.c\r\nBcc: x@y.z"},
        InvalidField,
        "ContactEmail holds a control",
    ),
    ("del-subject", {"subject": "/CN=x\x7f"}, InvalidField, "Subject holds a control"),
    ("c1-contact", {"contact_name": "Ann\x85"}, InvalidField, "ContactName holds a control"),
    (
        "nul-in-pem",
        {"contents": "-----BEGIN CERTIFICATE REQUEST-----\n\x00\n"},
        InvalidField,
        "Contents holds a control",
    ),
    (
        "lone-cr-in-pem",
        {"contents": "-----BEGIN CERTIFICATE REQUEST-----\rAA==\n"},
        InvalidField,
        "Contents holds a control",
    ),
    ("root-cache", {"filename": "CACHE"}, InvalidRoot, "may not be 'cache'"),
    ("root-path", {"filename": "../etc"}, InvalidRoot, "only letters"),
    ("not-pem", {"contents": "hello"}, InvalidCsr, "no PEM block"),
    ("two-csrs", {"contents": lambda: _csr_pem() + _csr_pem()}, InvalidCsr, "more than one"),
    ("bad-signature", {"contents": _tampered_csr}, InvalidCsr, "signature"),
    ("weak-key", {"contents": _weak_csr}, UnacceptableKey, "RSA 1024"),
]


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [case[1:] for case in SUBMIT_REFUSALS],
    ids=[case[0] for case in SUBMIT_REFUSALS],
)
def test_submit_refusals_store_nothing(
    configured_server: CAServer, changes: dict[str, Any], error: type[PkiError], match: str
) -> None:
    recorder = _Recorder()
    configured_server.notifier = recorder
    # Callables make their CSR only when the case runs (not at import, not in child processes).
    values = {key: value() if callable(value) else value for key, value in changes.items()}
    with pytest.raises(error, match=match):
        configured_server.submit(dataclasses.replace(_request(), **values))
    assert configured_server.store.count_requests() == 0
    assert recorder.calls == []


def test_submit_refuses_a_certificate_in_place_of_a_csr(configured_server: CAServer) -> None:
    ca_pem = configured_server.authority().certificate_pem
    with pytest.raises(InvalidCsr, match="not a 'CERTIFICATE REQUEST'"):
        configured_server.submit(_request(contents=ca_pem))
    assert configured_server.pending() == []


# -- issue ----------------------------------------------------------------------------------


def _issued_name(server: CAServer, filename: str = "web_client", **changes: Any) -> str:
    server.submit(_request(filename, **changes))
    return f"web.example:IRIS:{filename}"


@pytest.mark.parametrize("usage", list(Usage), ids=[u.value for u in Usage])
def test_issue_signs_stores_and_removes_the_request(
    configured_server: CAServer, ca_password: bytes, usage: Usage
) -> None:
    server = configured_server
    recorder = _Recorder()
    server.notifier = recorder
    name = _issued_name(server)
    req = server.request(name)
    issued = server.issue(name, usage, ca_password)
    cert = x509.load_pem_x509_certificate(issued.contents.encode())
    cert.verify_directly_issued_by(server.authority().certificate)
    assert issued.number == cert.serial_number == 1 == _srl(server)
    assert (issued.hostname, issued.instance, issued.filename) == (
        "web.example",
        "IRIS",
        "web_client",
    )
    assert issued.subject == "/CN=host.example"
    assert issued.usage == usage.value
    assert issued.not_after == cert.not_valid_after_utc
    assert server.certificate("1") == issued
    assert server.pending() == []
    assert recorder.calls[-1] == ("certificate_issued", (issued, req))
    assert [call for call, _ in recorder.calls] == ["request_received", "certificate_issued"]
    assert messages.certificate_issued(issued.number, name) == (
        f'Certificate number 1 issued for Certificate Signing Request "{name}"'
    )


def test_issue_with_a_wrong_password_consumes_nothing(configured_server: CAServer) -> None:
    name = _issued_name(configured_server)
    with pytest.raises(WrongPassword):
        configured_server.issue(name, Usage.TLS, b"not the password")
    assert _srl(configured_server) == 0
    assert [r.name for r in configured_server.pending()] == [name]
    assert list(configured_server.certificates()) == []


def test_issue_an_unknown_request_consumes_nothing(
    configured_server: CAServer, ca_password: bytes
) -> None:
    with pytest.raises(UnknownRequest, match='"nobody"'):
        configured_server.issue("nobody", Usage.TLS, ca_password)
    assert _srl(configured_server) == 0


def test_issue_an_unsignable_request_consumes_no_number(
    configured_server: CAServer, ca_password: bytes
) -> None:
    # A request stored by an older version, before the key policy refused weak keys.
    weak = _request(name="legacy", contents=_weak_csr())
    configured_server.store.add_request(weak)
    with pytest.raises(UnacceptableKey):
        configured_server.issue("legacy", Usage.TLS, ca_password)
    assert _srl(configured_server) == 0
    assert [r.name for r in configured_server.pending()] == ["legacy"]


def test_a_serial_file_behind_the_store_is_advanced_past_the_highest_number(
    configured_server: CAServer, ca_password: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server = configured_server
    server.issue(_issued_name(server, "first"), Usage.TLS, ca_password)
    server.issue(_issued_name(server, "second"), Usage.TLS, ca_password)
    srl = server.authority().paths.srl
    srl.write_text("01\n")  # restored from an old backup
    third = _issued_name(server, "third")

    with caplog.at_level(logging.WARNING, logger="pki_soap.ca.serial"):
        issued = server.issue(third, Usage.TLS, ca_password)

    assert issued.number == 3
    assert x509.load_pem_x509_certificate(issued.contents.encode()).serial_number == 3
    assert server.pending() == []
    assert [c.number for c in server.certificates()] == [1, 2, 3]
    assert srl.read_text() == "03\n"
    assert "was at 1, behind number 2 already issued" in caplog.text


# -- delete, list, get, reinitialize --------------------------------------------------------


def test_delete_request(configured_server: CAServer) -> None:
    recorder = _Recorder()
    configured_server.notifier = recorder
    name = _issued_name(configured_server)
    removed = configured_server.delete_request(name)
    assert removed.name == name
    assert configured_server.pending() == []
    assert recorder.calls[-1] == ("request_deleted", (removed,))
    with pytest.raises(UnknownRequest):
        configured_server.delete_request(name)


@pytest.fixture
def three_issued(configured_server: CAServer, ca_password: bytes) -> CAServer:
    """Certificates 1 (web/IRIS), 2 (db/IRIS), 3 (web/IRIS)."""
    for filename, hostname in (
        ("one", "web.example"),
        ("two", "db.example"),
        ("three", "web.example"),
    ):
        configured_server.submit(_request(filename, hostname=hostname))
        configured_server.issue(f"{hostname}:IRIS:{filename}", Usage.TLS, ca_password)
    return configured_server


@pytest.mark.parametrize(
    ("hostname", "instance", "numbers"),
    [
        ("", "", [1, 2, 3]),
        (None, None, [1, 2, 3]),
        ("web.example", "IRIS", [1, 3]),
        ("db.example", "IRIS", [2]),
        ("web.example", "", []),
        ("", "IRIS", []),
        ("WEB.EXAMPLE", "iris", [1, 3]),  # IRIS collates SQLUPPER: case is ignored
        (CA_NODE, CA_INSTANCE, []),
    ],
    ids=[
        "all",
        "all-none",
        "mine",
        "other",
        "hostname-only",
        "instance-only",
        "case-differs",
        "ca-never-listed",
    ],
)
def test_certificates_wire_semantics(
    three_issued: CAServer, hostname: str | None, instance: str | None, numbers: list[int]
) -> None:
    assert [c.number for c in three_issued.certificates(hostname, instance)] == numbers


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("3", 3),
        (2, 2),
        ("4", None),
        ("00", None),
        ("01", None),
        (" 0", None),
        ("0 ", None),
        ("+1", None),
        ("-1", None),
        ("1.0", None),
        ("abc", None),
        ("", None),
        ("\u0661", None),
        ("9" * 60, None),
    ],
    ids=lambda value: repr(value)[:12],
)
def test_certificate_matches_the_number_as_iris_does(
    three_issued: CAServer, number: str | int, expected: int | None
) -> None:
    found = three_issued.certificate(number)
    assert (found.number if found else None) == expected
    if expected == 0:
        assert found is not None and found.filename == CA_ROOT


def test_reinitialize_keeps_files_and_numbering_continues(
    configured_server: CAServer, ca_password: bytes
) -> None:
    server = configured_server
    first = server.issue(_issued_name(server, "first"), Usage.TLS, ca_password)
    server.submit(_request("waiting"))
    paths = server.authority().paths
    files = {path: path.read_bytes() for path in (paths.cer, paths.key)}
    server.reinitialize()
    with pytest.raises(NotConfigured):
        server.config()
    assert server.pending() == []
    assert server.certificate("0") is None and server.certificate(str(first.number)) is None
    assert {path: path.read_bytes() for path in files} == files
    assert paths.srl.read_text() == "01\n"
    result = server.configure(
        root=CA_ROOT, directory=CA_DIRECTORY, password=ca_password, days=ISSUED_DAYS
    )
    assert result.created is False
    second = server.issue(_issued_name(server, "second"), Usage.TLS, ca_password)
    assert second.number == first.number + 1


# -- notifier failures ----------------------------------------------------------------------


def test_a_failing_notifier_never_fails_an_operation(
    data_dir: Path, ca_password: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pki_soap.server.tasks")
    with Store.open(data_dir) as store:
        server = CAServer(store, data_dir, notifier=_Broken())
        result = server.configure(
            root="CA",
            directory="CAServer",
            password=ca_password,
            days=10,
            subject=SUBJECT,
            ca_days=100,
            key_type=KeyType.EC256,
            smtp_server="smtp.example",
            smtp_password="mail secret",
            admin_email="admin@example.com",
        )
        assert result.mailed_to is None
        server.submit(_request("a"))
        server.submit(_request("b"))
        issued = server.issue("web.example:IRIS:a", Usage.TLS, ca_password)
        server.delete_request("web.example:IRIS:b")
        assert issued.number == 1
        assert server.pending() == []
    logged = caplog.text
    for what in ("ca_configured", "request_received", "certificate_issued", "request_deleted"):
        assert f"notification {what} failed: RuntimeError: mail subsystem down" in logged
    assert "mail secret" not in logged
    assert ca_password.decode() not in logged


# -- several processes ----------------------------------------------------------------------


def test_threads_sharing_one_server_issue_distinct_numbers(
    configured_server: CAServer, ca_password: bytes
) -> None:
    requests = _submit_many(configured_server, 24)
    errors: list[BaseException] = []

    def issue_share(share: list[str]) -> None:
        try:
            for name in share:
                configured_server.issue(name, Usage.TLS, ca_password)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=issue_share, args=(requests[n::3],)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [c.number for c in configured_server.certificates()] == list(range(1, 25))
    assert configured_server.pending() == []


def _issue_all(data_dir: str, names_to_issue: list[str], password: bytes, start: Any) -> None:
    """Child process: wait for the start signal, then issue every named request."""
    start.wait()
    with open_server(Path(data_dir)) as server:
        for name in names_to_issue:
            server.issue(name, Usage.TLS, password)


def _submit_many(server: CAServer, count: int) -> list[str]:
    submitted = []
    for index in range(count):
        filename = f"host{index:03d}"
        server.submit(_request(filename, contents=_csr_pem(f"host{index}.example")))
        submitted.append(f"web.example:IRIS:{filename}")
    return submitted


def test_two_processes_issuing_at_once_never_share_a_number(
    configured_server: CAServer, data_dir: Path, ca_password: bytes
) -> None:
    requests = _submit_many(configured_server, 400)
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Event()
    workers = [
        spawn.Process(target=_issue_all, args=(str(data_dir), half, ca_password, start))
        for half in (requests[:200], requests[200:])
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=600)
    assert [worker.exitcode for worker in workers] == [0, 0]
    issued = list(configured_server.certificates())
    assert [c.number for c in issued] == list(range(1, 401))
    assert sorted(c.filename for c in issued) == sorted(r.split(":")[-1] for r in requests)
    assert configured_server.pending() == []
    assert _srl(configured_server) == 400
    serials = {
        x509.load_pem_x509_certificate(c.contents.encode()).serial_number: c.number for c in issued
    }
    assert all(serial == number for serial, number in serials.items())


def _crash_after_taking_a_number(data_dir: str, name: str) -> None:
    """Child process: die by SIGKILL inside the issue transaction, just after the number."""
    with open_server(Path(data_dir)) as server, server.store.transaction():
        server.store.request(name)
        server.authority().serials.take()
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_crash_after_taking_a_number_leaves_only_a_gap(
    configured_server: CAServer, data_dir: Path, ca_password: bytes
) -> None:
    name = _issued_name(configured_server)
    spawn = multiprocessing.get_context("spawn")
    child = spawn.Process(target=_crash_after_taking_a_number, args=(str(data_dir), name))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    assert _srl(configured_server) == 1
    assert [r.name for r in configured_server.pending()] == [name]
    assert configured_server.certificate("1") is None
    issued = configured_server.issue(name, Usage.TLS, ca_password)
    assert issued.number == 2


def _kill_once_issued(child: Any, start: Any, data_dir: Path, count: int) -> None:
    """Start ``child``, SIGKILL it once ``count`` certificates are stored (or it ended)."""
    child.start()
    start.set()
    with Store.open(data_dir) as observer:
        while observer.count_certificates() < count and child.is_alive():
            time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL


def _survivors(server: CAServer, requests: list[str]) -> tuple[list[IssuedCertificate], set[str]]:
    """What a killed issuer left: (issued certificates, pending names), each request in one."""
    issued = list(server.certificates())
    pending = {r.name for r in server.pending()}
    issued_names = [f"{c.hostname}:{c.instance}:{c.filename}" for c in issued]
    assert issued and pending  # killed in the middle: some issued, some still waiting
    # Each request is pending or issued, exactly once.
    assert len(issued_names) == len(set(issued_names))
    assert pending.isdisjoint(issued_names)
    assert pending | set(issued_names) == set(requests)
    return issued, pending


def test_a_process_killed_while_issuing_leaves_store_and_serial_consistent(
    configured_server: CAServer, data_dir: Path, ca_password: bytes
) -> None:
    requests = _submit_many(configured_server, 200)
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Event()
    child = spawn.Process(target=_issue_all, args=(str(data_dir), requests, ca_password, start))
    _kill_once_issued(child, start, data_dir, 5)

    with open_server(data_dir) as server:
        old_srl = _srl(server)
        issued, pending = _survivors(server, requests)
        # Numbers: distinct, in order of issue, none above the serial file, at most one gap.
        numbers = [c.number for c in issued]
        assert numbers == list(range(1, len(numbers) + 1))
        assert old_srl in (len(numbers), len(numbers) + 1)
        nxt = server.issue(sorted(pending)[0], Usage.TLS, ca_password)
        assert nxt.number == old_srl + 1 > max(numbers)
        assert _srl(server) == nxt.number


# -- issuing with the decrypted key, and many at once ----------------------------------------


def test_issue_with_the_decrypted_key(configured_server: CAServer, ca_password: bytes) -> None:
    server = configured_server
    key = server.authority().private_key(ca_password)
    issued = server.issue(_issued_name(server), Usage.TLS, key=key)
    cert = x509.load_pem_x509_certificate(issued.contents.encode())
    cert.verify_directly_issued_by(server.authority().certificate)
    assert issued.number == cert.serial_number == 1 == _srl(server)
    assert server.pending() == []


def test_issue_needs_exactly_one_of_password_and_key(
    configured_server: CAServer, ca_password: bytes
) -> None:
    server = configured_server
    name = _issued_name(server)
    key = server.authority().private_key(ca_password)
    with pytest.raises(InvalidInput, match="exactly one of the CA key password and the CA key"):
        server.issue(name, Usage.TLS)
    with pytest.raises(InvalidInput, match="exactly one"):
        server.issue(name, Usage.TLS, ca_password, key=key)
    other = keys.generate_key(KeyType.EC256)
    with pytest.raises(CAFileError, match="not the CA certificate's key"):
        server.issue(name, Usage.TLS, key=other)
    with pytest.raises(CAFileError, match="not the CA certificate's key"):
        server.issue_many([name], Usage.TLS, key=other)
    assert _srl(server) == 0
    assert [r.name for r in server.pending()] == [name]


def test_issue_many_issues_in_order_with_one_serial_write_per_batch(
    configured_server: CAServer, ca_password: bytes
) -> None:
    server = configured_server
    recorder = _Recorder()
    server.notifier = recorder
    requests = _submit_many(server, 7)
    before = {r.name: r for r in server.pending()}
    srl = server.authority().paths.srl
    batches: list[tuple[list[str], int, int]] = []

    def on_batch(results: list[IssueResult]) -> None:
        # Called after the commit: another connection sees the batch, the SRL is ahead.
        with Store.open(server.data_dir) as other:
            stored = other.count_certificates()
        batches.append(([r.name for r in results], stored, int(srl.read_text(), 16)))

    key = server.authority().private_key(ca_password)
    results = server.issue_many(requests, Usage.CODESIGN, key=key, batch=3, on_batch=on_batch)

    assert [r.name for r in results] == requests
    assert [r.error for r in results] == [None] * 7
    issued = [r.certificate for r in results]
    assert [c.number for c in issued if c] == list(range(1, 8))
    assert batches == [(requests[0:3], 3, 3), (requests[3:6], 6, 6), (requests[6:], 7, 7)]
    assert list(server.certificates()) == issued
    assert server.pending() == []
    for result in results:
        assert result.certificate is not None
        assert result.request == before[result.name]
        cert = x509.load_pem_x509_certificate(result.certificate.contents.encode())
        assert cert.serial_number == result.certificate.number
        assert result.certificate.usage == "codesign"
    notices = [args for call, args in recorder.calls if call == "certificate_issued"]
    assert notices == [(r.certificate, r.request) for r in results]


def test_issue_many_reports_each_request_it_cannot_issue_and_goes_on(
    configured_server: CAServer, ca_password: bytes
) -> None:
    server = configured_server
    first, second = _submit_many(server, 2)
    server.store.add_request(_request(name="legacy", contents=_weak_csr()))  # older version
    server.store.add_request(_request(name="garbled", contents="not a CSR at all"))
    asked = ["nobody", first, "legacy", "garbled", first, second]
    key = server.authority().private_key(ca_password)

    results = server.issue_many(asked, Usage.TLS, key=key)

    outcomes = [
        (r.name, r.certificate.number if r.certificate else type(r.error).__name__) for r in results
    ]
    assert outcomes == [
        ("nobody", "UnknownRequest"),
        (first, 1),
        ("legacy", "UnacceptableKey"),
        ("garbled", "InvalidCsr"),
        (first, "UnknownRequest"),  # named twice: issued once
        (second, 2),  # the number the refused CSR did not use
    ]
    assert 'no pending Certificate Signing Request "nobody"' in str(results[0].error)
    assert "RSA 1024" in str(results[2].error)
    assert results[2].request is not None and results[2].request.name == "legacy"
    # The refused CSRs stay pending; the one number reserved for "legacy" is a gap.
    assert sorted(r.name for r in server.pending()) == ["garbled", "legacy"]
    assert [c.number for c in server.certificates()] == [1, 2]
    assert _srl(server) == 3


@pytest.mark.parametrize("batch", [0, -5, True, 1.5], ids=["zero", "negative", "bool", "float"])
def test_issue_many_refuses_a_bad_batch_size(
    configured_server: CAServer, ca_password: bytes, batch: Any
) -> None:
    name = _issued_name(configured_server)
    key = configured_server.authority().private_key(ca_password)
    with pytest.raises(InvalidInput, match="batch size"):
        configured_server.issue_many([name], Usage.TLS, key=key, batch=batch)
    assert [r.name for r in configured_server.pending()] == [name]


def test_issue_many_of_nothing_takes_no_number(
    configured_server: CAServer, ca_password: bytes
) -> None:
    key = configured_server.authority().private_key(ca_password)
    assert configured_server.issue_many([], Usage.TLS, key=key) == []
    results = configured_server.issue_many(["nobody"], Usage.TLS, key=key)
    assert isinstance(results[0].error, UnknownRequest)
    assert _srl(configured_server) == 0


def test_issue_many_continues_after_the_highest_number_when_the_serial_file_is_behind(
    configured_server: CAServer, ca_password: bytes
) -> None:
    server = configured_server
    requests = _submit_many(server, 5)
    key = server.authority().private_key(ca_password)
    server.issue_many(requests[:2], Usage.TLS, key=key)
    server.authority().paths.srl.write_text("00\n")  # restored from an old backup

    results = server.issue_many(requests[2:], Usage.TLS, key=key, batch=2)

    assert [r.certificate.number for r in results if r.certificate] == [3, 4, 5]
    assert server.pending() == []
    assert [c.number for c in server.certificates()] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "opposite",
    [True, False],
    ids=["from-both-ends", "same-order"],  # same order: both sign the same batches, one wins
)
def test_two_processes_issuing_many_at_once_issue_each_request_once(
    configured_server: CAServer, data_dir: Path, ca_password: bytes, opposite: bool
) -> None:
    requests = _submit_many(configured_server, 400)
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Event()
    outcomes = spawn.Queue()
    workers = [
        spawn.Process(
            target=_issue_many_child, args=(str(data_dir), order, ca_password, start, outcomes)
        )
        for order in (requests, requests[::-1] if opposite else requests)
    ]
    for worker in workers:
        worker.start()
    start.set()
    reported = [outcomes.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]

    issued_by_child = [issued for issued, _ in reported]
    assert sum(len(issued) for issued in issued_by_child) == 400
    # Whatever one child issued, the other saw as no longer pending.
    assert all(issued + unknown == 400 for issued, unknown in ((len(i), u) for i, u in reported))
    issued = list(configured_server.certificates())
    assert sorted(c.filename for c in issued) == sorted(r.split(":")[-1] for r in requests)
    numbers = [c.number for c in issued]
    assert len(set(numbers)) == 400
    assert sorted(numbers) == sorted(issued_by_child[0] + issued_by_child[1])
    assert configured_server.pending() == []
    assert _srl(configured_server) >= max(numbers)
    for cert in issued:
        assert x509.load_pem_x509_certificate(cert.contents.encode()).serial_number == cert.number


def test_a_process_killed_while_issuing_many_leaves_store_and_serial_consistent(
    configured_server: CAServer, data_dir: Path, ca_password: bytes
) -> None:
    requests = _submit_many(configured_server, 400)
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Event()
    outcomes = spawn.Queue()
    child = spawn.Process(
        target=_issue_many_child,
        args=(str(data_dir), requests, ca_password, start, outcomes, 10),
    )
    _kill_once_issued(child, start, data_dir, 25)

    with open_server(data_dir) as server:
        old_srl = _srl(server)
        issued, pending = _survivors(server, requests)
        # Whole batches committed, numbered from 1 on; the killed batch's block is a gap.
        numbers = [c.number for c in issued]
        assert numbers == list(range(1, len(numbers) + 1))
        assert len(numbers) % 10 == 0
        assert len(numbers) <= old_srl <= len(numbers) + 10
        key = server.authority().private_key(ca_password)
        rest = server.issue_many(sorted(pending), Usage.TLS, key=key)
        new_numbers = [r.certificate.number for r in rest if r.certificate]
        assert len(new_numbers) == len(pending)
        assert new_numbers == list(range(old_srl + 1, old_srl + 1 + len(pending)))
        assert server.pending() == []


class _MeddledStore(Store):
    """A real store that lets a test act just before the next write transaction begins."""

    meddle: Any = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        meddle, self.meddle = self.meddle, None
        if meddle is not None:
            meddle()  # as another process would, between issue_many's read and its write
        with super().transaction():
            yield


def test_issue_many_leaves_requests_decided_meanwhile_to_whoever_decided(
    data_dir: Path, ca_password: bytes
) -> None:
    with CAServer(_MeddledStore(data_dir / "pki.sqlite3"), data_dir) as server:
        server.configure(
            root=CA_ROOT,
            directory=CA_DIRECTORY,
            password=ca_password,
            days=ISSUED_DAYS,
            subject=SUBJECT,
            ca_days=100,
            key_type=KeyType.EC256,
        )
        deleted, anew, kept = _submit_many(server, 3)
        replacement = _request("host001", contents=_csr_pem("replacement.example"))
        store = server.store
        assert isinstance(store, _MeddledStore)

        def another_process() -> None:
            with Store.open(data_dir) as other:
                other.remove_request(deleted)
                other.remove_request(anew)
                other.add_request(dataclasses.replace(replacement, name=anew))

        store.meddle = another_process
        key = server.authority().private_key(ca_password)
        results = server.issue_many([deleted, anew, kept], Usage.TLS, key=key)

        assert [type(r.error).__name__ for r in results[:2]] == ["UnknownRequest"] * 2
        assert "submitted anew by someone else meanwhile" in str(results[1].error)
        assert results[2].certificate is not None and results[2].certificate.number == 3
        # The new submission under the same name stays pending, untouched.
        assert server.request(anew).contents == replacement.contents
        assert [c.number for c in server.certificates()] == [3]
        assert _srl(server) == 3  # numbers 1 and 2 were signed for nothing: gaps


def _issue_many_child(
    data_dir: str,
    names_to_issue: list[str],
    password: bytes,
    start: Any,
    outcomes: Any,
    batch: int = 100,
) -> None:
    """Child process: decrypt the key, wait for the start signal, issue_many, report."""
    with open_server(Path(data_dir)) as server:
        key = server.authority().private_key(password)
        start.wait()
        results = server.issue_many(names_to_issue, Usage.TLS, key=key, batch=batch)
    issued = [r.certificate.number for r in results if r.certificate]
    unknown = sum(isinstance(r.error, UnknownRequest) for r in results)
    outcomes.put((issued, unknown))


# -- the lean listing and the control-character check ---------------------------------------


@pytest.mark.parametrize(
    ("hostname", "instance", "numbers"),
    [
        ("", "", [1, 2, 3]),
        (None, None, [1, 2, 3]),
        ("web.example", "IRIS", [1, 3]),
        ("db.example", "IRIS", [2]),
        ("web.example", "", []),
        ("", "IRIS", []),
        (None, "IRIS", []),
        ("WEB.EXAMPLE", "iris", [1, 3]),  # IRIS collates SQLUPPER: case is ignored
        (CA_NODE, CA_INSTANCE, []),
    ],
    ids=[
        "all",
        "all-none",
        "mine",
        "other",
        "hostname-only",
        "instance-only",
        "instance-only-none",
        "case-differs",
        "ca-never-listed",
    ],
)
def test_certificate_rows_have_the_wire_semantics_of_certificates(
    three_issued: CAServer, hostname: str | None, instance: str | None, numbers: list[int]
) -> None:
    rows = list(three_issued.certificate_rows(hostname, instance))
    assert [row[0] for row in rows] == numbers
    assert rows == [
        (c.number, c.hostname, c.instance, c.filename)
        for c in three_issued.certificates(hostname, instance)
    ]


def test_certificate_rows_carry_number_hostname_instance_filename(
    three_issued: CAServer,
) -> None:
    assert list(three_issued.certificate_rows("web.example", "IRIS")) == [
        (1, "web.example", "IRIS", "one"),
        (3, "web.example", "IRIS", "three"),
    ]


@pytest.mark.parametrize("allowed", ["", "\n"], ids=["none-allowed", "lf-allowed"])
def test_control_characters_are_exactly_unicode_category_cc(allowed: str) -> None:
    every_character = [chr(code) for code in range(sys.maxunicode + 1)]
    expected = {ch for ch in every_character if unicodedata.category(ch) == "Cc"} - set(allowed)
    found = {ch for ch in every_character if has_control(ch, allowed)}
    assert found == expected
    assert len(expected) == 65 - len(allowed)
    assert has_control("line\nbreak") is True
    assert has_control("line\nbreak", "\n") is False
    assert has_control("tab\there", "\n") is True
    assert has_control("", "") is False
