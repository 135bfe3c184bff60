"""The whole site of one data directory: SOAP, the revocation endpoints and the portal.

Mounted with werkzeug's ``DispatcherMiddleware``: the SOAP endpoint at
``/isc/pki/PKI.CAServer.cls`` (:mod:`pki_soap.soap.front`), the OCSP responder at
``/isc/pki/ocsp`` and the CRLs under ``/isc/pki/crl/`` (:mod:`pki_soap.server.endpoints`), and,
when asked, the portal under ``/pki/``.  Every part shares the process's one open data
directory.  Anything else is 404.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from pki_soap.errors import InvalidInput
from pki_soap.server.datadir import ServerDataDirectory
from pki_soap.server.endpoints import RevocationEndpoints
from pki_soap.server.revocation import CRL_PATH, OCSP_PATH
from pki_soap.server.tasks.submit import SubmissionLimits
from pki_soap.soap.front import DEFAULT_MAX_BODY, SoapEndpoint, SoapTransport
from pki_soap.soap.protocol import quiet_spyne_loggers
from pki_soap.soap.service import ServiceData, soap_application
from pki_soap.soap.wsdl import SERVICE_PATH, endpoint_url, load_wsdl
from pki_soap.store import RecordLimits
from pki_soap.web import not_found, plain

__all__ = ["DEFAULT_MAX_BODY", "PORTAL_PREFIX", "PkiSoapApp", "make_app"]

PORTAL_PREFIX = "/pki"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class PkiSoapApp:
    """The WSGI application serving the CA server of ``data_dir`` (also called :func:`make_app`).

    ``public_url`` is what the WSDL's ``soap:address`` says (``http://host:port`` or the
    full endpoint URL; default this host's name on port 52773) - never the request's Host.
    ``max_body`` bounds request bodies (413 beyond it, chunked or not).  ``portal`` mounts
    the web pages under ``/pki/`` (``portal_networks``: networks admitted besides loopback).
    ``smtp_cafile`` adds trust in a private SMTP server's certificate.  ``strict_iris``
    switches every deviation that can be switched to IRIS's behaviour
    (:data:`~pki_soap.soap.deviations.DEVIATIONS`); ``record`` keeps the SOAP exchanges in the
    store within those limits (:mod:`pki_soap.soap.recorder`; None records nothing).
    ``limits`` bound what anonymous submissions may store; None means
    :class:`SubmissionLimits`' defaults (``SubmissionLimits(0, pending=0,
    pending_per_host=0)`` for none).

    Raises:
        InvalidInput: ``public_url`` is not an http(s) URL, ``max_body`` is below 1, or a
            portal network is not an IP network.
        PkiError: the WSDL file or the portal's session key cannot be read.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        public_url: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        portal: bool = True,
        portal_networks: list[str] | None = None,
        smtp_cafile: Path | str | None = None,
        strict_iris: bool = False,
        record: RecordLimits | None = None,
        limits: SubmissionLimits | None = None,
    ) -> None:
        if max_body < 1:
            raise InvalidInput("the request body limit must be at least one byte")
        self.data_dir = Path(data_dir)
        quiet_spyne_loggers()
        # One open data directory per process, shared by the SOAP service and the portal.
        self.data = ServerDataDirectory(self.data_dir, smtp_cafile=smtp_cafile)
        service = ServiceData(self.data, limits if limits is not None else SubmissionLimits())
        self.soap = SoapTransport(soap_application(strict_iris=strict_iris), service)
        soap: WsgiApp = SoapEndpoint(self.soap, load_wsdl(public_url), max_body, strict_iris)
        if record is not None:
            # Only a recording server has the recorder in the request path.
            from pki_soap.soap.recorder import ExchangeRecorder

            soap = ExchangeRecorder(
                soap, lambda: self.data.get().store, record, strict_iris=strict_iris
            )
        # The OCSP responder and the CRL download, on the same per-process CAServer.
        self.revocation = RevocationEndpoints(lambda: self.data.get().server)
        mounts: dict[str, WsgiApp] = {
            SERVICE_PATH: _Exact(soap),
            OCSP_PATH: self.revocation.ocsp,
            CRL_PATH.rstrip("/"): self.revocation.crl,
        }
        #: The portal's own application (None without the portal).
        self.portal: WsgiApp | None = None
        if portal:
            # Behind an https:// public URL: Secure session cookie and HSTS.
            secure = endpoint_url(public_url).startswith("https://")
            self.portal = _load_portal(self.data, portal_networks, secure)
            mounts[PORTAL_PREFIX] = _Portal(self.portal)
        self._site = DispatcherMiddleware(not_found, mounts)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self._site(environ, start_response)


class _Exact:
    """A mounted application that answers its mount point only; anything below it is 404."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO"):
            return not_found(environ, start_response)
        return self.app(environ, start_response)


class _Portal:
    """The portal as mounted at :data:`PORTAL_PREFIX`: its bare prefix redirects to ``/pki/``."""

    def __init__(self, portal: WsgiApp) -> None:
        self.portal = portal

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not environ.get("PATH_INFO"):
            target = environ.get("SCRIPT_NAME", "") + "/"
            response = plain("308 Permanent Redirect", "", [("Location", target)])
            return response(environ, start_response)
        return self.portal(environ, start_response)


def _load_portal(
    data: ServerDataDirectory, networks: list[str] | None, secure_cookies: bool
) -> WsgiApp:
    # Imported here so that a service started with portal=False never loads Jinja2.
    from pki_soap.portal import make_portal

    app: WsgiApp = make_portal(
        data.path, allow_networks=networks, secure_cookies=secure_cookies, data=data
    )
    return app


#: The name the front ends build the site by.
make_app = PkiSoapApp
