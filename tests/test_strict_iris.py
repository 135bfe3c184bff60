"""IRIS-strict mode: every deviation of wire/protocol.DEVIATIONS, in both modes, over HTTP.

The strict side is compared with golden bytes from wire-protocol.md: tests/golden/ holds its
§3.1 SubmitCSR answer and §3.2 ListMy/empty DataSets; tests/golden/strict/ holds the §3.2
ListAll layout with rows 9 and 10 in both orders and §5 Client faults for an unexpected tag
and a refused CSR.  ``strict/no_soapaction.html`` is the one exception: wire-protocol.md says
only that IRIS answers a POST without SOAPAction with an error page, not SOAP (§1.1, Q15); the
page's bytes are ours.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pki_soap.ca.authority import Usage
from pki_soap.errors import InvalidCsr
from pki_soap.server.tasks.submit import SubmissionLimits
from pki_soap.soap.deviations import DEVIATIONS
from pki_soap.soap.wsdl import SERVICE_PATH
from pki_soap.store import IssuedCertificate, Store
from tests.engine_support import open_server
from tests.service_support import (
    ACTION,
    CA_PASSWORD,
    GOLDEN,
    REPOSITORY,
    Answer,
    configure_ca,
    free_port,
    iris_list_certificates,
    iris_submit,
    live_server,
    openssl_csr,
    raw_request,
    soap_post,
    start_serve,
)

STRICT = GOLDEN / "strict"
BOGUS_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
MODES = {"lenient": False, "strict": True}


def golden(path: Path) -> bytes:
    return path.read_bytes()


def _submission(contents: str, **extra: str) -> bytes:
    """SubmitCSR as an InterSystems client sends it, for file webgateway_client (§3.1)."""
    return iris_submit(
        {
            "Name": "webgateway:WEBGATEWAY:webgateway_client",
            "Hostname": "webgateway",
            "Instance": "WEBGATEWAY",
            "Filename": "webgateway_client",
            "Contents": contents,
            "Subject": "/CN=webgateway",
            "ContactName": "ContactPerson",
            **extra,
        }
    )


@pytest.fixture
def ca(data_dir: Path) -> Path:
    """A CA configured as in the spec's examples (instance IRIS on node caserver)."""
    configure_ca(data_dir)
    return data_dir


@pytest.fixture(params=list(MODES), ids=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def served(ca: Path, mode: str) -> Iterator[str]:
    with live_server(ca, portal=False, strict_iris=MODES[mode]) as url:
        yield url


def _pending(data_dir: Path) -> list[str]:
    with Store.open(data_dir) as store:
        return [request.name for request in store.requests()]


def _certificate(number: int, hostname: str, instance: str, filename: str) -> IssuedCertificate:
    return IssuedCertificate(
        number=number,
        hostname=hostname,
        instance=instance,
        filename=filename,
        contents="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        subject=f"/CN={hostname}",
        usage="tls",
        issued=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=None,
    )


def _stored(data_dir: Path, *certificates: IssuedCertificate) -> None:
    with Store.open(data_dir) as store:
        for certificate in certificates:
            store.add_certificate(certificate)


# -- the table -----------------------------------------------------------------------------------


def test_the_readme_table_is_the_code_table() -> None:
    readme = (REPOSITORY / "README.md").read_text()
    section = readme.split("## Faithful on the wire, and where we chose", 1)[1].split("\n## ", 1)
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section[0].splitlines()
        if line.startswith("| ") and not line.startswith("| |")
    ]
    expected = [
        [d.topic, d.ours, d.iris, "as IRIS" if d.switchable else f"kept: {d.kept}"]
        for d in DEVIATIONS
    ]
    assert rows == expected
    # Each deviation strict mode switches has its tests below, named after its key.
    tests = {name for name in globals() if name.startswith("test_")}
    for entry in DEVIATIONS:
        assert f"test_{entry.key.replace('-', '_')}" in tests, entry.key


# -- switched by --strict-iris ---------------------------------------------------------------


def test_no_soapaction(ca: Path, served: str, mode: str, tmp_path: Path) -> None:
    _, csr = openssl_csr(tmp_path, "webgateway_client", "/CN=webgateway")
    answer = soap_post(served, _submission(csr), None)
    if mode == "lenient":
        # Routed by its body element, answered as if SOAPAction had named SubmitCSR.
        assert (answer.status, answer.body) == (200, golden(GOLDEN / "submit_csr.xml"))
        assert _pending(ca) == ["webgateway:WEBGATEWAY:webgateway_client"]
    else:
        assert (answer.status, answer.body) == (500, golden(STRICT / "no_soapaction.html"))
        assert answer.headers["content-type"] == "text/html; charset=UTF-8"
        assert _pending(ca) == []
    # With the header, even empty (IRIS then routes by the body element), both modes agree.
    again = soap_post(served, _submission(csr, Name="other:WEBGATEWAY:webgateway_client"), "")
    assert (again.status, again.body) == (200, golden(GOLDEN / "submit_csr.xml"))


