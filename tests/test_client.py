"""CAClient against a stand-in IRIS server: request bytes, IRIS answers, faults, bad answers."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from pki_soap import errors
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import cert_pem
from pki_soap.client.soap_client import PACKAGED_WSDL, CAClient, CertificateRow
from tests import iris_standin as iris
from tests.engine_support import CA_PASSWORD, make_ca, make_csr

GOLDEN = Path(__file__).resolve().parent / "golden" / "client"
UPDATE_GOLDEN = os.environ.get("PKI_UPDATE_GOLDEN") == "1"
CSR_TEXT = (
    "-----BEGIN CERTIFICATE REQUEST-----\n"
    "MIIBfake+golden/contents&<needs>escaping\n"
    "-----END CERTIFICATE REQUEST-----\n"
)
SENTENCE = (
    'Certificate Signing Request "caclient_client" successfully submitted to the '
    "Certificate Authority at instance IRIS on node caserver"
)


@dataclass(frozen=True)
class Certs:
    ca: x509.Certificate
    leaf: x509.Certificate


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = make_ca(tmp_path_factory.mktemp("ca"))
    _, csr = make_csr("/C=US/O=Example/CN=caclient.example")
    leaf = ca.sign(
        csr, Usage.TLS, key=ca.private_key(CA_PASSWORD), days=30, serial_number=ca.serials.take()
    )
    return Certs(ca.certificate, leaf)


@pytest.fixture
def standin() -> Iterator[iris.IrisStandin]:
    with iris.IrisStandin() as server:
        yield server


@pytest.fixture
def client(standin: iris.IrisStandin) -> CAClient:
    return CAClient(standin.url, timeout=5)


def leaf_answer(
    certs: Certs, *, number: str = "12", filename: str = "caclient_client"
) -> iris.Answer:
    return iris.certificate(
        number,
        "caclient",
        "IRIS",
        filename,
        cert_pem(certs.leaf),
        "/C=US/O=Example & Co/CN=caclient.example",
    )


def request_text(seen: iris.Recorded) -> bytes:
    """The parts of a request that must not change: request line, the two SOAP headers, body."""
    head = (
        f"{seen.method} {seen.path}\r\n"
        f"SOAPAction: {seen.headers['SOAPAction']}\r\n"
        f"Content-Type: {seen.headers['Content-Type']}\r\n\r\n"
    )
    return head.encode("ascii") + seen.body


def check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.read_bytes() == data, f"request differs from golden file {path.name}"


# -- what the client sends -----------------------------------------------------------------


def submit_example(client: CAClient) -> str:
    return client.submit_csr(
        name="caclient:IRIS:caclient_client",
        hostname="caclient",
        instance="IRIS",
        filename="caclient_client",
        contents=CSR_TEXT,
        subject="/C=US/CN=caclient",
        contact_name="Contact Person",
        contact_phone="",
        contact_email=None,
    )


@pytest.mark.parametrize(
    "golden, method, call",
    [
        ("GetCertificate-0.request", "GetCertificate", lambda c: c.get_certificate(0)),
        ("GetCertificate-12.request", "GetCertificate", lambda c: c.get_certificate("12")),
        (
            "ListCertificates-my.request",
            "ListCertificates",
            lambda c: c.list_certificates("caclient", "IRIS"),
        ),
        ("ListCertificates-all.request", "ListCertificates", lambda c: c.list_certificates()),
        ("SubmitCSR.request", "SubmitCSR", submit_example),
    ],
    ids=["get-ca", "get-12", "list-my", "list-all", "submit"],
)
def test_request_bytes_match_golden(
    standin: iris.IrisStandin, client: CAClient, certs: Certs, golden: str, method: str, call
) -> None:
    standin.answers.update(
        GetCertificate=lambda seen: leaf_answer(certs, number="0" if b">0<" in seen.body else "12"),
        ListCertificates=iris.list_my([]),
        SubmitCSR=iris.submitted(SENTENCE),
    )
    call(client)
    [seen] = standin.posts()
    assert seen.headers["SOAPAction"] == f"http://pki.intersystems.com/PKI.CAServer.{method}"
    assert seen.headers["Content-Type"] == "text/xml; charset=UTF-8"
    assert seen.path == "/isc/pki/PKI.CAServer.cls"
    check_golden(golden, request_text(seen))


def test_list_all_omits_both_arguments_and_submit_omits_empty_optionals(
    standin: iris.IrisStandin, client: CAClient
) -> None:
    standin.answers.update(ListCertificates=iris.list_all([]), SubmitCSR=iris.submitted(SENTENCE))
    client.list_certificates("", "")
    submit_example(client)
    list_body, submit_body = (seen.body for seen in standin.posts())
    assert b"hostname" not in list_body and b"instance" not in list_body
    assert b"<ns0:Subject>/C=US/CN=caclient</ns0:Subject>" in submit_body
    assert b"ContactPhone" not in submit_body and b"ContactEmail" not in submit_body


def test_server_wsdl_is_used_once_with_the_configured_address(certs: Certs) -> None:
    # The served WSDL names http://caserver:52773/...; calls must still go to our URL.
    with iris.IrisStandin(wsdl=iris.WSDL.read_bytes()) as standin:
        standin.answers["GetCertificate"] = leaf_answer(certs)
        client = CAClient(standin.url, timeout=5)
        client.get_certificate(12)
        client.get_certificate(12)
        assert client.wsdl_source == standin.url + "?WSDL"
        assert [seen.method for seen in standin.requests] == ["GET", "POST", "POST"]


def test_packaged_wsdl_is_the_fallback_when_the_server_refuses_wsdl(
    standin: iris.IrisStandin, client: CAClient, certs: Certs
) -> None:
    standin.answers["GetCertificate"] = leaf_answer(certs)
    assert client.get_certificate(12) is not None
    assert client.wsdl_source == str(PACKAGED_WSDL)
    assert standin.requests[0].method == "GET" and len(standin.posts()) == 1


WSDL_TEXT = iris.WSDL.read_text()
UNUSABLE_WSDLS = {
    "not-xml": "<html>Development privilege required</html",
    "dtd": WSDL_TEXT.replace(
        "<definitions ",
        '<!DOCTYPE definitions [<!ENTITY e SYSTEM "file:///etc/passwd">]><definitions ',
        1,
    ),
    "other-binding": WSDL_TEXT.replace('binding name="CAServerSoap"', 'binding name="Other"'),
    # the binding's SubmitCSR operation removed, the rest intact
    "missing-operation": re.sub(
        r'<operation name="SubmitCSR">\s*<soap:operation.*?</operation>', "", WSDL_TEXT, flags=re.S
    ),
}


@pytest.mark.parametrize("wsdl", list(UNUSABLE_WSDLS.values()), ids=list(UNUSABLE_WSDLS))
def test_an_unusable_server_wsdl_falls_back_to_the_packaged_one(wsdl: str, certs: Certs) -> None:
    assert wsdl != WSDL_TEXT
    with iris.IrisStandin(wsdl=wsdl.encode()) as standin:
        standin.answers["GetCertificate"] = leaf_answer(certs)
        client = CAClient(standin.url, timeout=5)
        assert client.get_certificate(12) is not None
        assert client.wsdl_source == str(PACKAGED_WSDL)


def test_an_explicit_wsdl_replaces_the_fetch(standin: iris.IrisStandin, certs: Certs) -> None:
    standin.answers["GetCertificate"] = leaf_answer(certs)
    client = CAClient(standin.url, timeout=5, wsdl=str(PACKAGED_WSDL))
    assert client.get_certificate(12) is not None
    assert [seen.method for seen in standin.requests] == ["POST"]
    with pytest.raises(errors.InvalidInput, match="is unusable"):
        CAClient(standin.url, wsdl=str(GOLDEN / "SubmitCSR.request")).get_certificate(1)


def test_a_server_wsdl_without_subject_makes_the_client_omit_it() -> None:
    # A Caché-era PKI.CSR has no Subject and its server rejects the element (§10 Q2).
    text = iris.WSDL.read_text()
    cache_wsdl = text.replace('<s:element minOccurs="0" name="Subject" type="s:string"/>', "")
    assert cache_wsdl != text
    with iris.IrisStandin(wsdl=cache_wsdl.encode()) as standin:
        standin.answers["SubmitCSR"] = iris.submitted(SENTENCE)
        assert submit_example(CAClient(standin.url, timeout=5)) == SENTENCE
        assert b"Subject" not in standin.posts()[0].body


# -- what the client reads -----------------------------------------------------------------


def test_submit_returns_the_servers_sentence_unescaped(
    standin: iris.IrisStandin, client: CAClient
) -> None:
    standin.answers["SubmitCSR"] = iris.submitted(SENTENCE)
    assert submit_example(client) == SENTENCE


def test_list_my_in_string_order_comes_back_numeric(
    standin: iris.IrisStandin, client: CAClient
) -> None:
    numbers = sorted((str(n) for n in range(1, 13)), key=str)  # "1", "10", "11", "12", "2", ...
    assert numbers[:3] == ["1", "10", "11"]
    standin.answers["ListCertificates"] = iris.list_my([(n, f"cert_{n}") for n in numbers])
    rows = client.list_certificates("caclient", "IRIS")
    assert rows == [CertificateRow(n, f"cert_{n}") for n in range(1, 13)]


def test_list_all_reads_four_columns(standin: iris.IrisStandin, client: CAClient) -> None:
    standin.answers["ListCertificates"] = iris.list_all(
        [("10", "web&gw", "IRIS", "b"), ("9", "caclient", "PKI", "a")]
    )
    assert client.list_certificates() == [
        CertificateRow(9, "a", "caclient", "PKI"),
        CertificateRow(10, "b", "web&gw", "IRIS"),
    ]


@pytest.mark.parametrize(
    "answer, expected",
    [
        (iris.list_my([]), []),
        (iris.list_all([]), []),
        (
            iris.list_my([("3", "x"), ("4", "y")], unique=True),
            [CertificateRow(3, "x"), CertificateRow(4, "y")],
        ),
        (iris.list_my([("5", None)]), [CertificateRow(5, "")]),
        (iris.dataset("Q", ("ID", "File"), [("7", "renamed")]), [CertificateRow(7, "renamed")]),
        (
            iris.dataset("Q", ("A", "B", "C", "D"), [("8", "h", "i", "f")]),
            [CertificateRow(8, "f", "h", "i")],
        ),
    ],
    ids=[
        "empty-my",
        "empty-all",
        "unique-sibling",
        "null-filename",
        "positional-2",
        "positional-4",
    ],
)
def test_list_datasets(
    standin: iris.IrisStandin, client: CAClient, answer: iris.Answer, expected: list[CertificateRow]
) -> None:
    standin.answers["ListCertificates"] = answer
    assert client.list_certificates("h", "i") == expected


def test_get_certificate_reads_all_six_elements(
    standin: iris.IrisStandin, client: CAClient, certs: Certs
) -> None:
    standin.answers["GetCertificate"] = leaf_answer(certs)
    remote = client.get_certificate(12)
    assert remote is not None
    assert (remote.number, remote.hostname, remote.instance, remote.filename) == (
        12,
        "caclient",
        "IRIS",
        "caclient_client",
    )
    assert remote.subject == "/C=US/O=Example & Co/CN=caclient.example"
    assert remote.certificate == certs.leaf
    assert remote.contents == cert_pem(certs.leaf)


def test_unknown_number_is_none(standin: iris.IrisStandin, client: CAClient) -> None:
    standin.answers["GetCertificate"] = iris.no_certificate()
    assert client.get_certificate(99) is None


# -- faults --------------------------------------------------------------------------------

DUPLICATE = (
    "ERROR #5805: ID key not unique for extent 'PKI.CSR' : "
    "'caclient:IRIS:caclient_client' exists. Id counter location = '^PKI.CSRD'"
)


@pytest.mark.parametrize(
    "answer, error, message",
    [
        (
            iris.fault("Server", "Server Application Error", [DUPLICATE]),
            errors.DuplicateRequest,
            r"^ID key not unique for extent 'PKI\.CSR' : 'caclient:IRIS:caclient_client' exists",
        ),
        (
            iris.fault(
                "Client",
                "Badly formed SOAP Message",
                ["Unexpected SOAPACTION value: http://x/Foo.SubmitCSR"],
            ),
            errors.BadSoapRequest,
            r"^Unexpected SOAPACTION value: http://x/Foo\.SubmitCSR$",
        ),
        (
            iris.fault("Client", "the CSR is not PEM", ["ERROR #8103: the CSR is not PEM"]),
            errors.InvalidCsr,
            r"^the CSR is not PEM$",
        ),
        (
            iris.fault("Server", "Internal Server Error"),
            errors.PkiError,
            r"^Internal Server Error$",
        ),
        (
            iris.fault("Client", "odd", ["ERROR #9999: odd"]),
            errors.InvalidInput,
            r"^odd$",
        ),
        (
            iris.fault(
                "Server", "Server Application Error", ["ERROR #5001: a; b", "ERROR #5002: c"]
            ),
            errors.PkiError,
            r"^a; b; c$",
        ),
    ],
    ids=[
        "duplicate-5805",
        "client-400",
        "invalid-csr",
        "server-500-bare",
        "client-unknown-number",
        "two-texts",
    ],
)
def test_faults_become_the_error_class_of_their_number(
    standin: iris.IrisStandin,
    client: CAClient,
    answer: iris.Answer,
    error: type[errors.PkiError],
    message: str,
) -> None:
    standin.answers["SubmitCSR"] = answer
    with pytest.raises(error, match=message) as caught:
        submit_example(client)
    assert type(caught.value) is error


def all_error_classes() -> list[type[errors.PkiError]]:
    found: list[type[errors.PkiError]] = [errors.PkiError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("error", all_error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_class_round_trips(
    standin: iris.IrisStandin, client: CAClient, error: type[errors.PkiError]
) -> None:
    sent = error("what went wrong")
    standin.answers["ListCertificates"] = iris.fault(
        sent.fault_side, sent.message, [sent.detail_text]
    )
    with pytest.raises(error, match=r"^what went wrong$") as caught:
        client.list_certificates()
    assert type(caught.value) is error


# -- bad answers and no answers ------------------------------------------------------------

NOT_PEM = iris.certificate(
    "12", "h", "i", "f", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ""
)
XXE = iris.Answer(
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b"<SOAP-ENV:Envelope xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'>"
    b'<SOAP-ENV:Body><GetCertificateResponse xmlns="http://pki.intersystems.com">'
    b"<GetCertificateResult><Number>&e;</Number></GetCertificateResult>"
    b"</GetCertificateResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"
)


@pytest.mark.parametrize(
    "answer, message",
    [
        (iris.HTML_500, r"invalid answer: HTTP 500 .*Content-Type 'text/html', not SOAP"),
        (iris.MALFORMED, r"invalid answer: HTTP 200 OK, malformed XML"),
        (iris.Answer(b"hello", content_type="text/plain"), r"Content-Type 'text/plain', not SOAP"),
        (iris.Answer(b"<html><body>hi</body></html>"), r"not a SOAP 1\.1 envelope"),
        (
            iris.Answer(iris.response("GetCertificate", "").body, status=500),
            r"HTTP 500 .*without a SOAP fault",
        ),
        (
            iris.Answer(iris.response("GetCertificate", "").body, status=404),
            r"HTTP 404 .*without a SOAP fault",
        ),
        (XXE, r"invalid answer"),
        (NOT_PEM, r"certificate 12 is not a PEM certificate"),
    ],
    ids=[
        "html-500",
        "malformed-xml",
        "text-plain",
        "not-soap",
        "500-no-fault",
        "404-xml",
        "xxe",
        "not-pem",
    ],
)
def test_bad_answers_are_invalid_answers(
    standin: iris.IrisStandin, client: CAClient, answer: iris.Answer, message: str
) -> None:
    standin.answers["GetCertificate"] = answer
    with pytest.raises(errors.ServerUnreachable, match=message) as caught:
        client.get_certificate(12)
    assert caught.value.message.startswith(f"CA server at {standin.url} gave an invalid answer: ")
    assert "root:" not in caught.value.message  # the entity was never resolved


def test_a_wrong_number_or_missing_elements_are_invalid_answers(
    standin: iris.IrisStandin, client: CAClient, certs: Certs
) -> None:
    standin.answers["GetCertificate"] = leaf_answer(certs, number="13")
    with pytest.raises(errors.ServerUnreachable, match="asked for certificate 12, got number '13'"):
        client.get_certificate(12)
    standin.answers["GetCertificate"] = iris.response(
        "GetCertificate", "<GetCertificateResult><Number>12</Number></GetCertificateResult>"
    )
    with pytest.raises(errors.ServerUnreachable, match="lacks Filename, Contents"):
        client.get_certificate(12)


@pytest.mark.parametrize(
    "answer, message",
    [
        (
            iris.response("ListCertificates", "<ListCertificatesResult>x</ListCertificatesResult>"),
            "inline s:schema",
        ),
        (iris.response("ListCertificates", ""), "returned no DataSet"),
        (iris.list_my([("abc", "x")]), r"row with number 'abc'"),
        (iris.dataset("Q", ("Number", "Host"), [("1", "h")]), "lack Number or Filename"),
    ],
    ids=["no-schema", "no-result", "bad-number", "no-filename-column"],
)
def test_broken_datasets_are_invalid_answers(
    standin: iris.IrisStandin, client: CAClient, answer: iris.Answer, message: str
) -> None:
    standin.answers["ListCertificates"] = answer
    with pytest.raises(errors.ServerUnreachable, match=message):
        client.list_certificates()


def test_unsafe_server_filename_is_refused(
    standin: iris.IrisStandin, client: CAClient, certs: Certs
) -> None:
    standin.answers["GetCertificate"] = leaf_answer(certs, filename="../../evil")
    with pytest.raises(errors.InvalidRoot, match=r"unsafe file name '\.\./\.\./evil'"):
        client.get_certificate(12)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_down_is_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/isc/pki/PKI.CAServer.cls"
    with pytest.raises(
        errors.ServerUnreachable, match=r"unreachable: Connection refused$"
    ) as caught:
        CAClient(url, timeout=5).list_certificates()
    assert caught.value.message.startswith(f"CA server at {url} unreachable")
    assert caught.value.exit_code == 6


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/isc/pki/PKI.CAServer.cls"
        with pytest.raises(
            errors.ServerUnreachable, match=r"unreachable: no answer within 0\.3 seconds"
        ):
            CAClient(url, timeout=0.3).get_certificate(0)


# -- input checks before anything is sent --------------------------------------------------


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"contact_name": " "}, errors.MissingField, "ContactName is required"),
        ({"filename": ""}, errors.MissingField, "Filename is required"),
        ({"hostname": "a\nb"}, errors.InvalidField, "Hostname holds a control character"),
        ({"subject": "/CN=\x1b[31m"}, errors.InvalidField, "Subject holds a control character"),
        ({"contents": "x" * 5001}, errors.InvalidField, "Contents is longer than 5000"),
        ({"contact_email": "e" * 51}, errors.InvalidField, "ContactEmail is longer than 50"),
    ],
    ids=[
        "no-contact",
        "no-filename",
        "newline-host",
        "escape-subject",
        "long-contents",
        "long-email",
    ],
)
def test_bad_fields_are_refused_before_sending(
    standin: iris.IrisStandin,
    client: CAClient,
    change: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    fields = dict(
        name="h:I:f",
        hostname="h",
        instance="I",
        filename="f",
        contents=CSR_TEXT,
        subject="/CN=h",
        contact_name="c",
        contact_phone=None,
        contact_email=None,
    )
    fields.update(change)
    with pytest.raises(error, match=message):
        client.submit_csr(**fields)
    assert standin.posts() == []


@pytest.mark.parametrize(
    "number",
    ["abc", "-1", "1.5", "", "١٢"],
    ids=["word", "negative", "decimal", "empty", "arabic-digits"],
)
def test_bad_numbers_are_refused_before_sending(
    standin: iris.IrisStandin, client: CAClient, number: str
) -> None:
    with pytest.raises(errors.InvalidInput, match="is not a decimal number"):
        client.get_certificate(number)
    assert standin.requests == []


@pytest.mark.parametrize(
    "url", ["ftp://h/x", "caserver:52773", "http:///x"], ids=["ftp", "no-scheme", "no-host"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(errors.InvalidInput, match="must be http://host:port/path"):
        CAClient(url)
