"""``server_app.py serve``: gunicorn started for real, the demo CA, option checks."""

from __future__ import annotations

import argparse
import gc
import signal
import socket
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gevent import monkey
from lxml import etree

from pki_soap.cli import serve_options, workers
from pki_soap.cli.demo import DEMO_PASSWORD_FILE, configure_demo
from pki_soap.cli.serve import default_public_url, run_serve
from pki_soap.cli.server_app import build_parser
from pki_soap.errors import InvalidInput
from pki_soap.soap import front, wsdl
from pki_soap.soap.dataset import LIST_ALL_COLUMNS, DataSet, dataset_chunks
from pki_soap.soap.envelope import SPOOL_MEMORY_LIMIT, response_chunks
from pki_soap.store import IssuedCertificate, Store
from pki_soap.wsgi import PkiSoapApp
from tests.engine_support import open_server
from tests.service_support import (
    ACTION,
    TNS,
    body_element,
    free_port,
    iris_list_certificates,
    soap_post,
    start_serve,
    wget_get_certificate,
)


def _parse(*argv: str) -> argparse.Namespace:
    parser, _ = build_parser()
    return parser.parse_args(list(argv))


def test_serve_defaults_are_the_services() -> None:
    # The options module does not import the service (spyne) to build the parser.
    assert (serve_options.DEFAULT_PORT, serve_options.DEFAULT_MAX_BODY) == (
        wsdl.DEFAULT_PORT,
        front.DEFAULT_MAX_BODY,
    )


