"""Shared fixtures: a data directory, the CA password, and a configured CA server on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pki_soap.ca import names
from pki_soap.server.datadir import open_data_directory
from pki_soap.server.tasks import CAServer

CA_ROOT = "TestCA"
CA_DIRECTORY = "CAServer"
CA_NODE = "ca.example"
CA_INSTANCE = "PKI"
ISSUED_DAYS = 30


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory (``--data-dir``) for one test."""
    path = tmp_path / "pki-data"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def ca_password() -> bytes:
    """The password of the CA key that ``configured_server`` creates."""
    return b"correct horse battery staple"


@pytest.fixture
def configured_server(data_dir: Path, ca_password: bytes) -> Iterator[CAServer]:
    """A CAServer on ``data_dir`` (real store, real notifier, no SMTP) with a new RSA-2048 CA.

    Root ``TestCA`` in ``<data_dir>/CAServer``, node ``ca.example``, instance ``PKI``,
    issued certificates valid 30 days.
    """
    opened = open_data_directory(data_dir, create=True)
    server = opened.server
    server.configure(
        root=CA_ROOT,
        directory=CA_DIRECTORY,
        password=ca_password,
        days=ISSUED_DAYS,
        subject=names.subject_from_text("/C=US/O=Example/CN=Example Test CA"),
        ca_days=3650,
        instance=CA_INSTANCE,
        node=CA_NODE,
    )
    try:
        yield server
    finally:
        opened.close()
