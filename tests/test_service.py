"""The CAServer service and its WSGI app: WSDL serving, paths, method semantics (§3)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from pki_soap.errors import InvalidInput
from pki_soap.soap import WSDL_FILE
from pki_soap.soap.dataset import LIST_ALL_COLUMNS, DataSet, dataset_chunks
from pki_soap.soap.envelope import SPOOL_MEMORY_LIMIT, response_chunks
from pki_soap.soap.wsdl import SERVICE_PATH, endpoint_url, load_wsdl
from pki_soap.store import IssuedCertificate, Store
from tests.service_support import (
    ACTION,
    CA_NODE,
    CA_ROOT,
    GOLDEN,
    TNS,
    Answer,
    assert_valid_response,
    body_element,
    configure_ca,
    iris_get_certificate,
    iris_list_certificates,
    iris_submit,
    last_number,
    live_server,
    openssl_csr,
    soap_post,
    wget_get_certificate,
    wsdl_schema,
)

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap/"


def _certificate(number: int, hostname: str = "host", contents: str = "PEM\n") -> IssuedCertificate:
    return IssuedCertificate(
        number=number,
        hostname=hostname,
        instance="IRIS",
        filename=f"file{number}",
        contents=contents,
        subject=f"/CN=host{number}",
        usage="tls",
        issued=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=None,
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, data dir): a configured CA and certificates 1..12 (hosts alternate)."""
    data_dir = tmp_path_factory.mktemp("service") / "pki-data"
    configure_ca(data_dir)
    with Store.open(data_dir) as store:
        for number in range(1, 13):
            store.add_certificate(_certificate(number, "even" if number % 2 == 0 else "odd"))
        store.add_certificate(
            _certificate(13, contents="-----BEGIN X-----\nno line break at the end")
        )
    with live_server(data_dir) as url:
        yield url, data_dir


def _get(
    url: str, query: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> Answer:
    return soap_post(
        url, b"", None, method=method, path=SERVICE_PATH + query, content_type=None, headers=headers
    )


@pytest.mark.parametrize("query", ["?WSDL", "?wsdl", "?Wsdl=1", "?WSDL&x=1", "?x=1&wsdl"], ids=str)
def test_wsdl_is_the_static_file_with_the_public_address(
    service: tuple[str, Path], query: str
) -> None:
    url, _ = service
    answer = _get(url, query, headers={"Host": "evil.example:666"})
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/xml; charset=UTF-8"
    served = etree.fromstring(answer.body)
    address = served.find(f".//{{{SOAP_BINDING_NS}}}address")
    assert address is not None and address.get("location") == url + SERVICE_PATH
    original = etree.parse(str(WSDL_FILE)).getroot()
    original.find(f".//{{{SOAP_BINDING_NS}}}address").set("location", url + SERVICE_PATH)  # type: ignore[union-attr]
    assert etree.tostring(served) == etree.tostring(original)


def test_wsdl_head_and_operations(service: tuple[str, Path]) -> None:
    url, _ = service
    head = _get(url, "?WSDL", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    wsdl = etree.fromstring(_get(url, "?WSDL").body)
    actions = [op.get("soapAction") for op in wsdl.iter(f"{{{SOAP_BINDING_NS}}}operation")]
    assert actions == [ACTION + m for m in ("GetCertificate", "ListCertificates", "SubmitCSR")]


def test_wsdl_schema_accepts_what_the_model_accepts() -> None:
    # The spyne model must accept every request the WSDL allows: the full CSR in WSDL order.
    fields = [
        "Name",
        "Hostname",
        "Instance",
        "Filename",
        "Contents",
        "Subject",
        "ContactName",
        "ContactPhone",
        "ContactEmail",
    ]
    element = etree.fromstring(
        f'<SubmitCSR xmlns="{TNS}"><csr>'
        + "".join(f"<{f}>x</{f}>" for f in fields)
        + "</csr></SubmitCSR>"
    )
    assert wsdl_schema().validate(element)
    from pki_soap.soap.service import CSR, Certificate

    assert list(CSR.get_flat_type_info(CSR)) == fields
    assert list(Certificate.get_flat_type_info(Certificate)) == [
        "Number",
        "Hostname",
        "Instance",
        "Filename",
        "Contents",
        "Subject",
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://ca.example:52773", "http://ca.example:52773" + SERVICE_PATH),
        ("https://ca.example/", "https://ca.example" + SERVICE_PATH),
        ("http://proxy.example/pki/endpoint", "http://proxy.example/pki/endpoint"),
    ],
    ids=["base", "base-slash", "full"],
)
def test_endpoint_url(given: str, expected: str) -> None:
    assert endpoint_url(given) == expected


def test_public_url_must_be_http_and_is_escaped() -> None:
    with pytest.raises(InvalidInput, match="not an http"):
        endpoint_url("ftp://ca.example")
    wsdl = load_wsdl('http://ca.example/a?b=1&c="2"')
    assert b'location="http://ca.example/a?b=1&amp;c=&quot;2&quot;"' in wsdl


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", SERVICE_PATH, 405),
        ("PUT", SERVICE_PATH, 405),
        ("DELETE", SERVICE_PATH, 405),
        ("GET", "/", 404),
        ("POST", "/isc/pki/PKI.CAServer.cls/extra", 404),
        ("GET", "/isc/pki/Other.cls?WSDL", 404),
    ],
    ids=["get-no-wsdl", "put", "delete", "root", "extra-segment", "other-class"],
)
def test_other_requests_get_a_clean_4xx(
    service: tuple[str, Path], method: str, path: str, status: int
) -> None:
    answer = soap_post(service[0], b"x", None, method=method, path=path)
    assert answer.status == status
    assert answer.headers["content-type"].startswith("text/plain")
    if status == 405:
        assert "POST" in answer.headers["allow"]


