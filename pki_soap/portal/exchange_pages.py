"""The SOAP exchanges ``serve --record`` kept: the list, and one exchange made readable."""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.wrappers import Response

from pki_soap.portal.app import Page, Portal
from pki_soap.server import settings
from pki_soap.server.exchanges import readable
from pki_soap.store import IRIS, TOOLKIT, Exchange

EXCHANGES_LISTED = 200


def register(portal: Portal) -> None:
    """Add the recorded-exchange pages to ``portal``."""
    portal.add_page("/server/exchanges", "server_exchanges", exchanges, methods=("GET",))
    portal.add_page(
        "/server/exchanges/<int:exchange_id>", "server_exchange", exchange, methods=("GET",)
    )


def exchanges(page: Page) -> Response:
    """The recorded SOAP exchanges, newest first (``serve --record``)."""
    store = page.store
    strict, recording = settings.describe(settings.load(store))
    last = settings.serving(store)
    return page.render(
        "server_exchanges.html",
        rows=store.exchanges(EXCHANGES_LISTED),
        totals=store.exchange_totals(),
        strict=strict,
        recording=recording,
        serving=None if last is None else settings.describe(last.settings),
        serving_started=None if last is None else last.started,
        listed=EXCHANGES_LISTED,
        readable=readable,
    )


@dataclass
class _ExchangeView:
    """One exchange as the page shows it: every recorded text made readable (and the
    template escapes it for HTML)."""

    exchange: Exchange
    client: str
    user_agent: str
    fault: str
    iris_notes: list[str]
    toolkit_notes: list[str]
    request_headers: list[tuple[str, str]]
    answer_headers: list[tuple[str, str]]
    request: str
    answer: str


def exchange(page: Page, exchange_id: int) -> Response:
    """One recorded exchange: notes, headers, request and answer bytes."""
    found = page.store.exchange(exchange_id)
    if found is None:
        return page.render(
            "error.html",
            status=404,
            heading="No such exchange",
            message=f"Exchange {exchange_id} was never recorded or has been dropped.",
        )
    view = _ExchangeView(
        exchange=found,
        client=readable(found.client),
        user_agent=readable(found.user_agent) if found.user_agent else "(none)",
        fault=readable(found.fault) if found.fault else "",
        iris_notes=[readable(n.text) for n in found.notes if n.kind == IRIS],
        toolkit_notes=[readable(n.text) for n in found.notes if n.kind == TOOLKIT],
        request_headers=[(readable(k), readable(v)) for k, v in found.request_headers],
        answer_headers=[(readable(k), readable(v)) for k, v in found.answer_headers],
        request=readable(found.request),
        answer=readable(found.answer),
    )
    return page.render("server_exchange.html", view=view)
