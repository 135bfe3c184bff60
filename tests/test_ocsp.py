"""The OCSP responder and the CRL download over real HTTP: openssl ocsp, RFC 5019 GETs, pkilint,
bad input, the cache of pre-signed answers, and real gunicorn."""

from __future__ import annotations

import base64
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from pki_soap.ca import names
from pki_soap.server.crl import Reason
from pki_soap.server.ocsp import MAX_REQUEST_BYTES, OcspResponder
from pki_soap.server.revocation import OCSP_PATH
from pki_soap.server.tasks import CAServer
from pki_soap.store import CachedOcspResponse
from tests.conftest import CA_DIRECTORY, CA_INSTANCE, CA_NODE, CA_ROOT, ISSUED_DAYS
from tests.engine_support import make_ca, open_server
from tests.revocation_support import issue, openssl_ocsp, pkilint, run, write
from tests.service_support import (
    ACTION,
    Answer,
    chunked,
    free_port,
    iris_get_certificate,
    iris_list_certificates,
    live_server,
    raw_request,
    soap_post,
    start_serve,
)

PASSWORD = b"ocsp test CA password"


@dataclass
class Live:
    """A served CA with one good and one revoked certificate."""

    url: str
    server: CAServer
    ca: Path
    good: Path
    good_number: int
    revoked: Path
    revoked_number: int
    tmp: Path


def _configure(server: CAServer, common_name: str, **settings: str) -> None:
    server.configure(
        root=CA_ROOT,
        directory=CA_DIRECTORY,
        password=PASSWORD,
        days=ISSUED_DAYS,
        subject=names.subject_from_text(f"/O=Example/CN={common_name}"),
        ca_days=365,
        **settings,
    )


@pytest.fixture
def live(data_dir: Path, tmp_path: Path) -> Iterator[Live]:
    with live_server(data_dir, portal=False) as url, open_server(data_dir) as server:
        _configure(server, "OCSP Test CA", instance=CA_INSTANCE, node=CA_NODE, public_url=url)
        good, _ = issue(server, PASSWORD, "good")
        bad, _ = issue(server, PASSWORD, "bad")
        server.revoke(bad.number, Reason.KEY_COMPROMISE, PASSWORD, revoked_by="test")
        yield Live(
            url=url,
            server=server,
            ca=server.authority().paths.cer,
            good=write(tmp_path / "good.pem", good),
            good_number=good.number,
            revoked=write(tmp_path / "bad.pem", bad),
            revoked_number=bad.number,
            tmp=tmp_path,
        )


