"""What the page does: uploads in, cards out, values in the chosen currency.

Two steps, so that a change of currency re-renders without sending the photos again: ``classify_uploads``
keeps the results (with thumbnails) in the "classification" store; ``render_results`` draws them in a currency.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging

import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, html, no_update

import layout
from coinspotter.imageio import ImageError, decode_image
from coinspotter.localize import CoinBox, crop_box
from coinspotter.service import CoinSpotter, RequestError, Upload

log = logging.getLogger(__name__)
THUMBNAIL_PX = 160


def decode_data_url(contents: str) -> bytes:
    """dcc.Upload hands each file over as ``data:<type>;base64,<payload>``."""
    _, _, payload = (contents or "").partition(",")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return b""


def thumbnail(data: bytes, box: list[int], spotter: CoinSpotter) -> str | None:
    try:
        image = decode_image(data, spotter.settings.limits)
    except ImageError:
        return None
    crop = crop_box(image, CoinBox(*box))
    crop.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def classify_uploads(spotter: CoinSpotter, contents: list[str], filenames: list[str], model: str) -> dict:
    """What the page keeps of one classification: ``{"model_name", "results"}``, each coin result with its
    ``thumbnail``; or ``{"error": message}`` when the request as a whole cannot be served."""
    uploads = [Upload(name or "", decode_data_url(data)) for data, name in zip(contents, filenames)]
    try:
        card, per_upload = spotter.classify_per_upload(uploads, model=model)
    except RequestError as error:
        return {"error": str(error)}
    results = [
        {**result, "thumbnail": thumbnail(upload.data, result["box"], spotter)} if result["ok"] else result
        for upload, upload_results in zip(uploads, per_upload)
        for result in upload_results
    ]
    return {"model_name": card.display_name, "results": results}


def render_results(spotter: CoinSpotter, classification: dict, currency: str | None):
    """The summary and one card per coin or failed file; values converted into ``currency`` when given."""
    if "error" in classification:
        return dbc.Alert(classification["error"], color="danger")
    results = [dict(result) for result in classification["results"]]  # copies: convert() adds to them
    conversion = {}
    if currency:
        try:
            conversion = spotter.convert(results, currency)  # bounded by the rate service's budget (~3 s)
        except RequestError as error:  # a code the selector does not offer
            conversion = {"rates_error": str(error)}
    cards = [
        layout.coin_card(result, spotter.catalog[result["prediction"]["class_id"]].flag)
        if result["ok"] else layout.error_card(result)
        for result in results
    ]
    summary = layout.summary_card(spotter.summarise(results), classification["model_name"], conversion)
    return html.Div([summary, dbc.Row(cards)])


def register(app, spotter: CoinSpotter) -> None:
    @app.callback(
        Output("classification", "data"),
        Input("upload", "contents"),
        Input("model-switch", "value"),
        State("upload", "filename"),
        prevent_initial_call=True,
    )
    def classify(contents, model, filenames):
        if not contents:
            return no_update
        if isinstance(contents, str):  # a single file when multiple=False; keep both shapes working
            contents, filenames = [contents], [filenames]
        filenames = filenames or [""] * len(contents)
        return classify_uploads(spotter, contents, filenames, model or "student")

    @app.callback(
        Output("results", "children"),
        Input("classification", "data"),
        Input("currency", "value"),
        prevent_initial_call=True,
    )
    def render(classification, currency):
        if not classification:
            return no_update
        return render_results(spotter, classification, currency)

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
