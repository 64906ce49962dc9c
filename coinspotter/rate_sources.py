"""Where rate tables come from: the table itself, and the public APIs that publish one.

``RateTable`` is one provider's USD-based table as published; a ``Provider`` knows where to ask for one and how to
read the answer, over a ``JsonClient`` that keeps the caller's time budget. How tables are chosen, cached and
combined into the rates a person sees is ``coinspotter.rates``.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Context, Decimal
from html import escape

import requests

from . import __version__
from .money import currency_code

DEFAULT_PROVIDER_ORDER = ("frankfurter-v2", "frankfurter-v1", "currency-api", "open-er-api")
DEFAULT_TIMEOUT_S = 1.0
MAX_RETRY_AFTER_S = 24 * 3600.0  # a provider's Retry-After is honoured, but never beyond a day

# Cross rates keep 12 significant digits (far beyond any published rate's accuracy). An explicit context, so
# that a caller's decimal.getcontext() settings cannot change a result.
_RATE_MATH = Context(prec=12)

# What reading a JSON document of the wrong shape raises (decimal.InvalidOperation is an ArithmeticError).
MALFORMED = (ValueError, KeyError, TypeError, AttributeError, ArithmeticError)


class ProviderError(Exception):
    """One provider could not give a usable answer (network, HTTP status, shape of the answer)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds the provider asked us to wait (HTTP 429 Retry-After)


# --- rate tables -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """Credit a provider's terms require next to its rates."""

    text: str
    url: str

    @property
    def html(self) -> str:
        return f'<a href="{escape(self.url)}">{escape(self.text)}</a>'

    def __str__(self) -> str:
        return f"{self.text} ({self.url})"

    def as_dict(self) -> dict:
        return {"text": self.text, "url": self.url}


