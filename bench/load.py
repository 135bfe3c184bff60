"""Drive a server with wrk: Lua scripts that POST SOAP bodies with their SOAPAction.

Fixed requests (GetCertificate, ListCertificates) use one static body.  SubmitCSR needs a
fresh Name and Filename on every request, or the duplicate-request fault is all we would
measure: its script builds each body from a template with a per-run, per-thread counter.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from envelopes import CONTENT_TYPE, action

# Placeholder in a SubmitCSR template replaced by a unique root per request.
UNIQUE = "@@UNIQUE@@"

_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d,'
    .. ' "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def _lua_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    # A long bracket drops one leading newline: add one so the body keeps its first byte.
    return f"[{eq}[\n{text}]{eq}]"


def static_script(method: str, body: str) -> str:
    """A wrk script POSTing ``body`` as ``method`` on every request."""
    return (
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{CONTENT_TYPE}"\n'
        f'wrk.headers["SOAPAction"] = "{action(method)}"\n'
        f"wrk.body = {_lua_string(body)}\n" + _DONE
    )


def unique_script(method: str, template: str) -> str:
    """A wrk script POSTing ``template`` with :data:`UNIQUE` made unique per request.

    The unique text is ``<run>_<thread>_<counter>`` (letters, digits, ``_``: a valid file-name
    root); ``<run>`` is the script's first argument (``wrk ... -- RUN``).
    """
    parts = template.split(UNIQUE)
    pieces = ", ".join(_lua_string(part) for part in parts)
    return (
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{CONTENT_TYPE}"\n'
        f'wrk.headers["SOAPAction"] = "{action(method)}"\n'
        f"local parts = {{{pieces}}}\n"
        "local next_thread = 1\n"
        "function setup(thread)\n"
        '  thread:set("thread_no", next_thread)\n'
        "  next_thread = next_thread + 1\n"
        "end\n"
        "local run, counter = 'r', 0\n"
        "function init(args)\n"
        "  run = args[1] or 'r'\n"
        "end\n"
        "function request()\n"
        "  counter = counter + 1\n"
        "  local unique = run .. '_' .. thread_no .. '_' .. counter\n"
        "  return wrk.format(nil, nil, nil, table.concat(parts, unique))\n"
        "end\n" + _DONE
    )


@dataclass
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    errors: int  # non-2xx/3xx answers plus socket errors other than server-side closes
    status_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    url: str,
    script: Path,
    *,
    connections: int,
    seconds: float,
    args: list[str] | None = None,
    threads: int | None = None,
) -> LoadResult:
    """Run wrk against ``url`` with ``script`` and return its figures.

    Raises:
        RuntimeError: wrk failed or printed no figures.
    """
    threads = threads or min(connections, 2)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    if args:
        command += ["--", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line.removeprefix("BENCH_JSON "))
            return LoadResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                errors=raw["connect"] + raw["write"] + raw["timeout"] + raw["status"],
                status_errors=raw["status"],
                p50_ms=raw["p50_us"] / 1000,
                p90_ms=raw["p90_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
            )
    raise RuntimeError(f"wrk printed no figures: {done.stdout[-500:]} {done.stderr[-500:]}")
