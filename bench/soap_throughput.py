"""Benchmarks 1 and 6: SOAP throughput of the three web methods against a floor, with wrk.

Our server (``server_app.py serve``, gunicorn sync workers = cores) and the floor (the same
gunicorn settings around an app that returns bytes captured from our server) run side by
side; each repetition runs every (method, connections) cell on both, alternating which goes
first.  The figure is the median over repetitions of ours / floor.  Benchmark 6 does the same
over HTTPS: ``serve --tls`` and the floor serving the same certificate with the same TLS
settings.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import envelopes
import seeding
from load import UNIQUE, LoadResult, run_wrk, static_script, unique_script
from report import (
    Plan,
    Section,
    fmt,
    local_paths_removed,
    median,
    progress,
    ratio,
    spread,
    table,
    verdict,
)
from servers import SERVICE_PATH, Server, Tls, floor_server, our_server

from pki_soap.ca.keys import KeyType
from pki_soap.server.tls import ServerFiles
from pki_soap.store import Store

CONNECTIONS = (1, 8)
TARGETS = {"GetCertificate": 0.5, "ListCertificates": 0.5, "SubmitCSR": 0.3}
_HOP_BY_HOP = {"connection", "date", "server", "transfer-encoding", "keep-alive"}


def post(server: Server, method: str, body: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """POST a SOAP ``body`` to our endpoint; (status line, end-to-end headers, body bytes)."""
    conn = server.connection()
    conn.request(
        "POST",
        SERVICE_PATH,
        body=body.encode("utf-8"),
        headers={"Content-Type": envelopes.CONTENT_TYPE, "SOAPAction": envelopes.action(method)},
    )
    response = conn.getresponse()
    data = response.read()
    conn.close()
    headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
    return f"{response.status} {response.reason}", headers, data


def _check(method: str, status: str, data: bytes, expect: bytes, count: int = 1) -> None:
    if not status.startswith("200") or data.count(expect) != count:
        raise RuntimeError(f"{method}: unexpected answer {status}: {data[:300]!r}")


def _environ(method: str, body: str) -> dict[str, object]:
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(
        path=SERVICE_PATH,
        method="POST",
        data=body.encode("utf-8"),
        headers=[
            ("Content-Type", envelopes.CONTENT_TYPE),
            ("SOAPAction", envelopes.action(method)),
        ],
    ).get_environ()


def _call(app: object, environ: dict[str, object]) -> bytes:
    seen: list[str] = []

    def start_response(status: str, headers: object, exc_info: object = None) -> None:
        seen.append(status)

    data = b"".join(app(environ, start_response))  # type: ignore[operator]
    if not seen or not seen[-1].startswith("200"):
        raise RuntimeError(f"in-process call answered {seen}: {data[:400]!r}")
    return data


def profile_in_process(
    data_dir: Path,
    bodies: dict[str, str],
    template: str,
    calls: int,
    floor_ms: dict[str, float],
) -> list[str]:
    """Time the WSGI app itself (no HTTP, no gunicorn) per method, and profile SubmitCSR."""
    import cProfile
    import io
    import pstats
    import time

    from pki_soap.server.tasks.submit import SubmissionLimits
    from pki_soap.wsgi import make_app

    # As the servers run here: without submission limits (bench/servers.py says why).
    unlimited = SubmissionLimits(per_address=0, pending=0, pending_per_host=0)
    app = make_app(data_dir, public_url="http://127.0.0.1:1", portal=False, limits=unlimited)
    rows = []
    requests = dict(bodies)
    for method, body in [*requests.items(), ("SubmitCSR", None)]:
        environs = [
            _environ(method, body if body is not None else template.replace(UNIQUE, f"inproc_{i}"))
            for i in range(calls + 10)
        ]
        for environ in environs[:10]:  # warm-up
            _call(app, environ)
        started = time.perf_counter()
        for environ in environs[10:]:
            _call(app, environ)
        own = (time.perf_counter() - started) / calls * 1000
        floor = floor_ms.get(method, float("nan"))
        rows.append([method, f"{own:.2f}", f"{floor:.2f}", f"{ratio(floor, floor + own):.2f}"])
    profiles: list[str] = []
    for method, body in [*requests.items(), ("SubmitCSR", None)]:
        environs = [
            _environ(
                method, body if body is not None else template.replace(UNIQUE, f"profiled_{i}")
            )
            for i in range(calls)
        ]
        profiler = cProfile.Profile()
        profiler.enable()
        for environ in environs:
            _call(app, environ)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(10)
        top = [line for line in out.getvalue().splitlines() if line.strip()][-11:]
        profiles += [
            "",
            f"{method} in-process, {calls} calls, top functions by own time (cProfile):",
            "",
            "```",
            *(local_paths_removed(line) for line in top),
            "```",
        ]
    return [
        *table(
            [
                "method",
                "our app alone, ms per call (in-process)",
                "floor ms per request (1 conn)",
                "best ratio if HTTP cost stayed the floor's",
            ],
            rows,
        ),
        *profiles,
    ]


def run(plan: Plan) -> Section:
    """Benchmark 1 (plain HTTP): measure and return the section of the report."""
    return _throughput(plan, tls=False)


def run_tls(plan: Plan) -> Section:
    """Benchmark 6 (HTTPS on both servers): measure and return the section of the report."""
    return _throughput(plan, tls=True)


def _throughput(plan: Plan, *, tls: bool) -> Section:
    label = "tls" if tls else "throughput"
    section = Section(
        "6. SOAP throughput over TLS (wrk) against the floor over the same TLS"
        if tls
        else "1. SOAP throughput (wrk) against the floor"
    )
    work = plan.work / label
    work.mkdir(parents=True)
    data_dir = work / "data"
    progress(f"{label}: configuring a CA and issuing 5 certificates")
    password_file = seeding.configure_ca(data_dir)
    https: Tls | None = None
    if tls:
        files = ServerFiles.of(data_dir)
        cafile = data_dir / seeding.CA_DIRECTORY / f"{seeding.CA_ROOT}.cer"
        https = Tls(password_file, cafile, files.cer, files.key)
    csr = seeding.cached_csrs(KeyType.RSA2048, 6)
    owned = seeding.issue_owned(data_dir, csr[:5])
    hostname, instance = seeding.OWNER
    submit_template = envelopes.submit_csr(
        name=f"bench-submit.example.com:BENCH:{UNIQUE}",
        hostname="bench-submit.example.com",
        instance="BENCH",
        filename=UNIQUE,
        contents=csr[5],
    )
    bodies = {
        "GetCertificate": envelopes.get_certificate(owned[0]),
        "ListCertificates": envelopes.list_certificates(hostname, instance),
    }
    scripts = {}
    for method, body in bodies.items():
        scripts[method] = work / f"{method}.lua"
        scripts[method].write_text(static_script(method, body))
    scripts["SubmitCSR"] = work / "SubmitCSR.lua"
    scripts["SubmitCSR"].write_text(unique_script("SubmitCSR", submit_template))

    # With TLS, ours issues its certificate at start; the floor then serves the same files.
    ours = our_server(data_dir, work / "ours.log", tls=https, options=plan.serve_options).start()
    floor: Server | None = None
    try:
        captured = {}
        for method, body in [
            *bodies.items(),
            ("SubmitCSR", submit_template.replace(UNIQUE, "capture_0")),
        ]:
            status, headers, data = post(ours, method, body)
            expect = {
                "GetCertificate": b"-----BEGIN CERTIFICATE-----",
                "ListCertificates": b"<Number>",
                "SubmitCSR": b"successfully submitted",
            }[method]
            _check(method, status, data, expect, 5 if method == "ListCertificates" else 1)
            captured[envelopes.action(method)] = {
                "status": status,
                "headers": headers,
                "body": base64.b64encode(data).decode("ascii"),
            }
            section.add(f"- {method}: answer of {len(data):,} bytes captured for the floor")
        responses = work / "responses.json"
        responses.write_text(json.dumps(captured))
        floor = floor_server(responses, work / "floor.log", tls=https).start()
        servers = {"ours": ours, "floor": floor}
        progress(f"{label}: warming up")
        for name, server in servers.items():
            for script in scripts.values():
                run_wrk(server.url, script, connections=2, seconds=1, args=[f"w{name}"])
        results: dict[tuple[str, int, str], list[LoadResult]] = {}
        for rep in range(plan.reps):
            for method, script in scripts.items():
                for conns in CONNECTIONS:
                    order = ["ours", "floor"] if rep % 2 == 0 else ["floor", "ours"]
                    progress(f"{label}: rep {rep + 1}/{plan.reps} {method} c={conns}")
                    for name in order:
                        result = run_wrk(
                            servers[name].url,
                            script,
                            connections=conns,
                            seconds=plan.seconds,
                            args=[f"r{rep}{name[0]}{conns}"],
                        )
                        results.setdefault((method, conns, name), []).append(result)
        memory = ours.worker_memory()
        with Store.open(data_dir) as store:
            stored = store.count_requests()
    finally:
        ours.stop()
        if floor is not None:
            floor.stop()

    rows = []
    for method in scripts:
        for conns in CONNECTIONS:
            mine, base = results[(method, conns, "ours")], results[(method, conns, "floor")]
            ratios = [ratio(a.rate, b.rate) for a, b in zip(mine, base, strict=True)]
            value = median(ratios)
            rows.append(
                [
                    method,
                    str(conns),
                    f"{fmt(median([r.rate for r in mine]))} ({spread([r.rate for r in mine])})",
                    f"{fmt(median([r.rate for r in base]))} ({spread([r.rate for r in base])})",
                    f"**{fmt(value, 2)}** ({spread(ratios)})",
                    f"≥ {TARGETS[method]}",
                    verdict(value, TARGETS[method]),
                    f"{fmt(median([r.p50_ms for r in mine]))} / "
                    f"{fmt(median([r.p50_ms for r in base]))}",
                    f"{sum(r.errors for r in mine)} / {sum(r.errors for r in base)}",
                ]
            )
    section.add(
        "",
        f"{plan.reps} repetition(s) of {plan.seconds:.0f} s per cell; wrk and both servers "
        "share the machine's cores.",
        *(
            [
                "Both serve HTTPS with the same certificate (EC P-256, issued by `serve --tls`) "
                "and the same settings (`pki_soap.server.tls.gunicorn_settings`). Sync workers "
                "close each connection, so every request pays a full TLS handshake on both.",
            ]
            if tls
            else []
        ),
        "",
        *table(
            [
                "method",
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
        f"Pending requests in the store after the runs: {stored:,}; SubmitCSR answers "
        f"counted by wrk on ours: "
        f"{sum(r.requests for c in CONNECTIONS for r in results[('SubmitCSR', c, 'ours')]):,} "
        "(each accepted submission is one row, the rest are the warm-up's and the capture's; "
        "duplicates would have been faults).",
        "",
        "Worker RSS after the runs: "
        + ", ".join(f"{m.rss:.0f} MiB (peak {m.peak:.0f})" for m in memory.values()),
    )
    if tls:
        return section  # the application's own cost is benchmark 1's profile
    section.add(
        "",
        "Where our time goes: the WSGI app called directly (no HTTP server, no load "
        "generator), same data directory:",
        "",
        *profile_in_process(
            data_dir,
            bodies,
            submit_template,
            100 if plan.quick else 300,
            {
                method: 1000 / median([r.rate for r in results[(method, 1, "floor")]])
                for method in scripts
            },
        ),
    )
    return section
