"""Revocation in the engine: records, CRLs checked by openssl and pkilint, a TLS handshake
with CRL checking, CRL numbers under concurrency, certificates that name their CRL and OCSP."""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
import ssl
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from pki_soap.ca import keys, names
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import build_csr
from pki_soap.errors import CAFileError, InvalidInput, UnknownCertificate, WrongPassword
from pki_soap.server.crl import Reason
from pki_soap.server.revocation import State, public_base, revoked_in_store, state_of
from pki_soap.server.tasks import CAServer
from pki_soap.store import Store
from pki_soap.store.schema import _schema_v1
from tests.conftest import CA_DIRECTORY, CA_INSTANCE, CA_NODE, CA_ROOT, ISSUED_DAYS
from tests.engine_support import open_server
from tests.revocation_support import CONTACT, issue, pkilint, run, write
from tests.smtp_support import MailServer

PUBLIC_URL = "http://ca.example.test:52773"


def _crl(server: CAServer) -> x509.CertificateRevocationList:
    stored = server.revocations().crl()
    assert stored is not None
    return x509.load_der_x509_crl(stored.der)


def _verify(server: CAServer, tmp_path: Path, cert_file: Path) -> Any:
    crl_file = write(tmp_path / "current.crl.pem", _crl(server))
    ca = server.authority().paths.cer
    return run("openssl", "verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl_file, cert_file)


# -- revoke and the CRL -----------------------------------------------------------------------


def test_revoked_certificate_fails_openssl_crl_check_and_a_good_one_passes(
    configured_server: CAServer, ca_password: bytes, tmp_path: Path
) -> None:
    good, _ = issue(configured_server, ca_password, "good")
    bad, _ = issue(configured_server, ca_password, "bad")
    good_file, bad_file = write(tmp_path / "good.pem", good), write(tmp_path / "bad.pem", bad)
    assert _verify(configured_server, tmp_path, bad_file).returncode == 0  # before

    result = configured_server.revoke(
        bad.number, Reason.KEY_COMPROMISE, ca_password, revoked_by="alice (command line)"
    )

    refused = _verify(configured_server, tmp_path, bad_file)
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr
    passed = _verify(configured_server, tmp_path, good_file)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert result.crl.current and result.crl.entries == 1
    recorded = configured_server.revocations().revocation(bad.number)
    assert recorded is not None
    assert (recorded.reason, recorded.revoked_by) == ("keyCompromise", "alice (command line)")
    assert abs(recorded.revoked - datetime.now(UTC)) < timedelta(minutes=1)


def test_the_crl_is_an_rfc5280_v2_crl(
    configured_server: CAServer, ca_password: bytes, tmp_path: Path
) -> None:
    issued = [issue(configured_server, ca_password, f"h{i}")[0] for i in range(3)]
    configured_server.revoke(issued[0].number, Reason.SUPERSEDED, ca_password, revoked_by="t")
    configured_server.revoke(issued[1].number, password=ca_password, revoked_by="t")

    crl = _crl(configured_server)
    ca = configured_server.authority().certificate
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca.subject
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not number.critical and not aki.critical
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.value.key_identifier == ski.digest
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=30)  # the default
    superseded = crl.get_revoked_certificate_by_serial_number(issued[0].number)
    unspecified = crl.get_revoked_certificate_by_serial_number(issued[1].number)
    assert superseded is not None and unspecified is not None
    assert superseded.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.superseded
    )
    # RFC 5280 5.3.1: no reasonCode rather than "unspecified".
    assert len(unspecified.extensions) == 0
    assert crl.get_revoked_certificate_by_serial_number(issued[2].number) is None
    text = run("openssl", "crl", "-noout", "-text", "-in", write(tmp_path / "c.pem", crl)).stdout
    assert "Version 2 (0x1)" in text and "X509v3 CRL Number" in text


