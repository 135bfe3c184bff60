"""Benchmark 3: ``server_app.py issue --all`` against a bare ``cryptography`` signing loop.

Each repetition configures a fresh RSA-2048 CA, inserts N pending CSRs (cached, distinct
keys) and times the real command as a subprocess, durability included (SRL file fsync +
rename + directory fsync, SQLite ``synchronous=FULL``).  The floor signs the same
certificates (same CA key, decrypted once; the same extensions our engine put in each one)
in one loop: parse the CSR, check its signature, build, sign, PEM-encode.  The figure is
floor time / our time (1.0 = as fast as the bare loop).
"""

from __future__ import annotations

import cProfile
import datetime
import io
import os
import pstats
import subprocess
import time
from pathlib import Path

import seeding
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
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
from servers import PYTHON, REPO

from pki_soap.ca.csr import cert_pem, load_csr
from pki_soap.ca.keys import KeyType
from pki_soap.store import Store

TARGET = 0.5
KINDS = (KeyType.RSA2048, KeyType.EC256)
Extensions = list[tuple[x509.ExtensionType, bool]]


def _command(data_dir: Path, password_file: Path) -> list[str]:
    return [
        PYTHON,
        str(REPO / "server_app.py"),
        "--data-dir",
        str(data_dir),
        "issue",
        "--all",
        "--usage",
        "tls",
        "--password-file",
        str(password_file),
    ]


def prepared_store(work: Path, name: str, csrs: list[str]) -> tuple[Path, Path]:
    """A fresh configured CA with ``csrs`` pending; (data dir, password file)."""
    data_dir = work / name
    password_file = seeding.configure_ca(data_dir)
    seeding.seed_requests(data_dir, csrs, "issue")
    return data_dir, password_file


def issue_all(data_dir: Path, password_file: Path, expect: int) -> float:
    """Run ``issue --all`` and return its wall time.

    Raises:
        RuntimeError: the command failed or issued fewer certificates than expected.
    """
    started = time.perf_counter()
    done = subprocess.run(
        _command(data_dir, password_file), cwd=REPO, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    with Store.open(data_dir) as store:
        issued = store.count_certificates()
    if done.returncode != 0 or issued != expect:
        raise RuntimeError(
            f"issue --all: exit {done.returncode}, {issued}/{expect} issued: {done.stderr[-500:]}"
        )
    return elapsed


def issued_extensions(data_dir: Path) -> dict[str, Extensions]:
    """For each request Name (= Filename here), the extensions our engine put in its certificate."""
    with Store.open(data_dir) as store:
        return {
            cert.filename: [
                (ext.value, ext.critical)
                for ext in x509.load_pem_x509_certificate(cert.contents.encode()).extensions
            ]
            for cert in store.certificates()
        }


def floor_sign(data_dir: Path, csrs: list[str], extensions: dict[str, Extensions]) -> float:
    """Sign the same certificates in a bare loop; return the loop's time (key load excluded)."""
    ca_dir = data_dir / seeding.CA_DIRECTORY
    key = serialization.load_pem_private_key(
        (ca_dir / f"{seeding.CA_ROOT}.key").read_bytes(), seeding.CA_PASSWORD
    )
    ca_cert = x509.load_pem_x509_certificate((ca_dir / f"{seeding.CA_ROOT}.cer").read_bytes())
    plans = [extensions[f"issue_{i}"] for i in range(len(csrs))]
    started = time.perf_counter()
    now = datetime.datetime.now(datetime.UTC)
    for number, (pem, planned) in enumerate(zip(csrs, plans, strict=True), start=1):
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
        if not csr.is_signature_valid:
            raise RuntimeError("a cached CSR has a bad signature")
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(number)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=365))
        )
        for value, critical in planned:
            builder = builder.add_extension(value, critical=critical)
        cert = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        cert.public_bytes(serialization.Encoding.PEM)
    return time.perf_counter() - started


