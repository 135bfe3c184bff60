"""Hostile requests: each gets the right status and a SOAP fault (or a clean 4xx), nothing is
stored, and the server answers normally afterwards - under werkzeug and under gunicorn."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pki_soap.soap.wsdl import SERVICE_PATH
from pki_soap.store import Store
from tests.engine_support import make_csr
from tests.service_support import (
    ACTION,
    TNS,
    Answer,
    chunked,
    configure_ca,
    free_port,
    iris_submit,
    live_server,
    openssl_csr,
    raw_request,
    soap_post,
    start_serve,
    wget_get_certificate,
)

LIMIT = 256 * 1024
GET_CA = wget_get_certificate("0")


def _envelope(inner: str, prolog: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>\n{prolog}'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f"{inner}</soap:Body></soap:Envelope>"
    ).encode()


_LAUGHS = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
HOSTILE_XML: dict[str, tuple[bytes, str | None]] = {
    "xxe": (
        _envelope(
            f'<GetCertificate xmlns="{TNS}"><number>&xxe;</number></GetCertificate>',
            '<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n',
        ),
        ACTION + "GetCertificate",
    ),
    "billion-laughs": (
        _envelope(
            f'<GetCertificate xmlns="{TNS}"><number>&lol9;</number></GetCertificate>',
            f'<!DOCTYPE d [<!ENTITY lol0 "lol">{_LAUGHS}]>\n',
        ),
        ACTION + "GetCertificate",
    ),
    "deep-nesting": (
        _envelope(
            f'<GetCertificate xmlns="{TNS}"><number>'
            + "<a>" * 5000
            + "</a>" * 5000
            + "</number></GetCertificate>"
        ),
        ACTION + "GetCertificate",
    ),
    "unknown-action": (GET_CA, "urn:nothing/Else.Method"),
    "missing-action-unknown-body": (_envelope(f'<Delete xmlns="{TNS}"/>'), None),
    "wrong-namespace": (
        _envelope('<GetCertificate xmlns="urn:evil"><number>0</number></GetCertificate>'),
        ACTION + "GetCertificate",
    ),
    "empty-body": (_envelope(""), ACTION + "GetCertificate"),
    "empty-request": (b"", ACTION + "GetCertificate"),
    "not-xml": (b"GET / HTTP/1.0\r\n\r\nhello", ACTION + "GetCertificate"),
    "invalid-utf8": (GET_CA.replace(b"<number>0", b"<number>\xff\xfe0"), ACTION + "GetCertificate"),
    "char-reference-control": (
        GET_CA.replace(b"<number>0", b"<number>&#1;0"),
        ACTION + "GetCertificate",
    ),
}


@pytest.fixture(scope="module")
def werkzeug_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("hostile") / "pki-data"
    configure_ca(data_dir)
    with live_server(data_dir, portal=False, max_body=LIMIT) as url:
        yield url, data_dir


@pytest.fixture(scope="module")
def gunicorn_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``server_app.py serve`` (gunicorn, one sync worker) on a free loopback port."""
    data_dir = tmp_path_factory.mktemp("gunicorn") / "pki-data"
    configure_ca(data_dir)
    port = free_port()
    log = (data_dir.parent / "serve.log").open("wb")
    process = start_serve(data_dir, port, "--workers", "1", "--no-portal", stdout=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if soap_post(url, GET_CA, ACTION + "GetCertificate").status == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, (data_dir.parent / "serve.log").read_text()
            time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start: " + (data_dir.parent / "serve.log").read_text())
        yield url, data_dir
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def _fault(answer: Answer, status: int, code: str) -> str:
    assert answer.status == status, answer.body[:500]
    assert answer.headers["content-type"] == "text/xml; charset=UTF-8"
    assert f"<faultcode>SOAP-ENV:{code}</faultcode>".encode() in answer.body
    return answer.body.decode("utf-8")


def _still_fine(url: str, data_dir: Path) -> None:
    answer = soap_post(url, GET_CA, ACTION + "GetCertificate")
    assert answer.status == 200
    assert b"<Filename>CA_Server</Filename>" in answer.body
    with Store.open(data_dir) as store:
        assert store.count_requests() == 0


@pytest.mark.parametrize("case", list(HOSTILE_XML), ids=list(HOSTILE_XML))
def test_hostile_xml_is_a_client_fault(werkzeug_service: tuple[str, Path], case: str) -> None:
    url, data_dir = werkzeug_service
    body, action = HOSTILE_XML[case]
    text = _fault(soap_post(url, body, action), 400, "Client")
    assert "root:" not in text  # nothing of /etc/passwd
    assert "lollollol" not in text
    _still_fine(url, data_dir)


def test_missing_soapaction_with_a_known_body_is_served(werkzeug_service: tuple[str, Path]) -> None:
    # Q15, a documented leniency: IRIS would refuse it; we route by the body element.
    url, _ = werkzeug_service
    assert soap_post(url, GET_CA, None).status == 200


def _bad_signature_pem() -> str:
    _, csr = make_csr("/CN=tampered.example")
    der = bytearray(csr.public_bytes(Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature value
    lines = base64.encodebytes(bytes(der)).decode().replace("\n", "")
    body = "\n".join(lines[i : i + 64] for i in range(0, len(lines), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


@pytest.fixture(scope="module")
def good_csr(tmp_path_factory: pytest.TempPathFactory) -> str:
    return openssl_csr(tmp_path_factory.mktemp("good"), "good", "/CN=good.example")[1]


@pytest.fixture(scope="module")
def weak_csr(tmp_path_factory: pytest.TempPathFactory) -> str:
    return openssl_csr(tmp_path_factory.mktemp("weak"), "weak", "/CN=weak.example", bits=1024)[1]


SUBMISSIONS: dict[str, tuple[dict[str, str], str]] = {
    "garbage-pem": (
        {
            "Contents": "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n"
            "-----END CERTIFICATE REQUEST-----\n"
        },
        "ERROR #8103",
    ),
    "not-pem": ({"Contents": "hello"}, "ERROR #8103"),
    "bad-signature": ({"Contents": "BAD-SIGNATURE"}, "ERROR #8103"),
    "rsa-1024": ({"Contents": "WEAK"}, "ERROR #8104"),
    "filename-traversal": ({"Filename": "../../x"}, "ERROR #8101"),
    "filename-cache": ({"Filename": "cache"}, "ERROR #8101"),
    "filename-control": ({"Filename": "a\tb"}, "ERROR #"),
    "contact-bell": ({"ContactName": "Eve\u0007"}, "ERROR #6237"),  # not even XML
    "contact-tab": ({"ContactName": "Eve\tMallory"}, "ERROR #7201"),
    "contact-newline": ({"ContactEmail": "a@example.com\nBcc: x@example.com"}, "ERROR #7201"),
    "contact-too-long": ({"ContactName": "x" * 51}, "ERROR #7201"),
    "name-too-long": ({"Name": "n" * 201}, "ERROR #7201"),
    "hostname-too-long": ({"Hostname": "h" * 101}, "ERROR #7201"),
    "contents-too-long": ({"Contents": "A" * 5001}, "ERROR #7201"),
    "contact-missing": ({"ContactName": ""}, "ERROR #5659"),
    "two-csrs": ({"Contents": "GOOD GOOD"}, "ERROR #8103"),
}


@pytest.mark.parametrize("case", list(SUBMISSIONS), ids=list(SUBMISSIONS))
def test_bad_submissions_are_client_faults_and_store_nothing(
    werkzeug_service: tuple[str, Path], case: str, good_csr: str, weak_csr: str
) -> None:
    url, data_dir = werkzeug_service
    changes, detail = SUBMISSIONS[case]
    fields = {
        "Name": f"hostile:IRIS:{case.replace('-', '_')}",
        "Hostname": "hostile",
        "Instance": "IRIS",
        "Filename": case.replace("-", "_"),
        "Contents": good_csr,
        "ContactName": "Contact",
    }
    fields.update(changes)
    placeholders = {
        "BAD-SIGNATURE": _bad_signature_pem(),
        "WEAK": weak_csr,
        "GOOD GOOD": good_csr + good_csr,
    }
    fields["Contents"] = placeholders.get(fields["Contents"], fields["Contents"])
    text = _fault(soap_post(url, iris_submit(dict(fields)), ACTION + "SubmitCSR"), 400, "Client")
    assert detail in text
    faultstring = text.split("<faultstring>", 1)[1].split("</faultstring>", 1)[0]
    assert 0 < len(faultstring) < 300 and "Traceback" not in text
    _still_fine(url, data_dir)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "GET"])
def test_other_methods_get_a_clean_405(werkzeug_service: tuple[str, Path], method: str) -> None:
    url, data_dir = werkzeug_service
    answer = soap_post(url, GET_CA, ACTION + "GetCertificate", method=method)
    assert answer.status == 405
    assert answer.headers["allow"] == "GET, HEAD, POST"
    _still_fine(url, data_dir)


def _padded(size: int) -> bytes:
    """A valid GetCertificate("0") request of exactly ``size`` bytes (whitespace padding)."""
    body = GET_CA.replace(b"<soap:Body>", b"<soap:Body>" + b" " * (size - len(GET_CA)))
    assert len(body) == size
    return body


def _post_raw(url: str, body: bytes, *, chunk: bool) -> Answer:
    head = (
        f"POST {SERVICE_PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: text/xml; charset=utf-8\r\n"
        f"SOAPAction: {ACTION}GetCertificate\r\nConnection: close\r\n"
    )
    if chunk:
        return raw_request(
            url, (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked(body)
        )
    return raw_request(url, (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)


@pytest.mark.parametrize("server", ["werkzeug", "gunicorn"])
@pytest.mark.parametrize("chunk", [False, True], ids=["content-length", "chunked"])
def test_body_limit_is_enforced_and_never_truncates(
    request: pytest.FixtureRequest, server: str, chunk: bool
) -> None:
    url, data_dir = request.getfixturevalue(f"{server}_service")
    at_limit = _post_raw(url, _padded(LIMIT), chunk=chunk)
    assert at_limit.status == 200, at_limit.body[:300]
    assert b"<Filename>CA_Server</Filename>" in at_limit.body
    over = _post_raw(url, _padded(LIMIT + 1), chunk=chunk)
    text = _fault(over, 413, "Client")
    assert f"larger than {LIMIT} bytes" in text
    _still_fine(url, data_dir)


def test_gunicorn_answers_hostile_xml_and_bad_methods(gunicorn_service: tuple[str, Path]) -> None:
    url, data_dir = gunicorn_service
    for case in ("xxe", "billion-laughs", "empty-body", "invalid-utf8"):
        body, action = HOSTILE_XML[case]
        _fault(soap_post(url, body, action), 400, "Client")
    assert soap_post(url, GET_CA, None, method="DELETE").status == 405
    _still_fine(url, data_dir)


@pytest.mark.parametrize("service", ["werkzeug_service", "gunicorn_service"])
def test_a_body_shorter_than_its_content_length_is_a_client_fault(
    service: str, request: pytest.FixtureRequest
) -> None:
    # The client stops sending (and half-closes) after 9 of the 500 bytes it announced.
    url, data_dir = request.getfixturevalue(service)
    head = (
        "POST /isc/pki/PKI.CAServer.cls HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        f"SOAPAction: {ACTION}GetCertificate\r\nContent-Length: 500\r\n\r\n"
    )
    text = _fault(raw_request(url, head.encode() + b"<a>short"), 400, "Client")
    assert "shorter than its Content-Length" in text
    _still_fine(url, data_dir)
