"""A stranger's text: what a SOAP client chooses reaches the admin's shell, terminal and mail
only escaped for it (pki_soap.escaping)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pki_soap.ca import keys
from pki_soap.ca.csr import build_csr, csr_pem
from pki_soap.ca.keys import KeyType
from pki_soap.cli.server_app import main
from pki_soap.escaping import for_mail_body, for_shell, for_terminal
from pki_soap.server.tasks import CAServer
from pki_soap.store import PendingRequest, Store
from tests.service_support import (
    ACTION,
    configure_ca,
    iris_submit,
    live_server,
    openssl_csr,
    soap_post,
)
from tests.smtp_support import MailServer, Received

ADMIN = "ca-admin@example.test"


# -- the helpers themselves -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, é and 漢字", "plain text, é and 漢字"),
        ("\x1b[8mhidden", "\\x1b[8mhidden"),
        ("\r\x1b[2Kfake", "\\x0d\\x1b[2Kfake"),
        ("a\x00b\x7fc\x9bd", "a\\x00b\\x7fc\\x9bd"),
        ("line\nbreak\u2028sep", "line\\x0abreak\\u2028sep"),
        ("txt.exe\u202egpj", "txt.exe\\u202egpj"),
        ("\u2066isolate\u2069 \u200fRLM \u200bZW \ufeffBOM", None),
    ],
    ids=["plain", "esc", "cr", "nul-del-c1", "lf-ls", "rlo", "isolates"],
)
def test_terminal_escapes_make_control_and_bidi_characters_visible(
    text: str, shown: str | None
) -> None:
    escaped = for_terminal(text)
    if shown is not None:
        assert escaped == shown
    assert escaped.isprintable()
    assert for_mail_body(text) == escaped


@pytest.mark.parametrize(
    "name",
    [
        'y" ; touch MARKER ; echo "',
        "x' ; touch MARKER ; echo '",
        "$(touch MARKER)",
        "`touch MARKER`",
    ],
)
def test_shell_quoting_keeps_one_word(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "marker"
    text = name.replace("MARKER", str(marker))
    done = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {for_shell(text)}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert done.stdout == text + "\n"
    assert not marker.exists()


# -- the admin's shell: mailed commands -------------------------------------------------------


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[MailServer]:
    with MailServer(tmp_path) as server:
        yield server


def _mailing_ca(data_dir: Path, smtp: MailServer) -> None:
    configure_ca(data_dir)
    with Store.open(data_dir) as store:
        cfg = store.server_config()
        assert cfg is not None
        store.save_server_config(
            dataclasses.replace(
                cfg, smtp_server="127.0.0.1", smtp_port=smtp.port, admin_email=ADMIN
            )
        )


def _wait_for_mail(smtp: MailServer, count: int = 1) -> list[Received]:
    deadline = time.monotonic() + 20
    while len(smtp.messages) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(smtp.messages) >= count, "no mail arrived"
    return smtp.messages


def _stub_server_app(directory: Path) -> Path:
    """A ``server_app.py`` on PATH that only appends its argv (JSON) to ``argv.log``."""
    directory.mkdir()
    stub = directory / "server_app.py"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(directory / 'argv.log')!r}, 'a') as log:\n"
        "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return directory


@pytest.mark.parametrize(
    "hostile",
    [
        'y" ; touch MARKER ; echo "',
        "x' ; touch MARKER ; echo '",
        "w$(touch MARKER)",
        "`touch MARKER`",
    ],
    ids=["double-quote", "single-quote", "substitution", "backticks"],
)
def test_mailed_commands_run_exactly_what_they_show(
    tmp_path: Path, smtp: MailServer, hostile: str
) -> None:
    data_dir = tmp_path / "pki-data"
    _mailing_ca(data_dir, smtp)
    marker = tmp_path / "marker-file"
    name = hostile.replace("MARKER", str(marker))
    _, csr = openssl_csr(tmp_path, "inject", "/CN=inject.example.com")
    fields: dict[str, str | None] = {
        "Name": name,
        "Hostname": "inject.example.com",
        "Instance": "IRIS",
        "Filename": "inject",
        "Contents": csr,
        "ContactName": "Mallory",
    }
    with live_server(data_dir, portal=False) as url:
        answer = soap_post(url, iris_submit(fields), ACTION + "SubmitCSR")
        assert answer.status == 200, answer.text
        [mail] = _wait_for_mail(smtp)
    commands = [line for line in mail.body.splitlines() if line.startswith("  server_app.py ")]
    assert len(commands) == 3
    stubs = _stub_server_app(tmp_path / "bin")
    script = tmp_path / "pasted.sh"
    script.write_text("\n".join(commands) + "\n")
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, timeout=30, check=True)
    assert not marker.exists()
    ran = [json.loads(line) for line in (stubs / "argv.log").read_text().splitlines()]
    assert ran == [["show", name], ["issue", name, "--usage", "tls"], ["delete", name]]


def test_mail_header_and_body_show_bidi_and_never_add_lines(
    tmp_path: Path, smtp: MailServer
) -> None:
    data_dir = tmp_path / "pki-data"
    _mailing_ca(data_dir, smtp)
    _, csr = openssl_csr(tmp_path, "bidi", "/CN=bidi.example.com")
    fields: dict[str, str | None] = {
        "Hostname": "exe.\u202egpj",
        "Instance": "IRIS",
        "Filename": "bidi",
        "Contents": csr,
        "ContactName": "Eve\u2028  server_app.py issue --all --usage tls",
        "ContactPhone": "\u2066+1 555\u2069",
    }
    with live_server(data_dir, portal=False) as url:
        assert soap_post(url, iris_submit(fields), ACTION + "SubmitCSR").status == 200
        [mail] = _wait_for_mail(smtp)
    assert mail.subject == 'New Certificate Signing Request "bidi" from exe.\\u202egpj'
    assert "Host name:      exe.\\u202egpj" in mail.body
    assert "Contact name:   Eve\\u2028  server_app.py issue --all --usage tls" in mail.body
    assert "Contact phone:  \\u2066+1 555\\u2069" in mail.body
    for character in ("\u202e", "\u2028", "\u2066", "\u2069"):
        assert character not in mail.body and character not in mail.subject
    assert not any(
        line.startswith("  server_app.py issue --all") for line in mail.body.splitlines()
    )


def test_notices_to_the_contact_escape_the_request_fields(
    configured_server: CAServer, ca_password: bytes, smtp: MailServer
) -> None:
    store = configured_server.store
    cfg = store.server_config()
    assert cfg is not None
    store.save_server_config(
        dataclasses.replace(cfg, smtp_server="127.0.0.1", smtp_port=smtp.port, admin_email=ADMIN)
    )
    csr = build_csr(
        keys.generate_key(KeyType.EC256),
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "c.example.com")]),
    )
    configured_server.store.add_request(
        PendingRequest(
            name="n",
            hostname="h\u202e",
            instance="I\x1b[8m",
            filename="file",
            contents=csr_pem(csr),
            subject="",
            contact_name="Dear\rX",
            contact_email="jane@example.test",
        )
    )
    configured_server.delete_request("n")
    [mail] = _wait_for_mail(smtp)
    assert mail.rcpt_tos == ["jane@example.test"]
    assert "Dear Dear\\x0dX," in mail.body
    assert "(host h\\u202e," in mail.body and "instance I\\x1b[8m)" in mail.body


# -- the admin's terminal ---------------------------------------------------------------------


def _hostile_request(configured_server: CAServer) -> PendingRequest:
    """A request as a client could have had it stored before the policy (or strict mode)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "\x1b[8m"),
            x509.NameAttribute(NameOID.COMMON_NAME, "\r\x1b[2Kfake.example.com"),
        ]
    )
    key = keys.generate_key(KeyType.EC256)
    sans = [x509.DNSName("evil.example.com")]
    csr = build_csr(key, subject, sans)
    req = PendingRequest(
        name="host:IRIS:term",
        hostname="host\u202e",
        instance="IRIS",
        filename="term",
        contents=csr_pem(csr),
        subject="/CN=\x1b]0;title\x07",
        contact_name="Eve\u202emoc.elpmaxe",
        contact_phone="\x1b[2J",
    )
    return configured_server.store.add_request(req)


