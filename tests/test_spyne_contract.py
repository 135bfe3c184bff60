"""spyne as we build on it: the pinned release, the public parts used, our transport.

pki_soap.soap uses spyne only through public parts (soap/protocol.py's docstring lists them);
these tests fail when a spyne upgrade changes one of them, and check that SoapTransport answers
exactly as spyne's own WSGI transport does.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, ClassVar

import pytest
from spyne import Unicode
from spyne.evmgr import EventManager
from spyne.server import ServerBase
from spyne.server.wsgi import WsgiApplication
from werkzeug.test import EnvironBuilder

from pki_soap.server.datadir import ServerDataDirectory
from pki_soap.server.tasks.submit import SubmissionLimits
from pki_soap.soap.annotations import CSR_MEMBERS
from pki_soap.soap.envelope import CONTENT_TYPE
from pki_soap.soap.front import SoapTransport
from pki_soap.soap.protocol import IrisSoap11, QuietEventManager
from pki_soap.soap.service import CSR, ServiceData, soap_application
from pki_soap.soap.wsdl import SERVICE_PATH
from tests.service_support import ACTION, TNS, configure_ca

ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soap:Body>{body}</soap:Body></soap:Envelope>\n"
)
GET_CA = f'<GetCertificate xmlns="{TNS}"><number>0</number></GetCertificate>'


def envelope(body: str) -> bytes:
    return ENVELOPE.format(body=body).encode()


def test_spyne_is_the_pinned_release_with_the_public_parts_we_build_on() -> None:
    # A spyne upgrade must be deliberate: these are what IrisSoap11, the service and the
    # transport rely on (all public; spyne's manual declares ordered members as _type_info).
    pins = (Path(__file__).resolve().parent.parent / "requirements.txt").read_text()
    pinned = next(line for line in pins.splitlines() if line.startswith("spyne=="))
    assert importlib.metadata.version("spyne") == pinned.removeprefix("spyne==")
    assert list(CSR.get_flat_type_info(CSR)) == list(CSR_MEMBERS)
    assert CSR.get_orig() is CSR
    assert CSR.customize(min_occurs=1).get_orig() is CSR
    protocol = IrisSoap11()
    attributes = protocol.get_cls_attrs(Unicode)
    assert (attributes.default, attributes.default_factory, attributes.sub_name) == (None,) * 3
    assert (attributes.sub_ns, attributes.read_only, attributes.max_occurs) == (None, False, 1)
    assert protocol.get_cls_attrs(Unicode(sub_name="Other")).sub_name == "Other"
    for step in ("generate_contexts", "get_in_object", "get_out_object", "get_out_string"):
        assert callable(getattr(ServerBase, step))


class _Renamed(CSR):
    """A record whose member has another element name: IrisSoap11 must leave it to spyne."""

    _type_info: ClassVar[list[tuple[str, type]]] = [("Alias", Unicode(sub_name="Named"))]


def test_a_member_with_another_element_name_is_read_by_spyne(tmp_path: Path) -> None:
    protocol = soap_application(strict_iris=False).in_protocol
    assert protocol._direct_arguments(_Renamed) is None
    assert protocol._direct_arguments(CSR) is not None


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("GetCertificate", GET_CA),
        ("GetCertificate", f'<GetCertificate xmlns="{TNS}"><number>77</number></GetCertificate>'),
        ("ListCertificates", f'<ListCertificates xmlns="{TNS}"/>'),
        ("SubmitCSR", f'<SubmitCSR xmlns="{TNS}"><csr><Name>n</Name></csr></SubmitCSR>'),
        ("GetCertificate", '<GetCertificate xmlns="urn:other"/>'),
        ("Nothing", GET_CA),
    ],
    ids=["answer", "empty-answer", "dataset", "server-side-fault", "client-fault", "routing"],
)
def test_our_transport_answers_as_spynes_wsgi_transport(
    tmp_path: Path, action: str, body: str
) -> None:
    # SoapTransport runs ServerBase's pipeline itself; spyne's WsgiApplication.handle_rpc,
    # given the same application and request, must answer the same status and bytes.
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    data = ServerDataDirectory(data_dir)
    service = ServiceData(data, SubmissionLimits())
    request = envelope(body)
    headers = {"Content-Type": CONTENT_TYPE, "SOAPAction": ACTION + action}

    def environ() -> dict[str, Any]:
        built = EnvironBuilder(path=SERVICE_PATH, method="POST", data=request, headers=headers)
        return built.get_environ()

    try:
        ours = SoapTransport(soap_application(strict_iris=False), service)
        status, header_list, parts = ours.answer(environ(), request)
        assert isinstance(parts, list)

        application = soap_application(strict_iris=False)
        application.event_manager.add_listener(
            "method_call", lambda ctx: setattr(ctx, "udc", service)
        )
        theirs = WsgiApplication(application)
        seen: list[Any] = []
        answer = b"".join(theirs.handle_rpc(environ(), lambda *args: seen.append(args)))
        assert (status, b"".join(parts)) == (seen[0][0], answer)
        assert dict(header_list) == dict(seen[0][1])
    finally:
        data.close()


def test_quiet_event_managers_run_every_listener_as_spynes_do(tmp_path: Path) -> None:
    # soap_application swaps spyne's event managers for QuietEventManager (no empty ordered
    # set per unheard event); listeners added through spyne's public add_listener still run,
    # in the order added, and spyne's own EventManager still has the fire_event we override.
    assert "fire_event" in vars(EventManager) and "fire_event" in vars(QuietEventManager)
    data_dir = tmp_path / "pki-data"
    configure_ca(data_dir)
    data = ServerDataDirectory(data_dir)
    application = soap_application(strict_iris=False)
    service_class = application.services[0]
    heard: list[str] = []
    try:
        transport = SoapTransport(application, ServiceData(data, SubmissionLimits()))
        managers = {
            "application": application.event_manager,
            "service": service_class.event_manager,
            "protocol": application.in_protocol.event_manager,
            "transport": transport.event_manager,
        }
        assert all(isinstance(m, QuietEventManager) for m in managers.values())
        for where in ("application", "service"):
            for event in ("method_call", "method_return_object"):
                managers[where].add_listener(
                    event, lambda ctx, w=where, e=event: heard.append(f"{w} {e}")
                )
        built = EnvironBuilder(
            path=SERVICE_PATH,
            method="POST",
            data=envelope(GET_CA),
            headers={"Content-Type": CONTENT_TYPE, "SOAPAction": ACTION + "GetCertificate"},
        )
        status, _, _ = transport.answer(built.get_environ(), envelope(GET_CA))
    finally:
        data.close()
    assert status.startswith("200")
    assert heard == [
        "application method_call",
        "service method_call",
        "application method_return_object",
        "service method_return_object",
    ]
