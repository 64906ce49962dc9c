"""What the page does: uploads in, cards out, values in the chosen currency.

Three steps, so that nothing is sent or computed twice:
1. in the browser (assets/upload.js), the chosen files go to the "upload-batch" store, or only their names and
   sizes when they are over a whole-request limit, so a doomed upload is never sent; a photo over the per-photo
   limit is held back on its own (its size goes, not its bytes) and gets the server's message for it;
2. ``classify_uploads`` keeps the results (with thumbnails, and a numbered overview of each photo holding
   several coins) in the "classification" store;
3. ``render_results`` draws them in a currency, so a change of currency re-renders without the photos.
"""
from __future__ import annotations

import base64
import binascii
import itertools
import logging

import dash_bootstrap_components as dbc
from dash import MATCH, ClientsideFunction, Input, Output, State, html, no_update

import layout
import photo_views
from coinspotter.announce import result_sentence
from coinspotter.config import Limits, megabytes
from coinspotter.imageio import ImageError, check_file_size
from coinspotter.service import CoinSpotter, RequestError, Upload, coin_currencies, display_filename

log = logging.getLogger(__name__)
JSON_OVERHEAD_BYTES = 64 * 1024  # what a callback request carries besides the photos: names, ids, the model
SOMETHING_WENT_WRONG = "Something went wrong on our side; please try again."
WHY_UNAVAILABLE = "This coin's heat map cannot be made any more; please upload its photo again."


def page_upload_bytes(limits: Limits) -> int:
    """Bytes of photos one page upload may carry: dcc.Upload sends base64 data URLs (4 characters per
    3 bytes) inside a JSON request, and the request as a whole is held to ``max_request_bytes``."""
    return (limits.max_request_bytes - JSON_OVERHEAD_BYTES) * 3 // 4


def upload_limits(limits: Limits) -> dict:
    """What the browser checks before sending (assets/upload.js); the server checks again."""
    return {"max_files": limits.max_files, "page_upload_bytes": page_upload_bytes(limits),
            "max_bytes_per_file": limits.max_bytes_per_file}


def decode_data_url(contents: str) -> bytes:
    """dcc.Upload hands each file over as ``data:<type>;base64,<payload>``; the type is the client's word and unused."""
    _, _, payload = (contents or "").partition(",")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def classify_batch(spotter: CoinSpotter, batch, model: str, currencies=None) -> dict:
    """The "upload-batch" store's content (from the browser: any JSON at all) -> what ``classify_uploads`` keeps;
    ``currencies``: the "Coins from" selector's value (any JSON too: the service checks it)."""
    names, contents = (batch.get("names"), batch.get("contents")) if isinstance(batch, dict) else (None, None)
    if not _strings(names) or not (contents is None or (isinstance(contents, list) and len(contents) == len(names)
                                                        and all(item is None or isinstance(item, str)
                                                                for item in contents))):
        return {"error": "These files could not be read; please choose them again."}
    sizes = batch.get("sizes")
    sizes = sizes if isinstance(sizes, list) and len(sizes) == len(names) else [None] * len(names)
    sizes = [size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None for size in sizes]
    if contents is None:  # held back in the browser: the request would be over a limit; say which
        total = sum(size for size in sizes if size is not None)
        return {"error": request_limit_message(spotter, model, len(names), total)}
    return classify_uploads(spotter, contents, names, model, currencies, sizes)


def request_limit_message(spotter: CoinSpotter, model: str, count: int, total_bytes: int) -> str:
    try:
        spotter.check_request(model, 1, count)  # too many files, or no model to run: the service's own words
    except RequestError as error:
        return str(error)
    limit = page_upload_bytes(spotter.settings.limits)
    if total_bytes > limit:
        return (f"These {count} photos are {megabytes(total_bytes)} together; the page takes at most "
                f"{megabytes(limit)} at once. Please choose fewer photos at a time.")
    return "These files could not be sent; please choose them again."


def held_back_message(spotter: CoinSpotter, size) -> str:
    """What a photo the browser held back gets (assets/upload.js: over the per-photo limit): the server's own
    sentence for a file of that size, or, when the size given does not explain it, a plain request to send it again."""
    try:
        if isinstance(size, int):
            check_file_size(size, spotter.settings.limits)
    except ImageError as error:
        return str(error)
    return "This file was not sent; please choose it again."


