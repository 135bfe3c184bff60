"""The SQLite store on a real database file: schema, configuration, requests, certificates, mail."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pki_soap.errors import DuplicateRequest, MissingField, PkiError, UnknownRequest
from pki_soap.store import (
    SCHEMA_VERSION,
    ClientConfig,
    IssuedCertificate,
    PendingRequest,
    ServerConfig,
    Store,
)
from pki_soap.store.schema import _statements

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def _request(name: str = "web:IRIS:web_client", **changes: object) -> PendingRequest:
    fields: dict[str, object] = dict(
        name=name,
        hostname="web",
        instance="IRIS",
        filename="web_client",
        contents="-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n",
        subject="/CN=web",
        contact_name="Ann",
        contact_phone="555",
        contact_email="ann@example.com",
    )
    fields.update(changes)
    return PendingRequest(**fields)  # type: ignore[arg-type]


def _certificate(number: int, hostname: str = "web", instance: str = "IRIS") -> IssuedCertificate:
    return IssuedCertificate(
        number=number,
        hostname=hostname,
        instance=instance,
        filename=f"file{number}",
        contents=f"PEM {number}\n",
        subject=f"/CN=n{number}",
        usage="tls",
        issued=T0,
        not_after=T0 + timedelta(days=365),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as opened:
        yield opened


def test_open_creates_private_wal_database_with_schema_version(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with Store.open(data_dir) as store:
        store.save_server_config(ServerConfig("CA", "CAServer", 365, "PKI", "ca.example"))
        db = data_dir / "pki.sqlite3"
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        # SQLite gives the WAL file the database file's mode.
        assert stat.S_IMODE((data_dir / "pki.sqlite3-wal").stat().st_mode) == 0o600
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[1] for row in raw.execute("PRAGMA index_list(certificates)")}
        assert "certificates_by_owner_upper" in indexes
    finally:
        raw.close()


def test_open_tightens_a_loosened_database_file(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    (tmp_path / "pki.sqlite3").chmod(0o644)
    Store.open(tmp_path).close()
    assert stat.S_IMODE((tmp_path / "pki.sqlite3").stat().st_mode) == 0o600


def test_connections_have_foreign_keys_and_busy_timeout(store: Store) -> None:
    with store._connection() as conn:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_reopening_keeps_data_and_migrates_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.add_request(_request())
    with Store.open(tmp_path) as store:
        assert [req.name for req in store.requests()] == ["web:IRIS:web_client"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    raw = sqlite3.connect(tmp_path / "pki.sqlite3")
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(PkiError, match="newer than this program"):
        Store.open(tmp_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pki.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(PkiError, match="cannot use the database"):
        Store.open(tmp_path)


def test_server_config_round_trip_and_replace(store: Store) -> None:
    assert store.server_config() is None
    cfg = ServerConfig(
        "CA",
        "CAServer",
        365,
        "PKI",
        "ca.example",
        "smtp.example",
        587,
        "mailer",
        "pw",
        "admin@example.com",
    )
    store.save_server_config(cfg)
    assert store.server_config() == cfg
    cfg.days = 30
    cfg.smtp_server = None
    store.save_server_config(cfg)
    assert store.server_config() == cfg


def test_client_config_round_trip(store: Store) -> None:
    assert store.client_config() is None
    cfg = ClientConfig(
        "ca.example",
        52773,
        "/isc/pki/PKI.CAServer.cls",
        "Ann",
        None,
        "ann@example.com",
        "web",
        "IRIS",
    )
    store.save_client_config(cfg)
    assert store.client_config() == cfg


def test_request_round_trip_sets_received(store: Store) -> None:
    stored = store.add_request(_request())
    assert stored.received is not None and stored.received.tzinfo is not None
    assert store.request("web:IRIS:web_client") == stored
    assert store.count_requests() == 1


def test_request_keeps_given_received_time(store: Store) -> None:
    store.add_request(_request(received=T0))
    assert store.request("web:IRIS:web_client").received == T0


def test_duplicate_request_uses_the_iris_message(store: Store) -> None:
    store.add_request(_request(contact_name="first"))
    with pytest.raises(
        DuplicateRequest,
        match=r"^ID key not unique for extent 'PKI.CSR' : 'web:IRIS:web_client' exists\.$",
    ):
        store.add_request(_request(contact_name="second"))
    assert store.request("web:IRIS:web_client").contact_name == "first"
    assert store.count_requests() == 1


def test_request_without_required_field_is_refused(store: Store) -> None:
    with pytest.raises(MissingField, match="lacks a required field"):
        store.add_request(_request(contact_name=None))
    assert store.count_requests() == 0


def test_unknown_request(store: Store) -> None:
    with pytest.raises(UnknownRequest, match='"nope"'):
        store.request("nope")
    with pytest.raises(UnknownRequest, match='"nope"'):
        store.remove_request("nope")


def test_requests_oldest_first_and_remove(store: Store) -> None:
    store.add_request(_request("b", received=T0 + timedelta(seconds=1)))
    store.add_request(_request("a", received=T0 + timedelta(seconds=2)))
    store.add_request(_request("c", received=T0))
    assert [req.name for req in store.requests()] == ["c", "b", "a"]
    removed = store.remove_request("b")
    assert removed.name == "b"
    assert [req.name for req in store.requests()] == ["c", "a"]


def test_certificates_in_numeric_order_never_zero(store: Store) -> None:
    for number in (10, 0, 9, 2, 100):
        store.add_certificate(_certificate(number))
    assert [c.number for c in store.certificates()] == [2, 9, 10, 100]
    assert store.count_certificates() == 4
    assert store.certificate(0) is not None
    assert store.certificate(10) == _certificate(10)
    assert store.certificate(11) is None


def test_certificates_filter_by_hostname_and_instance(store: Store) -> None:
    store.add_certificate(_certificate(0, "ca", "PKI"))
    store.add_certificate(_certificate(1, "web", "IRIS"))
    store.add_certificate(_certificate(2, "web", "OTHER"))
    store.add_certificate(_certificate(3, "db", "IRIS"))
    store.add_certificate(_certificate(4, "web", "IRIS"))
    assert [c.number for c in store.certificates("web", "IRIS")] == [1, 4]
    assert [c.number for c in store.certificates(hostname="web")] == [1, 2, 4]
    assert [c.number for c in store.certificates(instance="IRIS")] == [1, 3, 4]
    assert [c.number for c in store.certificates("ca", "PKI")] == []


@pytest.mark.parametrize(
    ("hostname", "instance", "numbers"),
    [
        ("web", "IRIS", [1, 3]),
        ("WEB", "iris", [1, 3]),  # IRIS's SQLUPPER collation ignores case...
        ("Web ", "IRIS  ", [1, 3]),  # ...and trailing blanks
        (" web", "IRIS", []),  # not leading ones
        ("we", "IRIS", []),
        ("web", "IRÍS", []),
        ("web.example", "iris", [4]),
    ],
    ids=["exact", "case", "trailing-blanks", "leading-blank", "prefix", "other-letter", "dots"],
)
def test_hostname_and_instance_match_as_iris_collates_them(
    store: Store, hostname: str, instance: str, numbers: list[int]
) -> None:
    store.add_certificate(_certificate(1, "web", "IRIS"))
    store.add_certificate(_certificate(2, "db", "IRIS"))
    store.add_certificate(_certificate(3, "WEB", "Iris"))
    store.add_certificate(_certificate(4, "Web.Example", "IRIS"))
    assert [c.number for c in store.certificates(hostname, instance)] == numbers
    assert [row[0] for row in store.certificate_rows(hostname, instance)] == numbers


def test_a_listing_for_one_host_uses_the_index(store: Store) -> None:
    with store._connection() as conn:  # the plan SQLite picks for the listing's own query
        sql, params = Store._certificates_query("number, filename", "web", "IRIS")
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "USING INDEX certificates_by_owner_upper" in plan


def test_a_version_1_store_is_migrated_and_matches_regardless_of_case(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    raw = sqlite3.connect(data_dir / "pki.sqlite3")
    raw.executescript(
        """
        CREATE TABLE certificates (
            number INTEGER PRIMARY KEY CHECK (number >= 0), hostname TEXT NOT NULL,
            instance TEXT NOT NULL, filename TEXT NOT NULL, contents TEXT NOT NULL,
            subject TEXT NOT NULL, usage TEXT, issued TEXT NOT NULL, not_after TEXT);
        CREATE INDEX certificates_by_owner ON certificates (hostname, instance, number);
        INSERT INTO certificates VALUES (5, 'web', 'IRIS', 'f', 'PEM', '/CN=w', 'tls',
            '2026-01-02T03:04:05.000000+00:00', NULL);
        """
    )
    for table in ("server_config", "client_config", "mail"):  # the rest of v1
        raw.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    # Version 3 indexes the requests by host name.
    raw.execute("CREATE TABLE requests (name TEXT PRIMARY KEY, hostname TEXT NOT NULL)")
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    with Store.open(data_dir) as store:
        assert [c.number for c in store.certificates("Web", "iris")] == [5]
    raw = sqlite3.connect(data_dir / "pki.sqlite3")
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[1] for row in raw.execute("PRAGMA index_list(certificates)")}
        assert indexes == {"certificates_by_owner_upper"}
    finally:
        raw.close()


def test_certificates_stream_while_others_write(store: Store) -> None:
    for number in range(1, 6):
        store.add_certificate(_certificate(number))
    stream = store.certificates()
    first = next(stream)
    # A write from another thread while the listing is open neither blocks nor breaks it.
    writer = threading.Thread(target=store.add_certificate, args=(_certificate(50),))
    writer.start()
    writer.join()
    rest = [c.number for c in stream]
    assert [first.number, *rest] == [1, 2, 3, 4, 5]
    assert store.certificate(50) is not None


def test_duplicate_certificate_number_is_refused(store: Store) -> None:
    store.add_certificate(_certificate(7))
    with pytest.raises(PkiError, match="number 7 already exists"):
        store.add_certificate(_certificate(7))


def test_replace_certificate_overwrites(store: Store) -> None:
    store.add_certificate(_certificate(0, "ca", "PKI"))
    store.add_certificate(_certificate(0, "ca2", "PKI"), replace=True)
    replaced = store.certificate(0)
    assert replaced is not None and replaced.hostname == "ca2"


def test_transaction_rolls_back_everything_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction():
            store.add_request(_request("a"))
            store.add_certificate(_certificate(1))
            raise RuntimeError("boom")
    assert store.count_requests() == 0
    assert store.certificate(1) is None


def test_nested_transaction_is_a_savepoint(store: Store) -> None:
    with store.transaction():
        store.add_request(_request("kept"))
        with pytest.raises(DuplicateRequest):
            # add_request is itself a nested transaction: its failure undoes only itself.
            store.add_request(_request("kept"))
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.add_request(_request("undone"))
                raise RuntimeError("inner")
        store.add_certificate(_certificate(1))
    assert [req.name for req in store.requests()] == ["kept"]
    assert store.certificate(1) is not None


def test_transaction_is_invisible_to_other_connections_until_commit(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store, Store.open(tmp_path) as other:
        with store.transaction():
            store.add_request(_request("a"))
            assert other.count_requests() == 0
        assert other.count_requests() == 1


def test_reinitialize_clears_server_state_only(store: Store) -> None:
    store.save_server_config(ServerConfig("CA", "CAServer", 365, "PKI", "ca.example"))
    store.save_client_config(ClientConfig("ca", 1, "/p", "Ann", None, None, "web", "IRIS"))
    store.add_request(_request())
    store.add_certificate(_certificate(0))
    store.add_certificate(_certificate(1))
    mail_id = store.queue_mail("a@example.com", "s", "b")
    store.reinitialize()
    assert store.server_config() is None
    assert store.requests() == []
    assert store.certificate(0) is None and store.certificate(1) is None
    assert store.client_config() is not None
    assert [m.id for m in store.undelivered()] == [mail_id]


def test_mail_outbox_lifecycle(store: Store) -> None:
    first = store.queue_mail("a@example.com", "Subject A", "Body A")
    second = store.queue_mail("b@example.com", "Subject B", "Body B")
    now = datetime.now(UTC)
    due = store.due_mail(now)
    assert [(m.id, m.recipient, m.subject, m.body, m.attempts) for m in due] == [
        (first, "a@example.com", "Subject A", "Body A", 0),
        (second, "b@example.com", "Subject B", "Body B", 0),
    ]
    store.mail_sent(first)
    retry_at = now + timedelta(minutes=5)
    store.mail_failed(second, "connection refused", retry_at)
    assert store.due_mail(now) == []
    [later] = store.due_mail(retry_at)
    assert (later.id, later.attempts, later.last_error, later.next_attempt) == (
        second,
        1,
        "connection refused",
        retry_at,
    )
    assert [m.id for m in store.undelivered()] == [second]
    store.mail_failed(second, "gave up", None)
    assert store.due_mail(retry_at + timedelta(days=365)) == []
    [given_up] = store.undelivered()
    assert (given_up.attempts, given_up.next_attempt) == (2, None)


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.close()
    with pytest.raises(PkiError, match="closed"):
        store.count_requests()


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="cannot create the database"):
        Store(tmp_path / "missing" / "pki.sqlite3")


def test_threads_sharing_one_store_each_get_their_own_transaction(store: Store) -> None:
    errors: list[BaseException] = []

    def add_many(prefix: str) -> None:
        try:
            for index in range(50):
                with store.transaction():
                    store.add_request(_request(f"{prefix}{index}"))
                    store.add_certificate(_certificate(int(prefix[1:]) * 1000 + index + 1))
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=add_many, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_requests() == 200
    assert store.count_certificates() == 200


# -- lean listing and batch issue -----------------------------------------------------------


def test_certificate_rows_are_the_listing_columns_of_certificates(store: Store) -> None:
    store.add_certificate(_certificate(0, "ca", "PKI"))
    for number, hostname, instance in ((12, "web", "IRIS"), (3, "db", "IRIS"), (7, "web", "X")):
        store.add_certificate(_certificate(number, hostname, instance))
    expected = [(c.number, c.hostname, c.instance, c.filename) for c in store.certificates()]
    assert list(store.certificate_rows()) == expected
    assert expected == [
        (3, "db", "IRIS", "file3"),
        (7, "web", "X", "file7"),
        (12, "web", "IRIS", "file12"),
    ]
    assert list(store.certificate_rows("web", "IRIS")) == [(12, "web", "IRIS", "file12")]
    assert [row[0] for row in store.certificate_rows(hostname="web")] == [7, 12]
    assert [row[0] for row in store.certificate_rows(instance="IRIS")] == [3, 12]
    assert list(store.certificate_rows("ca", "PKI")) == []
    assert list(store.certificate_rows("WEB", "iris")) == [(12, "web", "IRIS", "file12")]


def test_certificate_rows_stream_and_give_their_connection_back(store: Store) -> None:
    for number in range(1, 6):
        store.add_certificate(_certificate(number))
    stream = store.certificate_rows()
    assert next(stream) == (1, "web", "IRIS", "file1")
    # Listing open: a write from another thread neither blocks nor shows in the snapshot.
    writer = threading.Thread(target=store.add_certificate, args=(_certificate(50),))
    writer.start()
    writer.join()
    assert [row[0] for row in stream] == [2, 3, 4, 5]
    early = store.certificate_rows()
    next(early)
    early.close()  # stopped early: the connection goes back to the pool, still usable
    assert [row[0] for row in store.certificate_rows()][-1] == 50


def test_requests_named_returns_the_pending_ones_in_chunks(store: Store) -> None:
    for index in range(1200):
        store.add_request(_request(f"r{index}"))
    asked = [f"r{index}" for index in range(0, 1200, 2)] + ["gone", "r0"]
    found = store.requests_named(asked * 2)
    assert set(found) == {f"r{index}" for index in range(0, 1200, 2)}
    assert found["r10"] == store.request("r10")
    assert store.requests_named([]) == {}


def test_record_issued_stores_certificates_and_removes_requests(store: Store) -> None:
    for name in ("a", "b", "c"):
        store.add_request(_request(name))
    store.record_issued([("a", _certificate(1)), ("c", _certificate(2))])
    assert [r.name for r in store.requests()] == ["b"]
    assert store.certificate(1) == _certificate(1)
    assert store.certificate(2) == _certificate(2)
    store.record_issued([])
    assert store.count_certificates() == 2


def test_record_issued_of_a_request_no_longer_pending_changes_nothing(store: Store) -> None:
    store.add_request(_request("a"))
    with pytest.raises(UnknownRequest, match='"gone"'):
        store.record_issued([("a", _certificate(1)), ("gone", _certificate(2))])
    assert [r.name for r in store.requests()] == ["a"]
    assert store.count_certificates() == 0


def test_record_issued_with_a_number_taken_changes_nothing(store: Store) -> None:
    store.add_certificate(_certificate(2))
    store.add_request(_request("a"))
    store.add_request(_request("b"))
    with pytest.raises(PkiError, match="number 2 already exists; is the serial file behind"):
        store.record_issued([("a", _certificate(1)), ("b", _certificate(2))])
    assert [r.name for r in store.requests()] == ["a", "b"]
    assert [c.number for c in store.certificates()] == [2]


def test_record_issued_with_a_number_twice_changes_nothing(store: Store) -> None:
    store.add_request(_request("a"))
    store.add_request(_request("b"))
    with pytest.raises(PkiError, match="number 5 already exists"):
        store.record_issued([("a", _certificate(5)), ("b", _certificate(5))])
    assert store.count_requests() == 2
    assert store.count_certificates() == 0


def test_a_migration_script_splits_only_where_sqlite_ends_a_statement() -> None:
    script = """
        CREATE TABLE t (x TEXT DEFAULT 'a;b');
        CREATE TRIGGER t_added AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; END;
    """
    assert [s.strip() for s in _statements(script)] == [
        "CREATE TABLE t (x TEXT DEFAULT 'a;b')",
        "CREATE TRIGGER t_added AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; END",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        list(_statements("CREATE TABLE u (x TEXT DEFAULT 'open"))