def _fields(out: str) -> dict[str, str]:
    """``Label:   value`` lines of ``show``, by label."""
    found = {}
    for line in out.splitlines():
        matched = re.fullmatch(r"([A-Za-z][^:]*):\s+(.*)", line)
        if matched:
            found[matched[1]] = matched[2]
    return found


def test_show_prints_escapes_not_terminal_controls(
    configured_server: CAServer, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hostile_request(configured_server)
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "show", "host:IRIS:term"]) == 0
    out = capsys.readouterr().out
    for raw in ("\x1b", "\r", "\x07", "\u202e"):
        assert raw not in out
    shown = _fields(out)
    assert shown["Subject (in the CSR)"] == "/O=\\x1b[8m/CN=\\x0d\\x1b[2Kfake.example.com"
    assert shown["Requested subjectAltNames"] == "DNS:evil.example.com"
    assert shown["Contact name"] == "Eve\\u202emoc.elpmaxe"
    assert shown["Contact phone"] == "\\x1b[2J"
    assert shown["Host name"] == "host\\u202e"
    assert shown["Subject (as sent)"] == "/CN=\\x1b]0;title\\x07"
    # What --usage tls would issue stays readable, and the policy says it refuses it.
    assert "REFUSES it: subject attribute O holds a control or bidi character" in out
    assert all(line.isprintable() for line in out.splitlines())


def test_pending_table_prints_escapes(
    configured_server: CAServer, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hostile_request(configured_server)
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "pending"]) == 0
    out = capsys.readouterr().out
    assert "host\\u202e" in out and "Eve\\u202emoc.elpmaxe (\\x1b[2J)" in out
    assert all(line.isprintable() for line in out.splitlines())