def test_list_order(ca: Path, served: str, mode: str) -> None:
    _stored(
        ca,
        _certificate(10, "apache", "IRIS", "apache_webgateway"),
        _certificate(9, "webgateway", "webgateway", "webgateway_client"),
    )
    answer = soap_post(served, iris_list_certificates(), ACTION + "ListCertificates")
    expected = "list_all_text_order.xml" if mode == "strict" else "list_all_numeric_order.xml"
    assert (answer.status, answer.body) == (200, golden(STRICT / expected))


def test_list_matching_is_iris_in_both_modes(ca: Path, served: str) -> None:
    # Not a deviation: both modes match host and instance as IRIS's SQLUPPER collation does.
    _stored(
        ca,
        _certificate(2, "webgateway", "webgateway", "webgateway_client"),
        _certificate(3, "webgateway", "webgateway", "apache_webgateway"),
        _certificate(4, "webgateway", "OTHER", "not_listed"),
    )
    body = iris_list_certificates("WebGateway  ", "WEBGATEWAY")
    answer = soap_post(served, body, ACTION + "ListCertificates")
    assert (answer.status, answer.body) == (200, golden(GOLDEN / "list_my.xml"))
    # A leading blank still counts in IRIS's collation: nothing matches.
    leading = soap_post(
        served, iris_list_certificates(" webgateway", "webgateway"), ACTION + "ListCertificates"
    )
    assert (leading.status, leading.body) == (200, golden(GOLDEN / "list_empty.xml"))


def test_csr_check(ca: Path, served: str, mode: str) -> None:
    answer = soap_post(served, _submission(BOGUS_CSR), ACTION + "SubmitCSR")
    if mode == "lenient":
        assert (answer.status, answer.body) == (400, golden(STRICT / "fault_invalid_csr.xml"))
        assert _pending(ca) == []
        return
    assert (answer.status, answer.body) == (200, golden(GOLDEN / "submit_csr.xml"))
    with open_server(ca) as server:
        (pending,) = server.pending()
        assert pending.contents == BOGUS_CSR  # stored exactly as received
        serial_before = server.authority().serials.current()
        # The policy applies when the administrator issues: refused, nothing spent.
        with pytest.raises(InvalidCsr, match="not readable"):
            server.issue(pending.name, Usage.TLS, CA_PASSWORD)
        assert server.authority().serials.current() == serial_before
        assert [r.name for r in server.pending()] == [pending.name]


def test_csr_check_a_good_csr_stored_as_received_is_issued(ca: Path, tmp_path: Path) -> None:
    _, csr = openssl_csr(tmp_path, "webgateway_client", "/CN=webgateway")
    escaped = csr.replace("\n", "&#13;\n")  # CR LF line ends that survive XML parsing
    body = _submission("@CSR@").replace(b"@CSR@", escaped.encode())
    with live_server(ca, portal=False, strict_iris=True) as url:
        answer = soap_post(url, body, ACTION + "SubmitCSR")
    assert (answer.status, answer.body) == (200, golden(GOLDEN / "submit_csr.xml"))
    with open_server(ca) as server:
        (pending,) = server.pending()
        assert pending.contents == csr.replace("\n", "\r\n")
        issued = server.issue(pending.name, Usage.TLS, CA_PASSWORD)
    assert issued.number == 1


def test_csr_unknown_element(ca: Path, served: str, mode: str, tmp_path: Path) -> None:
    _, csr = openssl_csr(tmp_path, "webgateway_client", "/CN=webgateway")
    answer = soap_post(
        served, _submission(csr, Comment="from a newer client"), ACTION + "SubmitCSR"
    )
    if mode == "lenient":
        assert (answer.status, answer.body) == (200, golden(GOLDEN / "submit_csr.xml"))
        assert len(_pending(ca)) == 1
    else:
        assert (answer.status, answer.body) == (400, golden(STRICT / "fault_unexpected_tag.xml"))
        assert _pending(ca) == []


# -- kept in both modes --------------------------------------------------------------------------


def _same_in_both(
    ca: Path, body: bytes, action: str | None, content_type: str = "text/xml; charset=utf-8"
) -> Answer:
    answers = []
    for strict in (False, True):
        with live_server(ca, portal=False, strict_iris=strict, max_body=4096) as url:
            answers.append(soap_post(url, body, action, content_type=content_type))
    lenient, strict = answers
    assert (lenient.status, lenient.body) == (strict.status, strict.body)
    assert lenient.headers["content-type"] == strict.headers["content-type"]
    return lenient


def test_soap12(ca: Path) -> None:
    body = (
        b'<?xml version="1.0"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
        b'<e:Body><GetCertificate xmlns="http://pki.intersystems.com"><number>0</number>'
        b"</GetCertificate></e:Body></e:Envelope>"
    )
    # No SOAPAction header: SOAP 1.2 carries the action in its Content-Type, so even strict
    # mode takes it as SOAP, and refuses its version.
    answer = _same_in_both(
        ca, body, None, content_type='application/soap+xml; charset=utf-8; action="x"'
    )
    assert answer.status == 500
    assert b"<faultcode>SOAP-ENV:VersionMismatch</faultcode>" in answer.body


