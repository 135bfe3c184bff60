"""IrisSoap11 over real HTTP: routing by SOAPAction (§1.1) and the element rules of §4.4."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiMethodContext
from werkzeug.test import EnvironBuilder

from pki_soap.soap.envelope import CONTENT_TYPE
from pki_soap.soap.service import CSR
from pki_soap.soap.wsdl import SERVICE_PATH
from pki_soap.store import Store
from pki_soap.wsgi import PkiSoapApp, make_app
from tests.service_support import (
    ACTION,
    TNS,
    Answer,
    assert_valid_response,
    body_element,
    configure_ca,
    iris_submit,
    live_server,
    openssl_csr,
    soap_post,
)

ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xmlns:s="http://www.w3.org/2001/XMLSchema">{header}<soap:Body>{body}</soap:Body>'
    "</soap:Envelope>\n"
)
GET_CA = f'<GetCertificate xmlns="{TNS}"><number>0</number></GetCertificate>'
LIST_ALL = f'<ListCertificates xmlns="{TNS}"/>'


def envelope(body: str, header: str = "") -> bytes:
    return ENVELOPE.format(body=body, header=header).encode()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, data directory) of one configured CA served for this module."""
    data_dir = tmp_path_factory.mktemp("protocol") / "pki-data"
    configure_ca(data_dir)
    with live_server(data_dir, portal=False) as url:
        yield url, data_dir


@pytest.fixture(scope="module")
def csr_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    _, pem = openssl_csr(tmp_path_factory.mktemp("csr"), "client", "/CN=client.example")
    return pem


def response_name(answer: Answer) -> str:
    return etree.QName(body_element(answer.body)).localname


def fault_text(answer: Answer) -> str:
    fault = body_element(answer.body)
    assert etree.QName(fault).localname == "Fault"
    return fault.findtext("faultstring") or ""


@pytest.mark.parametrize(
    ("action", "body", "expected"),
    [
        (ACTION + "GetCertificate", GET_CA, "GetCertificateResponse"),
        (f'"{ACTION}GetCertificate"', GET_CA, "GetCertificateResponse"),
        (
            "http%3A%2F%2Fpki.intersystems.com%2FPKI.CAServer.GetCertificate",
            GET_CA,
            "GetCertificateResponse",
        ),
        (
            "urn:x/PKI.CAServer.GetCertificate",
            f'<Anything xmlns="{TNS}"><number>0</number></Anything>',
            "GetCertificateResponse",
        ),
        ("GetCertificate", GET_CA, "GetCertificateResponse"),
        ("", LIST_ALL, "ListCertificatesResponse"),
        ('""', LIST_ALL, "ListCertificatesResponse"),
        ("http://pki.intersystems.com/", GET_CA, "GetCertificateResponse"),
        (None, GET_CA, "GetCertificateResponse"),  # Q15: no header, routed by the body
    ],
    ids=[
        "declared",
        "quoted",
        "url-encoded",
        "last-segment-wrapper-renamed",
        "bare-method",
        "empty-body-element",
        "empty-quoted",
        "trailing-slash",
        "missing-header",
    ],
)
def test_routing_runs_the_method_iris_would(
    service: tuple[str, Path], action: str | None, body: str, expected: str
) -> None:
    answer = soap_post(service[0], envelope(body), action)
    assert answer.status == 200, answer.text
    assert response_name(answer) == expected
    assert_valid_response(answer.body)


@pytest.mark.parametrize(
    ("action", "body", "message"),
    [
        ("Foo.GetCertificate", GET_CA, "Unexpected SOAPACTION value: Foo.GetCertificate"),
        (ACTION + "Nope", GET_CA, "Unexpected SOAPACTION value: " + ACTION + "Nope"),
        ("urn:wrong", GET_CA, "Unexpected SOAPACTION value: urn:wrong"),
        ("", f'<Nope xmlns="{TNS}"/>', "Nope is not a web method"),
        (None, f'<Nope xmlns="{TNS}"/>', "Nope is not a web method"),
        # The action decides: the GetCertificate wrapper is read as ListCertificates.
        (ACTION + "ListCertificates", GET_CA, "Unexpected tag in XML input: number"),
    ],
    ids=[
        "other-class",
        "unknown-method",
        "unknown-action",
        "empty-unknown-body",
        "missing-unknown-body",
        "action-wins",
    ],
)
def test_routing_refuses_with_a_client_fault(
    service: tuple[str, Path], action: str | None, body: str, message: str
) -> None:
    answer = soap_post(service[0], envelope(body), action)
    assert answer.status == 400
    assert answer.headers["content-type"] == "text/xml; charset=UTF-8"
    assert message in fault_text(answer)
    assert b"<faultcode>SOAP-ENV:Client</faultcode>" in answer.body


