"""IrisSoap11: every IRIS-specific rule of the SOAP 1.1 wire, in one spyne protocol class.

spyne is kept for parsing (its safe lxml parser settings, one parser per thread), schema
validation, dispatch and the object model (string arguments, and records of strings such as
SubmitCSR's ``csr``, are read here exactly as spyne reads them, after its schema validation,
without its per-element reading).  What IRIS does differently (wire-protocol.md §1.1, §1.2,
§4.4, §5) happens here:

* routing by the ``SOAPAction`` header (URL-decoded, quotes removed): the declared action, else
  its last ``/`` segment (``PKI.CAServer.Method`` or ``Method``), else - when empty - the local
  name of the body element.  A missing header is routed like an empty one (Q15: IRIS refuses
  it; we are lenient so hand-written clients work - unless in IRIS-strict mode, where the
  front refuses it first, see :func:`is_soap_request`);
* the body element must be in the service namespace or in none; its local name is ignored once
  the method is known;
* ``xsi:type`` (and every other attribute but ``xsi:nil``) is ignored, children may come in any
  order and unqualified, an unknown child is a Client fault ``Unexpected tag in XML input: X`` -
  except inside ``csr``, where it is dropped and logged (§4.4, older/newer clients differ) unless
  in IRIS-strict mode;
* any DOCTYPE is refused, an empty Body is a Client fault;
* responses and faults are written byte for byte as IRIS writes them (:mod:`.envelope`,
  :mod:`.dataset`), faults with HTTP 400 for Client and 500 otherwise, and a response that
  cannot be written becomes a Server fault, never an empty 200.

Where we differ from IRIS on purpose is listed in :data:`~pki_soap.soap.deviations.DEVIATIONS`
(and, word for word, in the README); ``serve --strict-iris`` switches each one that can be
switched to IRIS's behaviour.  The web method a request was routed to is left in the WSGI
environ under :data:`ROUTED_METHOD` for the exchange recorder.

Only spyne's public parts are used: the ``Soap11`` methods overridden here, a model's
``get_flat_type_info``, ``get_orig`` and ``get_deserialization_instance``, and the
protocol's ``get_cls_attrs``; no private attribute is read.  tests/test_spyne_contract.py
pins the spyne release and checks these parts, and that our reading equals spyne's own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import Any
from urllib.parse import unquote

from lxml import etree
from spyne.evmgr import EventManager
from spyne.model.complex import Array, ComplexModelBase
from spyne.model.fault import Fault
from spyne.model.primitive import Unicode
from spyne.protocol.soap import Soap11

from pki_soap.errors import BadSoapRequest, PkiError
from pki_soap.soap.dataset import DataSet, dataset_chunks
from pki_soap.soap.envelope import (
    CONTENT_TYPE,
    SERVICE_NS,
    SOAP_ENV_NS,
    SPOOL_MEMORY_LIMIT,
    XSI_NS,
    escape_value,
    fault_bytes,
    fault_status,
    spool_response,
)

logger = logging.getLogger("pki_soap.soap")

#: The ObjectScript class whose web methods the SOAPAction names.
SERVICE_CLASS = "PKI.CAServer"
#: What IRIS answers when a web method fails in a way the caller cannot act on.
SERVER_APPLICATION_ERROR = "Server Application Error"

SOAP12_ENV_NS = "http://www.w3.org/2003/05/soap-envelope"
#: The WSGI environ key where the web method a request was routed to is left.
ROUTED_METHOD = "pki_soap.routed_method"
_XSI_NIL = f"{{{XSI_NS}}}nil"
# spyne's schema errors read "<string>:1:0:ERROR:SCHEMASV:SCHEMAV_...: Element ...".
_LIBXML_PREFIX = re.compile(r"^.*?:\d+:\d+:[A-Z]+:[A-Z0-9_]+:[A-Z0-9_]+: ")
_SHOWN_NAME_LENGTH = 100
_SERVICE_PREFIX = f"{{{SERVICE_NS}}}"
_SOAP11_ENVELOPE = f"{{{SOAP_ENV_NS}}}Envelope"
_SOAP12_ENVELOPE = f"{{{SOAP12_ENV_NS}}}Envelope"
_SOAP11_BODY = f"{{{SOAP_ENV_NS}}}Body"


#: What IRIS-strict mode answers a request without SOAPAction (wire-protocol.md §1.1, Q15):
#: IRIS sends such a POST to its test page, whose %Development check fails, and its CSP error
#: page is HTML.  The page's exact words depend on the web application; ours are these.
NO_SOAPACTION_STATUS = "500 Internal Server Error"
NO_SOAPACTION_CONTENT_TYPE = "text/html; charset=UTF-8"
NO_SOAPACTION_PAGE = (
    "<html>\r\n<head><title>CSP Error</title></head>\r\n<body>\r\n<h1>CSP Error</h1>\r\n"
    "<p>Insufficient privilege: a request without a SOAPAction header is the web service's"
    " test page, which needs the %Development privilege.</p>\r\n"
    "<p>A SOAP client sends SOAPAction: http://pki.intersystems.com/PKI.CAServer.&lt;method&gt;"
    "</p>\r\n</body>\r\n</html>\r\n"
).encode("ascii")


def is_soap_request(environ: dict[str, Any]) -> bool:
    """True when IRIS would take this POST as SOAP: a SOAPAction header (any value, even
    empty) or a SOAP 1.2 Content-Type (whose ``action`` parameter replaces the header)."""
    if "HTTP_SOAPACTION" in environ:
        return True
    media_type = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
    return media_type == "application/soap+xml"


def _split_tag(tag: str) -> tuple[str | None, str]:
    """(namespace or None, local name) of an lxml tag, as ``etree.QName`` gives them."""
    if tag[:1] == "{":
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return None, tag


@dataclass(frozen=True)
class _Shape:
    """What :meth:`IrisSoap11._normalise` needs of a model, worked out once per model."""

    order: dict[str, int]
    complex_members: dict[str, Any]


@dataclass(frozen=True)
class _FlatRecord:
    """A complex argument whose members are all plain strings (SubmitCSR's ``csr``), as
    :meth:`IrisSoap11.deserialize` reads it without spyne's object reading."""

    model: Any
    #: Qualified tag -> member name.
    fields: dict[str, str]

    def read(self, ctx: Any, element: etree._Element) -> Any:
        """The model instance spyne's ``complex_from_element`` builds from ``element``.

        An empty instance with each member present set to its element's text (``""`` when
        empty, None when ``xsi:nil``); a later repeat of a member wins, as in spyne.
        """
        record = self.model.get_deserialization_instance(ctx)
        fields = self.fields
        for child in element:
            name = fields.get(child.tag)
            if name is not None:
                setattr(record, name, None if child.get(_XSI_NIL) else (child.text or ""))
        return record


#: How one argument is read directly: its position, and None for a plain string, else
#: the complex argument's :class:`_FlatRecord`.
_DirectArgument = tuple[int, _FlatRecord | None]


@dataclass(frozen=True)
class _Answer:
    """What writing a method's answer needs of its descriptor, worked out once per method."""

    method: str
    result_name: str
    result_model: Any
    fields: tuple[str, ...]


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


class QuietEventManager(EventManager):  # type: ignore[misc]  # spyne has no type information
    """spyne's event manager, without the empty ordered set built for an event nobody hears."""

    def fire_event(self, event_name: str, ctx: Any, *args: Any, **kwargs: Any) -> None:
        """Run the handlers registered for ``event_name``, in order, as spyne's does."""
        for handler in self.handlers.get(event_name, ()):
            handler(ctx, *args, **kwargs)


class IrisSoap11(Soap11):  # type: ignore[misc]  # spyne has no type information
    """SOAP 1.1 as ``%SOAP.WebService`` speaks it (see the module docstring)."""

    mime_type = CONTENT_TYPE

    def __init__(self, app: Any = None, *, strict_iris: bool = False) -> None:
        #: IRIS-strict mode (``serve --strict-iris``): see ``soap.deviations.DEVIATIONS``.
        self.strict_iris = strict_iris
        super().__init__(
            app,
            validator="lxml",
            # libxml2's own limits stay on (huge_tree=False): depth 256, entity amplification.
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
        )
        self.event_manager = QuietEventManager(self)
        # An lxml parser must not parse two documents at once.  Idle parsers wait here: a
        # request takes one (or makes one) and gives it back, so a parser is reused across
        # requests whatever runs them (threads, or gevent's greenlets, each of which would
        # have a thread-local of its own).  list.pop and list.append are atomic.
        self._idle_parsers: list[etree.XMLParser] = []
        # Filled at first use (the app is set after __init__); read-only afterwards.
        self._routes: tuple[frozenset[str], dict[str, str]] | None = None
        self._shapes: dict[Any, _Shape] = {}
        self._direct: dict[Any, dict[str, _DirectArgument] | None] = {}
        self._answers: dict[Any, _Answer] = {}

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
        try:
            parser = self._idle_parsers.pop()
        except IndexError:
            parser = etree.XMLParser(**self.parser_kwargs)
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError as exc:
            raise client_fault(f"Badly formed SOAP Message: {exc.msg}") from exc
        finally:
            self._idle_parsers.append(parser)
        docinfo = root.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            raise client_fault("Badly formed SOAP Message: a DOCTYPE is not allowed")
        ctx.in_document = root

    def decompose_incoming_envelope(self, ctx: Any, message: Any = Soap11.REQUEST) -> None:
        """Find the web method (§1.1), then normalise the body element for spyne (§4.4)."""
        envelope = ctx.in_document
        if envelope.tag == _SOAP12_ENVELOPE:
            raise IrisFault(
                BadSoapRequest("SOAP 1.2 is not supported: send a SOAP 1.1 envelope"),
                "VersionMismatch",
            )
        if envelope.tag != _SOAP11_ENVELOPE:
            if _split_tag(envelope.tag)[1] != "Envelope":
                raise client_fault("Badly formed SOAP Message: the root element is not an Envelope")
            raise IrisFault(
                BadSoapRequest("the Envelope is not in the SOAP 1.1 namespace"),
                "VersionMismatch",
            )
        # The first Body child, as envelope.find() would give it, without its path parsing.
        body = next((child for child in envelope if child.tag == _SOAP11_BODY), None)
        if body is None:
            raise client_fault("Badly formed SOAP Message: no SOAP Body")
        wrapper = next((child for child in body if isinstance(child.tag, str)), None)
        if wrapper is None:
            raise client_fault("Badly formed SOAP Message: the SOAP Body is empty")
        name = self._method_name(ctx, wrapper)
        environ = getattr(ctx.transport, "req_env", None)
        if environ is not None:
            environ[ROUTED_METHOD] = name
        descriptor = self.app.interface.service_method_map[_SERVICE_PREFIX + name][0]
        namespace = _split_tag(wrapper.tag)[0]
        if namespace not in (None, SERVICE_NS):
            raise client_fault(
                f"Unexpected namespace {_shown(namespace)} of the body element: "
                f"use {SERVICE_NS} or none"
            )
        # IRIS renames the body element to the method before importing it.
        wrapper.tag = _SERVICE_PREFIX + name
        wrapper.text = None
        self._normalise(wrapper, descriptor.in_message, lenient=False)

        ctx.in_header_doc = None  # IRIS ignores SOAP headers here (SECURITYIN IGNORE)
        ctx.in_body_doc = wrapper
        ctx.method_request_string = wrapper.tag
        self.validate_body(ctx, message)

    def _method_routes(self) -> tuple[frozenset[str], dict[str, str]]:
        """(web method names, declared SOAPAction -> method), from the app, once."""
        if self._routes is None:
            methods = frozenset(
                str(key).split("}", 1)[1] for key in self.app.interface.service_method_map
            )
            declared = {f"{SERVICE_NS}/{SERVICE_CLASS}.{m}": m for m in methods}
            self._routes = methods, declared
        return self._routes

    def _method_name(self, ctx: Any, wrapper: etree._Element) -> str:
        methods, declared = self._method_routes()
        raw = ctx.transport.req_env.get("HTTP_SOAPACTION")
        action = unquote(raw or "").replace('"', "")
        if action in declared:
            return declared[action]
        name = action.rsplit("/", 1)[-1]
        if "." in name:
            owner, _, name = name.rpartition(".")
            if owner != SERVICE_CLASS:
                raise client_fault(f"Unexpected SOAPACTION value: {_shown(action)}")
        if not name:
            name = _split_tag(wrapper.tag)[1]
            if name not in methods:
                raise client_fault(
                    f"Unexpected SOAPACTION value: {_shown(action)!r}"
                    f" and {_shown(name)} is not a web method"
                )
        if name not in methods:
            raise client_fault(f"Unexpected SOAPACTION value: {_shown(action)}")
        return name

    def _shape(self, model: Any) -> _Shape:
        shape = self._shapes.get(model)
        if shape is None:
            fields = model.get_flat_type_info(model)
            shape = _Shape(
                order={field: position for position, field in enumerate(fields)},
                complex_members={
                    field: member
                    for field, member in fields.items()
                    if isinstance(member, type) and issubclass(member, ComplexModelBase)
                },
            )
            self._shapes[model] = shape
        return shape

    def _normalise(self, element: etree._Element, model: Any, *, lenient: bool) -> None:
        """Qualify, strip attributes and re-sort ``element``'s children into model order.

        Raises:
            IrisFault: a child the model does not know (unless ``lenient``).
        """
        _strip_attributes(element)
        shape = self._shape(model)
        order = shape.order
        known: list[tuple[int, etree._Element]] = []
        for child in element:
            tag = child.tag
            if not isinstance(tag, str):
                continue
            namespace, local = _split_tag(tag)
            position = order.get(local)
            if position is None or namespace not in (None, SERVICE_NS):
                shown = _shown(local)
                if not lenient:
                    raise client_fault(f"Unexpected tag in XML input: {shown}")
                logger.warning("ignored an unknown element <%s> inside <csr>", shown)
                continue
            if namespace is None:
                child.tag = _SERVICE_PREFIX + local
            member = shape.complex_members.get(local)
            if member is not None:
                # Inside csr IRIS faults on an unknown tag; we drop it unless strict.
                self._normalise(child, member, lenient=not self.strict_iris)
            else:
                _strip_attributes(child)
            known.append((position, child))
        # A stable sort: repeated elements keep their order, as before.
        known.sort(key=_position)
        element[:] = [child for _, child in known]

    def deserialize(self, ctx: Any, message: Any) -> None:
        """The web method's arguments from the normalised body element, as spyne reads them.

        When every argument is a plain string (GetCertificate, ListCertificates) or a record
        of plain strings (SubmitCSR's ``csr``) they are read here directly - an element's
        text, ``""`` when empty, None when absent or ``xsi:nil``; a record is the model's
        instance with those members set - which is what spyne's own reading gives, without
        its per-element dispatch.  Anything else is left to spyne.  Schema validation has
        already run (:meth:`decompose_incoming_envelope`): only valid structures get here.
        """
        body = ctx.in_body_doc
        arguments = None
        if message is self.REQUEST and ctx.descriptor is not None:
            arguments = self._direct_arguments(ctx.descriptor.in_message)
        if arguments is None or body is None or body.get(_XSI_NIL) or ctx.in_header_doc is not None:
            super().deserialize(ctx, message)
            return
        self.event_manager.fire_event("before_deserialize", ctx)
        values: list[Any] = [None] * len(arguments)
        # _normalise left only known, qualified elements; validation allowed each once.
        for child in body:
            position, record = arguments[child.tag]
            if child.get(_XSI_NIL):
                values[position] = None
            elif record is None:
                values[position] = child.text or ""
            else:
                values[position] = record.read(ctx, child)
        ctx.in_object = values
        self.event_manager.fire_event("after_deserialize", ctx)

    def _direct_arguments(self, model: Any) -> dict[str, _DirectArgument] | None:
        """Qualified tag -> how to read that argument, when every argument of ``model``
        can be read directly (see :meth:`deserialize`), else None; worked out once."""
        if model in self._direct:
            return self._direct[model]
        arguments: dict[str, _DirectArgument] | None = {}
        if not self._is_flat_complex(model):
            arguments = None
        for position, (field, member) in enumerate(model.get_flat_type_info(model).items()):
            if arguments is None:
                break
            if self._is_plain_string(member):
                arguments[_SERVICE_PREFIX + field] = (position, None)
            elif self._is_flat_complex(member) and self._is_single_value(member):
                fields = member.get_flat_type_info(member)
                if all(self._is_plain_string(inner) for inner in fields.values()):
                    record = _FlatRecord(member, {_SERVICE_PREFIX + name: name for name in fields})
                    arguments[_SERVICE_PREFIX + field] = (position, record)
                else:
                    arguments = None
            else:
                arguments = None
        self._direct[model] = arguments
        return arguments

    def _is_single_value(self, member: Any) -> bool:
        # No default to fill in, set when read, at most one element, under its own name.
        attributes = self.get_cls_attrs(member)
        return (
            attributes.default is None
            and attributes.default_factory is None
            and not attributes.read_only
            and attributes.max_occurs == 1
            and attributes.sub_name is None
            and attributes.sub_ns is None
        )

    def _is_plain_string(self, member: Any) -> bool:
        return (
            isinstance(member, type)
            and issubclass(member, Unicode)
            and self._is_single_value(member)
            and not self.get_cls_attrs(member).empty_is_none
        )

    def _is_flat_complex(self, model: Any) -> bool:
        # A plain ComplexModel, not a customized copy of one.  Its members are checked one
        # by one (plain strings only), which leaves out XmlData and XmlAttribute members too.
        if not (isinstance(model, type) and issubclass(model, ComplexModelBase)):
            return False
        spyne_model: Any = model
        return not issubclass(spyne_model, Array) and spyne_model.get_orig() is spyne_model

    # -- response side --------------------------------------------------------------------

    def fault_to_http_response_code(self, fault: Any) -> str:
        """400 for a Client fault, 500 for anything else, as IRIS answers."""
        return fault_status(_fault_parts(fault)[0])

    def generate_method_contexts(self, ctx: Any) -> list[Any]:
        """The request's one context, bound to the method routing found.

        spyne copies the context once per method bound to the name (auxiliary methods);
        this service has none, so the context is used as it is.
        """
        descriptors = self.app.interface.service_method_map.get(ctx.method_request_string)
        if descriptors is None or len(descriptors) != 1:
            return super().generate_method_contexts(ctx)  # type: ignore[no-any-return]
        ctx.descriptor = descriptors[0]
        return [ctx]

    def serialize(self, ctx: Any, message: Any) -> None:
        """No lxml tree: :meth:`create_out_string` writes the IRIS bytes from the objects."""
        self.event_manager.fire_event("before_serialize", ctx)
        self.event_manager.fire_event("after_serialize", ctx)

    def create_out_string(self, ctx: Any, charset: str | None = None) -> None:
        """Write the response or fault bytes and set the HTTP status to match.

        The response is written whole before any header is sent: into memory when it is
        small (``out_string`` is then a list of its bytes), else into a temporary file
        (``out_string`` is then that file, rewound, an iterable of bytes; its length is set
        as the Content-Length header).  A response that cannot be written
        (a value XML cannot carry, a failing row source, a full disk) becomes a Server
        fault with status 500 - spyne has already chosen 200 by then.
        """
        method = ctx.descriptor.name if ctx.descriptor is not None else "?"
        if ctx.out_error is None:
            try:
                spool = self._response(ctx)
            except Exception:
                logger.exception("could not write the %s response", method)
                ctx.out_error = IrisFault(PkiError(SERVER_APPLICATION_ERROR))
            else:
                size = spool.tell()
                spool.seek(0)
                if size <= SPOOL_MEMORY_LIMIT:  # never left memory
                    with spool:
                        ctx.out_string = [spool.read()]
                else:
                    ctx.out_string = spool
                    ctx.transport.resp_headers["Content-Length"] = str(size)
                return
        faultcode, faultstring, detail = _fault_parts(ctx.out_error)
        if faultcode == "Client":
            logger.info("%s: Client fault: %s", method, detail)
        else:
            logger.warning("%s: %s fault: %s", method, faultcode, detail)
        if ctx.transport is not None:
            ctx.transport.resp_code = fault_status(faultcode)
        ctx.out_string = [fault_bytes(faultcode, faultstring, [detail])]

    def _answer_shape(self, descriptor: Any) -> _Answer:
        answer = self._answers.get(descriptor)
        if answer is None:
            out_message = descriptor.out_message
            fields = out_message.get_flat_type_info(out_message)
            result_name = next(iter(fields))
            result_model = fields[result_name]
            is_complex = isinstance(result_model, type) and issubclass(
                result_model, ComplexModelBase
            )
            answer = _Answer(
                method=out_message.get_type_name().removesuffix("Response"),
                result_name=result_name,
                result_model=result_model,
                fields=tuple(result_model.get_flat_type_info(result_model)) if is_complex else (),
            )
            self._answers[descriptor] = answer
        return answer

    def _response(self, ctx: Any) -> SpooledTemporaryFile[bytes]:
        shape = self._answer_shape(ctx.descriptor)
        value = ctx.out_object[0] if ctx.out_object else None
        if value is None:
            return spool_response(shape.method, None)
        try:
            return spool_response(shape.method, _result_chunks(shape, value))
        finally:
            if isinstance(value, DataSet):
                # Release the row source (a store cursor) at once, written or not.
                close = getattr(value.rows, "close", None)
                if close is not None:
                    close()


def _position(item: tuple[int, etree._Element]) -> int:
    return item[0]


def _strip_attributes(element: etree._Element) -> None:
    # Every attribute but xsi:nil is ignored (xsi:type included), as IRIS does.
    attributes = element.attrib
    if attributes:
        for attribute in list(attributes):
            if attribute != _XSI_NIL:
                del attributes[attribute]


def _result_chunks(shape: _Answer, value: Any) -> Iterator[str]:
    name = shape.result_name
    if isinstance(value, DataSet):
        yield f"<{name}>"
        yield from dataset_chunks(value)
        yield f"</{name}>"
    elif shape.fields:
        # Property definition order, a None property left out, as IRIS projects objects;
        # any object with those attributes will do (the service need not build spyne's).
        parts = [f"<{name}>"]
        for field in shape.fields:
            member = getattr(value, field, None)
            if member is not None:
                parts.append(f"<{field}>{escape_value(str(member))}</{field}>")
        parts.append(f"</{name}>")
        yield "".join(parts)
    else:
        yield f"<{name}>{escape_value(str(value))}</{name}>"


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
    "NO_SOAPACTION_CONTENT_TYPE",
    "NO_SOAPACTION_PAGE",
    "NO_SOAPACTION_STATUS",
    "ROUTED_METHOD",
    "SERVER_APPLICATION_ERROR",
    "SERVICE_CLASS",
    "IrisFault",
    "IrisSoap11",
    "client_fault",
    "is_soap_request",
    "quiet_spyne_loggers",
]