@dataclass(frozen=True)
class RateTable:
    """Units of each currency per one unit of ``base``, as one provider published them (``rates[base] == 1``)."""

    provider: str  # "frankfurter-v2", ..., or "snapshot"
    source: str  # for people: "Frankfurter (central bank reference rates)"
    base: str
    date: date  # the newest publication date in the table
    rates: Mapping[str, Decimal]
    quote_dates: Mapping[str, date] = field(default_factory=dict)  # only quotes published before `date`
    fetched_at: float = 0.0  # epoch seconds; the cache's TTL counts from here
    attribution: Attribution | None = None
    offline: bool = False  # True for the bundled snapshot

    def covers(self, currencies: Iterable[str]) -> bool:
        return all(code in self.rates for code in currencies)

    def date_for(self, currencies: Iterable[str]) -> date:
        """The date of the oldest rate among ``currencies``: what a rate computed from them is 'as of'."""
        return min((self.quote_dates.get(code, self.date) for code in currencies), default=self.date)

    def cross_rate(self, base: str, quote: str) -> Decimal:
        """Units of ``quote`` per one ``base``, through this table's base."""
        return _RATE_MATH.divide(self.rates[quote], self.rates[base])

    def to_json(self) -> dict:
        return {
            "provider": self.provider,
            "source": self.source,
            "base": self.base,
            "date": self.date.isoformat(),
            "quote_dates": {code: day.isoformat() for code, day in sorted(self.quote_dates.items())},
            "fetched_at": self.fetched_at,
            "attribution": self.attribution.as_dict() if self.attribution else None,
            "rates": {code: str(rate) for code, rate in sorted(self.rates.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping, *, provider: str | None = None, offline: bool = False) -> RateTable:
        """The inverse of ``to_json``; raises one of ``MALFORMED`` on a malformed entry."""
        base = currency_code(data["base"])
        attribution = data.get("attribution")
        return cls(
            provider=provider or str(data["provider"]),
            source=str(data["source"]),
            base=base,
            date=date.fromisoformat(data["date"]),
            rates=_clean_rates(base, {code: Decimal(str(rate)) for code, rate in data["rates"].items()}),
            quote_dates={code: date.fromisoformat(day) for code, day in (data.get("quote_dates") or {}).items()},
            fetched_at=float(data.get("fetched_at") or 0.0),
            attribution=Attribution(attribution["text"], attribution["url"]) if attribution else None,
            offline=offline,
        )


def _clean_rates(base: str, raw: Mapping[str, object]) -> dict[str, Decimal]:
    """Keep what can be a rate: a three-letter code priced by a finite, positive Decimal.

    Anything else (a float that slipped through, null, 0, a crypto token's name) is dropped: a currency
    without a rate falls through to the next provider, whereas a wrong rate would be shown to the user.
    """
    rates = {}
    for code, value in raw.items():
        code = str(code).upper()
        if len(code) == 3 and code.isascii() and code.isalpha() and isinstance(value, Decimal):
            if value.is_finite() and value > 0:
                rates[code] = value
    if rates.get(base, Decimal(1)) != 1:
        raise ValueError(f"the table prices its own base {base} at {rates[base]}")
    if not rates:
        raise ValueError("no usable rates in the answer")
    rates[base] = Decimal(1)
    return rates


# --- providers -------------------------------------------------------------------------------------------


class JsonClient:
    """GETs JSON over one ``requests.Session``, within a per-call timeout and the caller's overall deadline."""

    def __init__(self, session: requests.Session | None = None, *, timeout: float = DEFAULT_TIMEOUT_S,
                 max_bytes: int = 1_000_000):
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": f"coinspotter/{__version__}"})
        self.timeout = timeout
        self.max_bytes = max_bytes  # a rate table is a few kB; anything huge is not one

    def get(self, url: str, params: Mapping[str, str], deadline: float) -> object:
        """The decoded JSON, numbers as Decimal; ProviderError for anything else. ``deadline`` is time.monotonic()."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderError("no time left in the budget")
        try:
            with self.session.get(url, params=params, timeout=min(self.timeout, remaining), stream=True) as answer:
                if answer.status_code != 200:
                    raise ProviderError(f"HTTP {answer.status_code}", _retry_after(answer))
                body = bytearray()
                # requests' timeout bounds each read, not the whole body: check the deadline between chunks.
                for chunk in answer.iter_content(16384):
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ProviderError(f"answer larger than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise ProviderError("answer too slow for the budget")
        except requests.RequestException as error:
            raise ProviderError(f"{type(error).__name__}: {error}") from None
        try:
            return json.loads(body, parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse_constant)
        except ValueError as error:
            raise ProviderError(f"malformed JSON ({error})") from None


def _retry_after(answer: requests.Response) -> float | None:
    value = answer.headers.get("Retry-After", "")
    return min(float(value), MAX_RETRY_AFTER_S) if value.strip().isdigit() else None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a rate")


class Provider:
    """One public rate API. Subclasses say where to ask (``request``) and how to read the answer (``parse``)."""

    name: str = ""  # as written in COINSPOTTER_RATE_PROVIDERS
    title: str = ""  # for people
    default_urls: tuple[str, ...] = ()  # base URLs, mirrors in the order to try them
    attribution: Attribution | None = None

    def __init__(self, urls: Sequence[str] | None = None):
        self.urls = tuple(url.strip().rstrip("/") for url in (urls or self.default_urls) if url.strip())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.urls)!r})"

    def fetch(self, base: str, client: JsonClient, deadline: float) -> RateTable:
        """``base``'s table from the first of ``urls`` that gives a usable one; ProviderError when none does."""
        problems, retry_after = [], None
        for root in self.urls:
            url, params = self.request(root, base)
            try:
                payload = client.get(url, params, deadline)
                try:
                    return self.parse(payload, base)
                except MALFORMED as error:
                    raise ProviderError(f"unexpected answer ({type(error).__name__}: {error})") from None
            except ProviderError as error:
                problems.append(f"{url}: {error}")
                retry_after = max(retry_after or 0.0, error.retry_after or 0.0) or None
        raise ProviderError("; ".join(problems) or "no URL configured", retry_after)

    def request(self, root: str, base: str) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def parse(self, payload, base: str) -> RateTable:
        raise NotImplementedError

    def _table(self, base: str, day: date, raw_rates: Mapping,
               quote_dates: Mapping[str, date] | None = None) -> RateTable:
        rates = _clean_rates(base, raw_rates)
        quote_dates = quote_dates or {}
        return RateTable(
            provider=self.name,
            source=self.title,
            base=base,
            date=day,
            rates=rates,
            quote_dates={code: when for code, when in quote_dates.items() if code in rates},
            attribution=self.attribution,
        )


def _expect_base(answered: object, base: str) -> None:
    if str(answered).upper() != base:
        raise ValueError(f"asked for base {base}, got {answered!r}")


class FrankfurterV1(Provider):
    """The European Central Bank's euro reference rates via Frankfurter v1 (~30 currencies; no TWD, CLP, PKR, RUB).

    ``GET {url}/latest?base=USD`` -> ``{"amount": 1.0, "base": "USD", "date": "2026-11-24", "rates": {"EUR": 0.86}}``
    """

    name = "frankfurter-v1"
    title = "Frankfurter (ECB reference rates)"
    default_urls = ("https://api.frankfurter.dev/v1",)

    def request(self, root, base):
        return f"{root}/latest", {"base": base}

    def parse(self, payload, base):
        _expect_base(payload["base"], base)
        return self._table(base, date.fromisoformat(payload["date"]), payload["rates"])


class FrankfurterV2(Provider):
    """Frankfurter v2: rates of 100+ central banks, 200+ currencies; each row carries its own date.

    ``GET {url}/rates?base=USD`` -> ``[{"date": "2026-11-24", "base": "USD", "quote": "EUR", "rate": 0.86}, ...]``
    """

    name = "frankfurter-v2"
    title = "Frankfurter (central bank reference rates)"
    default_urls = ("https://api.frankfurter.dev/v2",)

    def request(self, root, base):
        return f"{root}/rates", {"base": base}

    def parse(self, payload, base):
        if not isinstance(payload, list):
            raise TypeError(f"expected a list of rows, got {type(payload).__name__}")
        rates, dates = {}, {}
        for row in payload:
            _expect_base(row["base"], base)
            quote = str(row["quote"]).upper()
            rates[quote], dates[quote] = row["rate"], date.fromisoformat(row["date"])
        newest = max(dates.values())
        return self._table(base, newest, rates, {quote: day for quote, day in dates.items() if day < newest})


class CurrencyApi(Provider):
    """fawazahmed0's free currency-api on jsDelivr, with its documented Cloudflare mirror as fallback.

    ``GET {url}/v1/currencies/usd.json`` -> ``{"date": "2026-11-24", "usd": {"eur": 0.86, ...}}`` (lower-case codes)
    """

    name = "currency-api"
    title = "fawazahmed0 currency-api"
    default_urls = (
        "https://cdn.jsdelivr.net/npm/@fawazahmed0/currency-api@latest",
        "https://latest.currency-api.pages.dev",
    )

    def request(self, root, base):
        return f"{root}/v1/currencies/{base.lower()}.json", {}

    def parse(self, payload, base):
        return self._table(base, date.fromisoformat(payload["date"]), payload[base.lower()])


class OpenErApi(Provider):
    """ExchangeRate-API's open access endpoint (no key; rate-limited; attribution required by its terms).

    ``GET {url}/latest/USD`` -> ``{"result": "success", "base_code": "USD", "time_last_update_unix": 1764028951,
    "rates": {"EUR": 0.86, ...}, ...}``
    """

    name = "open-er-api"
    title = "ExchangeRate-API"
    default_urls = ("https://open.er-api.com/v6",)
    attribution = Attribution("Rates By Exchange Rate API", "https://www.exchangerate-api.com")

    def request(self, root, base):
        return f"{root}/latest/{base}", {}

    def parse(self, payload, base):
        if payload.get("result") != "success":
            raise ValueError(f"result {payload.get('result')!r} ({payload.get('error-type')})")
        _expect_base(payload["base_code"], base)
        day = datetime.fromtimestamp(int(payload["time_last_update_unix"]), timezone.utc).date()
        return self._table(base, day, payload["rates"])


PROVIDERS: dict[str, type[Provider]] = {cls.name: cls for cls in (FrankfurterV2, FrankfurterV1, CurrencyApi, OpenErApi)}


def providers_from_env(environ: Mapping[str, str] | None = None) -> list[Provider]:
    """Providers in the order of COINSPOTTER_RATE_PROVIDERS, each at its COINSPOTTER_RATE_URL_<NAME> if set."""
    env = os.environ if environ is None else environ
    setting = env.get("COINSPOTTER_RATE_PROVIDERS", "").strip() or ",".join(DEFAULT_PROVIDER_ORDER)
    if setting.lower() == "none":
        return []
    names = [name.strip().lower() for name in setting.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROVIDERS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"COINSPOTTER_RATE_PROVIDERS={setting!r}: list each of {', '.join(PROVIDERS)} at most once "
                         f"(or 'none'){'; unknown: ' + ', '.join(unknown) if unknown else ''}.")
    providers = []
    for name in names:
        urls = env.get(f"COINSPOTTER_RATE_URL_{name.upper().replace('-', '_')}", "").strip()
        providers.append(PROVIDERS[name](urls.split(",") if urls else None))
    return providers
