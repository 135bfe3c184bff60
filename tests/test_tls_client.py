"""The client over HTTPS: trust on first use by fingerprint, then every call verified.

Real HTTPS servers on loopback (our service in werkzeug's server, with the certificate
``serve --tls`` makes); client_app.py run in-process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from pki_soap.ca import fingerprints
from pki_soap.ca.fingerprints import parse_fingerprint
from pki_soap.cli.client_app import main
from pki_soap.client.configuration import PINNED_CA_FILE
from pki_soap.client.soap_client import CAClient
from pki_soap.errors import InvalidInput, UntrustedServer
from pki_soap.store import Store
from tests.engine_support import open_server
from tests.service_support import CA_PASSWORD, CA_ROOT, configure_ca, https_context, live_server

SERVICE = "/isc/pki/PKI.CAServer.cls"


@dataclass(frozen=True)
class CA:
    """A configured CA server's data directory and its CA certificate."""

    data_dir: Path
    certificate: x509.Certificate

    @property
    def sha256(self) -> str:
        return "SHA256:" + fingerprints.sha256_fingerprint(self.certificate)

    @property
    def sha1(self) -> str:
        """The SHA-1 form the original shows (no prefix)."""
        return fingerprints.fingerprint(self.certificate)

    @property
    def cer(self) -> Path:
        return self.data_dir / "CAServer" / f"{CA_ROOT}.cer"


def _ca(directory: Path) -> CA:
    configure_ca(directory)
    with open_server(directory) as server:
        return CA(directory, server.authority().certificate)


@pytest.fixture
def ours(tmp_path: Path) -> CA:
    return _ca(tmp_path / "ours")


@pytest.fixture
def theirs(tmp_path: Path) -> CA:
    """Another CA altogether: same names, other keys."""
    return _ca(tmp_path / "theirs")


@contextmanager
def https(ca: CA, *names_: str) -> Iterator[int]:
    """The CA's service over HTTPS (certificate for ``names_``, default 127.0.0.1); its port."""
    context = https_context(ca.data_dir, CA_PASSWORD, names_ or ("127.0.0.1",))
    with live_server(ca.data_dir, ssl_context=context, portal=False) as url:
        port = urlsplit(url).port
        assert port is not None
        yield port


@contextmanager
def plain(ca: CA) -> Iterator[int]:
    """The CA's service over plain HTTP; its port."""
    with live_server(ca.data_dir, portal=False) as url:
        port = urlsplit(url).port
        assert port is not None
        yield port


@pytest.fixture(autouse=True)
def no_environment_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PKI_KEY_PASSWORD", "PKI_P12_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), *args])
    out, err = capsys.readouterr()
    return code, out, err


def configure(capsys: pytest.CaptureFixture[str], data_dir: Path, server: str) -> None:
    code, _, err = run(
        capsys, data_dir, "configure", "--server", server, "--contact-name", "Pat Admin",
        "--hostname", "client.example", "--instance", "PKI",
    )  # fmt: skip
    assert code == 0, err


# -- fingerprints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "algorithm"),
    [
        ("SHA256:{sha256}", "SHA-256"),
        ("sha256:{sha256_plain}", "SHA-256"),
        ("SHA-256 {sha256}", "SHA-256"),
        ("{sha256}", "SHA-256"),
        ("{sha1}", "SHA-1"),
        ("SHA1:{sha1_lower}", "SHA-1"),
    ],
    ids=["prefixed", "lower-no-colons", "spaced", "bare-256", "bare-sha1", "sha1-lower"],
)
def test_fingerprints_are_read_as_people_copy_them(ours: CA, text: str, algorithm: str) -> None:
    sha256 = fingerprints.sha256_fingerprint(ours.certificate)
    given = text.format(
        sha256=sha256,
        sha256_plain=sha256.replace(":", "").lower(),
        sha1=ours.sha1,
        sha1_lower=ours.sha1.lower(),
    )

    fingerprint = parse_fingerprint(given)

    assert fingerprint.algorithm == algorithm
    assert fingerprint.matches(ours.certificate)
    assert fingerprint.of(ours.certificate) == (sha256 if algorithm == "SHA-256" else ours.sha1)