@pytest.mark.parametrize(
    "body",
    [
        f'<GetCertificate xmlns="{TNS}"><number xsi:type="s:string">0</number></GetCertificate>',
        f'<GetCertificate xmlns="{TNS}" xsi:type="s:anything">'
        '<number xsi:type="s:int">0</number></GetCertificate>',
        f'<GetCertificate xmlns="{TNS}"><number xmlns="">0</number></GetCertificate>',
        "<GetCertificate><number>0</number></GetCertificate>",
        f'<p:GetCertificate xmlns:p="{TNS}"><p:number>0</p:number></p:GetCertificate>',
        f'<GetCertificate xmlns="{TNS}">\n  <number>0</number>\n</GetCertificate>',
    ],
    ids=["xsi-type", "foreign-xsi-type", "unqualified-child", "no-namespace", "prefixed", "pretty"],
)
def test_request_shapes_iris_accepts(service: tuple[str, Path], body: str) -> None:
    answer = soap_post(service[0], envelope(body), ACTION + "GetCertificate")
    assert answer.status == 200, answer.text
    result = assert_valid_response(answer.body)
    assert result.findtext(f"{{{TNS}}}GetCertificateResult/{{{TNS}}}Filename") == "CA_Server"


def test_soap_header_is_ignored(service: tuple[str, Path]) -> None:
    header = (
        '<soap:Header><h:Security xmlns:h="urn:x" soap:mustUnderstand="1">x</h:Security>'
        "</soap:Header>"
    )
    answer = soap_post(service[0], envelope(GET_CA, header), ACTION + "GetCertificate")
    assert answer.status == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            f'<GetCertificate xmlns="{TNS}"><number>0</number><bogus/></GetCertificate>',
            "Unexpected tag in XML input: bogus",
        ),
        (
            f'<GetCertificate xmlns="{TNS}"><x:number xmlns:x="urn:x">0</x:number>'
            "</GetCertificate>",
            "Unexpected tag in XML input: number",
        ),
        (
            '<GetCertificate xmlns="urn:wrong"><number>0</number></GetCertificate>',
            "Unexpected namespace urn:wrong",
        ),
        (
            f'<GetCertificate xmlns="{TNS}"><number>0</number><number>1</number></GetCertificate>',
            "Badly formed SOAP Message",
        ),
        (
            f'<GetCertificate xmlns="{TNS}"><number><b>0</b></number></GetCertificate>',
            "Badly formed SOAP Message",
        ),
    ],
    ids=["unknown-child", "foreign-child", "wrong-namespace", "repeated-child", "nested-value"],
)
def test_request_shapes_iris_refuses(service: tuple[str, Path], body: str, message: str) -> None:
    answer = soap_post(service[0], envelope(body), ACTION + "GetCertificate")
    assert answer.status == 400
    assert message in fault_text(answer)


