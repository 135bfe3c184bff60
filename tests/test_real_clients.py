"""Real clients against the live service: the wget client, InterSystems' client, zeep.

The wget client's requests are replayed from tests/real_clients/ with its
headers, and its answers parsed exactly as it parses them (grep, the lines between
<Contents> and </Contents>, the last <Number> line); openssl then checks what it saved.
"""

from __future__ import annotations

from pathlib import Path

import zeep
from lxml import etree

from pki_soap.ca.authority import Usage
from pki_soap.soap.dataset import read_dataset
from tests.engine_support import open_server
from tests.service_support import (
    ACTION,
    CA_INSTANCE,
    CA_NODE,
    CA_ROOT,
    TNS,
    WGET_HEADERS,
    assert_valid_response,
    configure_ca,
    cut_pem,
    iris_get_certificate,
    iris_list_certificates,
    iris_submit,
    last_number,
    live_server,
    openssl,
    openssl_csr,
    soap_post,
    submitted,
    wget_get_certificate,
    wget_list_certificates,
    wget_submit,
)


def _issue(data_dir: Path, name: str, password: bytes) -> int:
    with open_server(data_dir) as server:
        return server.issue(name, Usage.TLS, password).number


def _fingerprint(data_dir: Path) -> str:
    with open_server(data_dir) as server:
        return server.authority().fingerprint


def _modulus(kind: str, path: Path) -> str:
    return openssl(kind, "-noout", "-modulus", "-in", path).strip()


def test_wget_client_flow(data_dir: Path, tmp_path: Path) -> None:
    password = configure_ca(data_dir)
    key, csr = openssl_csr(tmp_path, "webgateway_client", "/C=BE/O=Community/CN=webgateway")
    csr_file = tmp_path / "webgateway_client.csr"
    with live_server(data_dir, portal=False) as url:

        def call(method: str, body: bytes) -> bytes:
            answer = soap_post(url, body, ACTION + method, headers=WGET_HEADERS)
            assert answer.status == 200, answer.text  # wget saves nothing otherwise
            assert_valid_response(answer.body)
            return answer.body

        assert submitted(call("SubmitCSR", wget_submit("webgateway", "webgateway_client", csr)))

        ca_file = tmp_path / "CA_Server.cer"
        ca_file.write_text(cut_pem(call("GetCertificate", wget_get_certificate("0"))))
        printed = openssl("x509", "-noout", "-fingerprint", "-sha1", "-in", ca_file)
        assert printed.strip().split("=", 1)[1] == _fingerprint(data_dir)

        assert last_number(call("ListCertificates", wget_list_certificates("webgateway"))) is None
        number = _issue(data_dir, "webgateway:WEBGATEWAY:webgateway_client", password)
        listed = last_number(call("ListCertificates", wget_list_certificates("webgateway")))
        assert listed == str(number)

        cert_file = tmp_path / "webgateway_client.cer"
        cert_file.write_text(cut_pem(call("GetCertificate", wget_get_certificate(listed))))
    assert _modulus("x509", cert_file) == _modulus("rsa", key) == _modulus("req", csr_file)
    verified = openssl("verify", "-CAfile", ca_file, "-purpose", "sslclient", cert_file)
    assert verified.strip().endswith(": OK")