def test_crl_numbers_grow_durably_and_survive_a_reinitialisation(
    configured_server: CAServer, ca_password: bytes
) -> None:
    first, _ = issue(configured_server, ca_password, "one")  # the first issue signs CRL 1
    numbers = [_crl(configured_server).extensions.get_extension_for_class(x509.CRLNumber)]
    configured_server.revoke(first.number, password=ca_password, revoked_by="t")
    numbers.append(_crl(configured_server).extensions.get_extension_for_class(x509.CRLNumber))
    numbers.append(
        x509.load_der_x509_crl(
            configured_server.refresh_revocation(ca_password).crl.der
        ).extensions.get_extension_for_class(x509.CRLNumber)  # type: ignore[union-attr]
    )
    assert [n.value.crl_number for n in numbers] == [1, 2, 3]
    crlnumber_file = configured_server.authority().paths.crlnumber
    assert crlnumber_file.read_text() == "03\n"

    configured_server.reinitialize()
    configured_server.configure(
        root=CA_ROOT,
        directory=CA_DIRECTORY,
        password=ca_password,
        days=ISSUED_DAYS,
        instance=CA_INSTANCE,
        node=CA_NODE,
    )
    refreshed = configured_server.refresh_revocation(ca_password)
    assert refreshed.crl is not None and refreshed.crl.number == 4
    # The revocation of certificate 1 is still on the CRL: its record outlived the reset.
    crl = x509.load_der_x509_crl(refreshed.crl.der)
    assert crl.get_revoked_certificate_by_serial_number(first.number) is not None


def test_a_crl_number_file_restored_from_a_backup_never_repeats_a_number(
    configured_server: CAServer, ca_password: bytes
) -> None:
    issue(configured_server, ca_password, "one")
    configured_server.refresh_revocation(ca_password)  # CRL 2
    configured_server.authority().paths.crlnumber.write_text("01\n")  # an old copy

    refreshed = configured_server.refresh_revocation(ca_password)

    assert refreshed.crl is not None and refreshed.crl.number == 3 and refreshed.crl.current


def test_bad_revocations_are_refused_and_change_nothing(
    configured_server: CAServer, ca_password: bytes
) -> None:
    cert, _ = issue(configured_server, ca_password, "web")
    revocations = configured_server.revocations()
    before = revocations.crl_state()

    with pytest.raises(UnknownCertificate, match="no certificate number 99 was issued"):
        configured_server.revoke(99, password=ca_password, revoked_by="t")
    with pytest.raises(UnknownCertificate):
        configured_server.revoke(2**70, password=ca_password, revoked_by="t")
    with pytest.raises(InvalidInput, match="CA's own certificate"):
        configured_server.revoke(0, password=ca_password, revoked_by="t")
    with pytest.raises(InvalidInput, match="not on hold"):
        configured_server.revoke(cert.number, Reason.REMOVE_FROM_CRL, ca_password, revoked_by="t")
    with pytest.raises(WrongPassword):
        configured_server.revoke(cert.number, password=b"wrong", revoked_by="t")
    assert revocations.crl_state() == before
    assert revocations.revocation(cert.number) is None

    configured_server.revoke(cert.number, Reason.AFFILIATION_CHANGED, ca_password, revoked_by="t")
    with pytest.raises(InvalidInput, match=r"already revoked \(affiliationChanged, "):
        configured_server.revoke(cert.number, Reason.KEY_COMPROMISE, ca_password, revoked_by="t")
    with pytest.raises(InvalidInput, match="unknown revocation reason 'sideways'"):
        Reason.named("sideways")


def test_a_hold_is_released_or_made_permanent(
    configured_server: CAServer, ca_password: bytes
) -> None:
    held, _ = issue(configured_server, ca_password, "held")
    kept, _ = issue(configured_server, ca_password, "kept")
    for cert in (held, kept):
        configured_server.revoke(cert.number, Reason.CERTIFICATE_HOLD, ca_password, revoked_by="t")
    on_hold = configured_server.revocations().revocation(kept.number)
    assert on_hold is not None

    released = configured_server.revoke(
        held.number, Reason.REMOVE_FROM_CRL, ca_password, revoked_by="t"
    )
    permanent = configured_server.revoke(
        kept.number, Reason.KEY_COMPROMISE, ca_password, revoked_by="t"
    )

    assert released.revocation is None and released.previous is not None
    assert permanent.revocation is not None
    assert permanent.revocation.revoked == on_hold.revoked  # the original time stays
    crl = _crl(configured_server)
    assert crl.get_revoked_certificate_by_serial_number(held.number) is None
    entry = crl.get_revoked_certificate_by_serial_number(kept.number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )


def test_crl_renewal_is_due_when_behind_or_half_way(
    configured_server: CAServer, ca_password: bytes
) -> None:
    revocations = configured_server.revocations()
    assert revocations.crl_due() == "no CRL has been signed yet"
    issue(configured_server, ca_password, "web")  # issuing signs the first CRL on the way
    state = revocations.crl_state()
    assert state.number == 1 and revocations.crl_due() is None
    assert state.this_update is not None
    assert revocations.crl_due(state.this_update + timedelta(days=15)) == (
        "CRL number 1 is past half its validity"
    )
    # Issuing again within the first half signs no new CRL.
    issue(configured_server, ca_password, "web2")
    assert revocations.crl_state().number == 1


