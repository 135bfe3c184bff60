"""CAClient: talks SOAP to any PKI.CAServer (ours or a real InterSystems one) through zeep.

zeep builds the requests from the IRIS-faithful WSDL (the server's ``?WSDL`` when it serves a
usable one, else the packaged ``soap/CAServer.wsdl``) and sends them; the answers are read
(pki_soap.client.answers) with a locked-down lxml parser instead of zeep's typed parsing,
because a real IRIS server's answers are looser than any WSDL says (string-ordered DataSets,
extra schema siblings, a result element whose name is not significant) and a fault's meaning
is in its ``<detail>`` text.

Requests look like an InterSystems client's (wire-protocol.md §8): SOAPAction
``http://pki.intersystems.com/PKI.CAServer.<Method>`` unquoted and always present,
``Content-Type: text/xml; charset=UTF-8``, the wrapper and its children qualified in
``http://pki.intersystems.com``, ``Subject`` sent, empty optional fields omitted.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3.exceptions
import zeep
import zeep.exceptions
import zeep.plugins
import zeep.proxy
import zeep.settings
import zeep.transports
from cryptography import x509
from lxml import etree

from pki_soap import __version__
from pki_soap.ca.names import CSR_FIELD_LIMITS, check_root
from pki_soap.client.answers import children, invalid_answer, local_name, read_answer
from pki_soap.client.transport import (
    VerifyingAdapter,
    WireExchange,
    network_reason,
    never_sent,
    tls_reason,
    tracer,
)
from pki_soap.errors import (
    InvalidField,
    InvalidInput,
    InvalidRoot,
    MissingField,
    PkiError,
    ServerUnreachable,
    UntrustedServer,
)
from pki_soap.escaping import has_control
from pki_soap.soap import WSDL_FILE
from pki_soap.soap.dataset import LIST_ALL_COLUMNS, LIST_MY_COLUMNS, read_dataset
from pki_soap.soap.envelope import CONTENT_TYPE, SERVICE_NS

BINDING = f"{{{SERVICE_NS}}}CAServerSoap"
SOAP_ACTION_PREFIX = f"{SERVICE_NS}/PKI.CAServer."
USER_AGENT = f"pki-soap/{__version__} (CAClient)"
DEFAULT_PATH = "/isc/pki/PKI.CAServer.cls"
# The packaged copy of the WSDL a real IRIS server generates (wire-protocol.md §6).
PACKAGED_WSDL = WSDL_FILE

_METHODS = frozenset({"GetCertificate", "ListCertificates", "SubmitCSR"})
_LIST_MY = LIST_MY_COLUMNS
_LIST_ALL = LIST_ALL_COLUMNS


@dataclass(frozen=True)
class CertificateRow:
    """One row of ListCertificates: ListMy gives number and filename, ListAll also host/instance."""

    number: int
    filename: str
    hostname: str | None = None
    instance: str | None = None


@dataclass(frozen=True)
class RemoteCertificate:
    """A certificate as GetCertificate returned it; ``filename`` already passed the root rules."""

    number: int
    hostname: str
    instance: str
    filename: str
    contents: str
    subject: str

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate (``contents`` was checked to parse when this was made)."""
        return x509.load_pem_x509_certificate(self.contents.encode("utf-8"))


class _IrisHeaders(zeep.plugins.Plugin):
    """Sends the HTTP headers an InterSystems client sends (zeep quotes the SOAPAction)."""

    def egress(
        self,
        envelope: etree._Element,
        http_headers: dict[str, str],
        operation: Any,
        binding_options: Any,
    ) -> tuple[etree._Element, dict[str, str]]:
        """Set SOAPAction (unquoted) and Content-Type as an InterSystems client does."""
        http_headers["SOAPAction"] = SOAP_ACTION_PREFIX + operation.name
        http_headers["Content-Type"] = CONTENT_TYPE
        return envelope, http_headers