def test_submit_accepts_any_order_xsi_types_and_logs_unknown_csr_elements(
    service: tuple[str, Path], csr_pem: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields: dict[str, str | None] = {
        "ContactEmail": "someone@example.com",
        "ContactName": "Contact Person",
        "Subject": "/CN=client.example",
        "Contents": csr_pem,
        "Filename": "any_order",
        "Instance": "IRIS",
        "Hostname": "client",
        "Name": None,  # omitted: built as Hostname:Instance:Filename
    }
    body = iris_submit(fields).replace(
        b"</csr>", b'<FutureField xsi:type="s:string">x</FutureField></csr>'
    )
    with caplog.at_level(logging.WARNING, logger="pki_soap.soap"):
        answer = soap_post(service[0], body, ACTION + "SubmitCSR")
    assert answer.status == 200, answer.text
    assert b"successfully submitted" in answer.body
    assert "FutureField" in caplog.text
    with Store.open(service[1]) as store:
        stored = store.request("client:IRIS:any_order")
    assert (stored.contact_name, stored.contact_email) == ("Contact Person", "someone@example.com")


@pytest.mark.parametrize(
    ("document", "status", "code"),
    [
        (
            b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>',
            500,
            b"SOAP-ENV:VersionMismatch",
        ),
        (
            b'<e:Envelope xmlns:e="urn:not-soap"><e:Body/></e:Envelope>',
            500,
            b"SOAP-ENV:VersionMismatch",
        ),
        (b"<GetCertificate><number>0</number></GetCertificate>", 400, b"SOAP-ENV:Client"),
        (
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>',
            400,
            b"SOAP-ENV:Client",
        ),
    ],
    ids=["soap-1.2", "other-envelope", "no-envelope", "no-body"],
)
def test_envelope_problems_are_faults(
    service: tuple[str, Path], document: bytes, status: int, code: bytes
) -> None:
    answer = soap_post(service[0], document, ACTION + "GetCertificate")
    assert answer.status == status
    assert code in answer.body


def test_http_charset_does_not_override_the_document(service: tuple[str, Path]) -> None:
    body = envelope(GET_CA).replace(b'encoding="utf-8"', b'encoding="ISO-8859-1"')
    answer = soap_post(service[0], body, ACTION + "GetCertificate", content_type="text/plain")
    assert answer.status == 200
    no_type = soap_post(service[0], envelope(GET_CA), ACTION + "GetCertificate", content_type=None)
    assert no_type.status == 200


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("GetCertificate", f'<GetCertificate xmlns="{TNS}"><number>7</number></GetCertificate>'),
        ("GetCertificate", f'<GetCertificate xmlns="{TNS}"><number/></GetCertificate>'),
        ("GetCertificate", f'<GetCertificate xmlns="{TNS}"/>'),
        (
            "GetCertificate",
            f'<GetCertificate xmlns="{TNS}"><number xsi:nil="true"/></GetCertificate>',
        ),
        (
            "GetCertificate",
            f'<GetCertificate xmlns="{TNS}"><number xsi:nil="false"></number></GetCertificate>',
        ),
        (
            "GetCertificate",
            f'<GetCertificate xmlns="{TNS}"><number xsi:type="s:int"> 7\n</number>'
            "</GetCertificate>",
        ),
        (
            "ListCertificates",
            f'<ListCertificates xmlns="{TNS}"><instance>I&amp;&lt;</instance>'
            "<hostname><![CDATA[h<é>]]></hostname></ListCertificates>",
        ),
        (
            "ListCertificates",
            f'<ListCertificates xmlns="{TNS}"><hostname>h</hostname><!-- c --></ListCertificates>',
        ),
        ("ListCertificates", "<ListCertificates><instance></instance></ListCertificates>"),
    ],
    ids=[
        "value",
        "empty",
        "absent",
        "nil",
        "nil-false",
        "spaces-and-xsi-type",
        "entities-cdata-any-order",
        "comment",
        "unqualified-empty",
    ],
)
def test_plain_arguments_are_read_as_spyne_reads_them(
    tmp_path: Path, action: str, body: str
) -> None:
    # IrisSoap11 reads string-only arguments itself; spyne's own reading must agree.
    app = make_app(tmp_path / "pki-data", public_url="http://127.0.0.1:1", portal=False)
    request = envelope(body)
    environ = EnvironBuilder(
        path=SERVICE_PATH,
        method="POST",
        data=request,
        headers={"Content-Type": CONTENT_TYPE, "SOAPAction": ACTION + action},
    ).get_environ()
    ctx = WsgiMethodContext(app.soap, environ, CONTENT_TYPE)
    ctx.in_string = [request]
    (ctx,) = app.soap.generate_contexts(ctx)
    assert ctx.in_error is None
    protocol = app.soap.app.in_protocol
    protocol.deserialize(ctx, protocol.REQUEST)
    ours = ctx.in_object
    Soap11.deserialize(protocol, ctx, protocol.REQUEST)
    assert isinstance(ours, list)
    assert ours == list(ctx.in_object)


def _request_context(app: PkiSoapApp, action: str, body: str) -> WsgiMethodContext:
    """The context of ``body`` after routing, normalisation and schema validation."""
    request = envelope(body)
    environ = EnvironBuilder(
        path=SERVICE_PATH,
        method="POST",
        data=request,
        headers={"Content-Type": CONTENT_TYPE, "SOAPAction": ACTION + action},
    ).get_environ()
    ctx = WsgiMethodContext(app.soap, environ, CONTENT_TYPE)
    ctx.in_string = [request]
    (ctx,) = app.soap.generate_contexts(ctx)
    return ctx


def _readings(app: PkiSoapApp, ctx: WsgiMethodContext) -> tuple[list[Any], list[Any]]:
    """(IrisSoap11's direct reading, spyne's own reading) of the context's arguments, each
    argument a string, None, or a CSR as (model, {member: value})."""
    protocol = app.soap.app.in_protocol
    protocol.deserialize(ctx, protocol.REQUEST)
    ours = list(ctx.in_object)
    Soap11.deserialize(protocol, ctx, protocol.REQUEST)
    theirs = list(ctx.in_object)
    return [_comparable(value) for value in ours], [_comparable(value) for value in theirs]


def _comparable(value: Any) -> Any:
    if isinstance(value, CSR):
        return type(value), {field: getattr(value, field) for field in CSR.get_flat_type_info(CSR)}
    return value


CSR_FIELDS = (
    "<Name>n:I:f</Name><Hostname>h</Hostname><Instance>I</Instance><Filename>f</Filename>"
    "<Contents>PEM</Contents><Subject>/CN=h</Subject><ContactName>c</ContactName>"
    "<ContactPhone>1</ContactPhone><ContactEmail>e@x</ContactEmail>"
)


