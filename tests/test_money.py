from decimal import Decimal

import pytest

from coinspotter.catalog import load_catalog
from coinspotter.money import (
    CURRENCIES,
    TARGET_CURRENCIES,
    as_amount,
    currency,
    currency_code,
    format_converted,
    format_money,
    round_money,
)

NBSP = "\u00a0"


@pytest.mark.parametrize("amount, code, shown", [
    ("1234.5", "EUR", "€1,234.50"),
    ("1234.5", "JPY", "¥1,235"),
    ("1234.5", "USD", "$1,234.50"),
    ("1234567.891", "GBP", "£1,234,567.89"),
    ("1234.5", "KRW", "₩1,235"),
    ("0.5", "TWD", "NT$0.50"),
    ("2", "CAD", "CA$2.00"),
    ("1234.5", "CHF", f"CHF{NBSP}1,234.50"),
    ("1234.5", "HUF", f"HUF{NBSP}1,235"),
    ("16190.4", "IDR", f"IDR{NBSP}16,190"),
    ("999.5", "CLP", f"CLP{NBSP}1,000"),
    ("-1234.5", "EUR", "-€1,234.50"),
    ("-0.001", "EUR", "€0.00"),
    ("0", "INR", "₹0.00"),
    ("1.2345", "KWD", f"KWD{NBSP}1.235"),  # outside the table: ISO minor unit 3, shown by code
    ("7", "XYZ", f"XYZ{NBSP}7.00"),
])
def test_format_money(amount, code, shown):
    assert format_money(Decimal(amount), code) == shown


@pytest.mark.parametrize("amount, code, rounded", [
    ("0.125", "EUR", "0.13"),  # half up, where half-even would give 0.12
    ("0.135", "EUR", "0.14"),
    ("0.1249", "EUR", "0.12"),
    ("-0.125", "EUR", "-0.13"),  # ties away from zero on both sides
    ("2.5", "JPY", "3"),
    ("1.0005", "BHD", "1.001"),
    ("10", "USD", "10.00"),
])
def test_round_money_rounds_half_up_to_the_minor_unit(amount, code, rounded):
    result = round_money(Decimal(amount), code)
    assert (result, str(result)) == (Decimal(rounded), rounded)


def test_every_catalog_face_value_is_exact_in_its_own_currency():
    # The HUF and IDR choice (no decimals) must never change a coin's own value.
    for coin in load_catalog():
        assert round_money(coin.face_value, coin.currency) == coin.face_value, coin.label


def test_every_catalog_and_target_currency_has_a_symbol_and_minor_unit():
    codes = set(load_catalog().currencies) | set(TARGET_CURRENCIES)
    assert codes == set(CURRENCIES)
    assert {code for code, info in CURRENCIES.items() if info.minor_unit == 0} == {"CLP", "HUF", "IDR", "ISK", "JPY",
                                                                                  "KRW"}


def test_targets_are_36_current_codes():
    assert len(TARGET_CURRENCIES) == len(set(TARGET_CURRENCIES)) == 36
    assert not {"HRK", "BGN"} & set(TARGET_CURRENCIES)  # joined the euro in 2023 and 2026


def test_currency_outside_the_table():
    assert currency("kwd") == currency("KWD")
    assert (currency("KWD").symbol, currency("KWD").minor_unit, currency("VND").minor_unit) == ("KWD", 3, 0)


@pytest.mark.parametrize("value, expected", [
    (Decimal("0.10"), Decimal("0.10")),
    (3, Decimal(3)),
    (" 1.50 ", Decimal("1.50")),
])
def test_as_amount_takes_exact_values(value, expected):
    amount = as_amount(value)
    assert (amount, str(amount)) == (expected, str(expected))


@pytest.mark.parametrize("value, error, message", [
    (0.1, TypeError, "not float"),
    (True, TypeError, "not bool"),
    (None, TypeError, "not NoneType"),
    ("ten", ValueError, "not an amount of money"),
    ("NaN", ValueError, "not an amount of money"),
    (Decimal("Infinity"), ValueError, "not an amount of money"),
])
def test_as_amount_refuses_floats_and_non_numbers(value, error, message):
    with pytest.raises(error, match=message):
        as_amount(value)
    with pytest.raises(error, match=message):
        format_money(value, "EUR")


def test_currency_code():
    assert currency_code(" eur ") == "EUR"
    for bad in ("EURO", "E1R", "", 978, None):
        with pytest.raises(ValueError, match="not a currency code"):
            currency_code(bad)


@pytest.mark.parametrize("amount, code, shown", [
    ("0.000585", "USD", "$0.00059"),  # 5 paise in dollars: two significant digits, never "$0.00"
    ("0.003", "USD", "$0.003"),  # trailing zeros dropped
    ("0.0049449", "GBP", "£0.0049"),
    ("0.004999", "EUR", "€0.005"),  # half up at the second significant digit
    ("0.3", "JPY", "¥0.3"),  # no minor unit: a third of a yen
    ("0.0004", "CHF", f"CHF{NBSP}0.0004"),
    ("0.005", "EUR", "€0.01"),  # rounds to a cent: shown as usual
    ("1.2345", "EUR", "€1.23"),
    ("0", "USD", "$0.00"),  # zero is zero
    ("-0.002", "USD", "-$0.002"),
])
def test_small_converted_amounts_never_read_as_zero(amount, code, shown):
    assert format_converted(Decimal(amount), code) == shown
