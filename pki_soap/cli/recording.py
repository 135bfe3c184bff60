"""IRIS-strict mode and the recording of SOAP exchanges: ``settings``, ``exchanges``, and the
options ``serve`` takes for both.

A recorded exchange is a SOAP client's bytes: every one is shown escaped (``readable``).
"""

from __future__ import annotations

import argparse

from pki_soap.cli import Commands, admin, terminal
from pki_soap.errors import InvalidInput, NotFound
from pki_soap.server import settings
from pki_soap.server.exchanges import one_line, readable
from pki_soap.store import DEFAULT_KEEP, IRIS, TOOLKIT, Exchange, RecordLimits, Store


def add_commands(commands: Commands) -> None:
    """Add ``settings`` and ``exchanges``."""
    mode = commands.add(
        "settings", "IRIS-strict mode and exchange recording (both off by default)", _settings
    )
    add_mode_arguments(mode, for_serve=False)

    exchanges = commands.add(
        "exchanges", "the SOAP exchanges recorded by `serve --record`", _exchanges
    )
    exchanges.add_argument(
        "--last", type=int, default=20, metavar="K", help="list the newest K (default 20)"
    )
    exchanges.add_argument("--show", type=int, metavar="ID", help="show exchange ID in full")


def add_mode_arguments(parser: argparse.ArgumentParser, *, for_serve: bool) -> None:
    """The IRIS-strict and recording options (``serve`` overrides; ``settings`` stores)."""
    scope = "for this run (default: the stored setting, off)" if for_serve else "(stored)"
    strict = parser.add_mutually_exclusive_group()
    strict.add_argument(
        "--strict-iris",
        dest="strict_iris",
        action="store_true",
        default=None,
        help=f"behave as IRIS where this server deviates (README's table) {scope}",
    )
    strict.add_argument(
        "--no-strict-iris", dest="strict_iris", action="store_false", help="the lenient default"
    )
    record = parser.add_mutually_exclusive_group()
    record.add_argument(
        "--record",
        nargs="?",
        type=int,
        const=DEFAULT_KEEP,
        default=None,
        metavar="N",
        help=f"keep the last N SOAP exchanges in the store (N: {DEFAULT_KEEP}) {scope}",
    )
    record.add_argument(
        "--no-record", dest="record", action="store_const", const=0, help="record nothing"
    )
    parser.add_argument(
        "--record-bytes",
        type=int,
        metavar="BYTES",
        help="at most this much for all recorded exchanges (default 64 MiB)",
    )
    parser.add_argument(
        "--record-days",
        type=float,
        metavar="DAYS",
        help="drop a recorded exchange after this many days (default 7)",
    )


def mode_from_arguments(
    args: argparse.Namespace, stored: settings.ServeSettings
) -> settings.ServeSettings:
    """``stored`` with the options of ``add_mode_arguments`` applied.

    Raises:
        InvalidInput: a limit out of range, or a limit given while recording is off.
    """
    strict = stored.strict_iris if args.strict_iris is None else args.strict_iris
    limits = stored.record
    keep = args.record if args.record is not None else (limits.keep if limits else 0)
    if keep == 0:
        if args.record_bytes is not None or args.record_days is not None:
            raise InvalidInput("--record-bytes and --record-days need --record")
        return settings.ServeSettings(strict_iris=strict, record=None)
    base = limits or RecordLimits()
    record = RecordLimits(
        keep=keep,
        max_bytes=base.max_bytes if args.record_bytes is None else args.record_bytes,
        max_days=base.max_days if args.record_days is None else args.record_days,
    )
    return settings.ServeSettings(strict_iris=strict, record=record)


def mode_lines(store: Store) -> list[tuple[str, str]]:
    """IRIS-strict mode and exchange recording: the settings, the running server, the record."""
    strict, recording = settings.describe(settings.load(store))
    lines = [
        ("IRIS-strict mode", f"{strict} (setting)"),
        ("Exchange recording", f"{recording} (setting)"),
    ]
    last = settings.serving(store)
    if last is not None:
        run_strict, run_recording = settings.describe(last.settings)
        lines.append(
            (
                "Last `serve` start",
                f"{terminal.when(last.started)} (pid {last.pid}): IRIS-strict "
                f"{run_strict.split(':')[0]}, recording {run_recording}",
            )
        )
    count, size, newest = store.exchange_totals()
    kept = f"{count} ({size:,} bytes)" + (f", newest {terminal.when(newest)}" if newest else "")
    lines.append(("Recorded exchanges", kept))
    return lines