def classify_uploads(spotter: CoinSpotter, contents: list[str | None], filenames: list[str], model: str,
                     currencies=None, sizes: list | None = None) -> dict:
    """What the page keeps of one classification: ``{"model", "model_name", "currencies", "results", "photos"}``,
    each result with the index of its ``photo`` and each coin its ``thumbnail``, each photo its name, coin count
    and, when it holds several coins, a numbered ``overview``; or ``{"error": message}`` when the request cannot
    be served at all. ``currencies``: the "Coins from" hint (``CoinSpotter.classify_per_upload``). A ``None``
    content is a photo the browser held back as over the per-photo limit (``sizes[i]``: its size): it gets its
    message (``held_back_message``) beside the others' results, and its bytes never came."""
    sizes = sizes if sizes is not None else [None] * len(contents)
    held = {index: held_back_message(spotter, sizes[index]) for index, data in enumerate(contents) if data is None}
    sent = [index for index in range(len(contents)) if index not in held]
    uploads = [Upload(filenames[index] or "", decode_data_url(contents[index])) for index in sent]
    views: dict[int, dict] = {}

    def draw(position, image, boxes):  # while the photo is decoded: no second decode for the pictures
        views[sent[position]] = {
            "thumbnails": [photo_views.coin_thumbnail(image, box) for box in boxes],
            "overview": photo_views.numbered_overview(image, boxes) if len(boxes) > 1 else None,
        }

    try:
        currencies = coin_currencies(currencies)
        spotter.check_request(model, 1, len(contents))  # the model, and every file chosen counts to the limit
        card, sent_results = (spotter.classify_per_upload(uploads, model=model, on_photo=draw, currencies=currencies)
                              if uploads else (spotter.registry.cards[model], []))  # else: every photo held back
    except RequestError as error:
        return {"error": str(error)}
    by_index = dict(zip(sent, sent_results))
    shown_names = [display_filename(name) for name in filenames]
    per_upload = [[spotter.error_result(shown_names[index], held[index])] if index in held else by_index[index]
                  for index in range(len(contents))]
    results = []
    for index, upload_results in enumerate(per_upload):
        thumbnails = views.get(index, {}).get("thumbnails", [])
        for result in upload_results:
            result = {**result, "photo": index}
            if result["ok"]:
                result["thumbnail"] = thumbnails[result["coin"] - 1]
            results.append(result)
    photos = [
        {"filename": name, "coins": len(views.get(index, {}).get("thumbnails", [])),
         "overview": views.get(index, {}).get("overview")}
        for index, name in enumerate(shown_names)
    ]
    return {"model": model, "model_name": card.display_name, "currencies": currencies, "results": results,
            "photos": photos}


def render_results(spotter: CoinSpotter, classification: dict, currency: str | None):
    """The summary, then the cards in the batch's order (file-name order: assets/upload.js), all in one regular
    grid: a photo holding several coins shown once, numbered, in a cell of its own followed by its coins' cards;
    single-coin photos and failed files as cards."""
    return render_page(spotter, classification, currency)[0]


def render_page(spotter: CoinSpotter, classification: dict, currency: str | None):
    """(``render_results``, the sentence the live region announces: ``announce.result_sentence``, or the error)."""
    if "error" in classification:
        return dbc.Alert(classification["error"], color="danger"), classification["error"]
    results = [dict(result) for result in classification["results"]]  # copies: convert() adds to them
    conversion = {}
    if currency:
        try:
            conversion = spotter.convert(results, currency)  # bounded by the rate service's budget (~3 s)
        except RequestError as error:  # a code the selector does not offer
            conversion = {"rates_error": str(error)}
    photos = classification.get("photos") or []
    cells = []
    model = classification.get("model")
    currencies = classification.get("currencies")
    for index, group in itertools.groupby(enumerate(results), key=lambda item: item[1].get("photo")):
        group = list(group)
        photo = photos[index] if isinstance(index, int) and 0 <= index < len(photos) else {}
        overview = photo.get("overview")
        cards = [result_card(spotter, result, numbered=overview is not None, position=position, model=model,
                             currencies=currencies)
                 for position, result in group]
        if overview is None:
            cells.extend(cards)
        else:
            cells.append(layout.multi_coin_photo(photo["filename"], overview, len(group), cards))
    summary = layout.summary_card(spotter.summarise(results), classification["model_name"], conversion, currencies)
    return html.Div([summary, layout.results_grid(cells)]), result_sentence(results, conversion)


def result_card(spotter: CoinSpotter, result: dict, numbered: bool, position: int = 0, model: str | None = None,
                currencies=None):
    """A coin's card (with its "Show why" section when the ``model`` that classified it is known, and the
    ``currencies`` hint it was classified with), or an error's; ``position``: the result's place in the
    classification, which tells the cards' sections apart."""
    if not result["ok"]:
        return layout.error_card(result)
    why = layout.why_section(position, result, model, currencies) if model else None
    return layout.coin_card(result, spotter.catalog[result["prediction"]["class_id"]].flag, numbered=numbered, why=why)


