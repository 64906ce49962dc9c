"""One sentence for the ear: what a classification found, as the page's live region announces it and its
"Speak result" button reads it aloud ("2 coins: 1 Euro, 50 Euro Cent; total 1.50 EUR").

Built from the service's own results, ``CoinSpotter.summarise`` and ``CoinSpotter.convert``: no amount is
added up or formatted here.
"""
from __future__ import annotations

from .service import CoinSpotter

NO_COIN_IDENTIFIED = "No coin could be identified in these files"  # the page's summary card says it too


def counted(count: int, noun: str) -> str:
    """``counted(1, "coin") == "1 coin"``, ``counted(3, "coin") == "3 coins"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def coin_name(result: dict) -> str:
    """A coin as the page's card titles it: "1 Euro", or "maybe 1 Euro" when the model is not sure."""
    name = result["prediction"]["name"]
    return f"maybe {name}" if result["uncertain"] else name


def spoken_total(total: dict) -> str:
    """``"1.50 EUR"``; a total too small for the currency's minor unit, which ``amount`` rounds to zero, as its
    ``formatted`` digits (``"$0.003"``), so that it is never announced as nothing."""
    from decimal import Decimal

    if Decimal(total["amount"]) == 0 and any(digit in total["formatted"] for digit in "123456789"):
        return total["formatted"]
    return f"{total['amount']} {total['currency']}"


def result_sentence(results: list[dict], conversion: dict | None = None) -> str:
    """Each coin in order and the total: in the chosen currency when ``conversion`` (``CoinSpotter.convert``'s
    answer) has a ``total``, else per currency ("total 1 EUR and 0.25 USD"); then how many files gave no coin."""
    summary = CoinSpotter.summarise(results)
    coins = [result for result in results if result.get("ok")]
    if not coins:
        sentence = NO_COIN_IDENTIFIED
    else:
        total = (conversion or {}).get("total")
        amounts = ([spoken_total(total)] if total else
                   [f"{entry['amount']} {entry['currency']}" for entry in summary["by_currency"]])
        sentence = f"{counted(summary['coins'], 'coin')}: {', '.join(map(coin_name, coins))}; total {' and '.join(amounts)}"
    if summary["files_failed"]:
        sentence += f"; {counted(summary['files_failed'], 'file')} could not be used"
    return sentence + "."
