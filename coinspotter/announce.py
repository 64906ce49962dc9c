"""One sentence for the ear: what a classification found, as the page's live region announces it and its
"Speak result" button reads it aloud ("2 coins: 1 Euro, 50 Euro Cent; total 1.50 EUR").

Built from the service's own results, ``CoinSpotter.summarise`` and ``CoinSpotter.convert``: no amount is
added up or formatted here.
"""
from __future__ import annotations

from .service import CoinSpotter

NO_COIN_IDENTIFIED = "No coin could be identified in these files"  # the page's summary card says it too
NO_COIN_SURE = "No coin is sure enough to be counted; total 0"


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
    """Each coin the model is sure of and their total: in the chosen currency when ``conversion``
    (``CoinSpotter.convert``'s answer) has a ``total``, else per currency ("total 1 EUR and 0.25 USD"); then,
    apart, the coins it is not sure of, which are not in the total, and what they could add; then how many
    files gave no coin. "1 coin: 1 Euro; total 1 EUR; not sure, not in the total: 1 coin, maybe 50 Euro
    Cent, could add 0.50 EUR."
    """
    summary = CoinSpotter.summarise(results)
    conversion = conversion or {}
    coins = [result for result in results if result.get("ok")]
    sure = [result for result in coins if not result["uncertain"]]
    doubtful = [result for result in coins if result["uncertain"]]
    if not coins:
        sentence = NO_COIN_IDENTIFIED
    else:
        total = conversion.get("total")
        if sure:
            amounts = ([spoken_total(total)] if total else
                       [f"{entry['amount']} {entry['currency']}" for entry in summary["by_currency"]])
            sentence = f"{counted(len(sure), 'coin')}: {', '.join(map(coin_name, sure))}; total {' and '.join(amounts)}"
        else:
            sentence = NO_COIN_SURE
        if doubtful:
            could = conversion.get("not_sure")
            adds = ([f"{could['could_add']} {could['currency']}"] if could else
                    [f"{entry['amount']} {entry['currency']}" for entry in summary["not_sure"]["by_currency"]])
            sentence += (f"; not sure, not in the total: {counted(len(doubtful), 'coin')}, "
                         f"{', '.join(map(coin_name, doubtful))}, could add {' and '.join(adds)}")
    if summary["files_failed"]:
        sentence += f"; {counted(summary['files_failed'], 'file')} could not be used"
    return sentence + "."