def explain_coin(spotter: CoinSpotter, request) -> tuple:
    """A "Show why" panel's (image src, alt, image hidden, status text) for one coin: the "why-request" store's
    content (from the browser: any JSON at all), ``{"name", "content", "coin", "model", "currencies"}``: the coin's
    photo as dcc.Upload gave it, the coin's number in it, the model and the "Coins from" hint. The photo goes
    through the service's own path again (decode, find the coins, classify) with ``explain``: the same crop and
    prediction as its card, and nothing about the coin taken on the browser's word but the photo itself."""
    request = request if isinstance(request, dict) else {}
    name, content, number, model = (request.get(key) for key in ("name", "content", "coin", "model"))
    if not (isinstance(name, str) and isinstance(content, str) and isinstance(number, int) and isinstance(model, str)):
        return None, "", True, WHY_UNAVAILABLE
    try:
        _, (results,) = spotter.classify_per_upload([Upload(name, decode_data_url(content))], model=model, top=1,
                                                    explain=True, currencies=request.get("currencies"))
    except RequestError as error:
        return None, "", True, str(error)
    coin = next((result for result in results if result["ok"] and result["coin"] == number), None)
    if coin is None:
        return None, "", True, WHY_UNAVAILABLE
    predicted = coin["prediction"]["name"]
    status = (f"Red and yellow: the parts of the coin that made the model say {predicted}; "
              "blue or no colour: parts that counted little.")
    if coin["explanation_model"] != model:  # an ensemble, explained through its first member
        member = spotter.registry.cards[coin["explanation_model"]]
        status += f" Worked out on {member.display_name}, the first of the ensemble's models."
    alt = f"Heat map over coin {number} of {layout.file_label(coin['filename'])}: where the model saw {predicted}"
    return coin["explanation"], alt, False, status


def _logged(fallback):
    """A callback's ``on_error``: the stack trace goes to the log, the user gets ``fallback`` (never a trace)."""
    def on_error(error: Exception):
        log.error("page callback failed", exc_info=error)
        return fallback
    return on_error


def register(app, spotter: CoinSpotter) -> None:
    # In the browser: the chosen files, or only their names and sizes when over a request limit (assets/upload.js).
    app.clientside_callback(
        ClientsideFunction(namespace="coinspotterUpload", function_name="prepareUpload"),
        Output("upload-batch", "data"),
        Input("upload", "contents"),
        State("upload", "filename"),
        State("upload-limits", "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("classification", "data"),
        Input("upload-batch", "data"),
        Input("model-switch", "value"),
        Input("coin-currencies", "value"),
        prevent_initial_call=True,
        on_error=_logged({"error": SOMETHING_WENT_WRONG}),
    )
    def classify(batch, model, currencies):
        if not batch:
            return no_update
        return classify_batch(spotter, batch, model or "student", currencies)

    @app.callback(
        Output("results", "children"),
        Output("announcement", "children"),
        Input("classification", "data"),
        Input("currency", "value"),
        prevent_initial_call=True,
        on_error=_logged((dbc.Alert(SOMETHING_WENT_WRONG, color="danger"), SOMETHING_WENT_WRONG)),
    )
    def render(classification, currency):
        if not classification:
            return no_update, no_update
        return render_page(spotter, classification, currency)

    # In the browser (assets/explain.js): a card's "Show why" opens or closes its panel and, when first opened,
    # hands the coin's photo (still in the upload-batch store) to the callback below; nothing else is sent.
    app.clientside_callback(
        ClientsideFunction(namespace="coinspotterExplain", function_name="toggle"),
        Output({"type": "why-toggle", "index": MATCH}, "aria-expanded"),
        Output({"type": "why-panel", "index": MATCH}, "hidden"),
        Output({"type": "why-request", "index": MATCH}, "data"),
        Input({"type": "why-toggle", "index": MATCH}, "n_clicks"),
        State({"type": "why-toggle", "index": MATCH}, "aria-expanded"),
        State({"type": "why-coin", "index": MATCH}, "data"),
        State({"type": "why-request", "index": MATCH}, "data"),
        State("upload-batch", "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output({"type": "why-image", "index": MATCH}, "src"),
        Output({"type": "why-image", "index": MATCH}, "alt"),
        Output({"type": "why-image", "index": MATCH}, "hidden"),
        Output({"type": "why-status", "index": MATCH}, "children"),
        Input({"type": "why-request", "index": MATCH}, "data"),
        prevent_initial_call=True,
        on_error=_logged((None, "", True, SOMETHING_WENT_WRONG)),
    )
    def why(request):
        if request is None:  # the store as drawn, before its toggle was first opened
            return no_update, no_update, no_update, no_update
        return explain_coin(spotter, request)

    # In the browser (assets/speech.js): "Speak result" is offered once there is a result, and reads it aloud
    # with the browser's own speech synthesis; disabled, saying why, where there is none.
    app.clientside_callback(
        ClientsideFunction(namespace="coinspotterSpeech", function_name="offer"),
        Output("speak-bar", "hidden"),
        Output("speak", "disabled"),
        Output("speak", "title"),
        Output("speak-note", "children"),
        Input("announcement", "children"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="coinspotterSpeech", function_name="speak"),
        Output("spoken", "data"),
        Input("speak", "n_clicks"),
        State("announcement", "children"),
        prevent_initial_call=True,
    )

    # In the browser: the remembered choice, else the browser's languages, pick the currency (assets/currency.js).
    app.clientside_callback(
        ClientsideFunction(namespace="coinspotter", function_name="chooseCurrency"),
        Output("currency", "value"),
        Output("currency-choice", "data"),
        Input("currency", "value"),
        Input("currency-choice", "modified_timestamp"),
        State("currency-choice", "data"),
        State("currency", "options"),
    )
