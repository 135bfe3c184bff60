"""Byte-for-byte answers: the writers and the live service against tests/golden/.

The golden files were written from wire-protocol.md (§3.1, §3.2, §3.3 and §5 verbatim, CR LF
where the spec marks it; ListAll, the empty DataSet, the empty GetCertificate answer and the
Client/Server faults derived from the same sections by hand).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pki_soap.errors import BadSoapRequest, DuplicateRequest, PkiError
from pki_soap.soap.dataset import LIST_ALL_COLUMNS, LIST_MY_COLUMNS, DataSet, dataset_chunks
from pki_soap.soap.envelope import UnwritableValue, fault_bytes, response_chunks, spool_response
from pki_soap.store import IssuedCertificate, Store
from tests.service_support import (
    ACTION,
    GOLDEN,
    assert_valid_response,
    configure_ca,
    iris_get_certificate,
    iris_list_certificates,
    live_server,
    openssl_csr,
    soap_post,
    wget_get_certificate,
    wget_list_certificates,
    wget_submit,
)

SPEC_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIDXzCCAkegAwIBAgIBAjANBgkqhkiG9w0BAQsFADAeMQswCQYDVQQGEwJVUzEP\n"
    "...\n"
    "-----END CERTIFICATE-----\n"
)
SPEC_SUBJECT = "/C=BE/ST=Wallonia/L=Namur/O=Community/OU=IT/CN=webgateway"
SPEC_DUPLICATE = (
    "ID key not unique for extent 'PKI.CSR' : 'webgateway:WEBGATEWAY:webgateway_client' "
    "exists. Id counter location = '^PKI.CSRD'"
)


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def _certificate(number: int, hostname: str, instance: str, filename: str) -> IssuedCertificate:
    return IssuedCertificate(
        number=number,
        hostname=hostname,
        instance=instance,
        filename=filename,
        contents=SPEC_PEM,
        subject=SPEC_SUBJECT,
        usage="tls",
        issued=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )


def _stored(data_dir: Path, *certificates: IssuedCertificate) -> Path:
    with Store.open(data_dir) as store:
        for cert in certificates:
            store.add_certificate(cert)
    return data_dir


# -- the writers alone -------------------------------------------------------------------------


def written(method: str, result: Iterable[str] | None, memory_limit: int = 1 << 30) -> bytes:
    """The bytes :func:`spool_response` writes for ``method`` and ``result``."""
    with spool_response(method, result, memory_limit=memory_limit) as answer:
        answer.seek(0)
        return answer.read()


def test_submit_response_writer_matches_spec() -> None:
    sentence = "&quot;webgateway_client&quot;"  # escaped as IRIS's $ZCVT(x,"O","XML") does
    content = (
        f"Certificate Signing Request {sentence} successfully submitted to the Certificate "
        "Authority at instance IRIS on node caserver"
    )
    result = f"<SubmitCSRResult>{content}</SubmitCSRResult>"
    assert written("SubmitCSR", [result]) == golden("submit_csr.xml")


def test_empty_get_certificate_writer_matches_spec() -> None:
    assert written("GetCertificate", None) == golden("get_certificate_unknown.xml")


@pytest.mark.parametrize(
    ("row_name", "columns", "rows", "file"),
    [
        (
            "ListMy",
            LIST_MY_COLUMNS,
            [("2", "webgateway_client"), ("3", "apache_webgateway")],
            "list_my.xml",
        ),
        (
            "ListAll",
            LIST_ALL_COLUMNS,
            [
                ("2", "webgateway", "webgateway", "webgateway_client"),
                ("3", "apache", "IRIS", "apache_webgateway"),
            ],
            "list_all.xml",
        ),
        ("ListMy", LIST_MY_COLUMNS, [], "list_empty.xml"),
    ],
    ids=["list-my", "list-all", "empty"],
)
def test_dataset_writer_matches_spec(
    row_name: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], file: str
) -> None:
    chunks = ["<ListCertificatesResult>", *dataset_chunks(DataSet(row_name, columns, iter(rows)))]
    chunks.append("</ListCertificatesResult>")
    assert written("ListCertificates", chunks) == golden(file)


def _list_all_chunks(count: int, last_filename: str = "last") -> Iterator[str]:
    rows = [(str(n), f"host{n}.example.com", "IRIS", f"file{n}") for n in range(1, count)]
    rows.append((str(count), "host.example.com", "IRIS", last_filename))
    yield "<ListCertificatesResult>"
    yield from dataset_chunks(DataSet("ListAll", LIST_ALL_COLUMNS, iter(rows)))
    yield "</ListCertificatesResult>"


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


@pytest.mark.parametrize(
    ("memory_limit", "in_memory"),
    [(1, False), (1000, False), (10 * 1024 * 1024, True)],
    ids=["file-at-once", "file-after-1000-bytes", "memory"],
)
def test_spooled_answer_is_the_same_bytes_in_memory_or_in_a_file(
    memory_limit: int, in_memory: bool
) -> None:
    expected = "".join(response_chunks("ListCertificates", _list_all_chunks(3000))).encode()
    before = _deleted_files_open()
    answer = spool_response("ListCertificates", _list_all_chunks(3000), memory_limit=memory_limit)
    try:
        assert answer.tell() == len(expected)
        # Past the limit the answer is in an unnamed temporary file, which shows as deleted.
        assert (_deleted_files_open() == before) == in_memory
        answer.seek(0)
        assert answer.read() == expected
    finally:
        answer.close()
    assert _deleted_files_open() == before


def test_spooled_answer_that_fails_keeps_no_file() -> None:
    before = _deleted_files_open()
    chunks = _list_all_chunks(3000, last_filename="bad\x0bname")
    with pytest.raises(UnwritableValue, match=r"XML 1\.0"):
        spool_response("ListCertificates", chunks, memory_limit=1)
    assert _deleted_files_open() == before


@pytest.mark.parametrize(
    ("error", "file"),
    [
        (BadSoapRequest("Unexpected SOAPACTION value: urn:wrong"), "fault_client.xml"),
        (PkiError("Server Application Error"), "fault_server.xml"),
        (DuplicateRequest(SPEC_DUPLICATE), "fault_duplicate.xml"),
    ],
    ids=["client", "server", "duplicate-5805"],
)
def test_fault_writer_matches_spec(error: PkiError, file: str) -> None:
    assert fault_bytes(error.fault_side, error.message, [error.detail_text]) == golden(file)


# -- the live service ---------------------------------------------------------------------------


def test_live_get_certificate_matches_spec(data_dir: Path) -> None:
    _stored(data_dir, _certificate(2, "webgateway", "webgateway", "webgateway_client"))
    with live_server(data_dir, portal=False) as url:
        wget = soap_post(url, wget_get_certificate("2"), ACTION + "GetCertificate")
        iris = soap_post(url, iris_get_certificate("2"), ACTION + "GetCertificate")
        unknown = soap_post(url, wget_get_certificate("7"), ACTION + "GetCertificate")
    assert (wget.status, wget.body) == (200, golden("get_certificate.xml"))
    assert wget.headers["content-type"] == "text/xml; charset=UTF-8"
    assert iris.body == wget.body
    assert_valid_response(wget.body)
    assert (unknown.status, unknown.body) == (200, golden("get_certificate_unknown.xml"))


def test_live_lists_match_spec(data_dir: Path) -> None:
    _stored(
        data_dir,
        _certificate(2, "webgateway", "webgateway", "webgateway_client"),
        _certificate(3, "apache", "IRIS", "apache_webgateway"),
    )
    with live_server(data_dir, portal=False) as url:
        everything = soap_post(url, iris_list_certificates(), ACTION + "ListCertificates")
        nothing = soap_post(url, wget_list_certificates("nohost"), ACTION + "ListCertificates")
    assert (everything.status, everything.body) == (200, golden("list_all.xml"))
    assert (nothing.status, nothing.body) == (200, golden("list_empty.xml"))
    assert_valid_response(everything.body)
    assert_valid_response(nothing.body)


def test_live_list_my_matches_spec(data_dir: Path) -> None:
    _stored(
        data_dir,
        _certificate(2, "webgateway", "webgateway", "webgateway_client"),
        _certificate(3, "webgateway", "webgateway", "apache_webgateway"),
        _certificate(4, "webgateway", "OTHER", "not_listed"),
    )
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, wget_list_certificates("webgateway"), ACTION + "ListCertificates")
    assert (answer.status, answer.body) == (200, golden("list_my.xml"))
    assert_valid_response(answer.body)


def test_live_submit_and_duplicate_match_spec(data_dir: Path, tmp_path: Path) -> None:
    configure_ca(data_dir)
    _, csr = openssl_csr(tmp_path, "webgateway_client", "/CN=webgateway")
    body = wget_submit("webgateway", "webgateway_client", csr)
    with live_server(data_dir, portal=False) as url:
        first = soap_post(url, body, ACTION + "SubmitCSR")
        again = soap_post(url, body, ACTION + "SubmitCSR")
    assert (first.status, first.body) == (200, golden("submit_csr.xml"))
    assert_valid_response(first.body)
    # Same bytes as §5 but with the message our store gives (it names no counter location).
    stored_message = (
        "ID key not unique for extent 'PKI.CSR' : 'webgateway:WEBGATEWAY:webgateway_client' exists."
    )
    expected = golden("fault_duplicate.xml").replace(
        SPEC_DUPLICATE.encode(), stored_message.encode()
    )
    assert (again.status, again.body) == (500, expected)


def test_live_client_fault_matches_spec(data_dir: Path) -> None:
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, wget_get_certificate("0"), "urn:wrong")
    assert (answer.status, answer.body) == (400, golden("fault_client.xml"))
    assert answer.headers["content-type"] == "text/xml; charset=UTF-8"


def test_unwritable_answer_is_the_server_fault_not_an_empty_200(data_dir: Path) -> None:
    # A vertical tab cannot be written in XML 1.0: spyne as shipped answers 200 with an empty
    # envelope here; we answer IRIS's Server Application Error.
    _stored(data_dir, _certificate(5, "host", "IRIS", "bad\x0bname"))
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, iris_list_certificates(), ACTION + "ListCertificates")
        after = soap_post(url, wget_get_certificate("5"), ACTION + "GetCertificate")
    assert (answer.status, answer.body) == (500, golden("fault_server.xml"))
    assert (after.status, after.body) == (500, golden("fault_server.xml"))
