"""The one classification path behind the page, the JSON API and the command line.

Uploads in, one result per coin out: each upload is decoded and checked, its coins are found, every
coin of every upload is classified in one batch, and each failure stays with its own file.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from PIL import Image

from . import currency_hint
from .catalog import Catalog, load_catalog
from .config import Settings
from .imageio import ImageError, decode_image
from .inference import ModelRegistry
from .finder import find_coins
from .localize import CoinBox, crop_box
from .money import TARGET_CURRENCIES, currency_code
from .rates import RateService, RateUnavailable, supported_currencies

log = logging.getLogger(__name__)

MODEL_CHOICES = ("student", "ensemble")
MAX_TOP = 20
MAX_FILENAME_CHARS = 200  # longer names are cut: a name is a label, never a path
NO_COIN_FOUND = "No coin was found in this photo. Try a closer, sharper photo on a plain surface."
# What values can be converted into: the targets first (the order people pick them in), then the catalog's
# other currencies. All of them are in the offline snapshot, so each can always be priced somehow.
CONVERSION_CURRENCIES: tuple[str, ...] = TARGET_CURRENCIES + tuple(
    sorted(set(supported_currencies()) - set(TARGET_CURRENCIES))
)


class RequestError(ValueError):
    """The request as a whole cannot be served (unknown model, bad ``top``...): a 4xx, not a crash."""


def display_filename(name: object) -> str:
    r"""What a result calls an uploaded file: the name the client sent, as a label only (uploads are never stored,
    so ``../`` leads nowhere), without control or format characters, at most MAX_FILENAME_CHARS long.
    ``"a\u202egpj.exe"`` -> ``"agpj.exe"``. It stays text: the page escapes it, JSON quotes it.
    """
    # a newline, an escape sequence or U+202E (which makes "a\u202egpj.exe" read "aexe.jpg") goes; other spaces
    # become plain ones (macOS puts U+202F in screenshot names)
    text = "".join(char if char.isprintable() else " " if char.isspace() else "" for char in str(name or ""))
    return text if len(text) <= MAX_FILENAME_CHARS else text[: MAX_FILENAME_CHARS - 1] + "…"


@dataclass
class Upload:
    filename: str
    data: bytes

    def __post_init__(self):
        self.filename = display_filename(self.filename)


# Called with each decoded photo and its coin boxes while the photo is in memory, so that a caller can draw
# from it (the page's thumbnails) without decoding the upload a second time.
PhotoHook = Callable[[int, Image.Image, list[CoinBox]], None]


@dataclass
class _Coin:
    """A coin crop waiting for the classifier, with where it came from."""

    upload_index: int
    coin_index: int
    box: CoinBox
    crop: Image.Image
    image_size: tuple[int, int]  # width, height of the photo: the API's box is clipped to it


def conversion_currency(code: object) -> str:
    """``code`` as one of CONVERSION_CURRENCIES (``" eur"`` -> ``"EUR"``); RequestError if it is not one."""
    try:
        code = currency_code(code)
    except ValueError as error:
        raise RequestError(str(error)) from None
    if code not in CONVERSION_CURRENCIES:
        raise RequestError(f"{code} is not a currency values can be shown in; choose one of "
                           f"{', '.join(CONVERSION_CURRENCIES)}")
    return code


def coin_currencies(value: object) -> list[str] | None:
    """The "Coins from" hint as a list of the catalog's currency codes, in the order given, each once:
    ``"eur, usd"`` or ``["EUR", "USD"]`` -> ``["EUR", "USD"]``; None (no hint: every class) for None, ``""`` or
    ``[]``. RequestError for anything else, naming the code that is not one of the catalog's currencies."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(code, str) for code in value):
        raise RequestError("currencies must be currency codes separated by commas, such as EUR,USD")
    known = load_catalog().currencies
    codes = []
    for raw in value:
        if not raw.strip():
            continue
        try:
            code = currency_code(raw)
        except ValueError as error:
            raise RequestError(f"currencies: {error}") from None
        if code not in known:
            raise RequestError(f"currencies: no coin of {code} is in the catalog; choose among {', '.join(known)}")
        if code not in codes:
            codes.append(code)
    return codes or None