class CAClient:
    """A stub for one PKI.CAServer endpoint; create it once and reuse it.

    The zeep client is built on the first call (the server's WSDL is fetched then), so making
    a ``CAClient`` never touches the network; ``wsdl_source`` then names the WSDL in use.
    Whatever WSDL is used, requests go to ``url``, never to the WSDL's ``soap:address``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        wsdl: str | None = None,
        session: requests.Session | None = None,
        cafile: Path | str | None = None,
        verify: bool = True,
        trace: Callable[[WireExchange], object] | None = None,
    ) -> None:
        """``url`` is the SOAP endpoint, ``wsdl`` a WSDL location that replaces the fetch;
        ``trace`` is given every request sent and its answer (the WSDL fetch too).

        Over HTTPS the server's certificate is verified, with its host name: against
        ``cafile`` alone when given (the pinned CA certificate), else against the system's
        trusted CAs; ``verify=False`` skips the check, only for fetching a CA certificate
        that is then compared with a fingerprint.

        Raises:
            InvalidInput: ``url`` is not an http(s) URL with a host, or ``cafile`` with
                ``verify=False``.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"CA server URL {url!r} must be http://host:port/path")
        if timeout <= 0:
            raise InvalidInput("timeout must be positive")
        if cafile is not None and not verify:
            raise InvalidInput("a CA file to verify against, and no verification: choose one")
        self.url = url
        self.timeout = timeout
        self._wsdl = wsdl
        self._own_session = session is None
        self._session = session or requests.Session()
        self._verify = verify
        if cafile is not None or not verify:
            self._session.mount("https://", VerifyingAdapter(str(cafile) if cafile else False))
        if trace is not None:
            self._session.hooks["response"].append(tracer(trace))
        self._lock = threading.Lock()
        self._service: zeep.proxy.ServiceProxy | None = None
        self._csr_fields: frozenset[str] = frozenset()
        self.wsdl_source: str | None = None

    def close(self) -> None:
        """Close the HTTP connections (a session passed in by the caller stays open)."""
        if self._own_session:
            self._session.close()

    def __enter__(self) -> CAClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the three web methods --------------------------------------------------------------

    def submit_csr(
        self,
        *,
        name: str,
        hostname: str,
        instance: str,
        filename: str,
        contents: str,
        subject: str,
        contact_name: str,
        contact_phone: str | None = None,
        contact_email: str | None = None,
    ) -> str:
        """SubmitCSR; returns the server's sentence (``... successfully submitted ...``).

        Raises:
            MissingField, InvalidField: a field is empty, too long or holds control characters
                (checked before anything is sent).
            PkiError: the class of the server's fault (DuplicateRequest, InvalidCsr, ...).
            ServerUnreachable: no answer, or an answer that is not SOAP.
        """
        fields = {
            "Name": name,
            "Hostname": hostname,
            "Instance": instance,
            "Filename": filename,
            "Contents": contents,
            "Subject": subject,
            "ContactName": contact_name,
            "ContactPhone": contact_phone,
            "ContactEmail": contact_email,
        }
        csr = self._csr_argument(fields)
        wrapper = self._call("SubmitCSR", csr=csr)
        result = next(children(wrapper), None)
        if result is None or not (result.text or "").strip():
            raise self._invalid("SubmitCSR returned no result")
        return (result.text or "").strip()

    def list_certificates(self, hostname: str = "", instance: str = "") -> list[CertificateRow]:
        """ListCertificates: this host/instance's certificates, or all when both are empty.

        Rows come back in numeric order (newest last), whatever order the server used (a real
        IRIS server sorts the numbers as strings).

        Raises:
            InvalidField: a control character in ``hostname`` or ``instance``.
            PkiError: the class of the server's fault.
            ServerUnreachable: no answer, an answer that is not SOAP, or a DataSet that breaks
                the reader rules of wire-protocol.md §3.2.
        """
        for label, value in (("hostname", hostname), ("instance", instance)):
            if has_control(value):
                raise InvalidField(f"{label} holds a control character")
        # An InterSystems client sends "list all" with both elements omitted (IRIS null).
        wrapper = self._call(
            "ListCertificates", hostname=hostname or None, instance=instance or None
        )
        result = next(children(wrapper), None)
        if result is None:
            raise self._invalid("ListCertificates returned no DataSet")
        try:
            _, columns, rows = read_dataset(result)
        except ServerUnreachable as exc:
            raise self._invalid(f"ListCertificates: {exc.message}") from exc
        # InterSystems clients read the columns by position (§3.2): Number, Filename for
        # ListMy; Number, Hostname, Instance, Filename for ListAll.
        if "Number" not in columns and len(columns) in (2, 4):
            names = _LIST_ALL if len(columns) == 4 else _LIST_MY
            rows = [
                {names[columns.index(key)]: value for key, value in row.items()} for row in rows
            ]
            columns = list(names)
        if "Number" not in columns or "Filename" not in columns:
            raise self._invalid(f"ListCertificates columns {columns} lack Number or Filename")
        certificates = [self._row(columns, row) for row in rows]
        return sorted(certificates, key=lambda row: row.number)

    def get_certificate(self, number: int | str) -> RemoteCertificate | None:
        """GetCertificate; ``0`` is the CA certificate; None when the server has no such number.

        Raises:
            InvalidInput: ``number`` is not a non-negative decimal number.
            InvalidRoot: the server supplied a Filename that is not a safe file-name root
                (``../../evil``): it is refused, never turned into a path.
            PkiError: the class of the server's fault.
            ServerUnreachable: no answer, not SOAP, missing elements, or Contents that is not
                one PEM certificate.
        """
        text = str(number).strip()
        if not text.isdigit() or not text.isascii():
            raise InvalidInput(f"certificate number {str(number)!r} is not a decimal number")
        wanted = int(text)
        wrapper = self._call("GetCertificate", number=str(wanted))
        result = next(children(wrapper), None)
        if result is None:
            return None  # IRIS answers an unknown number with an empty response (§10 Q4)
        values: dict[str, str] = {}
        for child in children(result):
            values.setdefault(local_name(child), child.text or "")
        missing = [key for key in ("Number", "Filename", "Contents") if not values.get(key)]
        if missing:
            raise self._invalid(f"GetCertificate result lacks {', '.join(missing)}")
        got = values["Number"].strip()
        if not got.isdigit() or not got.isascii() or int(got) != wanted:
            raise self._invalid(f"asked for certificate {wanted}, got number {got!r}")
        filename = values["Filename"]
        try:
            check_root(filename)
        except InvalidRoot as exc:
            raise InvalidRoot(
                f"CA server at {self.url} supplied an unsafe file name {filename!r} for "
                f"certificate {wanted}: {exc.message}; nothing was saved"
            ) from exc
        contents = values["Contents"]
        try:
            x509.load_pem_x509_certificate(contents.encode("utf-8"))
        except ValueError as exc:
            raise self._invalid(f"certificate {wanted} is not a PEM certificate") from exc
        return RemoteCertificate(
            number=wanted,
            hostname=values.get("Hostname", ""),
            instance=values.get("Instance", ""),
            filename=filename,
            contents=contents,
            subject=values.get("Subject", ""),
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _untrusted(self, reason: str) -> UntrustedServer:
        return UntrustedServer(
            f"CA server at {self.url} is not trusted: {reason}; nothing was sent"
        )

    @contextlib.contextmanager
    def _unverified_quietly(self) -> Iterator[None]:
        """urllib3 warns at each unverified request; ``verify=False`` was asked for knowingly."""
        if self._verify:
            yield
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            yield

    def _unreachable(self, reason: str, *, maybe_received: bool = False) -> ServerUnreachable:
        return ServerUnreachable(
            f"CA server at {self.url} unreachable: {reason}", maybe_received=maybe_received
        )

    def _invalid(self, reason: str) -> ServerUnreachable:
        return invalid_answer(self.url, reason)

    def _row(self, columns: list[str], row: Mapping[str, str]) -> CertificateRow:
        number_text = row.get("Number", "").strip()
        if not number_text.isdigit() or not number_text.isascii():
            raise self._invalid(f"ListCertificates row with number {number_text!r}")
        four = "Hostname" in columns or "Instance" in columns
        return CertificateRow(
            number=int(number_text),
            filename=row.get("Filename", ""),
            hostname=row.get("Hostname", "") if four else None,
            instance=row.get("Instance", "") if four else None,
        )

    def _csr_argument(self, fields: dict[str, str | None]) -> dict[str, str]:
        for key in ("Name", "Hostname", "Instance", "Filename", "Contents", "ContactName"):
            if not (fields[key] or "").strip():
                raise MissingField(f"{key} is required")
        argument: dict[str, str] = {}
        for key, value in fields.items():
            if value is None or value == "":
                continue  # empty optional fields are omitted, as an InterSystems client does
            # CR, LF and TAB are fine inside the PEM Contents; nowhere else.
            if has_control(value, allowed="\r\n\t" if key == "Contents" else ""):
                raise InvalidField(f"{key} holds a control character")
            if len(value) > CSR_FIELD_LIMITS[key]:
                raise InvalidField(f"{key} is longer than {CSR_FIELD_LIMITS[key]} characters")
            argument[key] = value
        return argument

    def _call(self, method: str, **arguments: Any) -> etree._Element:
        """Send one request; return the response wrapper element or raise the mapped error."""
        with self._unverified_quietly():
            service = self._ensure_service()
        if method == "SubmitCSR" and "Subject" not in self._csr_fields:
            # A pre-IRIS (Caché) server's WSDL has no Subject and its server rejects it (§10 Q2).
            arguments["csr"].pop("Subject", None)
        try:
            with self._unverified_quietly():
                response = getattr(service, method)(**arguments)
        except requests.RequestException as exc:
            tls_failure = tls_reason(exc)
            if tls_failure is not None:
                raise self._untrusted(tls_failure) from exc
            raise self._unreachable(
                network_reason(exc, self.timeout), maybe_received=not never_sent(exc)
            ) from exc
        except (zeep.exceptions.Error, TypeError, ValueError) as exc:
            # zeep refused to build the request from the server's WSDL.
            raise InvalidInput(f"{method} request could not be built: {exc}") from exc
        return read_answer(self.url, method, response)

    def _ensure_service(self) -> zeep.proxy.ServiceProxy:
        with self._lock:
            if self._service is None:
                self._service = self._build_service()
            return self._service

    def _build_service(self) -> zeep.proxy.ServiceProxy:
        settings = zeep.settings.Settings(
            strict=True,
            raw_response=True,  # answers are read by answers.read_answer
            forbid_dtd=True,
            forbid_external=True,
            forbid_entities=True,
        )
        transport = zeep.transports.Transport(  # type: ignore[no-untyped-call]
            timeout=self.timeout, operation_timeout=self.timeout, session=self._session
        )
        self._session.headers["User-Agent"] = USER_AGENT  # zeep's Transport sets its own

        def stub_for(location: str) -> tuple[zeep.proxy.ServiceProxy, frozenset[str]]:
            """The service proxy at our URL (never the WSDL's address) and the CSR's fields."""
            client = zeep.Client(  # type: ignore[no-untyped-call]
                location, transport=transport, settings=settings, plugins=[_IrisHeaders()]
            )
            binding = client.wsdl.bindings[BINDING]
            missing = _METHODS - set(binding.all())  # type: ignore[no-untyped-call]
            if missing:
                raise LookupError(f"the binding lacks {', '.join(sorted(missing))}")
            service = client.create_service(BINDING, self.url)  # type: ignore[no-untyped-call]
            csr_type = client.get_type(f"{{{SERVICE_NS}}}CSR")  # type: ignore[no-untyped-call]
            return service, frozenset(name for name, _ in csr_type.elements)

        location = self._wsdl or self.url + ("&" if "?" in self.url else "?") + "WSDL"
        try:
            service, self._csr_fields = stub_for(location)
        except (requests.ConnectionError, requests.Timeout) as exc:
            tls_failure = tls_reason(exc)
            if tls_failure is not None:
                raise self._untrusted(tls_failure) from exc
            raise self._unreachable(network_reason(exc, self.timeout)) from exc
        except Exception as exc:
            if self._wsdl is not None:
                raise InvalidInput(f"WSDL {location} is unusable: {exc}") from exc
            # A server may refuse ?WSDL (IRIS serves it only to %Development users) or send
            # one zeep cannot use; the packaged copy of the IRIS WSDL is the reference.
            location = str(PACKAGED_WSDL)
            if not PACKAGED_WSDL.is_file():
                raise PkiError(f"the packaged WSDL {PACKAGED_WSDL} is missing") from exc
            service, self._csr_fields = stub_for(location)
        self.wsdl_source = location
        return service
