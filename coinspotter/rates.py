"""Exchange rates for converting coin values: live providers with fallbacks, a cache and an offline snapshot.

How a rate is found (``RateService.rate_set``):

1. Each provider is asked for one table of USD-based rates (``PIVOT``); any pair is a cross rate through it:
   EUR -> JPY = rate[JPY] / rate[EUR]. One table per provider serves every pair, so one call per provider
   per TTL is all the traffic there is.
2. Providers are tried in the configured order. The first whose table is fresh (fetched within the TTL),
   current (dated at most ``stale_after_days`` ago) and lists *every* currency of the request wins.
   A provider lacking a currency falls through to the next. All numbers of one answer come from one table:
   one source, one date, one label, and a sum of coins in several currencies is priced consistently.
3. A provider that fails (timeout, refused, HTTP error, malformed answer) is skipped for a cool-down
   (``CircuitBreaker``), or for as long as its ``Retry-After`` asks. Each call has a short timeout and the
   whole search a budget (about 3 s), kept even when a call ignores its timeout (a hanging DNS look-up):
   a page never waits longer on providers.
4. Only one thread fetches at a time (single flight); the others wait for its result instead of asking too.
5. When no live table qualifies, the newest usable one among stale or expired live tables and the bundled
   snapshot (``data/rates_snapshot.json``) is used; snapshot rates are labelled "offline rates as of DATE".
6. When nothing lists a currency, ``RateUnavailable`` says so in a sentence; no number is made up.

Environment (read by ``RateService.from_env``; empty means default):

=====================================  ==========================================================================
COINSPOTTER_RATE_PROVIDERS             order to try, comma-separated; default
                                       ``frankfurter-v2,frankfurter-v1,currency-api,open-er-api``; ``none``: offline
COINSPOTTER_RATE_URL_<NAME>            base URL(s) of one provider, comma-separated mirrors tried in order; NAME is
                                       the provider name upper-cased with ``_`` for ``-`` (``..._FRANKFURTER_V2``)
COINSPOTTER_RATE_CACHE                 cache file; default ``<user cache dir>/coinspotter/rates.json``; ``off``: memory
COINSPOTTER_RATE_TTL                   seconds a fetched table is used without asking again (default 21600 = 6 h)
COINSPOTTER_RATE_TIMEOUT               seconds per HTTP call (default 1.0)
COINSPOTTER_RATE_BUDGET                seconds for the whole search, all providers together (default 3.0)
COINSPOTTER_RATE_COOLDOWN              seconds a failed provider is skipped (default 300)
COINSPOTTER_RATE_STALE_DAYS            rates dated more days ago are flagged stale (default 5: a long weekend plus
                                       a holiday, when central banks publish nothing)
COINSPOTTER_RATE_SNAPSHOT              offline snapshot file (default: the bundled ``data/rates_snapshot.json``)
=====================================  ==========================================================================

The order puts Frankfurter v2 first because it prices every currency of the catalog in one table (v1, the
ECB's ~30 currencies, lacks TWD, CLP, PKR and RUB): the same EUR -> USD rate is then shown whether or not a
photo also holds a Taiwanese coin. ExchangeRate-API comes last: its open access is rate-limited and asks
for attribution (``RateOrigin.attribution``), which the page must show whenever its rates are used.

Refresh the snapshot with ``python -m coinspotter.rates refresh-snapshot`` (needs the internet).

The table type and the providers (the HTTP side) live in ``coinspotter.rate_sources``; this module chooses among
them, caches and converts. Their names are importable from here too.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from decimal import Context, Decimal
from pathlib import Path

from .catalog import load_catalog
from .money import TARGET_CURRENCIES, as_amount, currency_code, format_converted, round_money
from .rate_sources import (  # the table and provider names are part of this module's interface too
    DEFAULT_PROVIDER_ORDER,  # noqa: F401
    DEFAULT_TIMEOUT_S,
    MALFORMED,
    PROVIDERS,  # noqa: F401
    Attribution,
    CurrencyApi,  # noqa: F401
    FrankfurterV1,  # noqa: F401
    FrankfurterV2,  # noqa: F401
    JsonClient,
    OpenErApi,  # noqa: F401
    Provider,
    ProviderError,
    RateTable,
    providers_from_env,
)

log = logging.getLogger(__name__)

PIVOT = "USD"  # every table is fetched against it; all providers serve it
SNAPSHOT_PATH = Path(__file__).with_name("data") / "rates_snapshot.json"
DEFAULT_TTL_S = 6 * 3600.0  # providers publish once or a few times a day
DEFAULT_BUDGET_S = 3.0
DEFAULT_COOLDOWN_S = 300.0
DEFAULT_STALE_AFTER_DAYS = 5

# Amounts are multiplied and added at 28 digits, i.e. exactly for any coin value (cross rates keep 12, in
# rate_sources). An explicit context, so that a caller's decimal.getcontext() settings cannot change a result.
_AMOUNT_MATH = Context(prec=28)


class RateUnavailable(LookupError):
    """No source, live or offline, can price the currencies asked for. ``str(error)`` is a sentence for people."""

    def __init__(self, message: str, currencies: Iterable[str]):
        super().__init__(message)
        self.currencies = tuple(sorted(currencies))


def plain(number: Decimal) -> str:
    """A Decimal as JSON-friendly text without an exponent: Decimal('2E+2') -> '200'."""
    return format(number, "f")


def supported_currencies() -> list[str]:
    """Currencies the product must always price: the catalog's 32 plus the conversion targets."""
    return sorted(set(load_catalog().currencies) | set(TARGET_CURRENCIES))