def test_expired_certificates_leave_the_crl(
    configured_server: CAServer, ca_password: bytes
) -> None:
    cert, _ = issue(configured_server, ca_password, "old")
    configured_server.revoke(cert.number, password=ca_password, revoked_by="t")
    with sqlite3.connect(configured_server.store.path) as conn:
        conn.execute("UPDATE revocations SET not_after = '2000-01-01T00:00:00.000000+00:00'")
    refreshed = configured_server.refresh_revocation(ca_password)
    assert refreshed.crl is not None and refreshed.crl.entries == 0


def test_states_for_the_listing(configured_server: CAServer, ca_password: bytes) -> None:
    cert, _ = issue(configured_server, ca_password, "web")
    now = datetime.now(UTC)
    assert state_of(cert, None, now) is State.VALID
    assert state_of(cert, None, now + timedelta(days=ISSUED_DAYS + 1)) is State.EXPIRED
    configured_server.revoke(cert.number, password=ca_password, revoked_by="t")
    revoked = revoked_in_store(configured_server.store)
    assert state_of(cert, revoked[cert.number], now) is State.REVOKED


def test_revocation_notice_goes_to_the_contact(
    data_dir: Path, ca_password: bytes, tmp_path: Path
) -> None:
    with MailServer(tmp_path) as smtp, open_server(data_dir) as server:
        server.configure(
            root=CA_ROOT,
            directory=CA_DIRECTORY,
            password=ca_password,
            days=ISSUED_DAYS,
            subject=names.subject_from_text("/O=Example/CN=Mail CA"),
            ca_days=365,
            key_type=keys.KeyType.EC256,
            smtp_server="127.0.0.1",
            smtp_port=smtp.port,
            admin_email="ca-admin@example.test",
        )
        cert, _ = issue(server, ca_password, "mailed")
        server.revoke(cert.number, Reason.KEY_COMPROMISE, ca_password, revoked_by="t")
        notices = [m for m in smtp.messages if m.subject.endswith("revoked")]
    [notice] = notices
    assert notice.rcpt_tos == [CONTACT]
    assert notice.subject == f"Certificate number {cert.number} revoked"
    assert "Reason:          keyCompromise" in notice.body
    assert "Dear Holder of mailed," in notice.body


# -- concurrency ------------------------------------------------------------------------------


def _revoke_child(data_dir: str, number: int, password: bytes, start: Any, out: Any) -> None:
    with open_server(Path(data_dir)) as server:
        key = server.authority().private_key(password)
        start.wait(timeout=60)
        if number:
            result = server.revoke(number, key=key, revoked_by=f"child {number}")
            out.put(result.crl.number)
        else:
            refreshed = server.refresh_revocation(key=key)
            out.put(refreshed.crl.number if refreshed.crl else -1)


