"""Money as exact decimals: currency codes, minor units, rounding and display.

Amounts are ``Decimal`` from end to end; a float is refused wherever an amount comes in, because
``0.1 + 0.2 != 0.3`` in binary and a coin total must add up to the cent.

Decisions, written down once:

* **Rounding** is ``ROUND_HALF_UP`` (ties away from zero: 1234.5 JPY -> 1,235), the commercial rounding
  people expect on a price tag. Banker's rounding (half-even) only pays off when many rounded values are
  summed; totals here are summed unrounded and rounded once (see ``coinspotter.rates``), so that reason
  does not apply.
* **Minor units** follow ISO 4217 (JPY, KRW, CLP, ISK: 0 decimals; most: 2), with two deliberate
  exceptions: HUF and IDR are shown without decimals although ISO lists 2, because their subunits
  (fillér, sen) have no coins or notes and no price is written with them (the fillér went in 1999).
  TWD keeps ISO's 2 decimals although prices are whole dollars: the 1/2 dollar coin is in the catalog.
* **Symbols** are the ones English-language formatting uses (the CLDR ``en`` locale, as browsers'
  ``Intl.NumberFormat('en', ...)`` and Babel show them): ``$ € ¥ £ A$ CA$ ...``; currencies without a
  widely known English symbol show their code followed by a no-break space (``CHF 1,234.50``).
  Grouping is always ``,`` and the decimal mark ``.``: the output never depends on the machine's locale.
* **Small converted amounts never read as zero.** A converted value or total that rounds to zero in its
  currency's minor unit but is not zero (5 paise in US dollars: $0.000585) is shown with its first
  ``SMALL_SIGNIFICANT_DIGITS`` significant digits instead (``$0.00059``; 0.3 cent: ``$0.003``), by
  ``format_converted``: the page, the API's ``formatted`` and the CLI all use it. The ``amount`` beside it
  stays the value rounded to the minor unit, what a till would show.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ROUNDING = ROUND_HALF_UP
SMALL_SIGNIFICANT_DIGITS = 2  # of a converted amount that would round to zero
NO_BREAK_SPACE = "\u00a0"
_CODE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class Currency:
    code: str  # ISO 4217
    name: str  # English name (CLDR "en")
    symbol: str  # as shown before an amount
    minor_unit: int  # decimals shown and rounded to


def _currencies(*rows: tuple[str, str, str, int]) -> dict[str, Currency]:
    return {row[0]: Currency(*row) for row in rows}


# The 32 catalog currencies plus the conversion targets offered to users.
CURRENCIES: dict[str, Currency] = _currencies(
    ("AED", "United Arab Emirates Dirham", "AED", 2),
    ("AUD", "Australian Dollar", "A$", 2),
    ("BRL", "Brazilian Real", "R$", 2),
    ("CAD", "Canadian Dollar", "CA$", 2),
    ("CHF", "Swiss Franc", "CHF", 2),
    ("CLP", "Chilean Peso", "CLP", 0),
    ("CNY", "Chinese Yuan", "CN¥", 2),
    ("COP", "Colombian Peso", "COP", 2),
    ("CZK", "Czech Koruna", "CZK", 2),
    ("DKK", "Danish Krone", "DKK", 2),
    ("EUR", "Euro", "€", 2),
    ("GBP", "British Pound", "£", 2),
    ("HKD", "Hong Kong Dollar", "HK$", 2),
    ("HUF", "Hungarian Forint", "HUF", 0),  # ISO says 2; see module docstring
    ("IDR", "Indonesian Rupiah", "IDR", 0),  # ISO says 2; see module docstring
    ("ILS", "Israeli New Shekel", "₪", 2),
    ("INR", "Indian Rupee", "₹", 2),
    ("ISK", "Icelandic Króna", "ISK", 0),
    ("JPY", "Japanese Yen", "¥", 0),
    ("KRW", "South Korean Won", "₩", 0),
    ("MXN", "Mexican Peso", "MX$", 2),
    ("MYR", "Malaysian Ringgit", "MYR", 2),
    ("NOK", "Norwegian Krone", "NOK", 2),
    ("NZD", "New Zealand Dollar", "NZ$", 2),
    ("PHP", "Philippine Peso", "₱", 2),
    ("PKR", "Pakistani Rupee", "PKR", 2),
    ("PLN", "Polish Zloty", "PLN", 2),
    ("RON", "Romanian Leu", "RON", 2),
    ("RUB", "Russian Ruble", "RUB", 2),
    ("SAR", "Saudi Riyal", "SAR", 2),
    ("SEK", "Swedish Krona", "SEK", 2),
    ("SGD", "Singapore Dollar", "SGD", 2),
    ("THB", "Thai Baht", "THB", 2),
    ("TRY", "Turkish Lira", "TRY", 2),
    ("TWD", "New Taiwan Dollar", "NT$", 2),
    ("USD", "US Dollar", "$", 2),
    ("ZAR", "South African Rand", "ZAR", 2),
)

# What a user may ask totals in: the original app's 36 targets minus retired codes (HRK became EUR in
# 2023, BGN in 2026), with ISK taking the freed place. Ordered roughly by how often people pick them.
TARGET_CURRENCIES: tuple[str, ...] = (
    "USD", "EUR", "JPY", "GBP", "AUD", "CAD", "CHF", "CNY", "HKD", "NZD", "SEK", "KRW",
    "SGD", "NOK", "MXN", "INR", "RUB", "ZAR", "TRY", "BRL", "TWD", "DKK", "PLN", "THB",
    "IDR", "HUF", "CZK", "ILS", "CLP", "PHP", "AED", "COP", "SAR", "MYR", "RON", "ISK",
)  # fmt: skip

# ISO 4217 minor units other than 2, for currencies outside the table above (a live provider can price
# 200+ currencies; they are shown by code).
_ISO_MINOR_UNITS_NOT_2 = {
    **dict.fromkeys(["BIF", "DJF", "GNF", "KMF", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


def currency_code(code: object) -> str:
    """``code`` as an upper-case ISO 4217 code (``" eur"`` -> ``"EUR"``); ValueError if it cannot be one."""
    text = str(code).strip().upper() if isinstance(code, str) else ""
    if not _CODE.fullmatch(text):
        raise ValueError(f"{code!r} is not a currency code; use three letters such as USD or EUR.")
    return text


def currency(code: str) -> Currency:
    """What is known about a currency; codes outside the table get their ISO minor unit and show as the code."""
    code = currency_code(code)
    known = CURRENCIES.get(code)
    return known or Currency(code, code, code, _ISO_MINOR_UNITS_NOT_2.get(code, 2))


def as_amount(value: object) -> Decimal:
    """An amount as a finite Decimal, from a Decimal, an int or a numeric string. Floats are refused."""
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError(f"amounts must be Decimal, int or str, not {type(value).__name__} ({value!r}): "
                        "binary floats cannot hold 0.10 exactly; write Decimal('0.10').")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, (int, str)):
        try:
            amount = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not an amount of money.") from None
    else:
        raise TypeError(f"amounts must be Decimal, int or str, not {type(value).__name__}.")
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not an amount of money.")
    return amount


def round_money(amount: Decimal, code: str) -> Decimal:
    """``amount`` rounded half up to the currency's minor unit: ``Decimal('0.125')`` EUR -> ``Decimal('0.13')``."""
    step = Decimal(1).scaleb(-currency(code).minor_unit)
    return as_amount(amount).quantize(step, rounding=ROUNDING)


