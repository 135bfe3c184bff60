"""Benchmark 2: ListCertificates as the store grows; worker memory; ListAll at full size.

Three stores (100, 10,000 and 100,000 issued certificates, seeded by SQL; the same host/instance
owns 5 of them in each) are served at once by three ``server_app.py serve`` instances, and each
repetition measures ListMy latency on all three in turn (wrk, one connection).  Then ListAll is
fetched from each with a streaming client: time to first byte, total time, size, and the
workers' memory high-water mark before and after.
"""

from __future__ import annotations

import http.client
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import envelopes
import seeding
from load import LoadResult, run_wrk, static_script
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
from servers import HOST, SERVICE_PATH, Server, our_server

from pki_soap.ca.keys import KeyType
from pki_soap.store import Store

LATENCY_TARGET = 1.5
RSS_TARGET_MIB = 150.0


@dataclass
class Fetch:
    """One streamed ListAll answer."""

    status: int
    first_byte: float
    total: float
    size: int
    framing: str  # "Content-Length" or "chunked"
    rows: int


def fetch_list_all(port: int) -> Fetch:
    """POST ListAll and read the answer in blocks (never holding it whole on this side)."""
    body = envelopes.list_certificates().encode("utf-8")
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=300)
    conn.request(
        "POST",
        SERVICE_PATH,
        body=body,
        headers={
            "Content-Type": envelopes.CONTENT_TYPE,
            "SOAPAction": envelopes.action("ListCertificates"),
        },
    )
    response = conn.getresponse()
    framing = "chunked" if response.getheader("Transfer-Encoding") else "Content-Length"
    first = response.read(1)
    first_byte = time.perf_counter() - started
    marker = b"<ListAll "
    size, rows, tail = len(first), 0, first
    while block := response.read(256 * 1024):
        size += len(block)
        # Keep one byte less than the marker from the last block: a split marker counts once.
        window = tail[-(len(marker) - 1) :] + block
        rows += window.count(marker)
        tail = block
    total = time.perf_counter() - started
    conn.close()
    return Fetch(response.status, first_byte, total, size, framing, rows)


def query_costs(data_dir: Path) -> tuple[float, float]:
    """Seconds to fetch every ListAll row with all columns (what the Store selects) vs 4 columns."""
    conn = sqlite3.connect(data_dir / "pki.sqlite3")
    try:
        timings = []
        for columns in (
            "number, hostname, instance, filename, contents, subject, usage, issued, not_after",
            "number, hostname, instance, filename",
        ):
            started = time.perf_counter()
            for _row in conn.execute(
                f"SELECT {columns} FROM certificates WHERE number <> 0 ORDER BY number"
            ):
                pass
            timings.append(time.perf_counter() - started)
    finally:
        conn.close()
    return timings[0], timings[1]


def profile_list_all(data_dir: Path) -> list[str]:
    """cProfile one ListAll through the WSGI app in-process: top functions by own time."""
    import cProfile
    import io
    import pstats

    from soap_throughput import _call, _environ

    from pki_soap.wsgi import make_app

    app = make_app(data_dir, public_url="http://127.0.0.1:1", portal=False)
    environ = _environ("ListCertificates", envelopes.list_certificates())
    profiler = cProfile.Profile()
    profiler.enable()
    _call(app, environ)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(10)
    top = [line for line in out.getvalue().splitlines() if line.strip()][-11:]
    return ["```", *(local_paths_removed(line) for line in top), "```"]