def test_processes_revoking_at_once_never_share_a_crl_number(
    configured_server: CAServer, ca_password: bytes
) -> None:
    numbers = [issue(configured_server, ca_password, f"c{i}")[0].number for i in range(4)]
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(6), context.Queue()
    children = [
        context.Process(
            target=_revoke_child,
            args=(str(configured_server.data_dir), number, ca_password, start, out),
        )
        for number in [*numbers, 0, 0]  # four revokes and two `crl` at the same moment
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    crl_numbers = sorted(out.get(timeout=5) for _ in children)

    assert len(set(crl_numbers)) == len(crl_numbers)  # never one number twice
    crl = _crl(configured_server)
    served = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert served == max(crl_numbers)  # the highest number is the one kept
    assert sorted(entry.serial_number for entry in crl) == numbers  # and it has them all
    assert configured_server.revocations().crl_due() is None


# -- certificates naming their CRL and OCSP responder ------------------------------------------


def _configured_with_url(server: CAServer, password: bytes, **settings: Any) -> None:
    server.configure(
        root=CA_ROOT,
        directory=CA_DIRECTORY,
        password=password,
        days=ISSUED_DAYS,
        instance=CA_INSTANCE,
        node=CA_NODE,
        **settings,
    )


def test_new_certificates_carry_the_crl_and_ocsp_urls_of_the_public_url(
    configured_server: CAServer, ca_password: bytes, tmp_path: Path
) -> None:
    before, _ = issue(configured_server, ca_password, "before")
    _configured_with_url(configured_server, ca_password, public_url=PUBLIC_URL + "/")
    cert, _ = issue(configured_server, ca_password, "after")

    parsed = x509.load_pem_x509_certificate(cert.contents.encode())
    cdp = parsed.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    aia = parsed.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    assert not cdp.critical and not aia.critical
    [point] = cdp.value
    assert [n.value for n in point.full_name or []] == [f"{PUBLIC_URL}/isc/pki/crl/{CA_ROOT}.crl"]
    [access] = aia.value
    assert access.access_method == AuthorityInformationAccessOID.OCSP
    assert access.access_location.value == f"{PUBLIC_URL}/isc/pki/ocsp"
    old = x509.load_pem_x509_certificate(before.contents.encode())
    with pytest.raises(x509.ExtensionNotFound):
        old.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    # What `show` and the portal preview say it will add.
    csr = build_csr(keys.generate_key(keys.KeyType.EC256), parsed.subject)
    lines = configured_server.authority().preview_extensions(csr, Usage.TLS)
    assert f"CRL distribution point: {PUBLIC_URL}/isc/pki/crl/{CA_ROOT}.crl" in lines
    lint = run(
        sys.executable, "-m", "pkilint.bin.lint_pkix_cert", "lint", "-s", "WARNING",
        write(tmp_path / "after.pem", cert),
    )  # fmt: skip
    assert lint.returncode == 0 and "ERROR" not in lint.stdout, lint.stdout + lint.stderr

    _configured_with_url(
        configured_server, ca_password, public_url=PUBLIC_URL, revocation_urls=False
    )
    off, _ = issue(configured_server, ca_password, "off")
    with pytest.raises(x509.ExtensionNotFound):
        x509.load_pem_x509_certificate(off.contents.encode()).extensions.get_extension_for_class(
            x509.AuthorityInformationAccess
        )


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://ca.example:52773", "http://ca.example:52773"),
        ("https://ca.example/", "https://ca.example"),
        ("http://ca.example:8080/proxy/isc/pki/PKI.CAServer.cls", "http://ca.example:8080/proxy"),
        ("http://[2001:db8::1]:52773/other", "http://[2001:db8::1]:52773"),
    ],
)
def test_public_base(url: str, base: str) -> None:
    assert public_base(url) == base


@pytest.mark.parametrize(
    "url",
    [
        "ftp://ca.example",
        "http://",
        "http://ca.example/?q=1",
        "http://user@ca.example",
        "http://cä.example",
        "http://ca.example:99999",
        "http://ca.example/a b",
    ],
)
def test_unusable_public_urls_are_refused_at_configure(
    configured_server: CAServer, ca_password: bytes, url: str
) -> None:
    with pytest.raises(InvalidInput, match="public URL"):
        _configured_with_url(configured_server, ca_password, public_url=url)
    assert configured_server.config().public_url is None


def test_crl_days_are_checked(configured_server: CAServer, ca_password: bytes) -> None:
    with pytest.raises(InvalidInput, match="CRL validity"):
        _configured_with_url(configured_server, ca_password, crl_days=0)
    _configured_with_url(configured_server, ca_password, crl_days=2)
    issue(configured_server, ca_password, "web")
    crl = _crl(configured_server)
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=2)


# -- the OCSP signer ---------------------------------------------------------------------------


def test_the_ocsp_signer_is_a_delegated_responder_of_the_ca(
    configured_server: CAServer, ca_password: bytes, tmp_path: Path
) -> None:
    issue(configured_server, ca_password, "web")
    signer = configured_server.revocations().signer()
    assert signer is not None
    cert = signer.certificate
    ca = configured_server.authority().certificate
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=91)
    # Stored unencrypted (the server signs without a password), in the 0600 database.
    stored = configured_server.store.ocsp_signer(configured_server.revocations().issuer)
    assert stored is not None and "BEGIN PRIVATE KEY" in stored.private_key
    assert configured_server.store.path.stat().st_mode & 0o077 == 0
    chain = run(
        "openssl", "verify", "-x509_strict", "-purpose", "ocsphelper", "-CAfile",
        configured_server.authority().paths.cer,
        write(tmp_path / "signer.pem", cert.public_bytes(serialization.Encoding.PEM)),
    )  # fmt: skip
    assert chain.returncode == 0, chain.stdout + chain.stderr


def test_a_key_that_is_not_the_cas_signs_nothing(
    configured_server: CAServer, ca_password: bytes
) -> None:
    cert, _ = issue(configured_server, ca_password, "web")
    stranger = keys.generate_key(keys.KeyType.EC256)
    with pytest.raises(CAFileError, match="not the CA certificate's key"):
        configured_server.revoke(cert.number, key=stranger, revoked_by="t")
    with pytest.raises(CAFileError, match="not the CA certificate's key"):
        configured_server.revocations().sign_crl(stranger)


