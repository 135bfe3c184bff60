"""The spyne service ``CAServer``: IRIS ``PKI.CAServer``'s three web methods and their types.

The models follow spyne's manual: ``_type_info`` lists a ComplexModel's members in order
(IRIS's property order is the wire order), and a method may return any object with the
model's attribute names (``CertificateAnswer``).  Our errors become SOAP faults in one place,
:meth:`CAServerService.call_wrapper`; :func:`soap_application` puts the service and
:class:`~pki_soap.soap.protocol.IrisSoap11` together.  HTTP is :mod:`pki_soap.soap.front`'s.

One step beyond spyne's manual, for speed: spyne fires 14 events per request through its
event managers and we listen to none, but its ``EventManager.fire_event`` builds an empty
ordered set for each event without listeners (about 30 µs of a 200 µs GetCertificate).
:func:`soap_application` gives the application, the service and its methods a
:class:`~pki_soap.soap.protocol.QuietEventManager` instead (the protocol and the transport make
their own), through their public ``event_manager`` and ``event_managers`` attributes;
listeners still run as spyne's would
(tests/test_spyne_contract.py fails if an upgrade changes that).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from spyne import Application, ComplexModel, ServiceBase, Unicode, rpc
from spyne.evmgr import EventManager
from spyne.model.fault import Fault
from spyne.model.primitive import AnyXml

from pki_soap.errors import (
    DuplicateRequest,
    MissingField,
    NotConfigured,
    NotFound,
    PkiError,
    StoreUnavailable,
    TooManyRequests,
)
from pki_soap.server.datadir import ServerDataDirectory
from pki_soap.server.tasks import CAServer
from pki_soap.server.tasks.submit import SubmissionLimits
from pki_soap.soap.dataset import LIST_ALL_COLUMNS, LIST_MY_COLUMNS, DataSet
from pki_soap.soap.envelope import SERVICE_NS
from pki_soap.soap.protocol import (
    SERVER_APPLICATION_ERROR,
    IrisFault,
    IrisSoap11,
    QuietEventManager,
)
from pki_soap.store import IssuedCertificate, PendingRequest

log = logging.getLogger(__name__)


# -- the spyne model: names and order are IRIS's (wire-protocol.md §4) ------------------------


class CSR(ComplexModel):  # type: ignore[misc]  # spyne has no type information
    """``PKI.CSR`` as a request carries it, properties in definition order."""

    __namespace__ = SERVICE_NS
    __type_name__ = "CSR"
    _type_info: ClassVar[list[tuple[str, type]]] = [
        ("Name", Unicode),
        ("Hostname", Unicode),
        ("Instance", Unicode),
        ("Filename", Unicode),
        ("Contents", Unicode),
        ("Subject", Unicode),
        ("ContactName", Unicode),
        ("ContactPhone", Unicode),
        ("ContactEmail", Unicode),
    ]


class Certificate(ComplexModel):  # type: ignore[misc]  # spyne has no type information
    """``PKI.Certificate`` as GetCertificate returns it: exactly these six elements."""

    __namespace__ = SERVICE_NS
    __type_name__ = "Certificate"
    _type_info: ClassVar[list[tuple[str, type]]] = [
        ("Number", Unicode),
        ("Hostname", Unicode),
        ("Instance", Unicode),
        ("Filename", Unicode),
        ("Contents", Unicode),
        ("Subject", Unicode),
    ]


class CertificateAnswer(NamedTuple):
    """What GetCertificate returns: :class:`Certificate`'s fields, cheaper to build.

    The protocol writes any object carrying the model's field names, so the answer needs
    no spyne object.
    """

    Number: str
    Hostname: str
    Instance: str
    Filename: str
    Contents: str
    Subject: str


class DataSetResult(AnyXml):  # type: ignore[misc]  # spyne has no type information
    """Stands for ``%XML.DataSet`` in spyne's model; IrisSoap11 writes the real thing."""


@dataclass(frozen=True)
class ServiceData:
    """What every web method call gets (as spyne's ``ctx.udc``, set by the transport)."""

    data: ServerDataDirectory
    limits: SubmissionLimits


def _engine(ctx: Any) -> CAServer:
    # Opened here, inside call_wrapper, so a store that cannot be opened is translated too.
    service: ServiceData = ctx.udc
    return service.data.get().server


def _strict_iris(ctx: Any) -> bool:
    """True when the service runs in IRIS-strict mode (``serve --strict-iris``)."""
    return bool(ctx.app.in_protocol.strict_iris)


# Server-side errors whose message is meant for the caller; any other one (a store or CA
# file problem) may name paths on this machine and is answered without its message.
_TOLD_SERVER_ERRORS = (DuplicateRequest, NotConfigured, NotFound, StoreUnavailable, TooManyRequests)


