"""Benchmark 5: slow and idle clients against each worker setup, and what the setup costs.

For each gunicorn worker class ``serve`` offers (``sync``: the setup before issue 12;
``gthread``: a candidate; ``gevent``: the default), on the same data:

* **under attack**: 50 idle sockets (connect, send nothing), 50 slowloris sockets (a header
  line every second) and 10 slow bodies (a byte every second) from loopback, then 5
  GetCertificate calls in turn, each on a fresh connection with a client timeout; the
  figure is each call's latency, or "timed out";
* **throughput**: GetCertificate and ListCertificates with wrk (8 connections), ours / the
  floor (bench/floor_app.py) served with the *same* worker setup, median of repetitions.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import threading
import time

import envelopes
import seeding
from load import LoadResult, run_wrk, static_script
from report import Plan, Section, fmt, median, progress, ratio, spread, table, verdict
from servers import HOST, SERVICE_PATH, floor_server, our_server
from soap_throughput import post

from pki_soap.ca.keys import KeyType

SETUPS = ("sync", "gthread", "gevent")
METHODS = ("GetCertificate", "ListCertificates")
CONNECTIONS = 8
TARGET = 0.5
IDLE, SLOWLORIS, SLOW_BODIES, CALLS = 50, 50, 10, 5


class _Attack:
    """The attackers, fed by one thread every second until closed (at most 120 s)."""

    def __init__(self, port: int) -> None:
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._port = port

    def __enter__(self) -> _Attack:
        head = f"POST {SERVICE_PATH} HTTP/1.1\r\nHost: {HOST}\r\n"
        self.idle = [self._open() for _ in range(IDLE)]
        self.slowloris = [self._open(head.encode()) for _ in range(SLOWLORIS)]
        body_head = head + (
            f"SOAPAction: {envelopes.action('GetCertificate')}\r\n"
            "Content-Type: text/xml\r\nContent-Length: 5000\r\n\r\n"
        )
        self.bodies = [self._open(body_head.encode()) for _ in range(SLOW_BODIES)]
        threading.Thread(target=self._trickle, daemon=True).start()
        return self

    def _open(self, first: bytes = b"") -> socket.socket:
        sock = socket.create_connection((HOST, self._port), timeout=5)
        if first:
            sock.sendall(first)
        self.sockets.append(sock)
        return sock

    def _trickle(self) -> None:
        started, line = time.monotonic(), 0
        while not self._stop.wait(1.0) and time.monotonic() - started < 120:
            line += 1
            for sock, data in [(s, f"X-{line}: a\r\n".encode()) for s in self.slowloris] + [
                (s, b" ") for s in self.bodies
            ]:
                with contextlib.suppress(OSError):  # a socket the server closed
                    sock.sendall(data)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for sock in self.sockets:
            sock.close()


def _legit_calls(port: int, body: str, timeout: float) -> list[float | None]:
    """Latency of each of CALLS GetCertificate calls (None: no answer within ``timeout``)."""
    latencies: list[float | None] = []
    for _ in range(CALLS):
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
            conn.request(
                "POST",
                SERVICE_PATH,
                body=body.encode(),
                headers={
                    "Content-Type": envelopes.CONTENT_TYPE,
                    "SOAPAction": envelopes.action("GetCertificate"),
                },
            )
            answer = conn.getresponse()
            answer.read()
            conn.close()
            latencies.append(time.monotonic() - started if answer.status == 200 else None)
        except OSError:
            latencies.append(None)
    return latencies


def _shown(latencies: list[float | None], timeout: float) -> str:
    answered = [value for value in latencies if value is not None]
    parts = [f"{value * 1000:.0f} ms" if value is not None else "timed out" for value in latencies]
    return (
        f"{len(answered)}/{len(latencies)} answered ({', '.join(parts)}; timeout {timeout:.0f} s)"
    )


def run(plan: Plan) -> Section:
    """Measure each worker setup; return the section of the report."""
    section = Section("7. Slow clients and worker setups")
    work = plan.work / "slow"
    work.mkdir(parents=True)
    data_dir = work / "data"
    seeding.configure_ca(data_dir)
    owned = seeding.issue_owned(data_dir, seeding.cached_csrs(KeyType.RSA2048, 5))
    hostname, instance = seeding.OWNER
    bodies = {
        "GetCertificate": envelopes.get_certificate(owned[0]),
        "ListCertificates": envelopes.list_certificates(hostname, instance),
    }
    scripts = {}
    for method, body in bodies.items():
        scripts[method] = work / f"{method}.lua"
        scripts[method].write_text(static_script(method, body))
    timeout = 5.0 if plan.quick else 10.0
    rows = []
    for setup in SETUPS:
        progress(f"slow clients: {setup}")
        ours = our_server(data_dir, work / f"ours-{setup}.log", worker_class=setup).start()
        floor = None
        try:
            captured = {}
            for method, body in bodies.items():
                status, headers, data = post(ours, method, body)
                captured[envelopes.action(method)] = {
                    "status": status,
                    "headers": headers,
                    "body": base64.b64encode(data).decode("ascii"),
                }
            responses = work / f"responses-{setup}.json"
            responses.write_text(json.dumps(captured))
            floor = floor_server(responses, work / f"floor-{setup}.log", worker_class=setup)
            floor.start()
            for server in (ours, floor):
                for script in scripts.values():
                    run_wrk(server.url, script, connections=2, seconds=1, args=["warm"])
            results: dict[tuple[str, str], list[LoadResult]] = {}
            cpu: dict[tuple[str, str], list[float]] = {}
            for rep in range(plan.reps):
                for method, script in scripts.items():
                    order = [("ours", ours), ("floor", floor)]
                    for name, server in order if rep % 2 == 0 else order[::-1]:
                        before = server.cpu()
                        measured = run_wrk(
                            server.url, script, connections=CONNECTIONS, seconds=plan.seconds
                        )
                        per_request = (server.cpu() - before) / max(measured.requests, 1)
                        results.setdefault((method, name), []).append(measured)
                        cpu.setdefault((method, name), []).append(per_request)
            with _Attack(ours.port):
                time.sleep(2.0)
                latencies = _legit_calls(ours.port, bodies["GetCertificate"], timeout)
        finally:
            ours.stop()
            if floor is not None:
                floor.stop()
        cells = [setup]
        for method in METHODS:
            mine, base = results[(method, "ours")], results[(method, "floor")]
            ratios = [ratio(a.rate, b.rate) for a, b in zip(mine, base, strict=True)]
            value = median(ratios)
            # CPU per request: the servers' own CPU time, hardly moved by other load.
            cpu_ours, cpu_floor = median(cpu[(method, "ours")]), median(cpu[(method, "floor")])
            cells.append(
                f"**{fmt(value, 2)}** ({spread(ratios)}) {verdict(value, TARGET)}; "
                f"{fmt(median([r.rate for r in mine]))} / {fmt(median([r.rate for r in base]))}"
                f" req/s; CPU {fmt(ratio(cpu_floor, cpu_ours), 2)} "
                f"({fmt(cpu_ours * 1e6)} / {fmt(cpu_floor * 1e6)} µs)"
            )
        cells.append(_shown(latencies, timeout))
        rows.append(cells)
    section.add(
        f"{plan.reps} repetition(s) of {plan.seconds:.0f} s per cell, {CONNECTIONS} connections; "
        f"attack: {IDLE} idle + {SLOWLORIS} slowloris + {SLOW_BODIES} slow-body sockets, then "
        f"{CALLS} GetCertificate calls in turn.",
        "",
        *table(
            [
                "worker setup",
                f"GetCertificate ours / floor (target ≥ {TARGET}); req/s",
                f"ListCertificates ours / floor (target ≥ {TARGET}); req/s",
                "legitimate calls under attack",
            ],
            rows,
        ),
    )
    return section