def test_iris_client_flow(data_dir: Path, tmp_path: Path) -> None:
    password = configure_ca(data_dir)
    key, csr = openssl_csr(tmp_path, "caclient_client", "/C=US/CN=caclient")
    with live_server(data_dir, portal=False) as url:
        submit = soap_post(
            url,
            iris_submit(
                {
                    "Name": "caclient:IRIS:caclient_client",
                    "Hostname": "caclient",
                    "Instance": "IRIS",
                    "Filename": "caclient_client",
                    "Contents": csr,
                    "Subject": "/C=US/CN=caclient",
                    "ContactName": "Contact Person",
                    "ContactPhone": None,
                    "ContactEmail": None,
                }
            ),
            ACTION + "SubmitCSR",
            content_type="text/xml; charset=UTF-8",
            headers={"User-Agent": "Mozilla/4.0 (compatible; InterSystems IRIS;)"},
        )
        assert submit.status == 200, submit.text
        sentence = assert_valid_response(submit.body).findtext(f"{{{TNS}}}SubmitCSRResult")
        assert sentence == (
            'Certificate Signing Request "caclient_client" successfully submitted to the '
            f"Certificate Authority at instance {CA_INSTANCE} on node {CA_NODE}"
        )
        number = _issue(data_dir, "caclient:IRIS:caclient_client", password)

        everything = soap_post(url, iris_list_certificates(), ACTION + "ListCertificates")
        mine = soap_post(
            url, iris_list_certificates("caclient", "IRIS"), ACTION + "ListCertificates"
        )
        # A node name in another case (IRIS collates SQLUPPER; see the store's _OWNER_MATCH).
        upper = soap_post(
            url, iris_list_certificates("CACLIENT", "iris"), ACTION + "ListCertificates"
        )
        half = soap_post(url, iris_list_certificates("caclient", None), ACTION + "ListCertificates")
        fetched = soap_post(url, iris_get_certificate(str(number)), ACTION + "GetCertificate")
    results = {
        name: assert_valid_response(answer.body)[0]
        for name, answer in (("all", everything), ("mine", mine), ("upper", upper), ("half", half))
    }
    assert read_dataset(results["all"]) == (
        "ListAll",
        ["Number", "Hostname", "Instance", "Filename"],
        [
            {
                "Number": str(number),
                "Hostname": "caclient",
                "Instance": "IRIS",
                "Filename": "caclient_client",
            }
        ],
    )
    assert read_dataset(results["mine"]) == (
        "ListMy",
        ["Number", "Filename"],
        [{"Number": str(number), "Filename": "caclient_client"}],
    )
    assert read_dataset(results["upper"]) == read_dataset(results["mine"])
    assert read_dataset(results["half"]) == ("ListMy", ["Number", "Filename"], [])
    certificate = assert_valid_response(fetched.body)[0]
    assert [etree.QName(child).localname for child in certificate] == [
        "Number",
        "Hostname",
        "Instance",
        "Filename",
        "Contents",
        "Subject",
    ]
    cert_file = tmp_path / "caclient_client.cer"
    cert_file.write_text(certificate.findtext(f"{{{TNS}}}Contents") or "")
    assert _modulus("x509", cert_file) == _modulus("rsa", key)
    assert certificate.findtext(f"{{{TNS}}}Subject") == "/C=US/CN=caclient"


def test_zeep_calls_all_three_methods_through_the_served_wsdl(
    data_dir: Path, tmp_path: Path
) -> None:
    password = configure_ca(data_dir)
    _, csr = openssl_csr(tmp_path, "zeep_client", "/CN=zeep.example")
    settings = zeep.Settings(
        strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    with live_server(data_dir, portal=False) as url:
        client = zeep.Client(f"{url}/isc/pki/PKI.CAServer.cls?WSDL", settings=settings)
        sentence = client.service.SubmitCSR(
            csr={
                "Name": "zeep.example:PY:zeep_client",
                "Hostname": "zeep.example",
                "Instance": "PY",
                "Filename": "zeep_client",
                "Contents": csr,
                "ContactName": "Zeep",
            }
        )
        number = _issue(data_dir, "zeep.example:PY:zeep_client", password)
        listed = client.service.ListCertificates("zeep.example", "PY")
        everything = client.service.ListCertificates()
        ca = client.service.GetCertificate("0")
        issued = client.service.GetCertificate(str(number))
        unknown = client.service.GetCertificate("999")
    assert "successfully submitted" in sentence
    assert [row["ListMy"]["Number"] for row in listed["_value_1"]["_value_1"]] == [str(number)]
    assert [row["ListAll"]["Hostname"] for row in everything["_value_1"]["_value_1"]] == [
        "zeep.example"
    ]
    assert (ca.Number, ca.Filename, ca.Hostname) == ("0", CA_ROOT, CA_NODE)
    assert (issued.Number, issued.Filename) == (str(number), "zeep_client")
    assert issued.Contents.startswith("-----BEGIN CERTIFICATE-----\n")
    assert unknown is None