class CAServerService(ServiceBase):  # type: ignore[misc]  # spyne has no type information
    """The web methods of ``PKI.CAServer``; the service name on the wire is ``CAServer``."""

    __service_name__ = "CAServer"

    @classmethod
    def call_wrapper(cls, ctx: Any, args: Any = None) -> Any:
        """Run a web method; the one place where our errors become SOAP faults.

        A :class:`PkiError` becomes a fault of its side carrying its message and
        ``ERROR #n`` detail - except a server-side problem of our own (store, CA files),
        which keeps its class and number but says only ``Server Application Error``; anything
        unexpected is logged here and answered with that and ``ERROR #5001``.
        """
        try:
            return super().call_wrapper(ctx, args)
        except PkiError as exc:
            if exc.fault_side == "Client" or isinstance(exc, _TOLD_SERVER_ERRORS):
                raise IrisFault(exc) from exc
            log.error("%s failed: %s: %s", ctx.descriptor.name, type(exc).__name__, exc.message)
            raise IrisFault(type(exc)(SERVER_APPLICATION_ERROR)) from exc
        except Fault:
            raise
        except Exception as exc:
            log.exception("%s failed", ctx.descriptor.name)
            raise IrisFault(PkiError(SERVER_APPLICATION_ERROR)) from exc

    @rpc(CSR, _returns=Unicode, _body_style="wrapped")  # type: ignore[untyped-decorator]
    def SubmitCSR(ctx: Any, csr: Any) -> str:  # noqa: N802, N805 - IRIS names
        """Store a CSR as a pending request; the answer says it was successfully submitted."""
        if csr is None:
            raise MissingField("the csr element is required")
        request = PendingRequest(
            name=csr.Name or "",
            hostname=csr.Hostname or "",
            instance=csr.Instance or "",
            filename=csr.Filename or "",
            contents=csr.Contents or "",
            subject=csr.Subject or "",
            contact_name=csr.ContactName or "",
            contact_phone=csr.ContactPhone,
            contact_email=csr.ContactEmail,
        )
        client = ctx.transport.req_env.get("REMOTE_ADDR")
        return _engine(ctx).submit(
            request, as_received=_strict_iris(ctx), client_address=client, limits=ctx.udc.limits
        )

    @rpc(Unicode, Unicode, _returns=DataSetResult, _body_style="wrapped")  # type: ignore[untyped-decorator]
    def ListCertificates(ctx: Any, hostname: str | None, instance: str | None) -> DataSet:  # noqa: N802, N805
        """ListAll (4 columns) when both arguments are empty or omitted, else ListMy (2)."""
        rows = _engine(ctx).certificate_rows(
            hostname or "", instance or "", iris_order=_strict_iris(ctx)
        )
        if not hostname and not instance:
            return DataSet("ListAll", LIST_ALL_COLUMNS, _list_all_rows(rows))
        return DataSet("ListMy", LIST_MY_COLUMNS, _list_my_rows(rows))

    @rpc(Unicode, _returns=Certificate, _body_style="wrapped")  # type: ignore[untyped-decorator]
    def GetCertificate(ctx: Any, number: str | None) -> CertificateAnswer | None:  # noqa: N802, N805
        """The certificate numbered ``number`` ("0": the CA's), or the empty answer (Q4)."""
        issued = _engine(ctx).certificate(number or "")
        return None if issued is None else _wire_certificate(issued)


_Rows = Generator[tuple[int, str, str, str], None, None]


def _list_all_rows(rows: _Rows) -> Iterator[tuple[str, str, str, str]]:
    try:
        for number, hostname, instance, filename in rows:
            yield str(number), hostname, instance, filename
    finally:
        rows.close()  # the store's cursor, also when writing stops early


def _list_my_rows(rows: _Rows) -> Iterator[tuple[str, str]]:
    try:
        for number, _, _, filename in rows:
            yield str(number), filename
    finally:
        rows.close()


def _wire_certificate(issued: IssuedCertificate) -> CertificateAnswer:
    # The wget client cuts the PEM out between the <Contents> line and the </Contents>
    # line: the value must start with the BEGIN line and end with a line break.
    contents = (issued.contents or "").lstrip()
    if not contents.endswith("\n"):
        contents += "\n"
    return CertificateAnswer(
        Number=str(issued.number),
        Hostname=issued.hostname or "",
        Instance=issued.instance or "",
        Filename=issued.filename or "",
        Contents=contents,
        Subject=issued.subject or "",
    )


def soap_application(*, strict_iris: bool) -> Application:
    """The spyne application: :class:`CAServerService` spoken as IRIS speaks SOAP 1.1.

    ``strict_iris`` switches the protocol's deviations to IRIS's behaviour
    (:data:`~pki_soap.soap.deviations.DEVIATIONS`).
    """
    application: Application = Application(
        [CAServerService],
        tns=SERVICE_NS,
        name="CAServer",
        in_protocol=IrisSoap11(strict_iris=strict_iris),
        out_protocol=IrisSoap11(strict_iris=strict_iris),
    )
    _quiet_events(application)
    return application


def _quiet_events(application: Application) -> None:
    """Give the application, its services and their methods quiet event managers.

    Each of spyne's managers is replaced by one quiet manager with the same parent and
    handlers, the same one wherever spyne refers to it.
    """
    quiet: dict[int, QuietEventManager] = {}

    def replacement(manager: EventManager) -> QuietEventManager:
        if id(manager) not in quiet:
            quiet[id(manager)] = QuietEventManager(manager.parent, manager.handlers)
        return quiet[id(manager)]

    application.event_manager = replacement(application.event_manager)
    for service in application.services:
        service.event_manager = replacement(service.event_manager)
    for descriptors in application.interface.service_method_map.values():
        for descriptor in descriptors:
            descriptor.event_managers[:] = [replacement(m) for m in descriptor.event_managers]
