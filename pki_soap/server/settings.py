"""The server's settings kept in the store: IRIS-strict mode and the exchange recorder.

Both are off by default.  ``server_app.py settings`` changes them; ``serve`` reads them at
start, its options (``--strict-iris``, ``--record [N]`` ...) override them for that run, and
it leaves what it runs with in the store (:func:`save_serving`) so that ``status`` can say
what the server does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pki_soap.errors import InvalidInput
from pki_soap.store import RecordLimits, Store

STRICT_IRIS = "strict_iris"
RECORD = "record"
RECORD_BYTES = "record_bytes"
RECORD_DAYS = "record_days"
SERVING = "serving"


@dataclass(frozen=True)
class ServeSettings:
    """How the SOAP service runs: IRIS-strict or not, recording exchanges (limits) or not."""

    strict_iris: bool = False
    record: RecordLimits | None = None


@dataclass(frozen=True)
class Serving:
    """What the last ``serve`` started with."""

    started: datetime
    pid: int
    settings: ServeSettings


def _number(text: str | None, kind: type[int] | type[float], name: str) -> int | float | None:
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError as exc:
        raise InvalidInput(f"the stored setting {name} is not a number: {text!r}") from exc


def load(store: Store) -> ServeSettings:
    """The stored settings (defaults for those never set).

    Raises:
        InvalidInput: a stored value is unusable (edited by hand).
    """
    keep = _number(store.setting(RECORD), int, RECORD)
    record = None
    if keep:
        max_bytes = _number(store.setting(RECORD_BYTES), int, RECORD_BYTES)
        max_days = _number(store.setting(RECORD_DAYS), float, RECORD_DAYS)
        defaults = RecordLimits()
        record = RecordLimits(
            keep=int(keep),
            max_bytes=int(max_bytes) if max_bytes is not None else defaults.max_bytes,
            max_days=float(max_days) if max_days is not None else defaults.max_days,
        )
    return ServeSettings(strict_iris=store.setting(STRICT_IRIS) == "on", record=record)


def save(store: Store, settings: ServeSettings) -> None:
    """Store ``settings`` as the defaults of the next ``serve``."""
    with store.transaction():
        store.save_setting(STRICT_IRIS, "on" if settings.strict_iris else "off")
        record = settings.record
        store.save_setting(RECORD, str(record.keep) if record else "0")
        if record is not None:
            store.save_setting(RECORD_BYTES, str(record.max_bytes))
            store.save_setting(RECORD_DAYS, repr(record.max_days))


def save_serving(store: Store, serving: Serving) -> None:
    """Remember what ``serve`` runs with (for ``status``)."""
    record = serving.settings.record
    store.save_setting(
        SERVING,
        json.dumps(
            {
                "started": serving.started.isoformat(),
                "pid": serving.pid,
                "strict_iris": serving.settings.strict_iris,
                "record": None
                if record is None
                else [record.keep, record.max_bytes, record.max_days],
            }
        ),
    )


def serving(store: Store) -> Serving | None:
    """What the last ``serve`` started with, or None (never served, or unreadable)."""
    text = store.setting(SERVING)
    if text is None:
        return None
    try:
        data = json.loads(text)
        record = data["record"]
        return Serving(
            started=datetime.fromisoformat(data["started"]),
            pid=int(data["pid"]),
            settings=ServeSettings(
                strict_iris=bool(data["strict_iris"]),
                record=None if record is None else RecordLimits(*record),
            ),
        )
    except (ValueError, KeyError, TypeError, InvalidInput):
        return None


def describe(settings: ServeSettings) -> tuple[str, str]:
    """(IRIS-strict mode, exchange recording) as ``status`` and ``serve`` print them."""
    strict = "on: every deviation that can be is switched to IRIS's behaviour"
    record = settings.record
    recording = (
        "off"
        if record is None
        else (
            f"on: the last {record.keep} SOAP exchanges, at most {record.max_bytes:,} bytes,"
            f" each kept {record.max_days:g} days"
        )
    )
    return (strict if settings.strict_iris else "off"), recording
