"""The management portal: web pages for every CA server and CA client task.

:func:`make_portal` returns a WSGI application meant to be mounted below the SOAP service
(``/pki/``); every link it writes is relative to the script root it is mounted at.  It answers
loopback clients only (unless ``allow_networks`` names more), asks for the administrator
password set with ``server_app.py portal-password``, keeps its session in a signed,
HttpOnly, SameSite=Strict cookie, checks a CSRF token on every POST, signs out after
inactivity, and sends a Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pki_soap.portal import client_pages, forms, server_pages
from pki_soap.portal.app import IDLE_TIMEOUT_SECONDS, Portal
from pki_soap.server.datadir import ServerDataDirectory

__all__ = ["Portal", "make_portal"]


def make_portal(
    data_dir: Path,
    *,
    allow_networks: list[str] | None = None,
    secure_cookies: bool = False,
    idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.time,
    data: ServerDataDirectory | None = None,
) -> Portal:
    """The portal's WSGI application for the data directory ``data_dir``.

    ``allow_networks`` admits clients of those networks (``192.0.2.0/24``) besides loopback;
    ``secure_cookies`` marks the session cookie Secure and sends HSTS (set it when served
    over HTTPS);
    ``idle_timeout`` is the inactivity, in seconds, after which a session ends; ``clock``
    exists for tests; ``data`` is the server process's open data directory, shared with
    the SOAP service (a portal served alone opens its own).

    Raises:
        InvalidInput: an entry of ``allow_networks`` is not an IP network.
        PkiError: the session key file in ``data_dir`` cannot be read or created.
    """
    portal = Portal(
        Path(data_dir),
        allow_networks=allow_networks,
        secure_cookies=secure_cookies,
        idle_timeout=idle_timeout,
        clock=clock,
        data=data if data is not None else ServerDataDirectory(Path(data_dir)),
    )
    portal.templates.globals.update(
        subject_fields_list=forms.SUBJECT_FIELDS, key_types=forms.KEY_TYPES
    )
    server_pages.register(portal)
    client_pages.register(portal)
    return portal
