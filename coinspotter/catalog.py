"""The coin catalog: one row per class of the coin-images data set, kept as data in ``data/catalog.csv``.

Face values are exact decimals in the currency's main unit (1 Dime = 0.10 USD), never floats:
they are money and are multiplied by exchange rates later.
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

CATALOG_CSV = Path(__file__).with_name("data") / "catalog.csv"


@dataclass(frozen=True)
class Coin:
    class_id: int
    name: str  # display name, e.g. "1/4 Dollar"
    denomination: str  # "1/4", "50"
    unit: str  # "Dollar", "Kopeks"
    face_value: Decimal  # in the currency's main unit
    currency: str  # ISO 4217 code
    currency_name: str
    country: str
    country_code: str  # ISO 3166-1 alpha-2 ("EU" for the euro area)
    source_label: str  # the data set's own cat_to_name.json entry

    @property
    def flag(self) -> str:
        """The country's flag as an emoji (two regional-indicator symbols)."""
        return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in self.country_code.upper())

    @property
    def label(self) -> str:
        """Name with its country, for places where the name alone is ambiguous (1 Dollar exists 5 times)."""
        return f"{self.name} ({self.country})"

    def as_dict(self) -> dict:
        return {
            "class_id": self.class_id,
            "name": self.name,
            "country": self.country,
            "currency": self.currency,
            "face_value": str(self.face_value),
        }


class Catalog:
    def __init__(self, coins: list[Coin]):
        self._by_id = {coin.class_id: coin for coin in coins}
        if len(self._by_id) != len(coins):
            raise ValueError("duplicate class id in catalog")

    def __getitem__(self, class_id: int) -> Coin:
        return self._by_id[int(class_id)]

    def __contains__(self, class_id: object) -> bool:
        return class_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(sorted(self._by_id.values(), key=lambda coin: coin.class_id))

    @property
    def class_ids(self) -> list[int]:
        return sorted(self._by_id)

    @property
    def currencies(self) -> list[str]:
        return sorted({coin.currency for coin in self._by_id.values()})


def read_catalog(path: Path | str = CATALOG_CSV) -> Catalog:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    coins = [
        Coin(
            class_id=int(row["class_id"]),
            name=row["name"],
            denomination=row["denomination"],
            unit=row["unit"],
            face_value=Decimal(row["face_value"]),
            currency=row["currency"],
            currency_name=row["currency_name"],
            country=row["country"],
            country_code=row["country_code"],
            source_label=row["source_label"],
        )
        for row in rows
    ]
    return Catalog(coins)


@functools.cache
def load_catalog() -> Catalog:
    """The bundled catalog, read once per process."""
    return read_catalog()
