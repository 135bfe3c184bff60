"""IrisSoap11: every IRIS-specific rule of the SOAP 1.1 wire, in one spyne protocol class.

spyne is kept for parsing (its safe lxml parser settings), schema validation, dispatch and the
object model.  What IRIS does differently (wire-protocol.md §1.1, §1.2, §4.4, §5) happens here:

* routing by the ``SOAPAction`` header (URL-decoded, quotes removed): the declared action, else
  its last ``/`` segment (``PKI.CAServer.Method`` or ``Method``), else - when empty - the local
  name of the body element.  A missing header is routed like an empty one (Q15: IRIS would
  refuse it; we are lenient so hand-written clients work);
* the body element must be in the service namespace or in none; its local name is ignored once
  the method is known;
* ``xsi:type`` (and every other attribute but ``xsi:nil``) is ignored, children may come in any
  order and unqualified, an unknown child is a Client fault ``Unexpected tag in XML input: X`` -
  except inside ``csr``, where it is dropped and logged (§4.4, older/newer clients differ);
* any DOCTYPE is refused, an empty Body is a Client fault;
* responses and faults are written byte for byte as IRIS writes them (:mod:`.envelope`,
  :mod:`.dataset`), faults with HTTP 400 for Client and 500 otherwise, and a response that
  cannot be written becomes a Server fault, never an empty 200.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from lxml import etree
from spyne.model.complex import ComplexModelBase
from spyne.model.fault import Fault
from spyne.protocol.soap import Soap11

from pki_soap.errors import BadSoapRequest, PkiError
from pki_soap.wire.dataset import DataSet, dataset_chunks
from pki_soap.wire.envelope import (
    CONTENT_TYPE,
    SERVICE_NS,
    SOAP_ENV_NS,
    XSI_NS,
    escape_value,
    fault_bytes,
    fault_status,
    response_bytes,
)

logger = logging.getLogger("pki_soap.wire")

#: The ObjectScript class whose web methods the SOAPAction names.
SERVICE_CLASS = "PKI.CAServer"
#: What IRIS answers when a web method fails in a way the caller cannot act on.
SERVER_APPLICATION_ERROR = "Server Application Error"

SOAP12_ENV_NS = "http://www.w3.org/2003/05/soap-envelope"
_XSI_NIL = f"{{{XSI_NS}}}nil"
# spyne's schema errors read "<string>:1:0:ERROR:SCHEMASV:SCHEMAV_...: Element ...".
_LIBXML_PREFIX = re.compile(r"^.*?:\d+:\d+:[A-Z]+:[A-Z0-9_]+:[A-Z0-9_]+: ")
_SHOWN_NAME_LENGTH = 100


class IrisFault(Fault):  # type: ignore[misc]  # spyne has no type information
    """A spyne Fault carrying the :class:`PkiError` it stands for.

    ``faultcode`` defaults to the error's fault side; the faultstring is the error's message
    and the detail its ``ERROR #n: message`` text.
    """

    def __init__(self, error: PkiError, faultcode: str | None = None) -> None:
        super().__init__(
            faultcode=faultcode or error.fault_side,
            faultstring=error.message,
            detail=error.detail_text,
        )
        self.error = error


def client_fault(message: str) -> IrisFault:
    """A Client fault for a request IRIS would not import (:class:`BadSoapRequest`)."""
    return IrisFault(BadSoapRequest(message))


def _shown(name: str) -> str:
    # Element names come from the caller; keep log lines and faultstrings bounded.
    return name if len(name) <= _SHOWN_NAME_LENGTH else name[:_SHOWN_NAME_LENGTH] + "..."


def quiet_spyne_loggers() -> None:
    """Keep request bodies and per-fault tracebacks out of the server log.

    spyne logs the whole request body on an XML syntax error, a traceback for every fault,
    and documents at DEBUG; IrisSoap11 logs one line per fault itself instead.
    """
    logging.getLogger("spyne").setLevel(logging.WARNING)
    for name in (
        "spyne.protocol.soap.soap11.invalid",
        "spyne.protocol.soap.soap11",
        "spyne.protocol.xml",
        "spyne.application",
        "spyne.application.client",
        "spyne.application.server",
        "spyne.server._base",
        "spyne.server.wsgi",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


class IrisSoap11(Soap11):  # type: ignore[misc]  # spyne has no type information
    """SOAP 1.1 as ``%SOAP.WebService`` speaks it (see the module docstring)."""

    mime_type = CONTENT_TYPE

    def __init__(self, app: Any = None) -> None:
        super().__init__(
            app,
            validator="lxml",
            # libxml2's own limits stay on (huge_tree=False): depth 256, entity amplification.
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
        )

    # -- request side ---------------------------------------------------------------------

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        """Parse the request body; refuse malformed XML and any DOCTYPE (Client faults).

        The HTTP charset is not used: the XML declaration (or UTF-8) decides, as for lxml.
        """
        body = b"".join(
            chunk.encode("utf-8") if isinstance(chunk, str) else chunk for chunk in ctx.in_string
        )
        if not body.strip():
            raise client_fault("Badly formed SOAP Message: the request body is empty")
        parser = etree.XMLParser(**self.parser_kwargs)
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError as exc:
            raise client_fault(f"Badly formed SOAP Message: {exc.msg}") from exc
        docinfo = root.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            raise client_fault("Badly formed SOAP Message: a DOCTYPE is not allowed")
        ctx.in_document = root

    def decompose_incoming_envelope(self, ctx: Any, message: Any = Soap11.REQUEST) -> None:
        """Find the web method (§1.1), then normalise the body element for spyne (§4.4)."""
        envelope = ctx.in_document
        if envelope.tag == f"{{{SOAP12_ENV_NS}}}Envelope":
            raise IrisFault(
                BadSoapRequest("SOAP 1.2 is not supported: send a SOAP 1.1 envelope"),
                "VersionMismatch",
            )
        if etree.QName(envelope).localname != "Envelope":
            raise client_fault("Badly formed SOAP Message: the root element is not an Envelope")
        if envelope.tag != f"{{{SOAP_ENV_NS}}}Envelope":
            raise IrisFault(
                BadSoapRequest("the Envelope is not in the SOAP 1.1 namespace"),
                "VersionMismatch",
            )
        body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
        if body is None:
            raise client_fault("Badly formed SOAP Message: no SOAP Body")
        elements = [child for child in body if isinstance(child.tag, str)]
        if not elements:
            raise client_fault("Badly formed SOAP Message: the SOAP Body is empty")
        wrapper = elements[0]
        name = self._method_name(ctx, wrapper)
        descriptor = self.app.interface.service_method_map[f"{{{SERVICE_NS}}}{name}"][0]
        namespace = etree.QName(wrapper).namespace
        if namespace not in (None, SERVICE_NS):
            raise client_fault(
                f"Unexpected namespace {_shown(namespace)} of the body element: "
                f"use {SERVICE_NS} or none"
            )
        # IRIS renames the body element to the method before importing it.
        wrapper.tag = f"{{{SERVICE_NS}}}{name}"
        wrapper.text = None
        self._normalise(wrapper, descriptor.in_message, lenient=False)

        ctx.in_header_doc = None  # IRIS ignores SOAP headers here (SECURITYIN IGNORE)
        ctx.in_body_doc = wrapper
        ctx.method_request_string = wrapper.tag
        self.validate_body(ctx, message)

    def _method_name(self, ctx: Any, wrapper: etree._Element) -> str:
        methods: set[str] = {
            str(key).split("}", 1)[1] for key in self.app.interface.service_method_map
        }
        raw = ctx.transport.req_env.get("HTTP_SOAPACTION")
        action = unquote(raw or "").replace('"', "")
        declared = {f"{SERVICE_NS}/{SERVICE_CLASS}.{m}": m for m in methods}
        if action in declared:
            return declared[action]
        name = action.rsplit("/", 1)[-1]
        if "." in name:
            owner, _, name = name.rpartition(".")
            if owner != SERVICE_CLASS:
                raise client_fault(f"Unexpected SOAPACTION value: {_shown(action)}")
        if not name:
            name = etree.QName(wrapper).localname
            if name not in methods:
                raise client_fault(
                    f"Unexpected SOAPACTION value: {_shown(action)!r}"
                    f" and {_shown(name)} is not a web method"
                )
        if name not in methods:
            raise client_fault(f"Unexpected SOAPACTION value: {_shown(action)}")
        return name

    def _normalise(self, element: etree._Element, model: Any, *, lenient: bool) -> None:
        """Qualify, strip attributes and re-sort ``element``'s children into model order.

        Raises:
            IrisFault: a child the model does not know (unless ``lenient``).
        """
        for attribute in list(element.attrib):
            if attribute != _XSI_NIL:
                del element.attrib[attribute]
        fields = model.get_flat_type_info(model)
        order = {field: position for position, field in enumerate(fields)}
        known: list[etree._Element] = []
        for child in element:
            if not isinstance(child.tag, str):
                continue
            qname = etree.QName(child)
            if qname.namespace not in (None, SERVICE_NS) or qname.localname not in order:
                shown = _shown(qname.localname)
                if not lenient:
                    raise client_fault(f"Unexpected tag in XML input: {shown}")
                logger.warning("ignored an unknown element <%s> inside <csr>", shown)
                continue
            child.tag = f"{{{SERVICE_NS}}}{qname.localname}"
            member = fields[qname.localname]
            if isinstance(member, type) and issubclass(member, ComplexModelBase):
                self._normalise(child, member, lenient=True)
            else:
                for attribute in list(child.attrib):
                    if attribute != _XSI_NIL:
                        del child.attrib[attribute]
            known.append(child)
        known.sort(key=lambda child: order[etree.QName(child).localname])
        element[:] = known

    # -- response side --------------------------------------------------------------------

    def fault_to_http_response_code(self, fault: Any) -> str:
        """400 for a Client fault, 500 for anything else, as IRIS answers."""
        return fault_status(_fault_parts(fault)[0])

    def serialize(self, ctx: Any, message: Any) -> None:
        """No lxml tree: :meth:`create_out_string` writes the IRIS bytes from the objects."""
        self.event_manager.fire_event("before_serialize", ctx)
        self.event_manager.fire_event("after_serialize", ctx)

    def create_out_string(self, ctx: Any, charset: str | None = None) -> None:
        """Write the response or fault bytes and set the HTTP status to match.

        A response that cannot be written (a value XML cannot carry, a failing row source)
        becomes a Server fault with status 500 - spyne has already chosen 200 by then.
        """
        method = ctx.descriptor.name if ctx.descriptor is not None else "?"
        if ctx.out_error is None:
            try:
                ctx.out_string = [self._response_bytes(ctx)]
                return
            except Exception:
                logger.exception("could not write the %s response", method)
                ctx.out_error = IrisFault(PkiError(SERVER_APPLICATION_ERROR))
        faultcode, faultstring, detail = _fault_parts(ctx.out_error)
        if faultcode == "Client":
            logger.info("%s: Client fault: %s", method, detail)
        else:
            logger.warning("%s: %s fault: %s", method, faultcode, detail)
        if ctx.transport is not None:
            ctx.transport.resp_code = fault_status(faultcode)
        ctx.out_string = [fault_bytes(faultcode, faultstring, [detail])]

    def _response_bytes(self, ctx: Any) -> bytes:
        out_message = ctx.descriptor.out_message
        method = out_message.get_type_name().removesuffix("Response")
        fields = out_message.get_flat_type_info(out_message)
        result_name = next(iter(fields))
        value = ctx.out_object[0] if ctx.out_object else None
        if value is None:
            return response_bytes(method, None)
        return response_bytes(method, _result_chunks(result_name, fields[result_name], value))


def _result_chunks(name: str, model: Any, value: Any) -> Iterator[str]:
    yield f"<{name}>"
    if isinstance(value, DataSet):
        yield from dataset_chunks(value)
    elif isinstance(value, ComplexModelBase):
        # Property definition order, a None property left out, as IRIS projects objects.
        for field in model.get_flat_type_info(model):
            member = getattr(value, field, None)
            if member is not None:
                yield f"<{field}>{escape_value(str(member))}</{field}>"
    else:
        yield escape_value(str(value))
    yield f"</{name}>"


def _fault_parts(fault: Any) -> tuple[str, str, str]:
    """(faultcode, faultstring, detail text) of any fault spyne or the service raised."""
    if isinstance(fault, IrisFault):
        return fault.faultcode, fault.error.message, fault.error.detail_text
    code = str(getattr(fault, "faultcode", "") or "Server")
    if code == "Client" or code.startswith("Client."):
        text = getattr(fault, "faultstring", "") or ""
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        error = BadSoapRequest(f"Badly formed SOAP Message: {_LIBXML_PREFIX.sub('', str(text))}")
        return "Client", error.message, error.detail_text
    internal = PkiError(SERVER_APPLICATION_ERROR)
    return "Server", internal.message, internal.detail_text


__all__ = [
    "IrisFault",
    "IrisSoap11",
    "SERVER_APPLICATION_ERROR",
    "SERVICE_CLASS",
    "client_fault",
    "quiet_spyne_loggers",
]