def format_money(amount: Decimal, code: str) -> str:
    """``amount`` for display: rounded to the minor unit, grouped, with the currency's English symbol.

    ``format_money(Decimal('1234.5'), 'EUR') == '€1,234.50'``, ``'JPY'`` -> ``'¥1,235'``,
    ``'CHF'`` -> ``'CHF\\u00a01,234.50'``, a negative amount -> ``'-€1,234.50'``.
    """
    info = currency(code)
    value = round_money(amount, info.code)
    sign = "-" if value < 0 else ""  # Decimal('-0.00') is not < 0, so a rounded-away minus disappears
    digits = f"{abs(value):,.{info.minor_unit}f}"
    gap = NO_BREAK_SPACE if info.symbol[-1].isalpha() else ""  # "CHF 5.00" but "$5.00"
    return f"{sign}{info.symbol}{gap}{digits}"


def format_converted(exact: Decimal, code: str) -> str:
    """A converted value for display: ``format_money`` of it, except that an amount which is not zero but rounds
    to zero in the minor unit shows its first SMALL_SIGNIFICANT_DIGITS significant digits (half up, trailing
    zeros dropped), so it never reads as nothing: ``Decimal('0.000585')`` USD -> ``'$0.00059'``,
    ``Decimal('0.003')`` USD -> ``'$0.003'``, ``Decimal('0.3')`` JPY -> ``'¥0.3'``."""
    exact = as_amount(exact)
    info = currency(code)
    if exact == 0 or round_money(exact, info.code) != 0:
        return format_money(exact, info.code)
    step = Decimal(1).scaleb(exact.adjusted() - SMALL_SIGNIFICANT_DIGITS + 1)
    value = abs(exact).quantize(step, rounding=ROUNDING)
    digits = f"{value:f}".rstrip("0").rstrip(".")
    sign = "-" if exact < 0 else ""
    gap = NO_BREAK_SPACE if info.symbol[-1].isalpha() else ""
    return f"{sign}{info.symbol}{gap}{digits}"