def test_a_fingerprint_of_another_certificate_does_not_match(ours: CA, theirs: CA) -> None:
    assert not parse_fingerprint(theirs.sha256).matches(ours.certificate)
    assert not parse_fingerprint(theirs.sha1).matches(ours.certificate)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SHA256:E3:FB", "has 2 bytes; a SHA-256 fingerprint has 32"),
        ("SHA1:" + "AB:" * 31 + "AB", "has 32 bytes; a SHA-1 fingerprint has 20"),
        ("AB:CD:EF", "has 3 bytes: a SHA-1 fingerprint has 20, a SHA-256 one 32"),
        ("E3:FB:3G", "is not hexadecimal"),
        ("", "is not hexadecimal"),
    ],
    ids=["short-256", "long-sha1", "no-length", "not-hex", "empty"],
)
def test_malformed_fingerprints_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_fingerprint(text)


# -- trust on first use ------------------------------------------------------------------------


def test_https_needs_a_fingerprint_before_anything_else(
    capsys: pytest.CaptureFixture[str], ours: CA, data_dir: Path
) -> None:
    with https(ours) as port:
        configure(capsys, data_dir, f"https://127.0.0.1:{port}")
        for command in (["get-ca"], ["list"], ["get", "0"]):
            code, out, err = run(capsys, data_dir, *command)
            assert (code, out) == (4, "")
            assert "no CA certificate is trusted yet: first run client_app.py get-ca" in err
    assert sorted(path.name for path in data_dir.iterdir()) == ["pki.sqlite3"]


@pytest.mark.parametrize("form", ["sha256", "sha1"])
def test_the_right_fingerprint_pins_the_ca_and_later_calls_verify_against_it(
    capsys: pytest.CaptureFixture[str], ours: CA, data_dir: Path, form: str
) -> None:
    given = ours.sha256 if form == "sha256" else ours.sha1
    with https(ours) as port:
        configure(capsys, data_dir, f"https://127.0.0.1:{port}")
        code, out, err = run(capsys, data_dir, "get-ca", "--fingerprint", given)
        listed = run(capsys, data_dir, "list", "--all")
        again = run(capsys, data_dir, "get-ca")

    assert (code, err) == (0, ""), err
    algorithm = "SHA-256" if form == "sha256" else "SHA-1"
    assert out == (
        f"Certificate Authority Certificate (SHA-1 Fingerprint: {ours.sha1}) saved in file "
        f'"{data_dir / f"{CA_ROOT}.cer"}"\n'
        f"Pinned as the trusted CA certificate ({algorithm} fingerprint matched; SHA-256 "
        f"{ours.sha256.removeprefix('SHA256:')}): every call to the CA server is verified "
        "against it.\n"
    )
    pinned = x509.load_pem_x509_certificate((data_dir / PINNED_CA_FILE).read_bytes())
    assert pinned == ours.certificate
    # The server's own certificate (number 1, Filename https) is listed, over HTTPS.
    assert listed[0] == 0 and "1              127.0.0.1  IRIS      https" in listed[1]
    assert again[0] == 0, again[2]


@pytest.mark.parametrize("form", ["sha256", "sha1"])
def test_a_wrong_fingerprint_saves_and_pins_nothing(
    capsys: pytest.CaptureFixture[str], ours: CA, theirs: CA, data_dir: Path, form: str
) -> None:
    wrong = theirs.sha256 if form == "sha256" else theirs.sha1
    with https(ours) as port:
        configure(capsys, data_dir, f"https://127.0.0.1:{port}")
        code, out, err = run(capsys, data_dir, "get-ca", "--fingerprint", wrong)

    algorithm, shown = (
        ("SHA-256", ours.sha256.removeprefix("SHA256:"))
        if form == "sha256"
        else ("SHA-1", ours.sha1)
    )
    assert (code, out) == (8, "")
    assert err == (
        f"error: the CA certificate the server at https://127.0.0.1:{port}{SERVICE} sent has "
        f"the {algorithm} fingerprint {shown}, not {parse_fingerprint(wrong)}; nothing was "
        "saved or pinned\n"
    )
    assert sorted(path.name for path in data_dir.iterdir()) == ["pki.sqlite3"]


