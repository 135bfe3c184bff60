"""Benchmark 4: the client commands end to end, and where their time goes.

``client_app.py submit`` (key generation included) and ``client_app.py get`` run as real
processes against ``server_app.py serve`` on loopback; the floors are the bare interpreter
start (``python -c pass``) and, for one warm call, a raw ``http.client`` POST of the same
request.  A cProfile of each command splits its time into imports, key generation, the
WSDL load, the SOAP call and the rest.
"""

from __future__ import annotations

import cProfile  # noqa: F401 - the profiles run as `python -m cProfile`
import http.client
import pstats
import subprocess
import time
from pathlib import Path

import envelopes
import seeding
from report import Plan, Section, fmt, median, progress, ratio, spread, table
from servers import HOST, PYTHON, REPO, SERVICE_PATH, our_server

from pki_soap.ca.keys import KeyType
from pki_soap.client.soap_client import CAClient

CLIENT_HOST, CLIENT_INSTANCE = "bench-client.example.com", "BENCH"

# (label, file suffix, function name) summed from a profile; "~" marks built-ins.
_BUCKETS = (
    ("imports", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("key generation", "pki_soap/ca/keys.py", "generate_key"),
    ("CSR build", "pki_soap/ca/csr.py", "build_csr"),
    ("key + CSR files (fsync)", "pki_soap/files.py", "_write_atomically"),
    ("WSDL load (zeep client build)", "pki_soap/client/soap_client.py", "_build_service"),
    ("SOAP call (zeep request + HTTP)", "zeep/proxy.py", "__call__"),
    ("answer reading", "pki_soap/client/answers.py", "read_answer"),
    ("store open", "pki_soap/store/database.py", "open"),
    ("certificate file write", "pki_soap/client/fetching.py", "_save_certificate"),
)


def _client(data_dir: Path, *args: str, profile: Path | None = None) -> tuple[float, str]:
    """Run ``client_app.py --data-dir D ARGS``; (wall seconds, stdout).

    Raises:
        RuntimeError: the command failed.
    """
    command = [PYTHON]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += [str(REPO / "client_app.py"), "--data-dir", str(data_dir), *args]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"client_app.py {args[0]}: exit {done.returncode}: {done.stderr[-500:]}")
    return elapsed, done.stdout


def _buckets(profile: Path) -> list[list[str]]:
    stats = pstats.Stats(str(profile))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows, counted = [], 0.0
    for label, suffix, function in _BUCKETS:
        cum = sum(
            ct
            for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items()  # type: ignore[attr-defined]
            if name == function and file.endswith(suffix)
        )
        if cum:
            rows.append([label, f"{cum * 1000:.0f}", f"{cum / total * 100:.0f} %"])
            if label not in ("CSR build",):
                counted += cum
    rows.append(
        [
            "everything else",
            f"{(total - counted) * 1000:.0f}",
            f"{(total - counted) / total * 100:.0f} %",
        ]
    )
    rows.append(["**total (profiled)**", f"{total * 1000:.0f}", "100 %"])
    return rows