# --- cache -----------------------------------------------------------------------------------------------


def default_cache_path() -> Path:
    """The per-user cache folder of the platform (never the repository): ~/.cache/coinspotter/rates.json on Linux."""
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "coinspotter" / "rates.json"


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON so that a reader sees the old file or the new one, never half of one (temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, ensure_ascii=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; rates are no secret
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class RateCache:
    """Rate tables by provider and base, in memory and, when ``path`` is set, in a JSON file shared by processes.

    Nothing is dropped for age: an expired table is still the best fallback while its provider is down;
    ``is_fresh`` says whether it may be used without asking the provider again. A cache file that cannot be
    read or written is logged and ignored: rates then live in memory only.
    """

    def __init__(self, path: Path | str | None = None, *, ttl: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path) if path else None
        self.ttl = ttl
        self._clock = clock
        self._tables: dict[str, RateTable] = {}
        self._lock = threading.Lock()
        self._file_seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read or written

    def get(self, provider: str, base: str) -> RateTable | None:
        with self._lock:
            self._read_file_if_changed()
            return self._tables.get(f"{provider}:{base}")

    def put(self, table: RateTable) -> None:
        with self._lock:
            self._read_file_if_changed()  # keep what another process wrote meanwhile
            self._tables[f"{table.provider}:{table.base}"] = table
            self._write_file()

    def is_fresh(self, table: RateTable) -> bool:
        return 0 <= self._clock() - table.fetched_at < self.ttl

    def _read_file_if_changed(self) -> None:
        if self.path is None:
            return
        try:
            stat = self.path.stat()
        except OSError:  # no file yet, or an unusable path: _write_file says so when it fails
            return
        if (stat.st_mtime_ns, stat.st_size) == self._file_seen:
            return
        self._file_seen = (stat.st_mtime_ns, stat.st_size)  # a broken file is reported once, not per request
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != 1:
                raise ValueError(f"unknown version {data.get('version')!r}")
            tables = [RateTable.from_json(entry) for entry in data["tables"].values()]
        except (OSError, *MALFORMED) as error:
            log.warning("Ignoring the unreadable rate cache %s (%s).", self.path, error)
            return
        for table in tables:
            key = f"{table.provider}:{table.base}"
            if key not in self._tables or table.fetched_at > self._tables[key].fetched_at:
                self._tables[key] = table

    def _write_file(self) -> None:
        if self.path is None:
            return
        try:
            tables = {key: table.to_json() for key, table in sorted(self._tables.items())}
            write_json_atomic(self.path, {"version": 1, "tables": tables})
            stat = self.path.stat()
            self._file_seen = (stat.st_mtime_ns, stat.st_size)
        except OSError as error:
            log.warning("Could not write the rate cache %s (%s); keeping rates in memory only.", self.path, error)


# --- answers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateOrigin:
    """Where the rates of one answer come from; to be shown next to the numbers."""

    provider: str  # "frankfurter-v2", "currency-api", ..., or "snapshot"
    source: str  # for people
    date: date  # the rates are "as of" this date
    offline: bool  # True: the bundled snapshot, not a live provider
    stale: bool  # True: dated more than stale_after_days ago
    attribution: Attribution | None  # must be shown when set (ExchangeRate-API's terms)

    @property
    def label(self) -> str:
        """One line for the page: 'offline rates as of 2024-12-31' or 'rates from Frankfurter (...), 2026-11-24'."""
        if self.offline:
            return f"offline rates as of {self.date.isoformat()}"
        return f"rates from {self.source}, {self.date.isoformat()}" + (" (out of date)" if self.stale else "")

    def as_dict(self) -> dict:
        return {
            "provider": self.provider,
            "source": self.source,
            "date": self.date.isoformat(),
            "offline": self.offline,
            "stale": self.stale,
            "label": self.label,
            "attribution": self.attribution.as_dict() if self.attribution else None,
        }


@dataclass(frozen=True)
class RateQuote:
    """Units of ``quote`` per one ``base``."""

    base: str
    quote: str
    rate: Decimal
    origin: RateOrigin

    def as_dict(self) -> dict:
        return {"base": self.base, "quote": self.quote, "rate": plain(self.rate), **self.origin.as_dict()}


@dataclass(frozen=True)
class Conversion:
    """``from_amount`` of ``from_currency`` expressed in ``currency``."""

    amount: Decimal  # rounded to the minor unit of `currency`
    currency: str
    exact_amount: Decimal  # before rounding; totals add these
    from_amount: Decimal
    from_currency: str
    quote: RateQuote

    @property
    def formatted(self) -> str:
        """Rounded to the minor unit; a value too small for it shows its first digits (``money.format_converted``)."""
        return format_converted(self.exact_amount, self.currency)

    def as_dict(self) -> dict:
        return {
            "amount": str(self.amount),
            "currency": self.currency,
            "formatted": self.formatted,
            "from_amount": str(self.from_amount),
            "from_currency": self.from_currency,
            "rate": plain(self.quote.rate),
        }


@dataclass(frozen=True)
class ConversionTotal:
    """Several amounts converted into one currency with one rate set, and their sum.

    ``amount`` is the sum of the lines' exact amounts, rounded once; it can differ by a minor unit from
    the sum of the rounded lines, and is the closer of the two to the true value.
    """

    amount: Decimal
    currency: str
    exact_amount: Decimal
    lines: tuple[Conversion, ...]
    origin: RateOrigin

    @property
    def formatted(self) -> str:
        """Rounded to the minor unit; a value too small for it shows its first digits (``money.format_converted``)."""
        return format_converted(self.exact_amount, self.currency)

    def as_dict(self) -> dict:
        return {
            "amount": str(self.amount),
            "currency": self.currency,
            "formatted": self.formatted,
            "lines": [line.as_dict() for line in self.lines],
            **self.origin.as_dict(),
        }


@dataclass(frozen=True)
class RateSet:
    """Rates for a fixed set of currencies from one table: everything computed from it shares one origin.

    Get one per request from ``RateService.rate_set`` and do all of that request's conversions with it.
    """

    table: RateTable
    currencies: frozenset[str]
    origin: RateOrigin

    def rate(self, base: str, quote: str) -> RateQuote:
        base, quote = currency_code(base), currency_code(quote)
        outside = {base, quote} - self.currencies
        if outside:
            raise ValueError(f"this rate set covers {', '.join(sorted(self.currencies))}, "
                             f"not {', '.join(sorted(outside))}; ask RateService.rate_set for all the "
                             "currencies of the request at once.")
        return RateQuote(base, quote, self.table.cross_rate(base, quote), self.origin)

    def convert(self, amount: Decimal, from_currency: str, to_currency: str) -> Conversion:
        amount = as_amount(amount)
        quote = self.rate(from_currency, to_currency)
        exact = _AMOUNT_MATH.multiply(amount, quote.rate)
        return Conversion(round_money(exact, quote.quote), quote.quote, exact, amount, quote.base, quote)

    def total(self, items: Iterable[tuple[Decimal, str]], to_currency: str) -> ConversionTotal:
        """``items`` (amount, currency) converted into ``to_currency`` and summed."""
        to_currency = currency_code(to_currency)
        lines = tuple(self.convert(amount, code, to_currency) for amount, code in items)
        exact = Decimal(0)
        for line in lines:
            exact = _AMOUNT_MATH.add(exact, line.exact_amount)
        return ConversionTotal(round_money(exact, to_currency), to_currency, exact, lines, self.origin)


# --- the service -----------------------------------------------------------------------------------------


class CircuitBreaker:
    """Keeps a failing provider aside for a cool-down, so a dead provider costs one timeout per cool-down
    instead of one per request. When the cool-down is over, the next request tries it again."""

    def __init__(self, cooldown: float, clock: Callable[[], float]):
        self.cooldown = cooldown
        self._clock = clock
        self._open_until = 0.0

    def allows_call(self) -> bool:
        return self._clock() >= self._open_until

    def record_failure(self, retry_after: float | None = None) -> float:
        """Open the breaker; returns for how many seconds."""
        pause = max(self.cooldown, retry_after or 0.0)
        self._open_until = self._clock() + pause
        return pause

    def record_success(self) -> None:
        self._open_until = 0.0


@dataclass
class _Search:
    """What one walk over the providers found."""

    table: RateTable | None = None  # fresh, current and covering: the answer
    fallbacks: list[RateTable] = field(default_factory=list)  # covering, but stale or past the TTL
    seen: list[RateTable] = field(default_factory=list)  # every table looked at, for the error message
    unreachable: list[str] = field(default_factory=list)  # providers that failed now or are cooling down
    wants_fetch: bool = False  # a provider ahead of any answer should be asked (walks without fetching)


class RateService:
    """Exchange rates from live providers in order, cached, with the offline snapshot as last resort.

    ``RateService.from_env()`` builds the production chain. Thread-safe; share one per process.
    ``providers`` are tried in order; ``cache`` holds fetched tables (memory only unless given a path);
    ``snapshot`` is the offline fallback (None: no fallback); ``budget`` bounds one search in seconds;
    ``clock`` (epoch seconds) drives the TTL, cool-downs and the stale flag, and is injectable for tests.
    """

    def __init__(
        self,
        providers: Sequence[Provider] = (),
        *,
        cache: RateCache | None = None,
        snapshot: RateTable | None = None,
        client: JsonClient | None = None,
        budget: float = DEFAULT_BUDGET_S,
        cooldown: float = DEFAULT_COOLDOWN_S,
        stale_after_days: int = DEFAULT_STALE_AFTER_DAYS,
        clock: Callable[[], float] = time.time,
    ):
        self.providers = tuple(providers)
        names = [provider.name for provider in self.providers]
        if len(set(names)) != len(names):
            raise ValueError(f"each provider may appear once (cache and cool-down go by name): {names}")
        self.cache = cache if cache is not None else RateCache(clock=clock)
        self.snapshot = snapshot
        self.client = client or JsonClient()
        self.budget = budget
        self.stale_after_days = stale_after_days
        self._clock = clock
        self._breakers = {provider.name: CircuitBreaker(cooldown, clock) for provider in self.providers}
        self._fetch_lock = threading.Lock()  # single flight; all fetches are for PIVOT, so one lock suffices

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RateService:
        """The service as configured by the COINSPOTTER_RATE_* variables (see the module docstring)."""
        env = os.environ if environ is None else environ
        cache_setting = env.get("COINSPOTTER_RATE_CACHE", "").strip()
        cache_path = None if cache_setting.lower() == "off" else Path(cache_setting or default_cache_path())
        return cls(
            providers_from_env(env),
            cache=RateCache(cache_path, ttl=_env_number(env, "COINSPOTTER_RATE_TTL", DEFAULT_TTL_S)),
            snapshot=load_snapshot(Path(env.get("COINSPOTTER_RATE_SNAPSHOT", "").strip() or SNAPSHOT_PATH)),
            client=JsonClient(timeout=_env_number(env, "COINSPOTTER_RATE_TIMEOUT", DEFAULT_TIMEOUT_S)),
            budget=_env_number(env, "COINSPOTTER_RATE_BUDGET", DEFAULT_BUDGET_S),
            cooldown=_env_number(env, "COINSPOTTER_RATE_COOLDOWN", DEFAULT_COOLDOWN_S),
            stale_after_days=int(_env_number(env, "COINSPOTTER_RATE_STALE_DAYS", DEFAULT_STALE_AFTER_DAYS)),
        )

    # The public questions; each is one rate set, so its numbers share one origin.

    def rate(self, base: str, quote: str) -> RateQuote:
        """Units of ``quote`` per one ``base``: ``rate('EUR', 'JPY').rate``."""
        return self.rate_set([base, quote]).rate(base, quote)

    def convert(self, amount: Decimal, from_currency: str, to_currency: str) -> Conversion:
        """``amount`` of ``from_currency`` in ``to_currency``, rounded to its minor unit."""
        amount = as_amount(amount)  # refuse a float before asking anyone for rates
        return self.rate_set([from_currency, to_currency]).convert(amount, from_currency, to_currency)

    def convert_many(self, items: Iterable[tuple[Decimal, str]], to_currency: str) -> ConversionTotal:
        """(amount, currency) pairs converted into ``to_currency`` and summed, all with one rate set."""
        items = [(as_amount(amount), code) for amount, code in items]
        return self.rate_set([to_currency, *(code for _, code in items)]).total(items, to_currency)

    def rates(self, base: str, symbols: Iterable[str] | None = None) -> dict:
        """JSON-ready rates of ``base`` (default symbols: ``supported_currencies()``), rates as strings, with origin."""
        base = currency_code(base)
        symbols = [currency_code(code) for code in (supported_currencies() if symbols is None else symbols)]
        rate_set = self.rate_set([base, *symbols])
        return {"base": base, "rates": {code: plain(rate_set.rate(base, code).rate) for code in symbols},
                **rate_set.origin.as_dict()}

    def rate_set(self, currencies: Iterable[str]) -> RateSet:
        """Rates for all ``currencies`` from one table; RateUnavailable if no source lists them all."""
        needed = frozenset(currency_code(code) for code in currencies)
        deadline = time.monotonic() + self.budget
        search = self._search(needed, deadline, may_fetch=False)  # the usual case: the cache answers
        if search.table is None and search.wants_fetch:
            search = self._search_fetching(needed, deadline) or search
        table = search.table or self._fallback(needed, search)
        day = table.date_for(needed)
        origin = RateOrigin(table.provider, table.source, day, table.offline, self._is_stale(day), table.attribution)
        return RateSet(table, needed, origin)

    def _search_fetching(self, needed: frozenset[str], deadline: float) -> _Search | None:
        """The search, asking providers where needed, within the deadline; None if the deadline came first.

        Single flight: one thread fetches while the others wait for the lock, then find its result in the cache.
        The fetching runs in a worker thread so that the deadline holds even where a call ignores its timeout
        (a DNS look-up can hang for seconds); the worker then finishes in the background and leaves what it
        got in the cache for the next request.
        """
        if not self._fetch_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return None
        found: list[_Search] = []

        def fetch_in_order() -> None:
            try:
                found.append(self._search(needed, deadline, may_fetch=True))
            finally:
                self._fetch_lock.release()

        worker = threading.Thread(target=fetch_in_order, name="coinspotter-rates", daemon=True)
        worker.start()
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
        return found[0] if found else None

    def _search(self, needed: frozenset[str], deadline: float, *, may_fetch: bool) -> _Search:
        search = _Search()
        for provider in self.providers:
            table = self.cache.get(provider.name, PIVOT)
            fresh = table is not None and self.cache.is_fresh(table)
            if not fresh:
                may_call = self._breakers[provider.name].allows_call()
                if may_call and not may_fetch:
                    search.wants_fetch = True
                elif may_call and time.monotonic() < deadline and (fetched := self._fetch(provider, deadline)):
                    table, fresh = fetched, True
                else:  # failed just now, cooling down, or out of time
                    search.unreachable.append(provider.name)
            if table is None:
                continue
            search.seen.append(table)
            if not table.covers(needed):
                continue  # falls through to the next provider
            if fresh and not self._is_stale(table.date_for(needed)) and not search.wants_fetch:
                search.table = table
                return search
            search.fallbacks.append(table)
        return search

    def _fetch(self, provider: Provider, deadline: float) -> RateTable | None:
        breaker = self._breakers[provider.name]
        try:
            table = provider.fetch(PIVOT, self.client, deadline)
        except ProviderError as error:
            pause = breaker.record_failure(error.retry_after)
            log.warning("Exchange-rate provider %s failed (%s); skipping it for %.0f s.", provider.name, error, pause)
            return None
        breaker.record_success()
        table = replace(table, fetched_at=self._clock())
        self.cache.put(table)
        return table

    def _fallback(self, needed: frozenset[str], search: _Search) -> RateTable:
        options = list(search.fallbacks)
        if self.snapshot is not None and self.snapshot.covers(needed):
            options.append(self.snapshot)
        if options:
            # The newest rates win; on a tie the live table beats the snapshot (max keeps the first of equals).
            return max(options, key=lambda table: table.date_for(needed))
        raise self._unavailable(needed, search)

    def _unavailable(self, needed: frozenset[str], search: _Search) -> RateUnavailable:
        sources = search.seen + ([self.snapshot] if self.snapshot is not None else [])
        answered = ", ".join(dict.fromkeys(table.provider for table in sources)) or "none"
        down = f"; not reachable now: {', '.join(search.unreachable)}" if search.unreachable else ""
        missing = sorted(needed - {code for table in sources for code in table.rates})
        if missing:
            pronoun = "it" if len(missing) == 1 else "them"
            message = (f"No exchange rate for {' or '.join(missing)}: none of the rate sources lists {pronoun} "
                       f"(checked: {answered}{down}).")
        else:
            message = (f"No single rate source lists all of {', '.join(sorted(needed))} right now "
                       f"(checked: {answered}{down}); convert them separately.")
        return RateUnavailable(message, missing or needed)

    def _is_stale(self, day: date) -> bool:
        today = datetime.fromtimestamp(self._clock(), timezone.utc).date()
        return (today - day).days > self.stale_after_days


def _env_number(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number.") from None


# --- offline snapshot ------------------------------------------------------------------------------------

_SNAPSHOT_KEYS = ("source", "date", "base", "attribution", "quote_dates", "rates")


def load_snapshot(path: Path | str = SNAPSHOT_PATH) -> RateTable:
    """The offline snapshot as a table labelled ``offline``; raises if the file is missing or malformed."""
    return RateTable.from_json(json.loads(Path(path).read_text(encoding="utf-8")), provider="snapshot", offline=True)


def refresh_snapshot(providers: Sequence[Provider], *, path: Path | str = SNAPSHOT_PATH,
                     client: JsonClient | None = None, currencies: Iterable[str] | None = None,
                     budget: float = 60.0) -> RateTable:
    """Replace the snapshot with the first provider's live table that lists every needed currency.

    ``currencies`` defaults to ``supported_currencies()``. Raises RateUnavailable (and keeps the old file)
    when no provider gives such a table. Returns the new snapshot as loaded back from ``path``.
    """
    needed = sorted(currency_code(code) for code in (supported_currencies() if currencies is None else currencies))
    client = client or JsonClient(timeout=10.0)
    deadline = time.monotonic() + budget
    problems = []
    for provider in providers:
        try:
            table = provider.fetch(PIVOT, client, deadline)
        except ProviderError as error:
            problems.append(f"{provider.name} failed ({error})")
            continue
        missing = [code for code in needed if code not in table.rates]
        if missing:
            problems.append(f"{provider.name} lacks {', '.join(missing)}")
            continue
        fetched = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        dates = {code: table.quote_dates.get(code, table.date) for code in needed}
        newest = max(dates.values())  # of the kept rates, not of the provider's whole table
        table = replace(
            table,
            source=f"{table.source} ({provider.name}), fetched {fetched} by "
                   "`python -m coinspotter.rates refresh-snapshot`",
            date=newest,
            rates={code: table.rates[code] for code in needed},
            quote_dates={code: day for code, day in dates.items() if day < newest},
        )
        data = table.to_json()
        write_json_atomic(Path(path), {
            "about": "Offline fallback of coinspotter.rates, used only when no live provider answers.",
            **{key: data[key] for key in _SNAPSHOT_KEYS},
        })
        return load_snapshot(path)
    reasons = "; ".join(problems) or "no provider configured"
    raise RateUnavailable(f"Snapshot not refreshed, the old one is kept: {reasons}.", needed)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m coinspotter.rates refresh-snapshot [--output PATH] [--timeout S]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m coinspotter.rates", description="Exchange-rate maintenance.")
    commands = parser.add_subparsers(dest="command", required=True)
    refresh = commands.add_parser("refresh-snapshot", help="fetch live rates into the offline snapshot "
                                  "(providers and URLs from COINSPOTTER_RATE_PROVIDERS / COINSPOTTER_RATE_URL_*)")
    refresh.add_argument("--output", type=Path, default=SNAPSHOT_PATH, help="snapshot file (default: the bundled one)")
    refresh.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP call (default 10)")
    args = parser.parse_args(argv)
    try:
        snapshot = refresh_snapshot(providers_from_env(), path=args.output, client=JsonClient(timeout=args.timeout))
    except (RateUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {len(snapshot.rates)} rates dated {snapshot.date.isoformat()} to {args.output}")
    print(f"  source: {snapshot.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
