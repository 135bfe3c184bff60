"""Benchmark 5: revocation - OCSP answers against the floor, a CRL of 100,000, revoke latency.

* **OCSP**: ``server_app.py serve`` and the floor (bench/floor_app.py answering the bytes
  captured from ours for the same method and path) side by side; wrk sends RFC 5019 GETs and
  RFC 6960 POSTs without a nonce (answered from the cache of pre-signed answers) and POSTs
  with a nonce (signed for each request).  The figure is ours / floor (target >= 0.5 for the
  cached answers).
* **CRL at 100,000 revoked**: a store seeded with 100,010 issued certificates, 100,000 of them
  revoked; ``server_app.py crl`` timed as a process, the engine's ``sign_crl`` in-process,
  and a bare ``cryptography`` loop building and signing the same CRL from a list in memory
  (the floor).  Sizes of the DER and PEM CRL.
* **Revoke latency**: ``server_app.py revoke N --yes`` as a process, and ``CAServer.revoke``
  in-process with the key already decrypted, on a small store and on the 100,000 one (the
  new CRL is part of every revocation).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import seeding
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import CRLEntryExtensionOID
from load import _DONE, LoadResult, run_wrk
from report import Plan, Section, fmt, median, progress, ratio, spread, table, verdict
from servers import HOST, PYTHON, REPO, Server, floor_server, our_server

from pki_soap.ca.keys import KeyType
from pki_soap.server.crl import Reason
from pki_soap.server.revocation import OCSP_PATH, Revocations, current_issuer
from pki_soap.server.tasks import CAServer
from pki_soap.store import DATABASE_NAME, Store

TARGET = 0.5
CRL_SCALE = 100_000
SPARE = 10  # certificates of the big store left unrevoked, for the revoke latency runs
OCSP_CONTENT_TYPE = "application/ocsp-request"


def _lua_bytes(data: bytes) -> str:
    """A Lua string literal holding exactly ``data`` (decimal escapes: any byte is safe)."""
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def get_script() -> str:
    return 'wrk.method = "GET"\n' + _DONE


def post_script(body: bytes) -> str:
    return (
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{OCSP_CONTENT_TYPE}"\n'
        f"wrk.body = {_lua_bytes(body)}\n" + _DONE
    )


def ocsp_request(data_dir: Path, number: int, nonce: bool = False) -> bytes:
    """A DER OCSP request (SHA-1 CertID, as OpenSSL and RFC 5019 clients make) for ``number``."""
    with Store.open(data_dir) as store:
        cert = store.certificate(number)
        ca = store.certificate(0)
    assert cert is not None and ca is not None
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_pem_x509_certificate(cert.contents.encode()),
        x509.load_pem_x509_certificate(ca.contents.encode()),
        hashes.SHA1(),
    )
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(b"bench-nonce-0123"), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def fetch(
    port: int, method: str, path: str, body: bytes | None
) -> tuple[str, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    headers = {"Content-Type": OCSP_CONTENT_TYPE} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    kept = [
        (k, v)
        for k, v in response.getheaders()
        if k.lower() not in ("connection", "date", "server", "transfer-encoding", "keep-alive")
    ]
    return f"{response.status} {response.reason}", kept, data


def _status_of(data: bytes) -> str:
    response = ocsp.load_der_ocsp_response(data)
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return response.response_status.name
    return response.certificate_status.name


# -- OCSP throughput ------------------------------------------------------------------------------


def ocsp_section(plan: Plan, section: Section) -> None:
    work = plan.work / "revocation-ocsp"
    work.mkdir(parents=True)
    data_dir = work / "data"
    progress("revocation: configuring a CA, issuing and revoking")
    password_file = seeding.configure_ca(data_dir)
    numbers = seeding.issue_owned(data_dir, seeding.cached_csrs(KeyType.RSA2048, 5))
    with CAServer(Store.open(data_dir), data_dir, None) as server:
        server.revoke(numbers[1], Reason.KEY_COMPROMISE, seeding.CA_PASSWORD, revoked_by="bench")
    good, revoked = numbers[0], numbers[1]
    get_good = f"{OCSP_PATH}/{base64.b64encode(ocsp_request(data_dir, good)).decode()}"
    get_revoked = f"{OCSP_PATH}/{base64.b64encode(ocsp_request(data_dir, revoked)).decode()}"
    post_body = ocsp_request(data_dir, good)
    nonce_body = ocsp_request(data_dir, good, nonce=True)
    # (label, method, path, body, connections, expected status, compared with the target)
    cells = [
        ("GET good (cached)", "GET", get_good, None, 1, "GOOD", True),
        ("GET good (cached)", "GET", get_good, None, 8, "GOOD", True),
        ("GET revoked (cached)", "GET", get_revoked, None, 8, "REVOKED", True),
        ("POST good (cached)", "POST", OCSP_PATH, post_body, 8, "GOOD", True),
        ("POST good + nonce (signed per request)", "POST", OCSP_PATH, nonce_body, 8, "GOOD", False),
    ]
    ours = our_server(data_dir, work / "ours.log").start()
    floor: Server | None = None
    try:
        captured = {}
        scripts: dict[str, Path] = {}
        for label, method, path, body, _conns, expect, _target in cells:
            fetch(ours.port, method, path, body)  # the first answer may be signed; then cached
            status, headers, data = fetch(ours.port, method, path, body)
            if not status.startswith("200") or _status_of(data) != expect:
                raise RuntimeError(f"{label}: unexpected answer {status} {_status_of(data)}")
            key = f"{method} {path}"
            if key not in captured:
                captured[key] = {
                    "status": status,
                    "headers": headers,
                    "body": base64.b64encode(data).decode("ascii"),
                }
                section.add(f"- {label}: answer of {len(data):,} bytes captured for the floor")
            script = work / f"{label.split()[0]}-{len(scripts)}.lua"
            script.write_text(get_script() if body is None else post_script(body))
            scripts[label] = script
        # The nonce answer differs per request in ours; the floor returns one captured copy.
        responses = work / "responses.json"
        responses.write_text(json.dumps(captured))
        floor = floor_server(responses, work / "floor.log").start()
        servers = {"ours": ours, "floor": floor}
        progress("revocation: warming up")
        for server in servers.values():
            for label, _m, path, _b, _c, _e, _t in cells:
                run_wrk(
                    f"http://{HOST}:{server.port}{path}", scripts[label], connections=2, seconds=1
                )
        results: dict[tuple[int, str], list[LoadResult]] = {}
        for rep in range(plan.reps):
            for index, (label, _m, path, _b, conns, _e, _t) in enumerate(cells):
                order = ["ours", "floor"] if rep % 2 == 0 else ["floor", "ours"]
                progress(f"revocation: rep {rep + 1}/{plan.reps} {label} c={conns}")
                for name in order:
                    url = f"http://{HOST}:{servers[name].port}{path}"
                    results.setdefault((index, name), []).append(
                        run_wrk(url, scripts[label], connections=conns, seconds=plan.seconds)
                    )
        memory = ours.worker_memory()
    finally:
        ours.stop()
        if floor is not None:
            floor.stop()
    rows = []
    for index, (label, _m, _p, _b, conns, _e, targeted) in enumerate(cells):
        mine, base = results[(index, "ours")], results[(index, "floor")]
        ratios = [ratio(a.rate, b.rate) for a, b in zip(mine, base, strict=True)]
        value = median(ratios)
        rows.append(
            [
                label,
                str(conns),
                f"{fmt(median([r.rate for r in mine]))} ({spread([r.rate for r in mine])})",
                f"{fmt(median([r.rate for r in base]))} ({spread([r.rate for r in base])})",
                f"**{fmt(value, 2)}** ({spread(ratios)})",
                f"≥ {TARGET}" if targeted else "-",
                verdict(value, TARGET) if targeted else "",
                f"{fmt(median([r.p50_ms for r in mine]))} / "
                f"{fmt(median([r.p50_ms for r in base]))}",
                f"{sum(r.errors for r in mine)} / {sum(r.errors for r in base)}",
            ]
        )
    section.add(
        "",
        f"OCSP: {plan.reps} repetition(s) of {plan.seconds:.0f} s per cell; wrk and both "
        "servers share the machine's cores.",
        "",
        *table(
            [
                "request",
                "conns",
                "ours req/s (min–max)",
                "floor req/s (min–max)",
                "ours / floor",
                "target",
                "",
                "p50 ms ours / floor",
                "errors ours / floor",
            ],
            rows,
        ),
        "",
        "Worker RSS after the runs: "
        + ", ".join(f"{m.rss:.0f} MiB (peak {m.peak:.0f})" for m in memory.values()),
        "",
        *in_process_ocsp(data_dir, get_good, post_body, nonce_body, 300 if plan.quick else 2000),
    )
    del password_file


def in_process_ocsp(
    data_dir: Path, get_path: str, post_body: bytes, nonce_body: bytes, calls: int
) -> list[str]:
    """Our OCSP endpoint called directly (no HTTP server): microseconds per answer."""
    from werkzeug.test import EnvironBuilder

    from pki_soap.wsgi import make_app

    app = make_app(data_dir, public_url="http://127.0.0.1:1", portal=False)

    def call(environ: dict[str, object]) -> bytes:
        seen: list[str] = []
        data = b"".join(app(environ, lambda status, headers, exc_info=None: seen.append(status)))  # type: ignore[arg-type]
        if seen != ["200 OK"]:
            raise RuntimeError(f"in-process OCSP call answered {seen}")
        return data

    rows = []
    for label, method, path, body in (
        ("GET good (cached)", "GET", get_path, None),
        ("POST good (cached)", "POST", OCSP_PATH, post_body),
        ("POST good + nonce (signed)", "POST", OCSP_PATH, nonce_body),
    ):
        environs = [
            EnvironBuilder(
                path=path,
                method=method,
                data=body,
                headers=[("Content-Type", OCSP_CONTENT_TYPE)] if body else [],
            ).get_environ()
            for _ in range(calls + 20)
        ]
        for environ in environs[:20]:
            call(environ)
        started = time.perf_counter()
        for environ in environs[20:]:
            call(environ)
        rows.append([label, f"{(time.perf_counter() - started) / calls * 1e6:.0f}"])
    return [
        "Our OCSP endpoint called in-process (no HTTP server, no load generator):",
        "",
        *table(["request", "µs per answer"], rows),
    ]


# -- CRL at scale and revoke latency ---------------------------------------------------------------


def seed_revocations(data_dir: Path, numbers: range) -> None:
    """Record every number in ``numbers`` as revoked (by SQL, reasons in turn)."""
    with Store.open(data_dir) as store:
        issuer = current_issuer(store)
    assert issuer is not None
    reasons = [r.value for r in Reason if r is not Reason.REMOVE_FROM_CRL]
    now = datetime.datetime.now(datetime.UTC)
    revoked = now.isoformat(timespec="microseconds")
    not_after = (now + datetime.timedelta(days=365)).isoformat(timespec="microseconds")
    conn = sqlite3.connect(data_dir / DATABASE_NAME, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO revocations (issuer, number, revoked, reason, revoked_by, not_after)"
            " VALUES (?, ?, ?, ?, 'bench', ?)",
            ((issuer, n, revoked, reasons[n % len(reasons)], not_after) for n in numbers),
        )
        conn.execute(
            "INSERT INTO crl_state (issuer, revision) VALUES (?, 1)"
            " ON CONFLICT (issuer) DO UPDATE SET revision = revision + 1",
            (issuer,),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def timed_command(*args: str) -> float:
    """Wall time of ``server_app.py ARGS`` as a new process.

    Raises:
        RuntimeError: the command failed.
    """
    started = time.perf_counter()
    done = subprocess.run(
        [PYTHON, str(REPO / "server_app.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"server_app.py {args[0]}: exit {done.returncode}: {done.stderr[-400:]}")
    return elapsed


def floor_crl(data_dir: Path, count: int) -> float:
    """The same CRL built and signed by a bare cryptography loop from a list in memory."""
    ca_dir = data_dir / seeding.CA_DIRECTORY
    key = serialization.load_pem_private_key(
        (ca_dir / f"{seeding.CA_ROOT}.key").read_bytes(), seeding.CA_PASSWORD
    )
    ca = x509.load_pem_x509_certificate((ca_dir / f"{seeding.CA_ROOT}.cer").read_bytes())
    reasons = [
        [x509.Extension(CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(r.flag))]
        if r.flag is not None
        else []
        for r in Reason
        if r is not Reason.REMOVE_FROM_CRL
    ]
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    records = [(n, now, reasons[n % len(reasons)]) for n in range(1, count + 1)]
    started = time.perf_counter()
    entries = [
        x509.RevokedCertificateBuilder(number, when, extensions).build()
        for number, when, extensions in records
    ]
    crl = (
        x509.CertificateRevocationListBuilder(revoked_certificates=entries)
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=30))
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    crl.public_bytes(serialization.Encoding.DER)
    return time.perf_counter() - started


def python_start() -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", "pass"], check=True)
    return time.perf_counter() - started


def crl_and_revoke_section(plan: Plan, section: Section) -> None:
    work = plan.work / "revocation-crl"
    work.mkdir(parents=True)
    reps = 1 if plan.quick else 3
    rows: list[list[str]] = []
    latency_rows: list[list[str]] = []
    for scale in (0, CRL_SCALE):
        data_dir = work / f"scale-{scale}"
        progress(f"revocation: seeding {scale:,} revoked certificates")
        password_file = seeding.configure_ca(data_dir)
        sample = seeding.issue_owned(data_dir, seeding.cached_csrs(KeyType.RSA2048, 1))
        with Store.open(data_dir) as store:
            issued = store.certificate(sample[0])
        assert issued is not None
        total = scale + SPARE
        seeding.seed_certificates(data_dir, total, issued.contents, issued.subject)
        seed_revocations(data_dir, range(SPARE + 1, total + 1))
        password = ["--password-file", str(password_file), "--data-dir", str(data_dir)]
        progress(f"revocation: crl and revoke at {scale:,}")
        crl_times = [timed_command("crl", *password) for _ in range(reps)]
        with CAServer(Store.open(data_dir), data_dir, None) as server:
            key = server.authority().private_key(seeding.CA_PASSWORD)
            revocations: Revocations = server.revocations()
            engine_times, read_times = [], []
            for _ in range(reps):
                started = time.perf_counter()
                signed = revocations.sign_crl(key)
                engine_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                server.store.crl_records(revocations.issuer, signed.this_update)
                read_times.append(time.perf_counter() - started)
            pem_size = len(signed.pem)
            numbers = iter(range(1, SPARE + 1))
            revoke_process = [
                timed_command("revoke", str(next(numbers)), "--yes", *password) for _ in range(reps)
            ]
            revoke_engine = []
            for _ in range(reps):
                started = time.perf_counter()
                server.revoke(next(numbers), key=key, revoked_by="bench")
                revoke_engine.append(time.perf_counter() - started)
            revoked_now = server.store.count_revocations(revocations.issuer)
        floor = [floor_crl(data_dir, max(scale, 1)) for _ in range(reps)] if scale else []
        rows.append(
            [
                f"{scale:,}",
                f"{fmt(median(crl_times))} s ({spread(crl_times)})",
                f"{fmt(median(engine_times))} s ({spread(engine_times)})",
                f"{fmt(median(read_times) * 1000)} ms",
                f"{fmt(median(floor))} s" if floor else "-",
                f"**{fmt(ratio(median(floor), median(engine_times)), 2)}**" if floor else "-",
                f"{len(signed.der):,}",
                f"{pem_size:,}",
            ]
        )
        latency_rows.append(
            [
                f"{scale:,} → {revoked_now:,}",
                f"{fmt(median(revoke_process))} s ({spread(revoke_process)})",
                f"{fmt(median(revoke_engine) * 1000)} ms "
                f"({spread([t * 1000 for t in revoke_engine])})",
            ]
        )
    start = median([python_start() for _ in range(3)])
    section.add(
        "",
        "CRL generation (`server_app.py crl` as a process: start, decrypt the CA key, number, "
        "read, build, sign, store; the engine's `sign_crl` in-process; the floor: the same "
        "entries built and signed from a list in memory):",
        "",
        *table(
            [
                "revoked on the CRL",
                "`crl` command",
                "engine sign_crl",
                "of which reading the records",
                "floor",
                "floor / engine",
                "DER bytes",
                "PEM bytes",
            ],
            rows,
        ),
        "",
        "Revoke latency (the record, the pre-signed OCSP answer and a new CRL of every "
        f"revocation; a process start alone, `python -c pass`, takes {fmt(start * 1000)} ms):",
        "",
        *table(
            ["revoked before → after", "`revoke --yes` command", "CAServer.revoke in-process"],
            latency_rows,
        ),
    )


def run(plan: Plan) -> Section:
    """Measure and return the section of the report."""
    section = Section("5. Revocation: OCSP against the floor, CRL at 100,000, revoke latency")
    ocsp_section(plan, section)
    crl_and_revoke_section(plan, section)
    return section