class CoinSpotter:
    """The classifier, the catalog and the exchange rates behind every entry point. Each part comes from the
    environment (``Settings.from_env``, ``RateService.from_env``) unless given, as tests give their own."""

    def __init__(self, settings: Settings | None = None, registry: ModelRegistry | None = None,
                 rates: RateService | None = None):
        self.settings = settings or Settings.from_env()
        self.catalog: Catalog = load_catalog()
        self.registry = registry or ModelRegistry(self.settings.models_dir)
        self.rates = rates if rates is not None else RateService.from_env()
        # bounds the photos decoded at once across all request threads (see Settings.images_at_once)
        self._image_slots = threading.BoundedSemaphore(self.settings.images_at_once)

    def load(self, warm_up: bool = True) -> "CoinSpotter":
        self.registry.load_all(warm_up=warm_up)
        return self

    # -- what the page and the API show about models
    def model_status(self) -> dict[str, dict]:
        status = {}
        for name in MODEL_CHOICES:
            card = self.registry.cards.get(name)
            if card is None:
                status[name] = {"available": False, "reason": f"no {name} model is bundled yet"}
            elif name in self.registry.unavailable:
                status[name] = {"available": False, "reason": self.registry.unavailable[name]}
            else:
                status[name] = {"available": True, "display_name": card.display_name}
        return status

    def check_request(self, model: str, top: int, count: int) -> None:
        if model not in MODEL_CHOICES:
            raise RequestError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CHOICES)}")
        status = self.model_status()[model]
        if not status["available"]:
            raise RequestError(f"model {model!r} is not available: {status['reason']}")
        if not 1 <= top <= MAX_TOP:
            raise RequestError(f"top must be between 1 and {MAX_TOP}")
        if count == 0:
            raise RequestError("no image was sent; send one or more files in the field 'image'")
        if count > self.settings.limits.max_files:
            raise RequestError(f"{count} files at once; the limit is {self.settings.limits.max_files} per request. "
                               "Please send them in smaller groups.")

    # -- the classification itself
    def classify(self, uploads: list[Upload], model: str = "student", top: int = 5,
                 currency: str | None = None, explain: bool = False, currencies=None) -> dict:
        """The API's answer: one result per coin (or per failed file), in upload order, and a summary.

        With a ``currency``, each coin also gets its ``converted`` value and the answer a ``total`` in that
        currency (or a ``rates_error`` when no rate source can price it; see ``convert``). With ``explain``,
        each coin gets its Grad-CAM ``explanation`` (see ``classify_per_upload``). ``currencies``, the "Coins
        from" hint (see ``classify_per_upload``), is echoed as the answer's ``currencies`` (None: no hint).
        """
        started = time.perf_counter()
        if currency is not None:
            currency = conversion_currency(currency)  # a mistyped code fails before any model work
        currencies = coin_currencies(currencies)
        card, per_upload = self.classify_per_upload(uploads, model, top, explain=explain, currencies=currencies)
        results = [result for results in per_upload for result in results]
        answer = {
            "model": model,
            "model_name": card.display_name,
            "currencies": currencies,
            "results": results,
            "summary": self.summarise(results),
        }
        if currency is not None:
            answer.update(self.convert(results, currency))
        answer["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return answer

    def classify_per_upload(self, uploads: list[Upload], model: str = "student", top: int = 5,
                            on_photo: PhotoHook | None = None, explain: bool = False, currencies=None):
        """(model card, one list of results per upload): a coin result per coin found, or one error.

        ``on_photo(index, image, boxes)`` sees each decoded photo that holds coins (see PhotoHook).
        ``explain``: each coin result also gets ``explanation``, a PNG data URL of the Grad-CAM heat map of its
        predicted class over its crop, and ``explanation_model``, the card name of the model explained (an
        ensemble's first member). Off by default: it costs about one more model pass per coin.
        ``currencies``: the "Coins from" hint (codes, as ``coin_currencies`` takes them); only the classes of
        those currencies are kept, their probabilities renormalised (``currency_hint.restrict``), and each coin
        gets ``currencies_probability``, what the model gave those currencies before (see ``_coin_result``).
        """
        currencies = coin_currencies(currencies)
        self.check_request(model, top, len(uploads))
        classifier = self.registry.get(model)
        hint = self._hint_mask(classifier, model, currencies)
        explainer = self._explainer(classifier) if explain else None  # an unexplainable model fails before any work
        uncertain_below = classifier.card.uncertain_below or self.settings.uncertain_below

        per_upload: list[list[dict]] = [[] for _ in uploads]
        coins: list[_Coin] = []
        for index, upload in enumerate(uploads):
            with self._image_slots:  # the decoded photo, the big allocation, lives only in here
                found = self._find_coins(index, upload, on_photo)
            if isinstance(found, str):
                per_upload[index].append(self.error_result(upload.filename, found))
            else:
                coins.extend(found)

        # every coin of every upload in one batch: one model call instead of one per photo
        probabilities = classifier.predict_images([coin.crop for coin in coins]) if coins else []
        masses = [None] * len(coins)
        if hint is not None and coins:
            probabilities, masses = currency_hint.restrict(probabilities, hint)
        results = [self._coin_result(uploads[coin.upload_index].filename, coin, row, classifier.class_ids, top,
                                     uncertain_below, hint, mass)
                   for coin, row, mass in zip(coins, probabilities, masses)]
        if explainer is not None and coins:
            pictures = explainer.explain([coin.crop for coin in coins],
                                         [result["prediction"]["class_id"] for result in results])
            for result, picture in zip(results, pictures):
                result.update(explanation=picture, explanation_model=explainer.model_name)
        for coin, result in zip(coins, results):
            per_upload[coin.upload_index].append(result)
        return classifier.card, per_upload

    def _hint_mask(self, classifier, model: str, currencies: list[str] | None):
        """The outputs the hint keeps (None: no hint); RequestError when the model knows no coin of them."""
        if currencies is None:
            return None
        mask = currency_hint.currency_mask(classifier.class_ids, currencies, self.catalog)
        if not mask.any():
            raise RequestError(f"model {model!r} knows no coin of {', '.join(currencies)}")
        return mask

    @staticmethod
    def _explainer(classifier):
        from .explain import ExplainError, explainer_for  # imported on request: the default path never needs it

        try:
            return explainer_for(classifier)
        except ExplainError as error:
            raise RequestError(f"explanations are not available for this model: {error}") from None

    def _find_coins(self, index: int, upload: Upload, on_photo: PhotoHook | None) -> list[_Coin] | str:
        """The coins of one upload, cropped, or the sentence saying why there are none."""
        try:
            image = decode_image(upload.data, self.settings.limits)
        except ImageError as error:
            return str(error)
        boxes = find_coins(image).boxes
        if not boxes:
            return NO_COIN_FOUND
        if on_photo is not None:
            on_photo(index, image, boxes)
        return [_Coin(index, number, box, crop_box(image, box), image.size)
                for number, box in enumerate(boxes, start=1)]

    @staticmethod
    def error_result(filename: str, message: str) -> dict:
        """The result for a file that gave no coin: its name and a sentence for the user."""
        return {"filename": filename, "ok": False, "error": message}

    def _coin_result(self, filename, coin: _Coin, row, class_ids, top, uncertain_below, hint=None,
                     mass=None) -> dict:
        """One coin's result. With a "Coins from" hint, ``row`` is renormalised over the outputs ``hint`` keeps,
        only those are ranked, and ``mass`` is what the model gave them before: the coin is not sure when it is
        about zero (``currency_hint.too_little_mass``)."""
        order = np.argsort(-row)
        if hint is not None:
            order = order[hint[order]]
        order = order[:top]
        ranked = [{**self.catalog[class_ids[i]].as_dict(), "probability": round(float(row[i]), 4)} for i in order]
        result = {
            "filename": filename,
            "ok": True,
            "coin": coin.coin_index,
            "box": coin.box.clipped(*coin.image_size).as_list(),
            "prediction": ranked[0],
            "top": ranked,
            "uncertain": ranked[0]["probability"] < uncertain_below,
        }
        if mass is not None:
            result["uncertain"] |= bool(currency_hint.too_little_mass(mass))
            result["currencies_probability"] = round(float(mass), 6)
        if coin.box.doubtful:  # the finder itself doubts it is a coin (half hidden in a heap, or a shadow)
            result["uncertain"] = True
            result["maybe_not_a_coin"] = True
        return result

    # -- values in one currency
    def convert(self, results: list[dict], currency: str) -> dict:
        """Give each coin of ``results`` its face value in ``currency`` (``result["converted"]``, added in place)
        and return what the answer adds: ``{"total": ...}``, or ``{"rates_error": sentence}`` when no rate
        source can price every currency involved (then no coin gets a value: none is better than a wrong one).
        The total adds only the coins the model is sure of (``total["coins"]`` of them); with not-sure coins,
        ``not_sure`` says how many and what they ``could_add`` if each is the coin it most likely is.

        All values come from one rate table (``RateService.rate_set``): one source, one date, one label.
        The total adds the exact values and rounds once, so it may differ by a cent from the rounded values' sum.
        """
        currency = conversion_currency(currency)
        coins = [result for result in results if result.get("ok")]
        items = [(Decimal(coin["prediction"]["face_value"]), coin["prediction"]["currency"]) for coin in coins]
        try:
            rate_set = self.rates.rate_set([currency, *(code for _, code in items)])
        except RateUnavailable as error:
            log.warning("No conversion into %s: %s", currency, error)
            return {"rates_error": f"Values cannot be shown in {currency} right now. {error}"}
        every = rate_set.total(items, currency)
        for coin, line in zip(coins, every.lines):
            coin["converted"] = {"currency": line.currency, "amount": str(line.amount), "formatted": line.formatted}
        # Honest totals: only the coins the model is sure of are added up; the not-sure ones are what the
        # total could grow by if each is the coin it most likely is (one rate table for both).
        sure = [item for coin, item in zip(coins, items) if not coin.get("uncertain")]
        doubtful = [item for coin, item in zip(coins, items) if coin.get("uncertain")]
        total = rate_set.total(sure, currency)
        answer = {
            "total": {
                "currency": total.currency,
                "amount": str(total.amount),
                "formatted": total.formatted,
                "coins": len(sure),
                "rates": total.origin.as_dict(),
            }
        }
        if doubtful:
            could_add = rate_set.total(doubtful, currency)
            answer["not_sure"] = {"coins": len(doubtful), "currency": could_add.currency,
                                  "could_add": str(could_add.amount), "formatted": could_add.formatted}
        return answer

    def exchange_rates(self, base: str = "USD", symbols: list[str] | None = None) -> dict:
        """The rates in use from ``base`` into ``symbols`` (default: every conversion currency), as strings,
        with where they come from. RequestError for a code outside CONVERSION_CURRENCIES; RateUnavailable
        when no source lists them all."""
        base = conversion_currency(base)
        wanted = list(dict.fromkeys(conversion_currency(code) for code in symbols)) if symbols else None
        return self.rates.rates(base, wanted)

    @staticmethod
    def summarise(results: list[dict]) -> dict:
        """Face values added up per currency (``convert`` puts them into one currency), over the coins the model
        is sure of only. ``coins``/``by_currency``: those coins; ``in_total``: which they are ({filename, coin});
        ``not_sure``: the others, apart (``coins``, ``which``, and ``by_currency``: what they could add if each is
        the coin it most likely is). A not-sure coin is never part of a total."""
        totals: "OrderedDict[str, dict]" = OrderedDict()
        doubtful: "OrderedDict[str, dict]" = OrderedDict()
        in_total, not_sure = [], []
        for result in results:
            if not result.get("ok"):
                continue
            prediction = result["prediction"]
            uncertain = bool(result.get("uncertain"))
            group = doubtful if uncertain else totals
            entry = group.setdefault(prediction["currency"],
                                     {"currency": prediction["currency"], "amount": Decimal(0), "coins": 0})
            entry["amount"] += Decimal(prediction["face_value"])
            entry["coins"] += 1
            listed = {"filename": result.get("filename"), "coin": result.get("coin")}
            (not_sure if uncertain else in_total).append(listed)
        return {
            "coins": len(in_total),
            "files_failed": sum(1 for result in results if not result.get("ok")),
            "by_currency": [{**entry, "amount": str(entry["amount"])} for entry in totals.values()],
            "in_total": in_total,
            "not_sure": {
                "coins": len(not_sure),
                "which": not_sure,
                "by_currency": [{**entry, "amount": str(entry["amount"])} for entry in doubtful.values()],
            },
        }
