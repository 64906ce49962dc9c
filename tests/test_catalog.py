from decimal import Decimal
from fractions import Fraction

import pytest

from coinspotter.catalog import load_catalog, read_catalog

EXPECTED_VALUES = {  # class id -> (display name, currency, face value): the issue's own examples and more
    208: ("1 Dime", "USD", "0.10"),
    75: ("25 Paise", "INR", "0.25"),
    35: ("1 Jiao", "CNY", "0.1"),
    38: ("10 Hellers", "CZK", "0.10"),
    88: ("1/2 New Sheqel", "ILS", "0.5"),
    152: ("50 Kopeks", "RUB", "0.50"),
    209: ("1/4 Dollar", "USD", "0.25"),
    210: ("1/2 Dollar", "USD", "0.5"),
    181: ("1/2 Franc", "CHF", "0.5"),
    185: ("1/2 Dollar", "TWD", "0.5"),
    54: ("1 Euro Cent", "EUR", "0.01"),
    61: ("2 Euro", "EUR", "2"),
    14: ("1 Penny", "GBP", "0.01"),
    34: ("500 Pesos", "CLP", "500"),
    98: ("500 Yen", "JPY", "500"),
    85: ("1000 Rupiah", "IDR", "1000"),
    200: ("1 Kurus", "TRY", "0.01"),
}
ISO_CODES = {
    "AUD", "BRL", "GBP", "CAD", "CLP", "CNY", "CZK", "DKK", "EUR", "HKD", "HUF", "INR", "IDR", "ILS", "JPY", "KRW",
    "MYR", "MXN", "NZD", "NOK", "PKR", "PHP", "PLN", "RUB", "SGD", "ZAR", "SEK", "CHF", "TWD", "THB", "TRY", "USD",
}


def test_every_class_of_the_data_set_is_in_the_catalog():
    catalog = load_catalog()
    assert catalog.class_ids == list(range(1, 212))
    assert set(catalog.currencies) == ISO_CODES


@pytest.mark.parametrize("class_id", range(1, 212))
def test_each_coin_is_complete_and_consistent(class_id):
    coin = load_catalog()[class_id]
    assert coin.currency in ISO_CODES
    assert isinstance(coin.face_value, Decimal) and coin.face_value > 0
    assert coin.name and "  " not in coin.name and coin.country
    assert len(coin.country_code) == 2 and coin.country_code.isupper()
    assert len(coin.flag) == 2
    # the display name keeps the data set's digits, with the lost slash of fractions restored
    source_name = coin.source_label.split(",")[0]
    assert coin.name.replace("/", " ").lower().rstrip("s") == source_name.lower().rstrip("s")  # "2 Euro Cents"
    # one unit word never means two different scales within the catalog
    same_unit = [c for c in load_catalog() if c.unit == coin.unit and c.currency == coin.currency]
    scales = {Fraction(str(c.face_value)) / Fraction(c.denomination) for c in same_unit}
    assert len(scales) == 1


@pytest.mark.parametrize("class_id,expected", EXPECTED_VALUES.items())
def test_known_face_values(class_id, expected):
    coin = load_catalog()[class_id]
    assert (coin.name, coin.currency, coin.face_value) == (expected[0], expected[1], Decimal(expected[2]))


def test_minor_units_are_hundredths_and_major_units_whole():
    catalog = load_catalog()
    assert all(c.face_value < 1 for c in catalog if c.unit.lower() in {"cent", "cents", "pence", "sen", "satang", "kurus"})
    assert all(c.face_value >= 1 for c in catalog if c.unit in {"Yen", "Won", "Forint", "Rupiah"})


def test_euro_coins_belong_to_the_euro_area_with_its_flag():
    coin = load_catalog()[60]
    assert (coin.country, coin.flag) == ("Euro area", "🇪🇺")


def test_read_catalog_rejects_duplicate_ids(tmp_path):
    from coinspotter.catalog import CATALOG_CSV

    lines = CATALOG_CSV.read_text(encoding="utf-8").splitlines()
    (tmp_path / "c.csv").write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate"):
        read_catalog(tmp_path / "c.csv")