def test_portal_is_mounted_under_pki(service: tuple[str, Path], data_dir: Path) -> None:
    url, _ = service
    redirect = soap_post(url, b"", None, method="GET", path="/pki")
    assert (redirect.status, redirect.headers["location"]) == (308, "/pki/")
    page = soap_post(url, b"", None, method="GET", path="/pki/")
    assert page.status != 404
    with live_server(data_dir, portal=False) as bare:
        assert soap_post(bare, b"", None, method="GET", path="/pki/").status == 404


def test_list_all_is_in_numeric_order_newest_last_without_the_ca(service: tuple[str, Path]) -> None:
    answer = soap_post(service[0], iris_list_certificates(), ACTION + "ListCertificates")
    assert answer.status == 200
    assert_valid_response(answer.body)
    numbers = [line.strip()[8:-9] for line in answer.text.split("\r\n") if "<Number>" in line]
    assert numbers == [str(n) for n in range(1, 14)]
    assert last_number(answer.body) == "13"


def test_list_my_selects_host_and_instance(service: tuple[str, Path]) -> None:
    answer = soap_post(
        service[0], iris_list_certificates("even", "IRIS"), ACTION + "ListCertificates"
    )
    numbers = [line.strip()[8:-9] for line in answer.text.split("\r\n") if "<Number>" in line]
    assert numbers == ["2", "4", "6", "8", "10", "12"]
    assert "<Hostname>" not in answer.text


@pytest.mark.parametrize(
    ("number", "filename"),
    [
        ("0", CA_ROOT),
        ("7", "file7"),
        ("00", None),
        (" 0", None),
        ("", None),
        ("x", None),
        ("99", None),
    ],
    ids=["ca", "issued", "zero-padded", "space", "empty", "text", "unknown"],
)
def test_get_certificate_matches_number_as_a_string(
    service: tuple[str, Path], number: str, filename: str | None
) -> None:
    answer = soap_post(service[0], wget_get_certificate(number), ACTION + "GetCertificate")
    assert answer.status == 200
    response = body_element(answer.body)
    if filename is None:
        assert len(response) == 0
        return
    assert_valid_response(answer.body)
    assert response.findtext(f"{{{TNS}}}GetCertificateResult/{{{TNS}}}Filename") == filename


def test_get_certificate_with_number_omitted_is_the_empty_answer(service: tuple[str, Path]) -> None:
    body = iris_get_certificate("0").replace(b'<number xsi:type="s:string">0</number>', b"")
    answer = soap_post(service[0], body, ACTION + "GetCertificate")
    assert answer.status == 200
    assert len(body_element(answer.body)) == 0


def test_empty_get_certificate_answer_is_q4_not_the_wsdl(service: tuple[str, Path]) -> None:
    # Q4: IRIS answers an unknown number with an empty wrapper although its WSDL (§6) makes
    # GetCertificateResult required; zeep and IRIS clients read it as null.
    answer = soap_post(service[0], wget_get_certificate("99"), ACTION + "GetCertificate")
    schema = wsdl_schema()
    assert not schema.validate(body_element(answer.body))
    assert "GetCertificateResult" in str(schema.error_log.last_error)


def test_contents_always_ends_with_a_line_break(service: tuple[str, Path]) -> None:
    answer = soap_post(service[0], iris_get_certificate("13"), ACTION + "GetCertificate")
    assert "<Contents>-----BEGIN X-----\nno line break at the end\n</Contents>" in answer.text
    assert (
        "<Hostname>host</Hostname><Instance>IRIS</Instance><Filename>file13</Filename>"
        in answer.text
    )


