"""Medians, ratios and Markdown tables; the report a run prints and appends to RESULTS.md."""

from __future__ import annotations

import os
import statistics
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


_PREFIXES = sorted(
    {
        sysconfig.get_paths()["purelib"] + "/",
        sysconfig.get_paths()["stdlib"] + "/",
        str(Path(__file__).resolve().parent.parent) + "/",
    },
    key=len,
    reverse=True,
)


def local_paths_removed(text: str) -> str:
    """``text`` without this machine's directories (RESULTS.md is committed)."""
    for prefix in _PREFIXES:
        text = text.replace(prefix, "")
    return text


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (NaN for none: a run that produced no figure)."""
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min–max`` of the repetitions, so a reader sees how noisy a median is."""
    if not values:
        return "-"
    return f"{fmt(min(values))}–{fmt(max(values))}"


def fmt(value: float, digits: int = 3) -> str:
    """A figure with ``digits`` significant digits, no scientific notation for ordinary sizes."""
    if value != value:  # NaN
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10**digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - int(f"{magnitude:e}".split("e")[1]))
    return f"{value:.{decimals}f}"


def ratio(ours: float, floor: float) -> float:
    """ours / floor (NaN when the floor is zero or missing)."""
    if floor != floor or ours != ours or floor == 0:
        return float("nan")
    return ours / floor


def verdict(value: float, target: float, *, at_least: bool = True) -> str:
    """``met`` / ``MISSED`` for a ratio against its target (n/a when not measured)."""
    if value != value:
        return "n/a"
    good = value >= target if at_least else value <= target
    return "met" if good else "MISSED"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table as lines."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


@dataclass
class Section:
    """One benchmark's part of the report: a heading and Markdown lines."""

    title: str
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        print(f"\n### {self.title}\n", flush=True)

    def add(self, *lines: str) -> None:
        """Append lines and echo them, so a long run shows progress."""
        self.lines.extend(lines)
        for line in lines:
            print(line, flush=True)

    def markdown(self) -> list[str]:
        return [f"### {self.title}", "", *self.lines, "", f"_({self.seconds:.0f} s)_", ""]


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. ``"0.52 0.61 0.70"``."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def progress(message: str) -> None:
    """A progress note on stderr (not part of the report)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def append_results(header: list[str], sections: list[Section], path: Path = RESULTS) -> None:
    """Append one run (its header and every section) to ``path``."""
    text = "\n".join([*header, "", *(line for s in sections for line in s.markdown())])
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8") as out:
        if new:
            out.write(
                "# Benchmark results\n\nAppended by `make bench` (bench/run.py); newest last. "
                "How to read each figure: bench/README.md.\n\n"
            )
        out.write(text.rstrip() + "\n\n")


@dataclass
class Plan:
    """How much to measure: the full run or ``--quick``, and where scratch data goes."""

    quick: bool
    work: Path
    reps: int = 3
    seconds: float = 4.0  # one wrk run
    issue_count: int = 1000
    scales: tuple[int, ...] = (100, 10_000, 100_000)
    client_reps: int = 5
    issue_budget: float = 200.0  # seconds for the issuance repetitions
    serve_options: tuple[str, ...] = ()  # extra `serve` options for our server (--record ...)

    @classmethod
    def make(cls, quick: bool, work: Path, serve_options: tuple[str, ...] = ()) -> Plan:
        if quick:
            return cls(
                quick,
                work,
                reps=1,
                seconds=2.0,
                issue_count=200,
                scales=(100, 10_000, 100_000),
                client_reps=2,
                issue_budget=60.0,
                serve_options=serve_options,
            )
        return cls(quick, work, serve_options=serve_options)
