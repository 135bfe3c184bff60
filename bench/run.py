"""``make bench``: run the benchmarks, print their figures, append them to RESULTS.md.

Usage: ``.venv/bin/python bench/run.py [--quick] [--only NAME ...] [--no-record]``.
Never part of ``make test``; nothing here asserts on time.  How to read the figures:
bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the pki_soap package
sys.path.insert(0, str(BENCH))

import client_cost  # noqa: E402
import issuance  # noqa: E402
import list_scale  # noqa: E402
import machine  # noqa: E402
import revocation  # noqa: E402
import slow_clients  # noqa: E402
import soap_throughput  # noqa: E402
from report import (  # noqa: E402
    Plan,
    Section,
    append_results,
    load_average,
    local_paths_removed,
    progress,
)

BENCHMARKS = {
    "throughput": soap_throughput.run,
    "scale": list_scale.run,
    "issuance": issuance.run,
    "client": client_cost.run,
    "slow": slow_clients.run,
    "revocation": revocation.run,
    "tls": soap_throughput.run_tls,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short repetition of each")
    parser.add_argument(
        "--only", action="append", choices=list(BENCHMARKS), help="run only these (repeatable)"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to RESULTS.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--serve-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="pass OPTION to our `serve` for throughput (--serve-option=--record)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="pki-soap-bench-"))
    plan = Plan.make(args.quick, work, tuple(args.serve_option))
    started = time.monotonic()
    header = [
        f"## {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {'quick' if args.quick else 'full'} run"
        + (f" (serve {' '.join(args.serve_option)})" if args.serve_option else ""),
        "",
        *machine.describe(work),
    ]
    print("\n".join(header), flush=True)
    sections: list[Section] = []
    failed = False
    try:
        for name in args.only or list(BENCHMARKS):
            progress(f"{name}: start (load {load_average()})")
            begun = time.monotonic()
            try:
                section = BENCHMARKS[name](plan)
            except Exception:  # one broken benchmark must not lose the others' figures
                failed = True
                section = Section(f"{name}: FAILED")
                section.add("```", local_paths_removed(traceback.format_exc().rstrip()), "```")
            section.seconds = time.monotonic() - begun
            section.add("", f"Load average after: {load_average()}")
            sections.append(section)
    finally:
        if args.keep:
            print(f"scratch data kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started
    header.append(f"- Whole run: {total:.0f} s")
    print(f"whole run: {total:.0f} s", flush=True)
    if not args.no_record:
        append_results(header, sections)
        print(f"appended to {BENCH / 'RESULTS.md'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