def run(plan: Plan) -> Section:
    """Measure and return the section of the report."""
    section = Section("2. Scale: ListCertificates as the store grows")
    work = plan.work / "scale"
    work.mkdir(parents=True)
    csrs = seeding.cached_csrs(KeyType.RSA2048, 1)
    hostname, instance = seeding.OWNER
    servers: dict[int, Server] = {}
    script = work / "ListMy.lua"
    script.write_text(
        static_script("ListCertificates", envelopes.list_certificates(hostname, instance))
    )
    try:
        for total in plan.scales:
            data_dir = work / f"store-{total}"
            seeding.configure_ca(data_dir)
            # One certificate through the engine: the PEM every seeded row carries.
            number = seeding.issue_owned(data_dir, csrs, ("template.example.com", "IRIS"))[0]
            with Store.open(data_dir) as store:
                template = store.certificate(number)
            assert template is not None
            progress(f"scale: seeding {total:,} certificates")
            begun = time.monotonic()
            seeding.seed_certificates(data_dir, total, template.contents, template.subject)
            with Store.open(data_dir) as store:
                have = store.count_certificates()
                owned = len(list(store.certificates(hostname, instance)))
            section.add(
                f"- store of {have:,} certificates ({owned} for {hostname}/{instance}), "
                f"database {(data_dir / 'pki.sqlite3').stat().st_size / 2**20:.0f} MiB, "
                f"seeded in {time.monotonic() - begun:.1f} s"
            )
            servers[total] = our_server(data_dir, work / f"server-{total}.log").start()
        for server in servers.values():
            run_wrk(server.url, script, connections=1, seconds=1)  # warm-up
        latency: dict[int, list[LoadResult]] = {total: [] for total in servers}
        for rep in range(plan.reps):
            order = list(servers) if rep % 2 == 0 else list(reversed(servers))
            for total in order:
                progress(f"scale: rep {rep + 1}/{plan.reps} ListMy at {total:,}")
                result = run_wrk(servers[total].url, script, connections=1, seconds=plan.seconds)
                latency[total].append(result)
        biggest, smallest = max(servers), min(servers)
        before = servers[biggest].worker_memory()
        fetches: dict[int, list[Fetch]] = {total: [] for total in servers}
        for rep in range(max(1, plan.reps)):
            for total, server in servers.items():
                progress(f"scale: rep {rep + 1} ListAll at {total:,}")
                fetches[total].append(fetch_list_all(server.port))
        after_memory = servers[biggest].worker_memory()
        every_column, four_columns = query_costs(work / f"store-{biggest}")
        list_all_profile = profile_list_all(work / f"store-{biggest}")
    finally:
        for server in servers.values():
            server.stop()

    rows = []
    base = [r.p50_ms for r in latency[smallest]]
    for total in servers:
        p50 = [r.p50_ms for r in latency[total]]
        rows.append(
            [
                f"{total:,}",
                f"{fmt(median(p50))} ({spread(p50)})",
                f"{fmt(median([r.p99_ms for r in latency[total]]))}",
                f"{fmt(median([r.rate for r in latency[total]]))}",
                f"{fmt(ratio(median(p50), median(base)), 2)}",
                f"{sum(r.errors for r in latency[total])}",
            ]
        )
    growth = ratio(median([r.p50_ms for r in latency[biggest]]), median(base))
    section.add(
        "",
        f"ListMy (5 rows), wrk with 1 connection, {plan.reps} × {plan.seconds:.0f} s per store:",
        "",
        *table(
            [
                "certificates",
                "p50 ms (min–max)",
                "p99 ms",
                "req/s",
                "p50 / p50 at smallest",
                "errors",
            ],
            rows,
        ),
        "",
        f"- Latency at {biggest:,} / at {smallest:,}: **{fmt(growth, 2)}** "
        f"(target ≤ {LATENCY_TARGET}: {verdict(growth, LATENCY_TARGET, at_least=False)})",
    )
    rss = max((m.rss for m in before.values()), default=float("nan"))
    section.add(
        f"- Worker RSS at {biggest:,} after the ListMy runs: "
        + ", ".join(f"{m.rss:.0f} MiB" for m in before.values())
        + f" (target ≤ {RSS_TARGET_MIB:.0f} MiB per worker: "
        f"{verdict(rss, RSS_TARGET_MIB, at_least=False)})",
    )
    rows = []
    for total, items in fetches.items():
        rows.append(
            [
                f"{total:,}",
                f"{fmt(median([f.total for f in items]))} ({spread([f.total for f in items])})",
                f"{fmt(median([f.first_byte for f in items]))}",
                f"{items[0].size / 2**20:.2f}",
                f"{items[0].rows:,}",
                items[0].framing,
                str(items[0].status),
            ]
        )
    grown = {
        pid: (after_memory[pid].peak, before[pid].rss if pid in before else float("nan"))
        for pid in after_memory
    }
    size_mib = fetches[biggest][0].size / 2**20
    worst = max(grown.items(), key=lambda item: item[1][0] - item[1][1], default=None)
    section.add(
        "",
        "ListAll (every certificate, 4 columns), streamed by a Python client:",
        "",
        *table(
            [
                "certificates",
                "total s (min–max)",
                "first byte s",
                "answer MiB",
                "rows",
                "framing",
                "HTTP",
            ],
            rows,
        ),
        "",
        f"- Workers at {biggest:,}, peak RSS after ListAll: "
        + ", ".join(f"{peak:.0f} MiB (was {was:.0f})" for peak, was in grown.values()),
    )
    if worst is not None:
        peak, was = worst[1]
        extra = peak - was
        section.add(
            f"- Memory the ListAll answer cost its worker: **{extra:.0f} MiB** for a "
            f"{size_mib:.1f} MiB answer ({fmt(ratio(extra, size_mib), 2)} × the answer; "
            f"held twice would be ≥ 2; spooled or streamed, well under 1 ×)."
        )
    section.add(
        f"- Reading the {biggest:,} ListAll rows straight from SQLite: {fmt(every_column)} s "
        f"with every column (what `Store.certificates` selects, PEM included) vs "
        f"{fmt(four_columns)} s with the 4 columns ListAll shows.",
        "",
        f"ListAll at {biggest:,} through the WSGI app in-process, top functions by own time "
        "(cProfile):",
        "",
        *list_all_profile,
    )
    return section
