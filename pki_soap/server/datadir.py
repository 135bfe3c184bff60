"""A data directory opened by one process: one Store, one Notifier, one CAServer.

Every front end gets its CA server from here: each CLI command opens the data directory once
(:func:`open_data_directory`), and a server process (each gunicorn worker) shares one
:class:`ServerDataDirectory` between the SOAP service and the portal.  So a process never holds
two sets of SQLite connections to one database, and nothing but SQLite opens or closes the
database files: closing any descriptor of a database file drops every POSIX lock the process
holds on it, which is how a second opener used to let another process delete the WAL under
the server (docs/decisions.md, "SQLite's corruption list").

A server process opens its data directory lazily, at the first request after the fork, and
never uses connections made before a fork: connections carried across ``fork()`` share lock
state with the parent and corrupt the database.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pki_soap.errors import NotConfigured, PkiError
from pki_soap.server.mail import Notifier
from pki_soap.server.tasks import CAServer
from pki_soap.store import DATABASE_NAME, Store

log = logging.getLogger(__name__)


@dataclass
class DataDirectory:
    """The open data directory of this process: its store, its mail notifier, its CA server."""

    path: Path
    store: Store
    notifier: Notifier
    server: CAServer

    def close(self) -> None:
        """Close the store (its SQLite connections)."""
        self.store.close()

    def __enter__(self) -> DataDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_data_directory(
    path: Path,
    *,
    create: bool = False,
    smtp_cafile: Path | str | None = None,
    deliver_now: bool = True,
) -> DataDirectory:
    """Open ``path`` (store, notifier and CA server) for this process.

    ``create`` makes the directory and an empty store when absent (``configure``); otherwise a
    directory without a store is refused.  ``smtp_cafile`` and ``deliver_now`` go to the
    :class:`Notifier`: ``deliver_now=False`` only queues notices for a retry thread.

    Raises:
        NotConfigured: no store in ``path`` and ``create`` is false.
        PkiError: the store cannot be opened (unwritable directory, newer schema, ...).
    """
    path = Path(path)
    if not create and not (path / DATABASE_NAME).exists():
        raise NotConfigured(f"no CA server data in {path} (configure it first, or give --data-dir)")
    store = Store.open(path)
    notifier = Notifier(store, cafile=smtp_cafile, deliver_now=deliver_now)
    return DataDirectory(path, store, notifier, CAServer(store, path, notifier))


def check_writable(path: Path) -> None:
    """Refuse a data directory this process cannot write: the server would answer 500s.

    Checked by path only (``os.access``), never by opening the database file.

    Raises:
        PkiError: ``path`` or its database exists and is not writable, or ``path`` cannot
            be created.
    """
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise PkiError(f"cannot create the data directory {path}: {exc.strerror}") from exc
    for target in (path, path / DATABASE_NAME):
        if target.exists() and not os.access(target, os.W_OK):
            raise PkiError(
                f"cannot write in the data directory {path}: {target} is not writable "
                "(a read-only file system, or its owner or permissions; or give another "
                "--data-dir)"
            )
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PkiError(f"cannot write in the data directory {path}: {exc.strerror}") from exc


class ServerDataDirectory:
    """The data directory of a server process, shared by the SOAP service and the portal.

    Opened at first use in each process (after gunicorn forks its workers) with mail only
    queued during a request and sent by this process's retry thread, so a slow SMTP server
    never delays an answer.  A handle inherited across ``fork()`` is never used in the child.
    """

    def __init__(self, path: Path, *, smtp_cafile: Path | str | None = None) -> None:
        self.path = Path(path)
        self._smtp_cafile = smtp_cafile
        self._lock = threading.Lock()
        self._opened: DataDirectory | None = None
        self._pid = 0

    def get(self) -> DataDirectory:
        """This process's open data directory (opened, and its mail thread started, once).

        Raises:
            PkiError: the store cannot be opened.
        """
        with self._lock:
            if self._opened is None or self._pid != os.getpid():
                if self._opened is not None:
                    # A parent's handle is dropped without closing: closing its descriptors
                    # could release the parent's locks; the child only ever opens its own.
                    _inherited.append(self._opened)
                self._opened = open_data_directory(
                    self.path, create=True, smtp_cafile=self._smtp_cafile, deliver_now=False
                )
                self._pid = os.getpid()
                self._opened.notifier.start_retrying()
            return self._opened

    def close(self) -> None:
        """Close this process's store (a server about to fork, or a test)."""
        with self._lock:
            if self._opened is not None and self._pid == os.getpid():
                self._opened.close()
            self._opened = None


_inherited: list[DataDirectory] = []
"""Handles opened by a parent process: kept referenced so they are never closed here."""
