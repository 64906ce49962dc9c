"""What the page does: uploads in, cards out."""
from __future__ import annotations

import base64
import binascii
import io
import logging

import dash_bootstrap_components as dbc
from dash import Input, Output, State, html, no_update

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


def render_results(spotter: CoinSpotter, contents: list[str], filenames: list[str], model: str):
    uploads = [Upload(name or "", decode_data_url(data)) for data, name in zip(contents, filenames)]
    try:
        card, per_upload = spotter.classify_per_upload(uploads, model=model)
    except RequestError as error:
        return dbc.Alert(str(error), color="danger")
    cards, results = [], []
    for upload, upload_results in zip(uploads, per_upload):
        results.extend(upload_results)
        for result in upload_results:
            if result["ok"]:
                flag = spotter.catalog[result["prediction"]["class_id"]].flag
                cards.append(layout.coin_card(result, thumbnail(upload.data, result["box"], spotter), flag))
            else:
                cards.append(layout.error_card(result))
    return html.Div([layout.summary_card(spotter.summarise(results), card.display_name), dbc.Row(cards)])


def register(app, spotter: CoinSpotter) -> None:
    @app.callback(
        Output("results", "children"),
        Input("upload", "contents"),
        Input("model-switch", "value"),
        State("upload", "filename"),
        prevent_initial_call=True,
    )
    def classify_uploads(contents, model, filenames):
        if not contents:
            return no_update
        if isinstance(contents, str):  # a single file when multiple=False; keep both shapes working
            contents, filenames = [contents], [filenames]
        filenames = filenames or [""] * len(contents)
        return render_results(spotter, contents, filenames, model or "student")