# -- pkilint -----------------------------------------------------------------------------------


def test_pkilint_finds_nothing_in_empty_and_full_crls(
    configured_server: CAServer, ca_password: bytes, tmp_path: Path
) -> None:
    issue(configured_server, ca_password, "first")
    empty = write(tmp_path / "empty.crl.pem", _crl(configured_server))
    reasons = [r for r in Reason if r is not Reason.REMOVE_FROM_CRL]
    for reason in reasons:
        cert, _ = issue(configured_server, ca_password, reason.value)
        configured_server.revoke(cert.number, reason, ca_password, revoked_by="t")
    full = write(tmp_path / "full.crl.pem", _crl(configured_server))
    assert len(_crl(configured_server)) == len(reasons)
    for path in (empty, full):
        result = pkilint("crl", path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == "", result.stdout


# -- a real TLS handshake checking the CRL -----------------------------------------------------


def _serve_tls(context: ssl.SSLContext, listener: socket.socket, done: dict[str, Any]) -> None:
    try:
        connection, _ = listener.accept()
        with connection, context.wrap_socket(connection, server_side=True) as tls:
            tls.sendall(b"hello")
    except (ssl.SSLError, OSError) as exc:
        done["error"] = exc


@pytest.fixture
def tls_pair(
    configured_server: CAServer, ca_password: bytes, tmp_path: Path
) -> Iterator[tuple[Path, Path, Path, Path]]:
    """(good cert, good key, revoked cert, revoked key) files: server certificates for 127.0.0.1."""
    files = []
    for host in ("good", "revoked"):
        cert, key = issue(configured_server, ca_password, host)
        files.append(write(tmp_path / f"{host}.pem", cert))
        files.append(write(tmp_path / f"{host}.key", keys.key_pem(key, None)))
    configured_server.revoke(
        int(x509.load_pem_x509_certificate(files[2].read_bytes()).serial_number),
        Reason.KEY_COMPROMISE,
        ca_password,
        revoked_by="t",
    )
    yield files[0], files[1], files[2], files[3]


def _handshake(server_cert: Path, server_key: Path, client: ssl.SSLContext) -> Exception | None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server_cert, server_key)
    done: dict[str, Any] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=_serve_tls, args=(server_context, listener, done))
        thread.start()
        try:
            with socket.create_connection(listener.getsockname()[:2], timeout=30) as raw:
                with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    assert tls.recv(5) == b"hello"
        except (ssl.SSLError, OSError) as exc:
            return exc
        finally:
            thread.join(timeout=30)
    return None


def test_tls_handshake_with_crl_checking_refuses_the_revoked_certificate(
    configured_server: CAServer, tmp_path: Path, tls_pair: tuple[Path, Path, Path, Path]
) -> None:
    good_cert, good_key, revoked_cert, revoked_key = tls_pair
    client = ssl.create_default_context(cafile=str(configured_server.authority().paths.cer))
    client.load_verify_locations(write(tmp_path / "ca.crl.pem", _crl(configured_server)))
    client.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF

    assert _handshake(good_cert, good_key, client) is None
    refused = _handshake(revoked_cert, revoked_key, client)
    assert isinstance(refused, ssl.SSLCertVerificationError)
    assert refused.verify_message == "certificate revoked"


def test_without_a_crl_the_leaf_check_refuses_everything(
    configured_server: CAServer, tls_pair: tuple[Path, Path, Path, Path]
) -> None:
    # The control: VERIFY_CRL_CHECK_LEAF really needs our CRL to pass the good certificate.
    good_cert, good_key, _, _ = tls_pair
    client = ssl.create_default_context(cafile=str(configured_server.authority().paths.cer))
    client.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    refused = _handshake(good_cert, good_key, client)
    assert isinstance(refused, ssl.SSLCertVerificationError)
    assert refused.verify_message == "unable to get certificate CRL"


# -- schema --------------------------------------------------------------------------------------


def test_a_schema_1_database_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "pki.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    _schema_v1(conn)
    conn.execute(
        "INSERT INTO certificates (number, hostname, instance, filename, contents, subject,"
        " usage, issued, not_after) VALUES (5, 'h', 'i', 'f', 'pem', 's', 'tls',"
        " '2026-01-01T00:00:00.000000+00:00', NULL)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.close()

    with Store(path) as store:
        cert = store.certificate(5)
        assert cert is not None and cert.contact_email is None
        assert store.count_revocations("00") == 0
        assert store.crl_state("00").number is None