def test_submit_without_a_configured_ca_is_a_server_fault(data_dir: Path, tmp_path: Path) -> None:
    _, csr = openssl_csr(tmp_path, "early", "/CN=early")
    body = iris_submit(
        {"Hostname": "h", "Instance": "I", "Filename": "early", "Contents": csr, "ContactName": "c"}
    )
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, body, ACTION + "SubmitCSR")
    assert answer.status == 500
    assert (
        "<text>ERROR #8120: the Certificate Authority server is not configured</text>"
        in answer.text
    )


def test_submit_builds_the_name_and_keeps_optional_fields_null(
    data_dir: Path, tmp_path: Path
) -> None:
    configure_ca(data_dir)
    _, csr = openssl_csr(tmp_path, "named", "/CN=named")
    fields: dict[str, str | None] = {
        "Name": "",
        "Hostname": "h",
        "Instance": "I",
        "Filename": "named",
        "Contents": csr,
        "ContactName": "c",
        "ContactPhone": None,
    }
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, iris_submit(fields), ACTION + "SubmitCSR")
    assert answer.status == 200, answer.text
    assert f"at instance IRIS on node {CA_NODE}" in answer.text
    with Store.open(data_dir) as store:
        stored = store.request("h:I:named")
    assert (stored.contact_phone, stored.contact_email, stored.subject) == (None, None, "")


def test_server_problems_are_answered_without_their_details(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (data_dir / "pki.sqlite3").write_bytes(b"this is not a database" * 100)
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, wget_get_certificate("0"), ACTION + "GetCertificate")
    assert answer.status == 500
    assert "<faultstring>Server Application Error</faultstring>" in answer.text
    assert "<text>ERROR #5001: Server Application Error</text>" in answer.text
    assert str(data_dir) not in answer.text and "database" not in answer.text
    assert "GetCertificate failed: PkiError: cannot use the database" in caplog.text


def test_submit_without_csr_element_is_a_client_fault(service: tuple[str, Path]) -> None:
    body = iris_submit({}).replace(b'<csr xsi:type="CSR"></csr>', b"")
    answer = soap_post(service[0], body, ACTION + "SubmitCSR")
    assert answer.status == 400
    assert "<text>ERROR #5659: the csr element is required</text>" in answer.text


# -- long answers: spooled to a temporary file, sent whole with their length --------------------

# Enough rows of this host name for a ListAll well past the in-memory part of the spool.
_LONG_HOST = "a-rather-long-host-name-for-the-list.example.com"
_LONG_ROWS = SPOOL_MEMORY_LIMIT // 150


def _long_store(data_dir: Path, last_filename: str) -> list[tuple[str, str, str, str]]:
    rows = []
    with Store.open(data_dir) as store, store.transaction():
        for number in range(1, _LONG_ROWS + 1):
            cert = _certificate(number, _LONG_HOST)
            if number == _LONG_ROWS:
                cert = dataclasses.replace(cert, filename=last_filename)
            store.add_certificate(cert)
            rows.append((str(number), cert.hostname, cert.instance, cert.filename))
    return rows


def _deleted_files_open() -> set[str]:
    # A spooled answer's file is unlinked at once; while open it shows as "(deleted)".
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.endswith("(deleted)"):
            links.add(f"{fd} {link}")
    return links


def test_long_list_all_is_sent_whole_with_its_content_length(data_dir: Path) -> None:
    rows = _long_store(data_dir, "last")
    result = [
        "<ListCertificatesResult>",
        *dataset_chunks(DataSet("ListAll", LIST_ALL_COLUMNS, rows)),
        "</ListCertificatesResult>",
    ]
    expected = "".join(response_chunks("ListCertificates", result)).encode("utf-8")
    before = _deleted_files_open()
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, iris_list_certificates(), ACTION + "ListCertificates")
        # The server thread closes the body after the last byte went out: wait for it.
        for _ in range(500):
            after = _deleted_files_open()
            if after == before:
                break
            time.sleep(0.01)
    assert len(expected) > SPOOL_MEMORY_LIMIT
    assert answer.status == 200
    assert answer.headers["content-length"] == str(len(expected))
    assert "transfer-encoding" not in answer.headers
    assert answer.body == expected
    assert after == before  # the temporary file is gone once the answer is sent


def test_unwritable_row_past_the_memory_spool_is_the_server_fault(data_dir: Path) -> None:
    # The bad row comes after more than the in-memory part: the answer is already in its
    # temporary file when writing fails, and still no header has been sent.
    _long_store(data_dir, "bad\x0bname")
    before = _deleted_files_open()
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, iris_list_certificates(), ACTION + "ListCertificates")
        after = _deleted_files_open()
    assert (answer.status, answer.body) == (500, (GOLDEN / "fault_server.xml").read_bytes())
    assert after == before
