"""Local stand-ins for the exchange-rate providers: an HTTP server on 127.0.0.1 and each provider's answer shape.

A ``StandIn`` answers each path with a ``Reply`` (status, JSON or raw body, delay, headers) and records
every request it gets, so tests can check what was asked and how often. ``stop()`` closes its port, after
which connections are refused, as with a provider gone down.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int = 200
    body: object = None  # JSON-able (Decimals are written as exact JSON numbers), or bytes sent as they are
    delay: float = 0.0  # seconds to wait before answering
    headers: dict[str, str] = field(default_factory=dict)


def exact_json(value: object) -> bytes:
    """JSON in which Decimals are numbers written digit for digit (the json module would need floats)."""
    text = json.dumps(value, default=lambda number: f"<<{number}>>" if isinstance(number, Decimal) else None)
    return re.sub(r'"<<([^"]*)>>"', r"\1", text).encode()


class StandIn:
    """An HTTP server on 127.0.0.1 at an ephemeral port, in a thread. Use as a context manager."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.requests: list[str] = []  # path and query of each request, in order
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.requests.append(self.path)
                reply = stand_in.routes.get(urlsplit(self.path).path, Reply(404, {"message": "not found"}))
                if reply.delay:
                    threading.Event().wait(reply.delay)
                body = reply.body if isinstance(reply.body, bytes) else exact_json(reply.body)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (a timeout test): nothing to answer
                    pass

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # a handler still sleeping in a delay must not block stop()
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str, reply: Reply) -> StandIn:
        self.routes[path] = reply
        return self

    def count(self, path: str) -> int:
        """How many requests reached ``path`` (query ignored)."""
        return sum(1 for request in self.requests if urlsplit(request).path == path)

    def stop(self) -> None:
        """Close the port: from now on connections are refused."""
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the providers' answers, shaped as their public APIs shape them ----------------------------------------


def frankfurter_v1(rates: dict[str, Decimal], *, day: str, base: str = "USD") -> dict:
    """``GET /v1/latest?base=USD``"""
    return {"amount": Decimal("1.0"), "base": base, "date": day, "rates": rates}


def frankfurter_v2(rates: dict[str, Decimal], *, day: str, base: str = "USD",
                   days: dict[str, str] | None = None) -> list:
    """``GET /v2/rates?base=USD``: one row per quote, each with its own date (``days`` overrides some)."""
    days = days or {}
    return [{"date": days.get(quote, day), "base": base, "quote": quote, "rate": rate} for quote, rate in rates.items()]


def currency_api(rates: dict[str, Decimal], *, day: str, base: str = "USD") -> dict:
    """``GET .../v1/currencies/usd.json``: lower-case codes under the lower-case base."""
    return {"date": day, base.lower(): {code.lower(): rate for code, rate in rates.items()}}


def open_er_api(rates: dict[str, Decimal], *, day: str, base: str = "USD") -> dict:
    """``GET /v6/latest/USD``: updated daily just after midnight UTC."""
    updated = int(datetime.fromisoformat(day).replace(hour=0, minute=2, second=31, tzinfo=timezone.utc).timestamp())
    return {
        "result": "success",
        "provider": "https://www.exchangerate-api.com",
        "documentation": "https://www.exchangerate-api.com/docs/free",
        "terms_of_use": "https://www.exchangerate-api.com/terms",
        "time_last_update_unix": updated,
        "time_last_update_utc": datetime.fromtimestamp(updated, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000"),
        "time_next_update_unix": updated + 86400,
        "time_next_update_utc": datetime.fromtimestamp(updated + 86400, timezone.utc).strftime(
            "%a, %d %b %Y %H:%M:%S +0000"),
        "time_eol_unix": 0,
        "base_code": base,
        "rates": rates,
    }


# Where each provider's answer lives on a stand-in, relative to the base URL given to the provider.
ANSWER_PATHS = {
    "frankfurter-v1": "/latest",
    "frankfurter-v2": "/rates",
    "currency-api": "/v1/currencies/usd.json",
    "open-er-api": "/latest/USD",
}
ANSWER_SHAPES = {
    "frankfurter-v1": frankfurter_v1,
    "frankfurter-v2": frankfurter_v2,
    "currency-api": currency_api,
    "open-er-api": open_er_api,
}