def test_doctype(ca: Path) -> None:
    body = _submission("x").replace(b"?>", b'?><!DOCTYPE x [<!ENTITY a "b">]>', 1)
    answer = _same_in_both(ca, body, ACTION + "SubmitCSR")
    assert answer.status == 400
    assert b"a DOCTYPE is not allowed" in answer.body


def test_body_limit(ca: Path) -> None:
    body = _submission("A" * 5000)
    request = (
        f"POST {SERVICE_PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: text/xml\r\n"
        f"SOAPAction: {ACTION}SubmitCSR\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    answers = []
    for strict in (False, True):
        with live_server(ca, portal=False, strict_iris=strict, max_body=4096) as url:
            answers.append(raw_request(url, request))
    assert [(a.status, a.body) for a in answers] == [(answers[0].status, answers[0].body)] * 2
    assert answers[0].status == 413
    assert b"is larger than 4096 bytes" in answers[0].body


def test_field_checks(ca: Path, tmp_path: Path) -> None:
    _, csr = openssl_csr(tmp_path, "webgateway_client", "/CN=webgateway")
    control = _same_in_both(ca, _submission(csr, ContactName="Eve\u009b2J"), ACTION + "SubmitCSR")
    assert control.status == 400
    assert b"ContactName holds a control character" in control.body
    root = _same_in_both(ca, _submission(csr, Filename="../evil"), ACTION + "SubmitCSR")
    assert root.status == 400
    assert b"ERROR #8101" in root.body
    assert _pending(ca) == []


def test_submission_limits(tmp_path: Path) -> None:
    _, csr = openssl_csr(tmp_path, "webgateway_client", "/CN=webgateway")
    limits = SubmissionLimits(per_address=1, pending=0, pending_per_host=0)
    answers = []
    for strict in (False, True):
        data_dir = tmp_path / f"strict-{strict}"  # each mode its own count of submissions
        configure_ca(data_dir)
        with live_server(data_dir, portal=False, strict_iris=strict, limits=limits) as url:
            first = soap_post(
                url, _submission(csr, Filename=f"a{int(strict)}"), ACTION + "SubmitCSR"
            )
            again = soap_post(
                url, _submission(csr, Filename=f"b{int(strict)}"), ACTION + "SubmitCSR"
            )
        answers.append((first.status, again.status, again.body))
    assert [a[:2] for a in answers] == [(200, 500), (200, 500)]
    assert all(b"ERROR #8140: too many Certificate Signing Requests" in a[2] for a in answers)


def test_contact_email(ca: Path, tmp_path: Path) -> None:
    _, csr = openssl_csr(tmp_path, "webgateway_client", "/CN=webgateway")
    body = _submission(csr, ContactEmail="a@example.com, b@example.org")
    answer = _same_in_both(ca, body, ACTION + "SubmitCSR")
    assert answer.status == 400
    assert b"ERROR #7201: ContactEmail must be one e-mail address" in answer.body
    assert _pending(ca) == []


# -- the switch: a setting, overridden by serve's options -----------------------------------------


def _serve_answer(data_dir: Path, *options: str) -> tuple[Answer, str]:
    port = free_port()
    process = start_serve(data_dir, port, "--workers", "1", "--no-portal", *options)
    url = f"http://127.0.0.1:{port}"
    try:
        answer = None
        for _ in range(300):
            try:
                answer = soap_post(url, iris_list_certificates(), None)
                break
            except OSError:
                assert process.poll() is None
                time.sleep(0.1)
        assert answer is not None
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    return answer, output.decode()


def _server_app(data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "server_app.py", "--data-dir", str(data_dir), *args],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_strict_mode_is_a_setting_off_by_default_and_serve_overrides_it(ca: Path) -> None:
    status = _server_app(ca, "status")
    assert re.search(r"^IRIS-strict mode: +off \(setting\)$", status, re.M)

    default, output = _serve_answer(ca)
    assert default.status == 200  # routed by the body element
    assert "IRIS-strict mode: off" in output

    assert "IRIS-strict mode:   on" in _server_app(ca, "settings", "--strict-iris")
    strict, output = _serve_answer(ca)
    assert (strict.status, strict.body) == (500, golden(STRICT / "no_soapaction.html"))
    assert "IRIS-strict mode: on" in output
    status = _server_app(ca, "status")
    assert re.search(r"^IRIS-strict mode: +on: .*\(setting\)$", status, re.M)
    assert re.search(r"^Last `serve` start: .*IRIS-strict on, recording off$", status, re.M)

    overridden, output = _serve_answer(ca, "--no-strict-iris")
    assert overridden.status == 200
    assert "IRIS-strict mode: off" in output
    assert "IRIS-strict mode:   on" in _server_app(ca, "settings")  # the setting stays