def submit(csr: str) -> str:
    return f'<SubmitCSR xmlns="{TNS}">{csr}</SubmitCSR>'


@pytest.mark.parametrize(
    "body",
    [
        submit(f"<csr>{CSR_FIELDS}</csr>"),
        submit(
            '<csr><ContactEmail xmlns="">e@x</ContactEmail><Subject>/CN=h</Subject>'
            f'<p:Hostname xmlns:p="{TNS}">h</p:Hostname><Contents xmlns="">PEM</Contents></csr>'
        ),
        "<SubmitCSR><csr><Filename>f</Filename><Name>n</Name></csr></SubmitCSR>",
        submit(
            '<csr xsi:type="s:anything"><Name xsi:type="s:int">n</Name>'
            '<Hostname xsi:type="p:CSR" xmlns:p="urn:x">h</Hostname></csr>'
        ),
        submit(
            '<csr><Name xsi:nil="true"/><Hostname xsi:nil="false">h</Hostname>'
            '<Instance xsi:nil="1"></Instance></csr>'
        ),
        submit("<csr><Subject/><ContactPhone></ContactPhone><Contents> </Contents></csr>"),
        submit("<csr/>"),
        submit('<csr xsi:nil="true"/>'),
        submit(""),
        submit(
            "<csr><FutureField>x</FutureField><Name>n</Name>"
            "<Older><Name>inner</Name><Deep><Contents>y</Contents></Deep></Older>"
            '<x:Hostname xmlns:x="urn:x">foreign</x:Hostname><Instance>I</Instance></csr>'
        ),
        submit(
            "<csr><Contents><![CDATA[-----BEGIN <x>-----\n]]>&lt;&amp;&gt;&#233;&#x10000;"
            "</Contents><Subject>  /CN=a b\n\t</Subject><Name>é&quot;&apos;</Name></csr>"
        ),
        submit(
            "<csr><!-- before --><Name>a<!-- inside -->b</Name><?pi data?>"
            "<Hostname>h<?pi x?>i</Hostname></csr>"
        ),
        submit("\n  <csr>\n    <Name>n</Name>\n    <Hostname>h</Hostname>\n  </csr>\n"),
        submit(f'<csr unknown="1" xmlns:q="urn:q" q:attr="2">{CSR_FIELDS}</csr>'),
    ],
    ids=[
        "all-fields",
        "any-order-mixed-qualification",
        "no-namespace",
        "xsi-types",
        "nil-true-false-one",
        "empty-elements",
        "empty-csr",
        "nil-csr",
        "absent-csr",
        "unknown-and-foreign-children-dropped",
        "cdata-entities-whitespace",
        "comments-and-pis",
        "pretty",
        "attributes-on-csr",
    ],
)
def test_csr_is_read_as_spyne_reads_it(tmp_path: Path, body: str) -> None:
    # IrisSoap11 reads SubmitCSR's csr record itself; spyne's own reading must agree.
    app = make_app(tmp_path / "pki-data", public_url="http://127.0.0.1:1", portal=False)
    ctx = _request_context(app, "SubmitCSR", body)
    assert ctx.in_error is None
    ours, theirs = _readings(app, ctx)
    assert ours == theirs
    assert len(ours) == 1


@pytest.mark.parametrize(
    "csr",
    [
        "<csr><Contents>a<b>PEM</b>c</Contents></csr>",
        "<csr><Name>n1</Name><Hostname>h</Hostname><Name>n2</Name></csr>",
        "<csr><Name>n1</Name><Name>n2</Name></csr>",
        "<csr>text<Name>n</Name></csr>",
        "<csr><Name>n</Name></csr><csr><Name>m</Name></csr>",
        "<csr><Name><Name>n</Name></Name></csr>",
    ],
    ids=[
        "element-inside-contents",
        "duplicate-field-apart",
        "duplicate-field",
        "text-inside-csr",
        "duplicate-csr",
        "nested-field",
    ],
)
def test_csr_structures_the_schema_refuses(tmp_path: Path, csr: str) -> None:
    # Schema validation still refuses these before any reading (a Client fault, as before);
    # were it skipped, both readings would still agree.
    app = make_app(tmp_path / "pki-data", public_url="http://127.0.0.1:1", portal=False)
    ctx = _request_context(app, "SubmitCSR", submit(csr))
    assert ctx.in_error is not None
    assert ctx.in_error.faultcode.startswith("Client")
    ctx.in_error = None
    ctx.descriptor = app.soap.app.interface.service_method_map[f"{{{TNS}}}SubmitCSR"][0]
    ours, theirs = _readings(app, ctx)
    assert ours == theirs