def _request(live: Live, number: int, algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    cert = x509.load_pem_x509_certificate(
        (live.good if number == live.good_number else live.revoked).read_bytes()
    )
    ca = x509.load_pem_x509_certificate(live.ca.read_bytes())
    built = ocsp.OCSPRequestBuilder().add_certificate(cert, ca, algorithm or hashes.SHA1()).build()
    return built.public_bytes(serialization.Encoding.DER)


def _get(live: Live, der: bytes, *, quote: bool = True) -> Answer:
    encoded = base64.b64encode(der).decode("ascii")
    path = f"{OCSP_PATH}/{urllib.parse.quote(encoded, safe='') if quote else encoded}"
    return soap_post(live.url, b"", None, method="GET", path=path, content_type=None)


def _answers(request: Callable[[], Answer]) -> bool:
    """True when the server answered ``request`` with 200 (False while it is not listening)."""
    try:
        return request().status == 200
    except OSError:
        return False


def _post(live: Live, der: bytes) -> Answer:
    return soap_post(live.url, der, None, path=OCSP_PATH, content_type="application/ocsp-request")


def _parsed(answer: Answer) -> ocsp.OCSPResponse:
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(answer.body)


# -- openssl ocsp -----------------------------------------------------------------------------


def test_openssl_ocsp_says_good_revoked_and_unknown(live: Live) -> None:
    url = live.url + OCSP_PATH
    good = openssl_ocsp(live.ca, url, cert=live.good)
    revoked = openssl_ocsp(live.ca, url, cert=live.revoked, extra=("-no_nonce",))
    unknown = openssl_ocsp(live.ca, url, serial=4242)

    for done in (good, revoked, unknown):
        # The delegated signer's answer verifies against our CA alone (nonce checked too).
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Response verify OK" in done.stderr
    assert f"{live.good}: good" in good.stdout
    assert f"{live.revoked}: revoked" in revoked.stdout
    assert "Reason: keyCompromise" in revoked.stdout
    recorded = live.server.revocations().revocation(live.revoked_number)
    assert recorded is not None
    assert f"Revocation Time: {recorded.revoked:%b %e %H:%M:%S %Y} GMT" in revoked.stdout
    assert "4242: unknown" in unknown.stdout


def test_the_answer_changes_the_moment_a_certificate_is_revoked(live: Live) -> None:
    url = live.url + OCSP_PATH
    assert (
        f"{live.good}: good"
        in openssl_ocsp(live.ca, url, cert=live.good, extra=("-no_nonce",)).stdout
    )
    live.server.revoke(live.good_number, Reason.CERTIFICATE_HOLD, PASSWORD, revoked_by="t")
    held = openssl_ocsp(live.ca, url, cert=live.good, extra=("-no_nonce",))
    assert f"{live.good}: revoked" in held.stdout and "Reason: certificateHold" in held.stdout
    live.server.revoke(live.good_number, Reason.REMOVE_FROM_CRL, PASSWORD, revoked_by="t")
    assert (
        f"{live.good}: good"
        in openssl_ocsp(live.ca, url, cert=live.good, extra=("-no_nonce",)).stdout
    )


# -- RFC 5019 GET and RFC 6960 POST ------------------------------------------------------------


def test_get_answers_from_the_cache_with_http_caching_headers(live: Live) -> None:
    request = _request(live, live.good_number)
    first, second = _get(live, request), _get(live, request, quote=False)

    response = _parsed(first)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == live.good_number
    # A lookup, not a signature: the very same signed bytes (same producedAt) both times.
    assert second.body == first.body
    assert _post(live, request).body == first.body
    cache_control = first.headers["cache-control"]
    max_age = int(cache_control.split("max-age=")[1].split(",")[0])
    assert 0 < max_age <= 3600 and "public" in cache_control and "no-transform" in cache_control
    assert first.headers["etag"] and first.headers["last-modified"] and first.headers["expires"]
    assert (
        response.next_update_utc is not None and response.this_update_utc < response.next_update_utc
    )


def test_revoked_answer_carries_time_and_reason(live: Live) -> None:
    response = _parsed(_get(live, _request(live, live.revoked_number)))
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.key_compromise
    recorded = live.server.revocations().revocation(live.revoked_number)
    assert recorded is not None and response.revocation_time_utc == recorded.revoked


def test_the_nonce_is_echoed_and_the_answer_signed_for_it(live: Live) -> None:
    cert = x509.load_pem_x509_certificate(live.good.read_bytes())
    ca = x509.load_pem_x509_certificate(live.ca.read_bytes())
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, ca, hashes.SHA1())
        .add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    response = _parsed(_post(live, request))
    nonce = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert nonce == b"0123456789abcdef"
    [signer] = response.certificates
    public_key = signer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    # Signed for this request: the signature covers the echoed nonce.
    public_key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    # A 33-octet nonce is outside RFC 8954's range.
    too_long = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, ca, hashes.SHA1())
        .add_extension(x509.OCSPNonce(b"n" * 33), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    assert _parsed(_post(live, too_long)).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_other_certid_hashes(live: Live, algorithm: hashes.HashAlgorithm) -> None:
    response = _parsed(_post(live, _request(live, live.revoked_number, algorithm)))
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.hash_algorithm.name == algorithm.name


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"not DER at all", b"\x30\x03\x02\x01\x05", b"\x30\x80" + b"\x00" * 100],
    ids=["empty", "text", "wrong-structure", "indefinite"],
)
def test_malformed_requests_get_malformed_request(live: Live, body: bytes) -> None:
    response = _parsed(_post(live, body))
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_malformed_gets(live: Live) -> None:
    for path in (OCSP_PATH, OCSP_PATH + "/", OCSP_PATH + "/%%%not-base64!!"):
        answer = soap_post(live.url, b"", None, method="GET", path=path, content_type=None)
        assert _parsed(answer).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_several_certificates_in_one_request_are_refused(live: Live) -> None:
    request = make_two_certificate_request(live)
    assert _parsed(_post(live, request)).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


