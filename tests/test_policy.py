"""The issuance policy: each refusal at submission and at issue, and where it is shown first."""

from __future__ import annotations

import ipaddress
import re
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pki_soap.ca import keys, policy
from pki_soap.ca.authority import Usage
from pki_soap.ca.csr import build_csr, csr_pem, load_csr
from pki_soap.ca.keys import KeyType
from pki_soap.cli.server_app import main
from pki_soap.errors import PolicyViolation
from pki_soap.server.tasks import CAServer
from pki_soap.store import PendingRequest
from tests.engine_support import openssl

_KEY = keys.generate_key(KeyType.EC256)


def _name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    # _validate=False: a hostile client's CSR need not respect the length bounds that
    # cryptography's builder enforces (a 2,000-character CN was issued once).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its warning about such a length
        return x509.Name(
            [x509.NameAttribute(oid, value, _validate=False) for oid, value in attributes]
        )


def _csr(subject: x509.Name, *sans: x509.GeneralName) -> x509.CertificateSigningRequest:
    return build_csr(_KEY, subject, list(sans))


def _cn(value: str) -> x509.Name:
    return _name((NameOID.COMMON_NAME, value))


def _dns(value: str) -> x509.DNSName:
    return x509.DNSName(value)


def _ip(value: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_address(value))


OK = _name((NameOID.ORGANIZATION_NAME, "Example"), (NameOID.COMMON_NAME, "web.example.com"))

# Each of these was issued as TLS before the policy existed (issue 12, "What gets signed").
REFUSED: dict[str, tuple[x509.CertificateSigningRequest, str]] = {
    "san-star-com": (_csr(OK, _dns("*.com")), "at least two labels after it"),
    "cn-star-com": (_csr(_cn("*.com")), "at least two labels after it"),
    "san-star-alone": (_csr(OK, _dns("*")), "DNS:'*': a wildcard needs at least two labels"),
    "cn-star-alone": (_csr(_cn("*")), "at least two labels after it"),
    "partial-wildcard": (_csr(_cn("w*.example.com")), "whole left-most label"),
    "inner-wildcard": (_csr(OK, _dns("www.*.example.com")), "whole left-most label"),
    "ip-unspecified-v4": (_csr(OK, _ip("0.0.0.0")), "0.0.0.0 is the unspecified address"),
    "ip-unspecified-v6": (_csr(OK, _ip("::")), ":: is the unspecified address"),
    "ip-broadcast": (_csr(OK, _ip("255.255.255.255")), "255.255.255.255 is the broadcast"),
    "ip-multicast-v4": (_csr(OK, _ip("224.0.0.1")), "224.0.0.1 is a multicast address"),
    "ip-multicast-v6": (_csr(OK, _ip("ff02::1")), "ff02::1 is a multicast address"),
    "cn-ip-unspecified": (_csr(_cn("0.0.0.0")), "CN 0.0.0.0 is the unspecified address"),
    "san-trailing-dot": (_csr(OK, _dns("EXAMPLE.COM.")), "ends with a dot"),
    "cn-trailing-dot": (_csr(_cn("example.com.")), "ends with a dot"),
    "cn-2000-chars": (_csr(_cn("a" * 2000)), "CN is longer than 64 characters (2000)"),
    "cn-lf": (_csr(_cn("web\nexample.com")), "CN holds a control or bidi character"),
    "cn-nul": (_csr(_cn("web\x00.example.com")), "control or bidi character: 'web\\x00.ex"),
    "cn-cr": (_csr(_cn("fake.example.com\rweb")), "CN holds a control or bidi character"),
    "cn-rlo": (_csr(_cn("moc.elpmaxe\u202e")), "'moc.elpmaxe\\u202e'"),
    "ou-escape": (
        _csr(
            _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "\x1b[8mhidden"), (NameOID.COMMON_NAME, "w"))
        ),
        "OU holds a control or bidi character",
    ),
    "two-cns": (
        _csr(_name((NameOID.COMMON_NAME, "good.example.com"), (NameOID.COMMON_NAME, "evil.com"))),
        "more than one CN",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_each_refusal_is_named(case: str) -> None:
    csr, reason = REFUSED[case]
    assert reason in "; ".join(policy.refusals(csr))
    with pytest.raises(PolicyViolation, match=re.escape(reason)):
        policy.check(csr)


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_refused_at_submission_nothing_stored(configured_server: CAServer, case: str) -> None:
    csr, reason = REFUSED[case]
    with pytest.raises(PolicyViolation, match=re.escape(reason)) as raised:
        configured_server.submit(_request(csr))
    assert raised.value.fault_side == "Client"
    assert configured_server.store.count_requests() == 0


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_refused_at_issue_when_stored_as_received(
    configured_server: CAServer, ca_password: bytes, case: str
) -> None:
    # A request stored before the policy (or stored as received): refused at issue,
    # before a serial number is spent.
    csr, reason = REFUSED[case]
    configured_server.store.add_request(_request(csr))
    serial_before = configured_server.authority().serials.current()
    for usage in Usage:
        with pytest.raises(PolicyViolation, match=re.escape(reason)):
            configured_server.issue("host:IRIS:policy", usage, ca_password)
    assert configured_server.authority().serials.current() == serial_before
    assert configured_server.store.count_requests() == 1
    assert list(configured_server.certificates()) == []


def test_an_acceptable_request_passes(configured_server: CAServer, ca_password: bytes) -> None:
    csr = _csr(_cn("*.apps.example.com"), _dns("*.apps.example.com"), _ip("192.0.2.7"), _ip("::1"))
    assert policy.refusals(csr) == []
    configured_server.submit(_request(csr))
    issued = configured_server.issue("host:IRIS:policy", Usage.TLS, ca_password)
    assert issued.number == 1


@pytest.mark.parametrize(("digest", "shown"), [("-sha1", "SHA-1"), ("-md5", "MD5")])
def test_csr_signed_with_a_weak_hash_is_refused_with_that_reason(
    configured_server: CAServer, tmp_path: Path, digest: str, shown: str
) -> None:
    done = openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", digest, "-subj", "/CN=weak.example.com",
        "-keyout", tmp_path / "k.pem", "-out", tmp_path / "r.csr",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pem = (tmp_path / "r.csr").read_text()
    with pytest.raises(PolicyViolation, match=f"signed with {shown}, which is not accepted"):
        load_csr(pem)
    with pytest.raises(PolicyViolation, match=f"signed with {shown}"):
        configured_server.submit(_request(contents=pem))
    assert configured_server.store.count_requests() == 0


def _request(
    csr: x509.CertificateSigningRequest | None = None, *, contents: str | None = None
) -> PendingRequest:
    return PendingRequest(
        name="host:IRIS:policy",
        hostname="host",
        instance="IRIS",
        filename="policy",
        contents=contents if contents is not None else csr_pem(csr),  # type: ignore[arg-type]
        subject="",
        contact_name="Contact",
    )


def test_show_says_what_would_be_refused_before_the_admin_chooses(
    configured_server: CAServer, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csr = _csr(OK, _dns("*.com"), _ip("255.255.255.255"))
    configured_server.store.add_request(_request(csr))
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "show", "host:IRIS:policy"]) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("Issuance policy:")]
    assert "REFUSES it:" in line
    assert "DNS:'*.com': a wildcard needs at least two labels after it" in line
    assert "255.255.255.255 is the broadcast address" in line
    assert out.count("REFUSED: the issuance policy refuses this request") == len(Usage)