# (label, file suffix, function name) of the calls a profile of `issue --all` is read for.
_PROFILED = (
    ("whole command (main)", "pki_soap/cli/server_app.py", "main"),
    ("  load the CA files (authority, twice)", "pki_soap/server/tasks/base.py", "authority"),
    ("  decrypt the CA key, once (private_key)", "pki_soap/ca/authority.py", "private_key"),
    ("  CAServer.issue_many", "pki_soap/server/tasks/issue.py", "issue_many"),
    (
        "    read the requests (Store.requests_named)",
        "pki_soap/store/certificates.py",
        "requests_named",
    ),
    ("    parse the CSR (_stored_csr)", "pki_soap/server/tasks/issue.py", "_stored_csr"),
    ("    serial numbers (SerialCounter.take_block)", "pki_soap/ca/serial.py", "take_block"),
    ("    sign, PEM, subject text (CAServer._signed)", "pki_soap/server/tasks/issue.py", "_signed"),
    ("      CertificateAuthority.sign", "pki_soap/ca/authority.py", "sign"),
    (
        "        plan the extensions (_plan, CSR check included)",
        "pki_soap/ca/authority.py",
        "_plan",
    ),
    ("          check the CSR (csr.check_csr)", "pki_soap/ca/csr.py", "check_csr"),
    ("    store: record_issued", "pki_soap/store/certificates.py", "record_issued"),
    ("    store: commit + others (transaction __exit__)", "contextlib.py", "__exit__"),
    ("    notify certificate_issued", "pki_soap/server/tasks/base.py", "_notify"),
    ("  every fsync (os.fsync)", "~", "<built-in method posix.fsync>"),
    ("  every SQLite execute", "~", "<method 'execute' of 'sqlite3.Connection' objects>"),
    ("  imports", "<frozen importlib._bootstrap>", "_find_and_load"),
)


def _find(stats: pstats.Stats, suffix: str, function: str) -> tuple[float, int]:
    cum, calls = 0.0, 0
    for (file, _line, name), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name == function and file.endswith(suffix):
            cum += ct
            calls += nc
    return cum, calls


def profile_issue(work: Path, csrs: list[str]) -> list[str]:
    """cProfile ``issue --all`` in-process for ``csrs``; ms per certificate for the main calls."""
    from pki_soap.cli import server_app as server_cli

    data_dir, password_file = prepared_store(work, "profiled", csrs)
    argv = _command(data_dir, password_file)[2:]
    profiler = cProfile.Profile()
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        profiler.enable()
        code = server_cli.main(argv)
        profiler.disable()
    if code != 0:
        return [f"(profile run failed with exit code {code})"]
    stats = pstats.Stats(profiler)
    rows = []
    for label, suffix, function in _PROFILED:
        cum, calls = _find(stats, suffix, function)
        if calls:
            rows.append(
                [label.replace("  ", "&nbsp;&nbsp;"), f"{cum * 1000 / len(csrs):.2f}", str(calls)]
            )
    lines = table(["call (cumulative)", "ms per certificate", "calls"], rows)
    top = io.StringIO()
    pstats.Stats(profiler, stream=top).sort_stats("tottime").print_stats(8)
    body = [local_paths_removed(line) for line in top.getvalue().splitlines() if line.strip()][-9:]
    return [*lines, "", "Top functions by own time:", "", "```", *body, "```"]