def make_two_certificate_request(live: Live) -> bytes:
    """openssl builds requests for several certificates (cryptography does not)."""
    out = live.tmp / "two.der"
    done = run(
        "openssl", "ocsp", "-issuer", live.ca, "-cert", live.good, "-cert", live.revoked,
        "-reqout", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def test_another_issuers_certificate_is_unauthorized(live: Live) -> None:
    stranger = make_ca(live.tmp, root="Stranger", directory="stranger")
    cert = x509.load_pem_x509_certificate(live.good.read_bytes())
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, stranger.certificate, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    for answer in (_post(live, request), _get(live, request)):
        assert _parsed(answer).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    done = openssl_ocsp(stranger.paths.cer, live.url + OCSP_PATH, serial=1)
    assert "unauthorized" in (done.stdout + done.stderr).lower()


def test_oversized_requests_get_413_and_the_server_keeps_serving(live: Live) -> None:
    big = b"\x30" * (MAX_REQUEST_BYTES + 1)
    answer = _post(live, big)
    assert answer.status == 413
    head = (
        f"POST {OCSP_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    assert raw_request(live.url, head + chunked(big)).status == 413
    # Still serving (soap_post gives up after its socket timeout).
    assert _parsed(_post(live, _request(live, live.good_number))).response_status is (
        ocsp.OCSPResponseStatus.SUCCESSFUL
    )
    long_get = soap_post(
        live.url, b"", None, method="GET", path=OCSP_PATH + "/" + "A" * (3 * MAX_REQUEST_BYTES),
        content_type=None,
    )  # fmt: skip
    assert long_get.status in (413, 414, 431)


def test_other_methods_are_refused(live: Live) -> None:
    answer = soap_post(live.url, b"x", None, method="PUT", path=OCSP_PATH)
    assert answer.status == 405 and answer.headers["allow"] == "GET, POST"
    answer = soap_post(live.url, b"x", None, method="POST", path="/isc/pki/crl/TestCA.crl")
    assert answer.status == 405


# -- pkilint -------------------------------------------------------------------------------------


def test_pkilint_finds_nothing_in_our_ocsp_responses(live: Live) -> None:
    url = live.url + OCSP_PATH
    targets = {
        "good": {"cert": live.good},
        "revoked": {"cert": live.revoked},
        "unknown": {"serial": 777},
    }
    for name, target in targets.items():
        for extra in ((), ("-no_nonce",)):
            out = live.tmp / f"{name}{len(extra)}.der"
            done = openssl_ocsp(live.ca, url, extra=(*extra, "-respout", str(out)), **target)  # type: ignore[arg-type]
            assert done.returncode == 0, done.stderr
            result = pkilint("ocsp", out)
            assert result.returncode == 0, result.stdout + result.stderr
            assert result.stdout.strip() == "", result.stdout
    bad = live.tmp / "malformed.der"
    bad.write_bytes(_post(live, b"junk").body)
    assert pkilint("ocsp", bad).returncode == 0


# -- the cache kept fresh ------------------------------------------------------------------------


def test_the_refresher_presigns_new_certificates_and_resigns_due_answers(live: Live) -> None:
    store = live.server.store
    revocations = live.server.revocations()
    third, _ = issue(live.server, PASSWORD, "third")
    assert store.ocsp_response(revocations.cert_id(third.number)) is None
    responder = make_app_responder(live)

    assert responder.refresh() >= 1  # pre-signs the certificates without an answer
    cached = store.ocsp_response(revocations.cert_id(third.number))
    assert cached is not None
    # Make the revoked one's answer due: the next pass signs it again.
    cert_id = revocations.cert_id(live.revoked_number)
    old = store.ocsp_response(cert_id)
    assert old is not None
    past = datetime.now(UTC) - timedelta(hours=13)
    store.save_ocsp_response(
        revocations.issuer,
        cert_id,
        CachedOcspResponse(old.der, past, past + timedelta(hours=12), past + timedelta(hours=24)),
    )
    assert responder.refresh() == 1
    fresh = store.ocsp_response(cert_id)
    assert fresh is not None and fresh.this_update > past + timedelta(hours=12)
    assert ocsp.load_der_ocsp_response(fresh.der).certificate_status is (
        ocsp.OCSPCertStatus.REVOKED
    )
    assert responder.refresh() == 0  # nothing left to do


def make_app_responder(live: Live) -> OcspResponder:
    return OcspResponder(lambda: live.server)


def test_no_signer_yet_means_try_later(data_dir: Path) -> None:
    with live_server(data_dir, portal=False) as url, open_server(data_dir) as server:
        _configure(server, "Fresh CA")
        ca = server.authority().certificate
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(ca, ca, hashes.SHA1())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        answer = soap_post(url, request, None, path=OCSP_PATH)
        assert ocsp.load_der_ocsp_response(answer.body).response_status is (
            ocsp.OCSPResponseStatus.TRY_LATER
        )
        crl = soap_post(url, b"", None, method="GET", path=f"/isc/pki/crl/{CA_ROOT}.crl")
        assert crl.status == 404 and b"no CRL has been signed yet" in crl.body


# -- the CRL download ----------------------------------------------------------------------------


def test_the_crl_is_served_as_der_and_pem(live: Live) -> None:
    der = soap_post(live.url, b"", None, method="GET", path=f"/isc/pki/crl/{CA_ROOT}.crl")
    pem = soap_post(live.url, b"", None, method="GET", path=f"/isc/pki/crl/{CA_ROOT}.crl.pem")
    head = soap_post(live.url, b"", None, method="HEAD", path=f"/isc/pki/crl/{CA_ROOT}.crl")

    assert der.status == pem.status == head.status == 200
    assert der.headers["content-type"] == "application/pkix-crl"
    assert pem.headers["content-type"] == "application/x-pem-file"
    assert head.body == b"" and head.headers["content-length"] == str(len(der.body))
    crl = x509.load_der_x509_crl(der.body)
    assert x509.load_pem_x509_crl(pem.body) == crl
    assert [entry.serial_number for entry in crl] == [live.revoked_number]
    verified = run(
        "openssl", "verify", "-crl_check", "-CAfile", live.ca, "-CRLfile",
        write(live.tmp / "served.crl.pem", pem.body), live.revoked,
    )  # fmt: skip
    assert verified.returncode != 0 and "certificate revoked" in verified.stdout + verified.stderr
    # The URL the certificates carry is this one.
    cert = x509.load_pem_x509_certificate(live.good.read_bytes())
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"{live.url}/isc/pki/crl/{CA_ROOT}.crl"  # type: ignore[index]

    live.server.revoke(live.good_number, password=PASSWORD, revoked_by="t")
    again = soap_post(live.url, b"", None, method="GET", path=f"/isc/pki/crl/{CA_ROOT}.crl")
    assert len(x509.load_der_x509_crl(again.body)) == 2  # the new one, not a stale copy


@pytest.mark.parametrize(
    "path", ["/isc/pki/crl/Other.crl", f"/isc/pki/crl/{CA_ROOT}.pem", "/isc/pki/crl/"]
)
def test_unknown_crl_names_are_404(live: Live, path: str) -> None:
    assert soap_post(live.url, b"", None, method="GET", path=path).status == 404


# -- the SOAP wire does not change ---------------------------------------------------------------


def test_soap_answers_are_the_same_bytes_before_and_after_a_revocation(live: Live) -> None:
    get = iris_get_certificate(str(live.good_number))
    before = [
        soap_post(live.url, get, ACTION + "GetCertificate").body,
        soap_post(live.url, iris_list_certificates(), ACTION + "ListCertificates").body,
    ]
    live.server.revoke(live.good_number, Reason.SUPERSEDED, PASSWORD, revoked_by="t")
    after = [
        soap_post(live.url, get, ACTION + "GetCertificate").body,
        soap_post(live.url, iris_list_certificates(), ACTION + "ListCertificates").body,
    ]
    assert after == before


# -- under gunicorn ------------------------------------------------------------------------------


def test_ocsp_and_crl_under_gunicorn(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open_server(data_dir) as server:
        _configure(server, "Gunicorn CA", public_url=url)
        good, _ = issue(server, PASSWORD, "good")
        bad, _ = issue(server, PASSWORD, "bad")
        server.revoke(bad.number, password=PASSWORD, revoked_by="t")
        ca = server.authority().paths.cer
    process = start_serve(
        data_dir, port, "--workers", "2", "--no-portal", stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        crl_path = f"/isc/pki/crl/{CA_ROOT}.crl"
        while not _answers(lambda: soap_post(url, b"", None, method="GET", path=crl_path)):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        ocsp_url = url + OCSP_PATH
        good_file, bad_file = write(tmp_path / "g.pem", good), write(tmp_path / "b.pem", bad)
        for _ in range(3):  # both workers, whichever answers
            assert f"{good_file}: good" in openssl_ocsp(ca, ocsp_url, cert=good_file).stdout
            assert f"{bad_file}: revoked" in openssl_ocsp(ca, ocsp_url, cert=bad_file).stdout
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