def test_a_server_whose_certificate_another_ca_issued_is_refused(
    capsys: pytest.CaptureFixture[str],
    ours: CA,
    theirs: CA,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with https(ours) as port:
        configure(capsys, data_dir, f"https://127.0.0.1:{port}")
        assert run(capsys, data_dir, "get-ca", "--fingerprint", ours.sha256)[0] == 0
    # requests would let this variable replace the pinned CA; the pin must still decide.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(theirs.cer))
    with https(theirs) as port:
        configure(capsys, data_dir, f"https://127.0.0.1:{port}")
        code, out, err = run(capsys, data_dir, "list")
        submitted = run(capsys, data_dir, "submit", "--root", "web", "--subject", "/CN=web.example")

    assert (code, out) == (8, "")
    assert err == (
        f"error: CA server at https://127.0.0.1:{port}{SERVICE} is not trusted: its certificate "
        "was not issued by the trusted CA certificate (self-signed certificate in certificate "
        "chain); nothing was sent\n"
    )
    assert submitted[0] == 8 and "is not trusted" in submitted[2]
    # Nothing reached the server, so the new key is not kept.
    assert not (data_dir / "web.key").exists() and not (data_dir / "web.csr").exists()
    with Store.open(theirs.data_dir) as store:
        assert store.count_requests() == 0


def test_the_pin_holds_against_the_environment_the_other_way_too(
    capsys: pytest.CaptureFixture[str],
    ours: CA,
    theirs: CA,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(theirs.cer))
    with https(ours) as port:
        configure(capsys, data_dir, f"https://127.0.0.1:{port}")
        pinned = run(capsys, data_dir, "get-ca", "--fingerprint", ours.sha1)
        listed = run(capsys, data_dir, "list", "--all")

    assert pinned[0] == 0, pinned[2]
    assert listed[0] == 0, listed[2]


def test_a_certificate_for_another_host_name_is_refused_with_that_reason(
    capsys: pytest.CaptureFixture[str], ours: CA, data_dir: Path
) -> None:
    with https(ours, "127.0.0.1") as port:
        configure(capsys, data_dir, f"https://localhost:{port}")
        code, out, err = run(capsys, data_dir, "get-ca", "--fingerprint", ours.sha256)

    assert (code, out) == (8, "")
    assert err == (
        f"error: CA server at https://localhost:{port}{SERVICE} is not trusted: its certificate "
        "does not name the host connected to (Hostname mismatch, certificate is not valid for "
        "'localhost'.); nothing was sent\n"
    )
    # The fingerprint matched, but the server did not prove itself: nothing pinned.
    assert not (data_dir / PINNED_CA_FILE).exists()
    assert not (data_dir / f"{CA_ROOT}.cer").exists()


def test_the_certificate_names_decide_which_host_names_work(
    capsys: pytest.CaptureFixture[str], ours: CA, data_dir: Path
) -> None:
    with https(ours, "127.0.0.1", "localhost") as port:
        configure(capsys, data_dir, f"https://localhost:{port}")
        code, _, err = run(capsys, data_dir, "get-ca", "--fingerprint", ours.sha256)
        listed = run(capsys, data_dir, "list", "--all")

    assert code == 0, err
    assert listed[0] == 0, listed[2]


def test_over_plain_http_the_pin_guards_get_ca(
    capsys: pytest.CaptureFixture[str], ours: CA, theirs: CA, data_dir: Path
) -> None:
    with plain(ours) as port:
        run(capsys, data_dir, "configure", "--server", "127.0.0.1", "--port", str(port),
            "--contact-name", "Pat")  # fmt: skip
        code, out, _ = run(capsys, data_dir, "get-ca", "--fingerprint", ours.sha1)
    with plain(theirs) as port:
        run(capsys, data_dir, "configure", "--server", "127.0.0.1", "--port", str(port),
            "--contact-name", "Pat")  # fmt: skip
        refused = run(capsys, data_dir, "get-ca")
        replaced_without_force = run(capsys, data_dir, "get-ca", "--fingerprint", theirs.sha256)
        replaced = run(capsys, data_dir, "get-ca", "--fingerprint", theirs.sha256, "--force")

    assert code == 0
    assert "(plain HTTP itself is not verified)" in out
    assert refused[0] == 8
    assert refused[2] == (
        f"error: the CA server at http://127.0.0.1:{port}{SERVICE} sent a CA certificate "
        f"(SHA-256 {theirs.sha256[7:]}) that is not the pinned one (SHA-256 "
        f"{ours.sha256[7:]}); nothing was saved. To trust another CA, run get-ca --fingerprint "
        "with its fingerprint\n"
    )
    assert replaced_without_force[0] == 2
    assert "another CA certificate is pinned" in replaced_without_force[2]
    assert replaced[0] == 0, replaced[2]
    pinned = x509.load_pem_x509_certificate((data_dir / PINNED_CA_FILE).read_bytes())
    assert pinned == theirs.certificate
    saved = x509.load_pem_x509_certificate((data_dir / f"{CA_ROOT}.cer").read_bytes())
    assert saved == theirs.certificate


def test_the_wrong_scheme_either_way_says_so(
    capsys: pytest.CaptureFixture[str], ours: CA, data_dir: Path
) -> None:
    with https(ours) as tls_port, plain(ours) as plain_port:
        configure(capsys, data_dir, f"http://127.0.0.1:{tls_port}")
        to_tls = run(capsys, data_dir, "get-ca")
        configure(capsys, data_dir, f"https://127.0.0.1:{plain_port}")
        to_plain = run(capsys, data_dir, "get-ca", "--fingerprint", ours.sha256)

    # werkzeug resets the connection; gunicorn closes it (test_tls_serve.py checks that one).
    assert to_tls[0] == 6 and " unreachable: " in to_tls[2]
    assert to_plain[0] == 8
    assert (
        "it does not speak TLS on this port (plain HTTP? then configure without TLS)"
        in (to_plain[2])
    )


def test_configure_reads_a_url_or_host_port_and_tls(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    cases = [
        (["--server", "https://ca.example"], ("ca.example", 443, SERVICE, True)),
        (
            ["--server", "https://ca.example:8443/x/PKI.cls"],
            ("ca.example", 8443, "/x/PKI.cls", True),
        ),
        (["--server", "http://[::1]:52773"], ("::1", 52773, SERVICE, False)),
        (["--server", "ca.example", "--port", "9", "--tls"], ("ca.example", 9, SERVICE, True)),
        # What is not given is kept (the scheme too), until changed.
        (["--server", "ca.example", "--port", "8"], ("ca.example", 8, SERVICE, True)),
        (["--no-tls"], ("ca.example", 8, SERVICE, False)),
    ]
    for args, expected in cases:
        code, _, err = run(capsys, data_dir, "configure", "--contact-name", "P", *args)
        assert code == 0, err
        with Store.open(data_dir) as store:
            cfg = store.client_config()
        assert cfg is not None
        assert (cfg.server, cfg.port, cfg.path, cfg.tls) == expected, args

    for args, message in [
        (["--server", "https://ca.example:1", "--port", "2"], "name different ports"),
        (["--server", "http://ca.example:1", "--tls"], "and --tls disagree"),
        (["--server", "https://ca.example:1", "--no-tls"], "and --no-tls disagree"),
        (["--server", "https://ca.example:99999"], "the port is not a number"),
    ]:
        code, _, err = run(capsys, data_dir, "configure", "--contact-name", "P", *args)
        assert code == 2 and message in err, (args, err)


def test_a_client_refuses_a_cafile_with_verification_off(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="choose one"):
        CAClient("https://127.0.0.1:1/x", cafile=tmp_path / "ca.pem", verify=False)


def test_untrusted_is_its_own_error_and_exit_code() -> None:
    assert UntrustedServer.exit_code == 8 and UntrustedServer.error_number == 8131


def test_show_says_what_is_trusted_and_that_the_ca_must_be_pinned_first(
    capsys: pytest.CaptureFixture[str], ours: CA, data_dir: Path
) -> None:
    with https(ours) as port:
        configure(capsys, data_dir, f"https://127.0.0.1:{port}")
        before = run(capsys, data_dir, "show")
        run(capsys, data_dir, "get-ca", "--fingerprint", ours.sha256)
        after = run(capsys, data_dir, "show")

    assert before[0] == 0, before[2]
    assert "Trust:           no CA certificate pinned yet (get-ca --fingerprint)" in before[1]
    assert (
        "Next step: trust the CA certificate by the fingerprint the CA administrator" in (before[1])
    )
    assert "get-ca --fingerprint SHA256:...`." in before[1]
    assert after[0] == 0, after[2]
    assert f"Trust:           pinned CA certificate, SHA-256 {ours.sha256[7:]}" in after[1]
    assert f"CA server:       https://127.0.0.1:{port}{SERVICE} (answers)" in after[1]
