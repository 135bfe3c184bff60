"""Benchmark data: a configured CA, cached CSRs, and stores filled by direct SQL inserts.

Key generation is slow (RSA-2048 takes tens of milliseconds), so CSRs are generated once, in
parallel, and cached in the system temporary directory across runs.  Certificates and
pending requests are seeded with plain INSERTs into the tables the Store created (its own
schema), in one transaction: going through the engine would take hours for 100,000 rows.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pki_soap import files
from pki_soap.ca import keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import build_csr, csr_pem
from pki_soap.ca.keys import KeyType
from pki_soap.server.tasks import CAServer
from pki_soap.store import DATABASE_NAME, PendingRequest, Store

CA_ROOT = "BenchCA"
CA_DIRECTORY = "CAServer"
CA_PASSWORD = b"bench-ca-password"
CA_INSTANCE = "BENCHCA"
CA_NODE = "bench-ca.example.com"
OWNER = ("bench-host.example.com", "BENCH")
"""The host/instance whose 5 certificates ListCertificates (ListMy) returns."""
OWNED_NUMBERS = (10, 30, 50, 70, 90)
CSR_CACHE = Path(tempfile.gettempdir()) / "pki-soap-bench-csrs"
_PEM_END = "-----END CERTIFICATE REQUEST-----\n"


def configure_ca(data_dir: Path) -> Path:
    """Configure a fresh RSA-2048 CA in ``data_dir``; return its password file (0600).

    Raises:
        PkiError: the engine refused (it should not, on an empty directory).
    """
    with CAServer(Store.open(data_dir), data_dir, None) as server:
        server.configure(
            root=CA_ROOT,
            directory=CA_DIRECTORY,
            password=CA_PASSWORD,
            days=365,
            ca_days=3650,
            subject=names.subject_from_text("/O=pki-soap bench/CN=pki-soap Bench CA"),
            instance=CA_INSTANCE,
            node=CA_NODE,
        )
    password_file = data_dir / "ca.password"
    files.write_private_file(password_file, CA_PASSWORD + b"\n")
    return password_file


def _make_csr(job: tuple[str, int]) -> str:
    kind, index = job
    key = keys.generate_key(KeyType(kind))
    subject = names.subject_from_text(f"/O=pki-soap bench/CN=bench-{kind}-{index}.example.com")
    return csr_pem(build_csr(key, subject))


def cached_csrs(kind: KeyType, count: int) -> list[str]:
    """``count`` PEM CSRs of distinct ``kind`` keys, generated once (in parallel) and cached."""
    CSR_CACHE.mkdir(mode=0o700, exist_ok=True)
    path = CSR_CACHE / f"{kind.value}.pem"
    have: list[str] = []
    if path.exists():
        have = [block + _PEM_END for block in path.read_text().split(_PEM_END) if block.strip()]
    if len(have) < count:
        jobs = [(kind.value, i) for i in range(len(have), count)]
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            have += list(pool.map(_make_csr, jobs, chunksize=16))
        temp = path.with_suffix(".tmp")
        temp.write_text("".join(have))
        temp.replace(path)
    return have[:count]


def issue_owned(data_dir: Path, csrs: list[str], owner: tuple[str, str] = OWNER) -> list[int]:
    """Submit and issue one certificate per CSR for ``owner`` through the real engine.

    Returns the certificate numbers.

    Raises:
        PkiError: the engine refused a step.
    """
    numbers = []
    hostname, instance = owner
    with CAServer(Store.open(data_dir), data_dir, None) as server:
        for index, pem in enumerate(csrs):
            filename = f"owned_{index}"
            server.submit(
                PendingRequest(
                    name="",
                    hostname=hostname,
                    instance=instance,
                    filename=filename,
                    contents=pem,
                    subject="",
                    contact_name="Bench Contact",
                )
            )
            name = f"{hostname}:{instance}:{filename}"
            numbers.append(server.issue(name, Usage.TLS, CA_PASSWORD).number)
    return numbers


def _connect(data_dir: Path) -> sqlite3.Connection:
    Store.open(data_dir).close()  # creates or migrates the schema we insert into
    conn = sqlite3.connect(data_dir / DATABASE_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    return conn


def seed_certificates(data_dir: Path, total: int, contents: str, subject: str) -> None:
    """Fill the store up to ``total`` issued certificates (number 0, the CA's, not counted).

    :data:`OWNER` owns exactly the numbers in :data:`OWNED_NUMBERS`; every other row belongs
    to one of about a thousand other hosts.  Each row carries ``contents`` (a real issued
    certificate's PEM) so rows have their real size.  Existing rows are kept.
    """
    conn = _connect(data_dir)
    try:
        have = conn.execute("SELECT coalesce(max(number), 0) FROM certificates").fetchone()[0]
        issued = datetime.now(UTC)
        issued_text = issued.isoformat(timespec="microseconds")
        not_after = (issued + timedelta(days=365)).isoformat(timespec="microseconds")

        def rows() -> object:
            for number in range(have + 1, total + 1):
                if number in OWNED_NUMBERS:
                    hostname, instance = OWNER
                else:
                    hostname, instance = f"host-{number % 997}.example.com", "IRIS"
                yield (
                    number,
                    hostname,
                    instance,
                    f"cert_{number}",
                    contents,
                    subject,
                    "tls",
                    issued_text,
                    not_after,
                )

        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO certificates (number, hostname, instance, filename, contents, subject,"
            " usage, issued, not_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),  # type: ignore[arg-type]
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def seed_requests(data_dir: Path, csrs: list[str], prefix: str) -> list[str]:
    """Insert one pending request per CSR (Names ``<prefix>_<i>``); return the Names."""
    conn = _connect(data_dir)
    received = datetime.now(UTC)
    names_ = [f"{prefix}_{i}" for i in range(len(csrs))]
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO requests (name, hostname, instance, filename, contents, subject,"
            " contact_name, contact_phone, contact_email, received)"
            " VALUES (?, ?, ?, ?, ?, '', 'Bench Contact', NULL, NULL, ?)",
            [
                (
                    name,
                    f"client-{i % 50}.example.com",
                    "IRIS",
                    name,
                    pem,
                    (received + timedelta(microseconds=i)).isoformat(timespec="microseconds"),
                )
                for i, (name, pem) in enumerate(zip(names_, csrs, strict=True))
            ],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return names_