def durable_write_cost(work: Path, count: int = 50) -> float:
    """Median milliseconds of one durable small-file update in ``work`` (the disk's price).

    The SRL file's pattern: write a temp file, fsync it, rename it over the file, fsync the
    directory.
    """
    target, temp = work / "probe.srl", work / ".probe.srl.tmp"
    times = []
    for i in range(count):
        started = time.perf_counter()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{i:02X}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
        dir_fd = os.open(work, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        times.append(time.perf_counter() - started)
    return median(times) * 1000


def what_if(data_dir: Path, batch: int) -> float:
    """Issue every pending CSR with the engine's public calls, CA key decrypted once.

    ``batch`` certificates share one store transaction (1: one each, as ``issue`` does).
    Every certificate still takes its number from the SRL file durably before it is used,
    and a crash still leaves at most a gap.  Not the shipped command: a measured what-if.
    Returns the time for the whole queue.
    """
    from pki_soap.ca import names
    from pki_soap.ca.authority import Usage
    from pki_soap.server.tasks import CAServer
    from pki_soap.store import IssuedCertificate

    started = time.perf_counter()
    with CAServer(Store.open(data_dir), data_dir, None) as server:
        cfg = server.config()
        authority = server.authority()
        key = authority.private_key(seeding.CA_PASSWORD)
        pending = [req.name for req in server.pending()]
        for first in range(0, len(pending), batch):
            with server.store.transaction():
                for name in pending[first : first + batch]:
                    req = server.store.request(name)
                    csr = load_csr(req.contents)
                    authority.preview_extensions(csr, Usage.TLS)
                    number = authority.serials.take()
                    cert = authority.sign(
                        csr, Usage.TLS, key=key, days=cfg.days, serial_number=number
                    )
                    server.store.add_certificate(
                        IssuedCertificate(
                            number=number,
                            hostname=req.hostname,
                            instance=req.instance,
                            filename=req.filename,
                            contents=cert_pem(cert),
                            subject=names.subject_text(cert.subject),
                            usage=Usage.TLS.value,
                            issued=datetime.datetime.now(datetime.UTC),
                            not_after=cert.not_valid_after_utc,
                        )
                    )
                    server.store.remove_request(name)
    return time.perf_counter() - started


def run(plan: Plan) -> Section:
    """Measure and return the section of the report."""
    section = Section(f"3. Issuance: issue --all of {plan.issue_count:,} pending CSRs")
    work = plan.work / "issuance"
    work.mkdir(parents=True)
    count = plan.issue_count
    csrs: dict[KeyType, list[str]] = {}
    for kind in KINDS:
        progress(f"issuance: {count} {kind.value} CSRs (cached in {seeding.CSR_CACHE})")
        csrs[kind] = seeding.cached_csrs(kind, count)
    startup: list[float] = []
    ours: dict[KeyType, list[float]] = {kind: [] for kind in KINDS}
    floor: dict[KeyType, list[float]] = {kind: [] for kind in KINDS}
    extensions: dict[KeyType, dict[str, Extensions]] = {}
    begun = time.monotonic()
    for rep in range(plan.reps):
        spent = time.monotonic() - begun
        # Our command may be slow enough that more repetitions would break the run's budget.
        if rep and spent / rep * (rep + 1) > plan.issue_budget:
            progress(f"issuance: stopping after {rep} repetition(s) to stay in budget")
            break
        for kind in KINDS:
            progress(f"issuance: rep {rep + 1}/{plan.reps} {kind.value}")
            data_dir, password_file = prepared_store(work, f"r{rep}-{kind.value}", csrs[kind])
            if kind not in extensions or rep % 2 == 0:
                ours[kind].append(issue_all(data_dir, password_file, count))
                extensions.setdefault(kind, issued_extensions(data_dir))
                floor[kind].append(floor_sign(data_dir, csrs[kind], extensions[kind]))
            else:
                floor[kind].append(floor_sign(data_dir, csrs[kind], extensions[kind]))
                ours[kind].append(issue_all(data_dir, password_file, count))
        empty_dir, empty_password = prepared_store(work, f"r{rep}-empty", [])
        startup.append(issue_all(empty_dir, empty_password, 0))
    reps = len(startup)
    rows = []
    figures = {}
    for kind in KINDS:
        ratios = [ratio(f, o) for f, o in zip(floor[kind], ours[kind], strict=True)]
        figures[kind] = median(ratios)
        rows.append(
            [
                kind.value,
                f"{fmt(median(ours[kind]))} ({spread(ours[kind])})",
                f"{fmt(count / median(ours[kind]))}",
                f"{fmt(median(floor[kind]))} ({spread(floor[kind])})",
                f"{fmt(count / median(floor[kind]))}",
                f"**{fmt(figures[kind], 2)}** ({spread(ratios)})",
                f"≥ {TARGET}" if kind is KeyType.RSA2048 else "-",
                verdict(figures[kind], TARGET) if kind is KeyType.RSA2048 else "",
            ]
        )
    section.add(
        f"CA key RSA-2048 (the signing cost is the CA's key; the CSR key type changes the "
        f"CSR check). {reps} repetition(s) (at most {plan.reps}, within a "
        f"{plan.issue_budget:.0f} s budget).",
        "",
        *table(
            [
                "CSR keys",
                "issue --all s (min–max)",
                "certs/s",
                "floor s (min–max)",
                "floor certs/s",
                "floor / ours",
                "target",
                "",
            ],
            rows,
        ),
        "",
        f"- Fixed cost of the command (`issue --all` with nothing pending: interpreter, "
        f"imports, store): {fmt(median(startup))} s ({spread(startup)})",
        f"- One durable small-file update on this disk (temp write + fsync + rename + "
        f"directory fsync, as the SRL file does): {fmt(durable_write_cost(work))} ms "
        "(median of 50)",
    )
    if figures[KeyType.RSA2048] < TARGET:
        progress("issuance: what-if runs")
        rows = []
        for label, batch in (
            ("CA key decrypted once, one transaction per certificate", 1),
            ("CA key decrypted once, one transaction per 100 certificates", 100),
        ):
            data_dir, _ = prepared_store(work, f"what-if-{batch}", csrs[KeyType.RSA2048])
            seconds = what_if(data_dir, batch)
            floor_time = median(floor[KeyType.RSA2048])
            rows.append(
                [label, fmt(seconds), fmt(count / seconds), fmt(ratio(floor_time, seconds), 2)]
            )
        section.add(
            "",
            "What-if (RSA-2048 CSRs, in-process, built from the engine's public calls; each "
            "certificate still takes its SRL number durably first):",
            "",
            *table(["variant", "s", "certs/s", "floor / variant"], rows),
        )
    progress("issuance: profiling issue --all in-process")
    sample = csrs[KeyType.RSA2048][: min(count, 100)]
    section.add(
        "",
        f"Profile of `issue --all` for {len(sample)} RSA-2048 CSRs (cProfile, in-process, "
        "so no interpreter start-up; cProfile slows Python code, so read the shares):",
        "",
        *profile_issue(work, sample),
    )
    return section