def _settings(args: argparse.Namespace) -> int:
    """Show or change the settings `serve` starts with: IRIS-strict mode and the recording
    of SOAP exchanges. `serve` options override them for one run.
    """
    changes = (args.strict_iris, args.record, args.record_bytes, args.record_days)
    with admin.open_data_dir(args, create=True) as opened:
        current = settings.load(opened.store)
        if any(value is not None for value in changes):
            current = mode_from_arguments(args, current)
            settings.save(opened.store, current)
    strict, recording = settings.describe(current)
    print(f"IRIS-strict mode:   {strict}")
    print(f"Exchange recording: {recording}")
    print("`serve` reads these when it starts; its options override them for one run.")
    return 0


def _exchanges(args: argparse.Namespace) -> int:
    """List the recorded SOAP exchanges, newest first, or show one with its bytes and what
    IRIS would have done differently.
    """
    prog = admin.program_name()
    with admin.open_data_dir(args) as opened:
        store = opened.store
        if args.show is not None:
            exchange = store.exchange(args.show)
            if exchange is None:
                raise NotFound(
                    f"no recorded exchange {args.show} (never recorded, or dropped: only the"
                    " newest are kept; see `exchanges`)"
                )
            print(_describe_exchange(exchange))
            return 0
        if args.last < 1:
            raise InvalidInput("--last must be at least 1")
        listed = store.exchanges(args.last)
        last = settings.serving(store)
        recording = settings.load(store).record is not None or (
            last is not None and last.settings.record is not None
        )
    if not listed:
        print("No exchanges recorded.")
        if not recording:
            print(f"Recording is off: start the server with `{prog} serve --record [N]`.")
        return 0
    rows = [
        (
            str(e.id),
            terminal.when(e.received),
            f"{e.duration_ms:.1f}",
            readable(e.client),
            e.method or "-",
            str(e.status),
            one_line(readable(e.fault), 60) if e.fault else "",
            str(e.note_count),
            one_line(readable(e.user_agent), 40) if e.user_agent else "(none)",
        )
        for e in listed
    ]
    headers = ("Id", "Received", "ms", "Client", "Method", "Status", "Fault", "Notes")
    print(terminal.table((*headers, "User-Agent"), rows))
    print(f"\n`{prog} exchanges --show ID` shows one with its bytes and notes.")
    return 0


def _describe_exchange(exchange: Exchange) -> str:
    """Everything recorded of one exchange, every stranger's byte escaped for a terminal."""
    lines: list[tuple[str, str]] = [
        ("Received", terminal.when(exchange.received)),
        ("Duration", f"{exchange.duration_ms:.1f} ms"),
        ("Client", readable(exchange.client)),
        ("User-Agent", readable(exchange.user_agent) if exchange.user_agent else "(none)"),
        ("Routed to", exchange.method or "(not routed)"),
        ("Answer", f"HTTP {exchange.status}"),
        ("Fault", readable(exchange.fault) if exchange.fault else "(none)"),
        ("Mode", "IRIS-strict" if exchange.strict_iris else "lenient (the default)"),
    ]
    text = [f"Exchange {exchange.id}", *terminal.labelled(lines)]
    for kind, heading in (
        (IRIS, "What IRIS would have done differently:"),
        (TOOLKIT, "What is known of the client's toolkit:"),
    ):
        notes = [note.text for note in exchange.notes if note.kind == kind]
        text += ["", heading] + [f"  - {readable(note)}" for note in notes or ["nothing"]]
    for title, headers, body, size in (
        ("Request", exchange.request_headers, exchange.request, exchange.request_size),
        ("Answer", exchange.answer_headers, exchange.answer, exchange.answer_size),
    ):
        kept = "" if size == len(body) else f", the first {len(body):,} kept"
        order = " (their order is not recorded)" if title == "Request" else ""
        text += ["", f"{title} headers{order}:"]
        text += [f"  {readable(name)}: {readable(value)}" for name, value in headers]
        text += ["", f"{title} ({size:,} bytes{kept}; \\r marks a CR):", readable(body)]
    return "\n".join(text)
