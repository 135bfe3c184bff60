"""The exchange recorder (``serve --record``): what it keeps, its notes, its limits, its pages.

Requests go over real HTTP to the application in werkzeug's server (``live_server``) or to
``server_app.py serve`` under gunicorn; the recorded exchanges are read back from the store,
from ``server_app.py exchanges`` and from the portal.  An exchange is recorded after its
answer is sent, so the tests wait (with an upper bound) until it is there.
"""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from markupsafe import escape
from werkzeug.test import Client

from pki_soap.portal import make_portal
from pki_soap.portal.auth import set_password
from pki_soap.server.exchanges import readable
from pki_soap.soap.annotations import CSR_MEMBERS, PARAMETERS
from pki_soap.soap.wsdl import SERVICE_PATH
from pki_soap.store import (
    BODY_KEPT,
    IRIS,
    TOOLKIT,
    Exchange,
    IssuedCertificate,
    RecordLimits,
    Store,
)
from tests.service_support import (
    ACTION,
    REPOSITORY,
    TNS,
    configure_ca,
    free_port,
    iris_get_certificate,
    iris_list_certificates,
    iris_submit,
    live_server,
    raw_request,
    soap_post,
    start_serve,
    wait_for_exchanges,
)

WAIT_SECONDS = 60  # an upper bound for a slow machine, not a timing assertion (flood)
PORTAL_PASSWORD = "recorder portal password"
HOSTILE_AGENT = "Evil/1.0 \x1b[2J\x1b]0;owned\x07<script>alert(1)</script>"
BOGUS_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"


def notes(exchange: Exchange, kind: str) -> list[str]:
    return [note.text for note in exchange.notes if note.kind == kind]


def joined(exchange: Exchange, kind: str = IRIS) -> str:
    return "\n".join(notes(exchange, kind))


@pytest.fixture
def ca(data_dir: Path) -> Path:
    configure_ca(data_dir)
    return data_dir


@pytest.fixture
def recording(ca: Path) -> Iterator[str]:
    """The service (lenient) recording its exchanges; yields its base URL."""
    with live_server(ca, portal=False, record=RecordLimits(keep=100)) as url:
        yield url


def _exchange(number: int, received: datetime, size: int = 100) -> Exchange:
    return Exchange(
        received=received,
        duration_ms=1.0,
        client="127.0.0.1:1",
        user_agent="test",
        method="GetCertificate",
        status=200,
        fault=None,
        strict_iris=False,
        request_headers=[],
        answer_headers=[],
        request=b"q" * size,
        answer=str(number).encode(),
        request_size=size,
        answer_size=len(str(number)),
    )


# -- readable: a stranger's bytes made safe for a terminal -----------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"a\r\nb", "a\\r\nb"),
        (b"\x1b[2Jred", "\\x1b[2Jred"),
        (b"tab\tkept\n", "tab\tkept\n"),
        ("C1 \u009b2J".encode(), "C1 \\x9b2J"),
        ("bidi \u202egnp.exe".encode(), "bidi \\u202egnp.exe"),
        ("Zoë".encode(), "Zoë"),
        (b"bad \xff byte", "bad \\xff byte"),
        (b"nul\x00", "nul\\x00"),
    ],
    ids=["crlf", "esc", "tab-lf", "c1", "bidi", "utf8", "invalid-utf8", "nul"],
)
def test_readable_escapes_every_control_and_format_character(raw: bytes, shown: str) -> None:
    assert readable(raw) == shown


# -- the store: limits, oldest first -----------------------------------------------------------