def test_parser_defaults(tmp_path: Path) -> None:
    args = _parse("--data-dir", str(tmp_path), "serve")
    assert (args.data_dir, args.host, args.port, args.demo) == (tmp_path, "0.0.0.0", 52773, False)
    assert args.workers >= 1
    assert _parse("serve", "--data-dir", "x").data_dir == Path("x")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "0"], "port 0"),
        (["--port", "70000"], "port 70000"),
        (["--workers", "0"], "--workers"),
        (["--max-body", "0"], "--max-body"),
        (["--public-url", "ftp://x"], "not an http"),
        (["--portal-network", "192.0.2.0/33"], "not an IP address or network"),
        (["--header-timeout", "0"], "--header-timeout"),
        (["--body-timeout", "0"], "--body-timeout"),
        (["--worker-connections", "0"], "--worker-connections"),
        (["--submissions-per-minute", "-1"], "per_address"),
        (["--max-pending", "-1"], "pending"),
    ],
    ids=[
        "port-zero",
        "port-high",
        "workers",
        "max-body",
        "public-url",
        "portal-network",
        "header-timeout",
        "body-timeout",
        "worker-connections",
        "rate",
        "max-pending",
    ],
)
def test_bad_options_are_refused_before_serving(
    data_dir: Path, argv: list[str], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        run_serve(_parse("--data-dir", str(data_dir), "serve", *argv))
    # Refused before serving; nothing in this process was monkey-patched.
    assert not monkey.is_module_patched("socket")


def test_default_public_url() -> None:
    assert default_public_url("ca.example", 80) == "http://ca.example:80"
    assert default_public_url("::1", 52773) == "http://[::1]:52773"
    assert default_public_url("0.0.0.0", 1) == f"http://{socket.gethostname()}:1"


def test_demo_ca_is_configured_once_and_its_password_kept_private(data_dir: Path) -> None:
    created, fingerprint = configure_demo(data_dir)
    again, same = configure_demo(data_dir)
    assert (created, again, same) == (True, False, fingerprint)
    password_file = data_dir / DEMO_PASSWORD_FILE
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    with open_server(data_dir) as server:
        config = server.config()
        assert (config.root, config.directory, config.days) == ("DemoCA", "CAServer", 365)
        assert server.authority().subject_text == "/O=pki-soap demo/CN=pki-soap Demo CA"
        server.reinitialize()
    # The CA files outlive a reinitialisation; the kept password opens them again.
    assert configure_demo(data_dir) == (True, fingerprint)


def test_serve_demo_under_gunicorn(data_dir: Path) -> None:
    port = free_port()
    public = "http://ca.example:8080"
    process = start_serve(data_dir, port, "--demo", "--workers", "2", "--public-url", public)
    url = f"http://127.0.0.1:{port}"
    try:
        answer = None
        for _ in range(200):
            try:
                answer = soap_post(url, wget_get_certificate("0"), ACTION + "GetCertificate")
                break
            except OSError:
                assert process.poll() is None
                time.sleep(0.1)
        assert answer is not None and answer.status == 200
        wsdl = soap_post(url, b"", None, method="GET", path="/isc/pki/PKI.CAServer.cls?WSDL")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output.decode()
    text = output.decode()
    with open_server(data_dir) as server:
        fingerprint = server.authority().fingerprint
    assert "DEMO CERTIFICATE AUTHORITY (created): for testing only" in text
    assert fingerprint in text
    assert DEMO_PASSWORD_FILE in text
    assert (
        body_element(answer.body).findtext(f"{{{TNS}}}GetCertificateResult/{{{TNS}}}Filename")
        == "DemoCA"
    )
    location = etree.fromstring(wsdl.body).find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert location is not None and location.get("location") == public + "/isc/pki/PKI.CAServer.cls"
    # Request bodies never reach the log: the access log has request lines only.
    assert "BEGIN CERTIFICATE" not in text


def test_long_list_all_under_gunicorn_comes_whole_from_its_spool_file(data_dir: Path) -> None:
    # Past the in-memory part, the answer is in a temporary file that gunicorn's
    # wsgi.file_wrapper sends (sendfile); the bytes and the length must be exact.
    rows = []
    with Store.open(data_dir) as store, store.transaction():
        for number in range(1, SPOOL_MEMORY_LIMIT // 120):
            hostname = f"host-{number:06d}.long-domain-name-for-the-list.example.com"
            store.add_certificate(
                IssuedCertificate(
                    number=number,
                    hostname=hostname,
                    instance="IRIS",
                    filename=f"file{number}",
                    contents="PEM\n",
                    subject="/CN=x",
                    usage="tls",
                    issued=datetime(2026, 1, 1, tzinfo=UTC),
                    not_after=None,
                )
            )
            rows.append((str(number), hostname, "IRIS", f"file{number}"))
    result = [
        "<ListCertificatesResult>",
        *dataset_chunks(DataSet("ListAll", LIST_ALL_COLUMNS, rows)),
        "</ListCertificatesResult>",
    ]
    expected = "".join(response_chunks("ListCertificates", result)).encode("utf-8")
    port = free_port()
    process = start_serve(data_dir, port, "--workers", "1", "--no-portal")
    url = f"http://127.0.0.1:{port}"
    try:
        answer = None
        for _ in range(200):
            try:
                answer = soap_post(url, iris_list_certificates(), ACTION + "ListCertificates")
                break
            except OSError:
                assert process.poll() is None
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output.decode()
    assert len(expected) > SPOOL_MEMORY_LIMIT
    assert answer is not None and answer.status == 200
    assert answer.headers["content-length"] == str(len(expected))
    assert answer.body == expected


def test_a_worker_opens_its_data_directory_then_freezes_what_is_loaded(data_dir: Path) -> None:
    # spyne runs a full gc.collect() after a request at most once a second; over the whole
    # loaded application that was a stall of 55-130 ms each second.  Frozen objects are not
    # scanned, so the worker freezes everything loaded before it serves.
    configure_demo(data_dir)
    app = PkiSoapApp(data_dir, portal=False)
    assert gc.get_freeze_count() == 0
    try:
        workers.open_in_worker(app, worker=None)
        assert app.data.get().store is not None  # opened before any request
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
        app.data.close()