def import_costs(data_dir: Path, number: int, top: int = 10) -> list[list[str]]:
    """The imports of ``client_app.py get`` with the largest cumulative time (``-X importtime``).

    Rows nest (``zeep`` includes ``zeep.client``); the depth column says how deep each is.
    """
    done = subprocess.run(
        [
            PYTHON,
            "-X",
            "importtime",
            str(REPO / "client_app.py"),
            "--data-dir",
            str(data_dir),
            "get",
            str(number),
            "--force",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    found: list[tuple[int, int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|", 2)
        if cumulative.strip().isdigit():
            depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
            found.append((int(cumulative), depth, name.strip()))
    heaviest = sorted(found, reverse=True)[:top]
    return [[f"`{name}`", str(depth), f"{micros / 1000:.0f}"] for micros, depth, name in heaviest]


def _ms(seconds: list[float]) -> str:
    """Median milliseconds and the min–max of the repetitions."""
    return f"{fmt(median(seconds) * 1000)} ({spread([s * 1000 for s in seconds])})"


def _interpreter_start() -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", "pass"], check=True)
    return time.perf_counter() - started


def _raw_get(port: int, body: bytes) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request(
        "POST",
        SERVICE_PATH,
        body=body,
        headers={
            "Content-Type": envelopes.CONTENT_TYPE,
            "SOAPAction": envelopes.action("GetCertificate"),
        },
    )
    conn.getresponse().read()
    conn.close()
    return time.perf_counter() - started


def run(plan: Plan) -> Section:
    """Measure and return the section of the report."""
    section = Section("4. Client: submit and get end to end")
    work = plan.work / "client"
    work.mkdir(parents=True)
    server_dir, client_dir = work / "server", work / "client"
    seeding.configure_ca(server_dir)
    number = seeding.issue_owned(
        server_dir, seeding.cached_csrs(KeyType.RSA2048, 1), (CLIENT_HOST, CLIENT_INSTANCE)
    )[0]
    server = our_server(server_dir, work / "server.log").start()
    try:
        _client(
            client_dir,
            "configure",
            "--server",
            HOST,
            "--port",
            str(server.port),
            "--contact-name",
            "Bench Contact",
            "--hostname",
            CLIENT_HOST,
            "--instance",
            CLIENT_INSTANCE,
        )
        submit: dict[str, list[float]] = {"rsa2048": [], "ec256": []}
        get: list[float] = []
        start: list[float] = []
        for rep in range(plan.client_reps):
            progress(f"client: rep {rep + 1}/{plan.client_reps}")
            start.append(_interpreter_start())
            for kind in submit:
                seconds, out = _client(
                    client_dir,
                    "submit",
                    "--root",
                    f"bench_{kind}_{rep}",
                    "--key-type",
                    kind,
                    "--subject",
                    f"/O=pki-soap bench/CN=client-{rep}.example.com",
                )
                if "successfully submitted" not in out:
                    raise RuntimeError(f"submit said: {out!r}")
                submit[kind].append(seconds)
            seconds, _ = _client(client_dir, "get", str(number), "--force")
            get.append(seconds)
        progress("client: warm calls")
        client = CAClient(server.url, timeout=30)
        client.get_certificate(number)  # loads the WSDL once
        body = envelopes.get_certificate(number).encode()
        warm, raw = [], []
        for _ in range(30):
            began = time.perf_counter()
            client.get_certificate(number)
            warm.append(time.perf_counter() - began)
            raw.append(_raw_get(server.port, body))
        progress("client: profiles")
        submit_profile, get_profile = work / "submit.prof", work / "get.prof"
        _client(
            client_dir,
            "submit",
            "--root",
            "bench_profiled",
            "--subject",
            "/O=pki-soap bench/CN=profiled.example.com",
            profile=submit_profile,
        )
        _client(client_dir, "get", str(number), "--force", profile=get_profile)
        imports = import_costs(client_dir, number)
    finally:
        server.stop()
    ms = 1000.0
    section.add(
        f"{plan.client_reps} repetition(s); each command is a new process (as a user runs it).",
        "",
        *table(
            ["what", "median ms (min–max)"],
            [
                [
                    "`python -c pass` (interpreter start, the floor of any command)",
                    f"{fmt(median(start) * ms)} ({spread([s * ms for s in start])})",
                ],
                [
                    "`client_app.py submit`, RSA-2048 key",
                    _ms(submit["rsa2048"]),
                ],
                [
                    "`client_app.py submit`, EC P-256 key",
                    _ms(submit["ec256"]),
                ],
                [
                    "`client_app.py get N` (round trip + file)",
                    f"{fmt(median(get) * ms)} ({spread([s * ms for s in get])})",
                ],
                [
                    "warm `CAClient.get_certificate` in one process",
                    f"{fmt(median(warm) * ms)} ({spread([s * ms for s in warm])})",
                ],
                [
                    "raw http.client POST of the same GetCertificate (floor)",
                    f"{fmt(median(raw) * ms)} ({spread([s * ms for s in raw])})",
                ],
            ],
        ),
        "",
        f"- Warm client call / raw POST: {fmt(ratio(median(warm), median(raw)), 2)} × "
        "(the cost zeep and our answer checks add to one call)",
        "",
        "Where `client_app.py submit` (RSA-2048) spends its time (cProfile; buckets may nest "
        "a little, e.g. imports made during a call):",
        "",
        *table(["part", "ms", "share"], _buckets(submit_profile)),
        "",
        "Where `client_app.py get` spends its time:",
        "",
        *table(["part", "ms", "share"], _buckets(get_profile)),
        "",
        "Heaviest top-level imports of `client_app.py get` (`python -X importtime`, "
        "cumulative, ms; one process, so noisy):",
        "",
        *table(["module", "depth", "ms"], imports),
    )
    return section