def test_store_keeps_the_newest_within_count_bytes_and_age(data_dir: Path) -> None:
    now = datetime.now(UTC)
    with Store.open(data_dir) as store:
        limits = RecordLimits(keep=5, max_bytes=RecordLimits().max_bytes, max_days=7)
        ids = [store.record_exchange(_exchange(n, now), limits) for n in range(8)]
        assert [e.id for e in store.exchanges(100)] == ids[:2:-1]  # the newest 5, newest first

        # Expiry: an exchange older than max_days goes at the next recording, whatever else.
        roomy = RecordLimits(keep=100, max_bytes=RecordLimits().max_bytes, max_days=7)
        old = store.record_exchange(_exchange(99, now - timedelta(days=8)), roomy)
        recent = store.record_exchange(_exchange(98, now - timedelta(days=6)), roomy)
        store.record_exchange(_exchange(97, now), roomy)
        kept = {e.id for e in store.exchanges(100)}
        assert old not in kept and recent in kept

        # Bytes: the oldest go until the rest fit (and no more than that).
        big = RecordLimits(keep=100, max_bytes=RecordLimits().max_bytes // 64 * 64, max_days=7)
        size = big.max_bytes // 10
        for n in range(15):
            store.record_exchange(_exchange(n, now, size=size), big)
        count, total, _ = store.exchange_totals()
        assert total <= big.max_bytes < total + size + 2
        assert count == 9  # nine of about a tenth of the limit fit, not ten


def test_record_limits_refuse_nonsense() -> None:
    with pytest.raises(Exception, match="from 1 to"):
        RecordLimits(keep=0)
    with pytest.raises(Exception, match="at least"):
        RecordLimits(max_bytes=1000)
    with pytest.raises(Exception, match="days"):
        RecordLimits(max_days=0)


# -- what an exchange holds ------------------------------------------------------------------------


def test_an_exchange_holds_bytes_headers_client_method_and_fault(ca: Path, recording: str) -> None:
    body = iris_get_certificate("0")
    ok = soap_post(recording, body, ACTION + "GetCertificate", headers={"User-Agent": "t/1"})
    bad = soap_post(recording, body, "urn:nowhere")
    first, second = wait_for_exchanges(ca, 2)
    assert (first.request, first.answer, first.status) == (body, ok.body, 200)
    assert (first.request_size, first.answer_size) == (len(body), len(ok.body))
    assert first.method == "GetCertificate" and first.fault is None
    assert ("SOAPAction", ACTION + "GetCertificate") in first.request_headers
    assert ("User-Agent", "t/1") in first.request_headers
    assert ("Content-Type", "text/xml; charset=UTF-8") in first.answer_headers
    assert re.fullmatch(r"127\.0\.0\.1:\d+", first.client)
    assert first.user_agent == "t/1" and first.duration_ms > 0 and not first.strict_iris
    assert (second.status, second.method, second.answer) == (400, None, bad.body)
    assert second.fault == "Client: Unexpected SOAPACTION value: urn:nowhere"
    assert second.user_agent is None
    assert "No User-Agent header" in joined(second, TOOLKIT)


def test_a_long_answer_is_kept_in_part_and_counted_whole(ca: Path, recording: str) -> None:
    with Store.open(ca) as store:
        for number in range(1, 4001):
            store.add_certificate(
                IssuedCertificate(
                    number=number,
                    hostname=f"host{number}.example",
                    instance="IRIS",
                    filename=f"file{number}",
                    contents="x",
                    subject="/CN=x",
                    usage="tls",
                    issued=datetime.now(UTC),
                    not_after=None,
                )
            )
    answer = soap_post(recording, iris_list_certificates(), ACTION + "ListCertificates")
    (exchange,) = wait_for_exchanges(ca, 1)
    assert len(answer.body) > BODY_KEPT
    assert exchange.answer == answer.body[:BODY_KEPT]
    assert exchange.answer_size == len(answer.body)


def test_the_model_tables_of_the_recorder_are_the_services() -> None:
    from pki_soap.soap.service import CSR, CAServerService

    methods = {
        descriptor.name: tuple(descriptor.in_message.get_flat_type_info(descriptor.in_message))
        for descriptor in CAServerService.public_methods.values()
    }
    assert methods == PARAMETERS
    assert tuple(CSR.get_flat_type_info(CSR)) == CSR_MEMBERS


# -- what IRIS would have done differently --------------------------------------------------------

SOAP_LITE_LIST = (
    b'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope'
    b' xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
    b' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>'
    b'<ListCertificates xmlns="http://pki.intersystems.com" xsi:nil="true" />'
    b"</soap:Body></soap:Envelope>"
)
SOAP12_GET = (
    b'<?xml version="1.0"?><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
    b'<e:Body><GetCertificate xmlns="http://pki.intersystems.com"><number>0</number>'
    b"</GetCertificate></e:Body></e:Envelope>"
)


def _envelope(inner: str) -> bytes:
    return (
        '<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
        f'envelope/"><soap:Body>{inner}</soap:Body></soap:Envelope>'
    ).encode()


def _submit_fields(**fields: str | None) -> dict[str, str | None]:
    return {
        "Name": None,
        "Hostname": "web.example",
        "Instance": "IRIS",
        "Filename": "web",
        "Contents": BOGUS_CSR,
        "ContactName": "Tester",
        **fields,
    }


def test_notes_on_what_iris_does_differently(ca: Path, recording: str) -> None:
    with Store.open(ca) as store:
        for number, hostname in ((9, "web.example"), (10, "web.example"), (11, "WEB.example")):
            store.add_certificate(
                IssuedCertificate(
                    number=number,
                    hostname=hostname,
                    instance="IRIS",
                    filename=f"f{number}",
                    contents="x",
                    subject="/CN=x",
                    usage="tls",
                    issued=datetime.now(UTC),
                    not_after=None,
                )
            )
    sent: list[tuple[bytes, str | None, str]] = [
        (iris_get_certificate("0"), None, "text/xml"),  # 1 no SOAPAction
        (SOAP12_GET, None, 'application/soap+xml; action="x"'),  # 2 SOAP 1.2
        (SOAP_LITE_LIST, ACTION + "ListCertificates", "text/xml"),  # 3 xsi:nil wrapper
        (iris_submit(_submit_fields()), ACTION + "SubmitCSR", "text/xml"),  # 4 CSR refused
        (iris_submit(_submit_fields(Foo="x")), ACTION + "SubmitCSR", "text/xml"),  # 5 unknown
        (  # 6 a csr member directly under SubmitCSR
            _envelope(f'<SubmitCSR xmlns="{TNS}"><Hostname>h</Hostname></SubmitCSR>'),
            ACTION + "SubmitCSR",
            "text/xml",
        ),
        (  # 7 wrong namespace of the body element
            _envelope('<GetCertificate xmlns="urn:other"><number>0</number></GetCertificate>'),
            ACTION + "GetCertificate",
            "text/xml",
        ),
        (  # 8 unqualified parameters, another element name than the method
            _envelope(f'<x:Anything xmlns:x="{TNS}"><number>0</number></x:Anything>'),
            ACTION + "GetCertificate",
            "text/xml",
        ),
        (iris_list_certificates(), ACTION + "ListCertificates", "text/xml"),  # 9 ListAll
        (iris_list_certificates("web.example", "IRIS"), ACTION + "ListCertificates", "text/xml"),
        (iris_get_certificate("009"), ACTION + "GetCertificate", "text/xml"),  # 11
        (_envelope("").replace(b"<soap:Envelope", b"<!DOCTYPE x><soap:Envelope"), "", "text/xml"),
    ]
    for body, action, content_type in sent:
        soap_post(recording, body, action, content_type=content_type)
    got = wait_for_exchanges(ca, len(sent))
    by_request = {exchange.request: exchange for exchange in got}
    text = [joined(by_request[body]) for body, _, _ in sent]

    assert "No SOAPAction header: IRIS - not taken as SOAP" in text[0]
    assert "This one was routed (to GetCertificate)" in text[0]
    assert "--strict-iris` answers as IRIS does" in text[0]
    assert "A SOAP 1.2 request: IRIS - answered in SOAP 1.2" in text[1]
    assert "kept: IRIS's SOAP 1.2 bytes are not known" in text[1]
    assert "No SOAPAction" not in text[1]  # SOAP 1.2 carries its action in Content-Type
    assert 'xsi:nil="true"' in text[2] and "not documented" in text[2]
    assert "The CSR was refused: IRIS - stored as received" in text[3]
    assert "IRIS would have answered `successfully submitted`" in text[3]
    assert "Unknown element <Foo> in csr: IRIS - Client fault" in text[4]
    assert "<Hostname> is not a parameter of SubmitCSR (it belongs inside <csr>)" in text[5]
    assert "is in namespace urn:other" in text[6]
    assert (
        "The body element is <Anything> but the request was routed to GetCertificate" in (text[7])
    )
    assert "have no namespace" in text[7]
    assert "IRIS would have listed 10, 11, 9; this server listed 9, 10, 11" in text[8]
    # Matched as IRIS matches (WEB.example too); only the order differs.
    assert "IRIS would have listed 10, 11, 9; this server listed 9, 10, 11" in text[9]
    assert "GetCertificate number '009'" in text[10]
    assert "The request has a DOCTYPE: IRIS - not known" in text[11]
    # A request IRIS treats as this server does gets no IRIS note.
    plain = soap_post(recording, iris_get_certificate("0"), ACTION + "GetCertificate")
    assert plain.status == 200
    (last,) = wait_for_exchanges(ca, len(sent) + 1)[-1:]
    assert notes(last, IRIS) == []


def test_strict_mode_notes_say_what_was_refused_as_iris(ca: Path) -> None:
    with live_server(ca, portal=False, strict_iris=True, record=RecordLimits()) as url:
        refused = soap_post(url, iris_get_certificate("0"), None)
        stored = soap_post(url, iris_submit(_submit_fields()), ACTION + "SubmitCSR")
    assert (refused.status, stored.status) == (500, 200)
    first, second = sorted(wait_for_exchanges(ca, 2), key=lambda e: e.method or "")
    assert first.strict_iris and first.method is None and first.fault is None
    assert "refused as IRIS refuses it (IRIS-strict mode)" in joined(first)
    assert notes(second, IRIS) == []  # stored as received, exactly as IRIS would


def test_toolkit_notes_from_the_user_agent(ca: Path, recording: str) -> None:
    cases = {
        "SOAP4R/1.5.8": "soap4r reads SOAP faults only from HTTP 500",
        "Axis/1.4": "Axis 1.4 reads SOAP faults only from HTTP 500",
        "Mono Web Services Client Protocol 4.0.50524.0": "Mono's proxy sends Expect",
        "SOAP::Lite/Perl/1.27": 'SOAP::Lite sends xsi:nil="true"',
        "Mozilla/4.0 (compatible; InterSystems IRIS;)": "An InterSystems client",
        "Wget/1.21.3": "a fault's text never reaches it",
    }
    for agent in cases:
        soap_post(recording, iris_get_certificate("0"), "urn:wrong", headers={"User-Agent": agent})
    got = {e.user_agent: e for e in wait_for_exchanges(ca, len(cases))}
    for agent, fact in cases.items():
        text = joined(got[agent], TOOLKIT)
        assert fact in text, agent
    for agent in ("SOAP4R/1.5.8", "Axis/1.4"):
        assert (
            "reads SOAP faults only from HTTP 500: this Client fault came with HTTP 400, as IRIS"
            " sends it, so your program will not see this faultstring (Unexpected SOAPACTION"
            " value: urn:wrong)" in joined(got[agent], TOOLKIT)
        )
    assert "your program will not see" not in joined(got["Wget/1.21.3"], TOOLKIT)


def test_expect_100_continue_is_noted(ca: Path, recording: str) -> None:
    body = iris_get_certificate("0")
    request = (
        f"POST {SERVICE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        f"SOAPAction: {ACTION}GetCertificate\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    assert raw_request(recording, request).status == 200
    (exchange,) = wait_for_exchanges(ca, 1)
    assert "Expect: 100-continue" in joined(exchange, TOOLKIT)


# -- showing what a stranger sent ---------------------------------------------------------------


def _hostile_request(recording: str) -> bytes:
    agent = HOSTILE_AGENT.encode("latin-1") + "\u202e".encode()
    body = iris_submit(_submit_fields(Subject="<b>bold</b>", Foo="<i>&amp;</i>\u009b31m"))
    request = (
        f"POST {SERVICE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        f"SOAPAction: {ACTION}SubmitCSR\r\n"
    ).encode()
    request += b"User-Agent: " + agent + b"\r\n"
    request += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    assert raw_request(recording, request).status == 400
    return body


def _server_app(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "server_app.py", "--data-dir", str(data_dir), *args],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_exchanges_command_lists_and_shows_escaped(ca: Path, recording: str) -> None:
    body = _hostile_request(recording)
    (exchange,) = wait_for_exchanges(ca, 1)
    listed = _server_app(ca, "exchanges", "--last", "5")
    shown = _server_app(ca, "exchanges", "--show", str(exchange.id))
    for done in (listed, shown):
        assert done.returncode == 0, done.stderr
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", done.stdout)
        assert "\\x1b[2J" in done.stdout
    assert re.search(rf"^{exchange.id} .* SubmitCSR +400 +Client: ", listed.stdout, re.M)
    assert "Evil/1.0 \\x1b[2J\\x1b]0;owned\\x07<script>" in shown.stdout
    assert readable(body) in shown.stdout  # the whole request, escaped the same way
    assert "What IRIS would have done differently:\n  - The CSR was refused" in shown.stdout
    assert "Routed to:  SubmitCSR" in shown.stdout

    missing = _server_app(ca, "exchanges", "--show", "999")
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: no recorded exchange 999")
    assert "Traceback" not in missing.stderr


def test_portal_exchanges_pages_escape_everything(ca: Path, recording: str) -> None:
    _hostile_request(recording)
    (exchange,) = wait_for_exchanges(ca, 1)
    set_password(ca, PORTAL_PASSWORD.encode())
    client = Client(make_portal(ca))
    environ = {"REMOTE_ADDR": "127.0.0.1"}
    login = client.get("/login", environ_base=environ)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert token
    client.post(
        "/login",
        data={"password": PORTAL_PASSWORD, "csrf_token": token.group(1), "next": "/"},
        environ_base=environ,
    )
    listing = client.get("/server/exchanges", environ_base=environ)
    detail = client.get(f"/server/exchanges/{exchange.id}", environ_base=environ)
    missing = client.get("/server/exchanges/999", environ_base=environ)
    assert (listing.status_code, detail.status_code, missing.status_code) == (200, 200, 404)
    for page in (listing.text, detail.text):
        assert "<script>" not in page and "<b>" not in page and "<i>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202e]", page)
    # The whole request, made readable, then escaped for HTML.
    assert str(escape(readable(exchange.request))) in detail.text
    assert "\\x9b31m" in detail.text
    assert "Unknown element &lt;Foo&gt; in csr" in detail.text


def test_recording_is_off_by_default_and_status_says_so(ca: Path) -> None:
    status = _server_app(ca, "status")
    assert re.search(r"^Exchange recording: +off \(setting\)$", status.stdout, re.M)
    assert re.search(r"^Recorded exchanges: +0 \(0 bytes\)$", status.stdout, re.M)
    nothing = _server_app(ca, "exchanges")
    assert nothing.stdout == (
        "No exchanges recorded.\n"
        "Recording is off: start the server with `server_app.py serve --record [N]`.\n"
    )
    # A server without --record has no recorder at all.
    with live_server(ca, portal=False) as url:
        app_answer = soap_post(url, iris_get_certificate("0"), ACTION + "GetCertificate")
    assert app_answer.status == 200
    with Store.open(ca) as store:
        assert store.exchange_totals()[0] == 0

    settings = _server_app(ca, "settings", "--record", "50", "--record-days", "2")
    assert "Exchange recording: on: the last 50 SOAP exchanges" in settings.stdout
    status = _server_app(ca, "status")
    assert re.search(
        r"^Exchange recording: +on: the last 50 .* 2 days \(setting\)$", status.stdout, re.M
    )
    bad = _server_app(ca, "settings", "--record", "0", "--record-days", "2")
    assert (bad.returncode, bad.stderr) == (
        2,
        "error: --record-bytes and --record-days need --record\n",
    )


# -- client_app.py --trace -------------------------------------------------------------------------


def test_client_trace_prints_the_bytes_the_server_recorded(ca: Path, tmp_path: Path) -> None:
    client_dir = tmp_path / "client"
    with live_server(ca, portal=False, record=RecordLimits()) as url:
        port = url.rsplit(":", 1)[1]

        def client_app(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "client_app.py", "--data-dir", str(client_dir), *args],
                cwd=REPOSITORY,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        configured = client_app(
            "configure", "--server", "127.0.0.1", "--port", port, "--contact-name", "T"
        )
        assert configured.returncode == 0, configured.stderr
        traced = client_app("--trace", "get-ca")
        quiet = client_app("list")
    assert traced.returncode == 0 and quiet.returncode == 0, traced.stderr + quiet.stderr
    assert quiet.stderr == ""
    (exchange,) = wait_for_exchanges(ca, 2)[:1]  # get-ca's GetCertificate, then list's call
    assert exchange.method == "GetCertificate"
    trace = traced.stderr
    assert trace.startswith(f"> GET http://127.0.0.1:{port}{SERVICE_PATH}?WSDL\n")
    assert "bytes of WSDL, not shown)" in trace
    sent = "\n".join(line[2:] for line in trace.splitlines() if line.startswith("> "))
    answered = "\n".join(line[2:] for line in trace.splitlines() if line.startswith("< "))
    # What the client printed is what the server received and answered, byte for byte.
    assert readable(exchange.request).removesuffix("\n") in sent
    assert readable(exchange.answer).removesuffix("\n") in answered
    assert f"> SOAPAction: {ACTION}GetCertificate" in trace
    assert "< HTTP 200 OK" in trace
    assert "\\r\n" in trace  # the answer's CR LF line ends, shown
    assert traced.stdout.startswith("Certificate Authority Certificate (SHA-1 Fingerprint: ")


# -- a flood: limits and expiry hold, every request answered and recorded once ----------------


def _flood(url: str, bodies: Callable[[int], bytes], count: int, threads: int = 8) -> list[int]:
    """POST ``count`` GetCertificate requests from ``threads`` threads; their statuses."""
    host, port = url.removeprefix("http://").split(":")
    statuses: list[int] = []
    lock = threading.Lock()
    numbers = iter(range(count))

    def worker() -> None:
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            connection = http.client.HTTPConnection(host, int(port), timeout=WAIT_SECONDS)
            try:
                connection.request(
                    "POST",
                    SERVICE_PATH,
                    body=bodies(n),
                    headers={"SOAPAction": ACTION + "GetCertificate", "Content-Type": "text/xml"},
                )
                response = connection.getresponse()
                response.read()
                status = response.status
            finally:
                connection.close()
            with lock:
                statuses.append(status)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return statuses


def _padded(n: int) -> bytes:
    # About 8 KB of blanks inside the envelope: the same request, a bigger exchange.
    return iris_get_certificate("0").replace(b"<SOAP-ENV:Body>", b" " * 8000 + b"<SOAP-ENV:Body>")


def _kept(data_dir: Path) -> tuple[list[int], int]:
    with Store.open(data_dir) as store:
        ids = [summary.id for summary in store.exchanges(100_000)]
        return sorted(ids), store.exchange_totals()[1]


def test_cap_and_expiry_hold_under_a_flood_of_10000_requests(ca: Path) -> None:
    keep, max_bytes = 300, 1024 * 1024
    now = datetime.now(UTC)
    with Store.open(ca) as store:
        roomy = RecordLimits(keep=100_000, max_bytes=64 * max_bytes, max_days=30)
        for n in range(100):  # a past server's record: 8 days old, then 6 days old
            store.record_exchange(_exchange(n, now - timedelta(days=8)), roomy)
        for n in range(100):
            store.record_exchange(_exchange(n, now - timedelta(days=6)), roomy)
    port = free_port()
    log = (ca.parent / "serve.log").open("wb")  # a pipe nobody reads would fill and block
    process = start_serve(
        ca,
        port,
        "--workers",
        "2",
        "--no-portal",
        "--max-requests",
        "0",
        "--record",
        str(keep),
        "--record-bytes",
        str(max_bytes),
        "--record-days",
        "7",
        stdout=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                first = soap_post(url, iris_get_certificate("0"), ACTION + "GetCertificate")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert first.status == 200
        # Expiry alone: the 8-day-old ones are gone, the 6-day-old ones (within every limit) stay.
        wait_for_exchanges(ca, 101)
        ids, _ = _kept(ca)
        assert ids == list(range(101, 202))

        small = _flood(url, lambda n: iris_get_certificate("0"), 5000)
        assert small == [200] * 5000
        wait_for_exchanges(ca, keep)
        deadline = time.monotonic() + WAIT_SECONDS
        while _kept(ca)[0][-1] < 201 + 5000:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ids, total = _kept(ca)
        # The count cap: exactly the newest 300, none of the old record left.
        assert ids == list(range(201 + 5000 - keep + 1, 201 + 5000 + 1))
        assert total <= max_bytes

        big = _flood(url, _padded, 4999)
        assert big == [200] * 4999
        deadline = time.monotonic() + WAIT_SECONDS
        while _kept(ca)[0][-1] < 200 + 10_000:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ids, total = _kept(ca)
        # The byte cap: the newest that fit, oldest dropped first, no more than needed.
        assert ids == list(range(ids[0], 200 + 10_000 + 1))
        with Store.open(ca) as store:
            oldest = store.exchange(ids[0])
        assert oldest is not None
        # One more exchange like the others would not have fitted.
        assert total <= max_bytes < total + oldest.size
        assert len(ids) < keep
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    output = (ca.parent / "serve.log").read_text()
    assert process.returncode == 0, output[-2000:]
    assert "Exchange recording: on: the last 300 SOAP exchanges" in output
    assert "could not record" not in output
