"""What the page looks like: the static frame and the pieces the callbacks fill in."""
from __future__ import annotations

import json

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import dcc, html

from coinspotter.announce import NO_COIN_IDENTIFIED, counted
from coinspotter.catalog import Catalog
from coinspotter.config import megabytes
from coinspotter.currency_hint import MIN_MASS, too_little_mass
from coinspotter.imageio import ACCEPTED_DESCRIPTION
from coinspotter.money import CURRENCIES
from coinspotter.service import CONVERSION_CURRENCIES, CoinSpotter

MODEL_LABELS = {"student": "Fast (MobileNetV2)", "ensemble": "Most accurate (teacher ensemble)"}
IMAGE_URL_PREFIX = "data:image/jpeg;base64,"  # the only pictures the page shows: drawn by photo_views
# Shown until the browser has said which currency it prefers (assets/currency.js picks it on load).
INITIAL_CURRENCY = "USD"


def currency_options() -> list[dict]:
    """"EUR — Euro": the code first, so that typing "E" on the focused selector jumps to it."""
    return [{"label": f"{code} — {CURRENCIES[code].name}", "value": code} for code in CONVERSION_CURRENCIES]


def coin_currency_options(catalog: Catalog) -> list[dict]:
    """The "Coins from" choices: every currency of the catalog, "EUR — Euro", so that typing "EUR" or "euro"
    finds it."""
    names = {coin.currency: coin.currency_name for coin in catalog}
    return [{"label": f"{code} — {names[code]}", "value": code} for code in catalog.currencies]


def coins_from_note(currencies) -> str | None:
    """What the summary says of a "Coins from" hint: None without one."""
    return f"Coins from: {', '.join(currencies)} only (other currencies not considered)" if currencies else None


def upload_hint(upload_limits: dict) -> str:
    """Under the upload button: the formats the server takes, in the words of its error for any other file
    (``imageio.ACCEPTED_DESCRIPTION``), and the per-photo limit the browser checks (assets/upload.js)."""
    per_photo = upload_limits.get("max_bytes_per_file")
    size = f", up to {megabytes(per_photo)} each" if per_photo else ""
    return f"{ACCEPTED_DESCRIPTION}{size}; several coins per photo are fine."


def build_layout(spotter: CoinSpotter, upload_limits: dict):
    """The page; ``upload_limits`` is what the browser checks before sending photos (callbacks.upload_limits)."""
    status = spotter.model_status()
    model_options = [
        {
            "label": MODEL_LABELS[name] + ("" if info["available"] else f" — unavailable: {info['reason']}"),
            "value": name,
            "disabled": not info["available"],
        }
        for name, info in status.items()
    ]
    return dbc.Container(
        [
            html.Header(
                [
                    html.H1([html.Span("🪙 ", **{"aria-hidden": "true"}), "Coin Spotter"], className="h3 mb-0"),
                    html.P("Photograph or upload coins: see what each one is, how sure we are, and what it is worth.",
                           className="text-muted mb-0"),
                ],
                className="py-3",
            ),
            dbc.Card(
                dbc.CardBody(
                    [
                        # No max_size: the browser would drop a large file without a word. The server says
                        # what is wrong with each file; assets/upload.js holds back only doomed requests.
                        dcc.Upload(
                            id="upload",
                            multiple=True,
                            accept="image/*",
                            className="upload-zone",
                            children=html.Div(
                                [
                                    html.Div("📷", className="upload-icon", **{"aria-hidden": "true"}),
                                    # The drop zone itself cannot take the focus; a real button can, and its
                                    # click (Enter or Space) reaches the zone, which opens the file chooser.
                                    html.Button("Take a photo or choose photos", id="choose-photos", type="button",
                                                className="btn btn-primary my-1"),
                                    html.Div("— or drop them here", className="small"),
                                    html.Small(upload_hint(upload_limits), className="text-muted upload-hint"),
                                ]
                            ),
                        ),
                        dcc.Store(id="upload-limits", data=upload_limits),
                        dcc.Store(id="upload-batch"),  # the files on their way to the classifier
                        html.Div(
                            [
                                html.Label("Model", htmlFor="model-switch", className="form-label fw-semibold me-3 mb-0"),
                                dbc.RadioItems(id="model-switch", options=model_options, value="student", inline=True),
                            ],
                            className="d-flex flex-wrap align-items-center mt-3",
                        ),
                        # "Coins from": the user says which currencies the coins can be; the service keeps only
                        # their classes (coinspotter/currency_hint.py). Empty: any currency, all classes.
                        html.Div(
                            [
                                html.Label("Coins from", htmlFor="coin-currencies", id="coin-currencies-label",
                                           className="form-label fw-semibold me-3 mb-0"),
                                dcc.Dropdown(id="coin-currencies", options=coin_currency_options(spotter.catalog),
                                             value=[], multi=True, placeholder="Any currency",
                                             className="coin-currencies"),
                            ],
                            # the dropdown names itself by its value ("Any currency"); the group gives the question
                            role="group", **{"aria-labelledby": "coin-currencies-label"},
                            className="d-flex flex-wrap align-items-center mt-3 coins-from",
                        ),
                        html.Div(
                            [
                                html.Label("Show values in", htmlFor="currency",
                                           className="form-label fw-semibold me-3 mb-0"),
                                dbc.Select(id="currency", options=currency_options(), value=INITIAL_CURRENCY,
                                           class_name="currency-select w-auto"),
                            ],
                            className="d-flex flex-wrap align-items-center mt-3",
                        ),
                        # the currency the user picked, kept in the browser (localStorage) across visits
                        dcc.Store(id="currency-choice", storage_type="local"),
                    ]
                ),
                className="mb-3 shadow-sm",
            ),
            speak_bar(),
            # What a screen reader announces when results arrive: one sentence (the cards themselves would be
            # read out whole), the same one "Speak result" reads.
            html.Div(id="announcement", role="status", className="visually-hidden",
                     **{"aria-live": "polite", "aria-atomic": "true"}),
            dcc.Loading(
                [
                    # the last classification, so that a change of currency re-renders it without the photos
                    dcc.Store(id="classification"),
                    html.Div(id="results"),
                ],
                type="circle",
                delay_show=150,
                # only a classification covers the page; a card's "Show why" shows its own progress
                target_components={"classification": "data", "results": "children"},
            ),
            html.Footer(
                html.Small("Coin classes: the public coin-images data set (211 coins, 32 currencies)."),
                className="text-muted py-4",
            ),
        ],
        fluid="md",
        className="pb-4",
    )


def speak_bar():
    """"Speak result": the browser reads the announcement aloud (assets/speech.js). Shown once there are
    results; disabled, saying why, where the browser has no speech synthesis."""
    return html.Div(
        [
            html.Button([html.Span("🔊 ", **{"aria-hidden": "true"}), "Speak result"], id="speak", type="button",
                        className="btn btn-outline-primary btn-sm", disabled=True),
            html.Small(id="speak-note", className="text-muted ms-2"),
            dcc.Store(id="spoken"),  # what was last read aloud
        ],
        id="speak-bar", hidden=True, className="mb-3",
    )


def dom_id(component_id: dict) -> str:
    """The id Dash gives a pattern-matching component's element (keys sorted, no spaces), for aria-controls."""
    return json.dumps(component_id, sort_keys=True, separators=(",", ":"))


def why_section(index: int, result: dict, model: str, currencies=None):
    """A card's "Show why" toggle and the panel it opens: the Grad-CAM heat map of the predicted class over the
    coin, computed when first opened (callbacks.explain_coin), from the coin's photo still in the browser, with
    the model and the "Coins from" ``currencies`` that classified it (so the class explained is the card's)."""
    panel = {"type": "why-panel", "index": index}
    label = f"coin {result['coin']} of {file_label(result['filename'])}"
    return html.Div(
        [
            html.Button("Show why", id={"type": "why-toggle", "index": index}, type="button", n_clicks=0,
                        className="btn btn-outline-secondary btn-sm why-toggle",
                        **{"aria-expanded": "false", "aria-controls": dom_id(panel),
                           "aria-label": f"Show why: {label}"}),
            html.Div(
                [
                    html.P("Working out where the model looked…", id={"type": "why-status", "index": index},
                           className="small text-muted my-1 why-status"),
                    html.Img(id={"type": "why-image", "index": index}, className="why-image", hidden=True),
                ],
                id=panel, hidden=True, className="why-panel mt-2",
            ),
            # which coin: the photo's place in the upload (its bytes stay in the browser), its number, the model
            # and the hint
            dcc.Store(id={"type": "why-coin", "index": index},
                      data={"photo": result.get("photo"), "coin": result["coin"], "model": model,
                            "currencies": currencies}),
            dcc.Store(id={"type": "why-request", "index": index}),  # filled when first opened
        ],
        className="mt-2",
    )


def probability_chart(top: list[dict]) -> dcc.Graph:
    """Horizontal bars of the top classes, most likely on top."""
    labels = [f"{entry['name']} · {entry['country']}" for entry in reversed(top)]
    values = [entry["probability"] for entry in reversed(top)]
    figure = go.Figure(
        go.Bar(
            x=values, y=labels, orientation="h",
            marker_color=["#0d6efd" if i == len(values) - 1 else "#adb5bd" for i in range(len(values))],
            text=[f"{v:.0%}" for v in values], textposition="auto",
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    height = 40 + 28 * len(values)
    figure.update_layout(
        height=height, margin=dict(l=0, r=8, t=4, b=4),
        xaxis=dict(range=[0, 1], tickformat=".0%", showgrid=True, fixedrange=True),
        yaxis=dict(automargin=True, fixedrange=True),
        plot_bgcolor="white", paper_bgcolor="white", font=dict(size=12),
    )
    # the explicit height lets the card make room before Plotly has drawn the chart
    return dcc.Graph(
        figure=figure, config={"displayModeBar": False, "responsive": True},
        className="probability-chart", style={"height": f"{height}px"},
    )


def file_label(filename: str) -> str:
    return filename or "(no name)"


def file_name(filename: str, className: str = ""):
    """A file's name as the cards show it: on one line, cut with "…" when longer than its place, the whole name in
    its ``title`` (a tooltip on hover, and what a screen reader can reach); never broken mid-word."""
    label = file_label(filename)
    return html.Span(label, title=label, className=f"file-name {className}".strip())


def page_image(url) -> str | None:
    """``url`` when it is a picture photo_views drew, else None: the stores feeding the page come back from the
    browser, and nothing else may become an ``src``."""
    return url if isinstance(url, str) and url.startswith(IMAGE_URL_PREFIX) else None


def coin_card(result: dict, flag: str, numbered: bool = False, why=None):
    """One coin: ``result`` as the service gives it, with its ``thumbnail`` (a data URL or None) and,
    when converted, its ``converted`` value. ``numbered``: its photo holds several coins, shown above with
    numbers, and the card says which one it is. ``why``: its "Show why" section (``why_section``), if any."""
    prediction = result["prediction"]
    thumbnail = page_image(result.get("thumbnail"))
    converted = result.get("converted")
    if converted and converted["currency"] == prediction["currency"]:
        converted = None  # "1 EUR ≈ €1.00" says nothing new
    sure = not result["uncertain"]
    hint_mass = result.get("currencies_probability")
    badge = (
        dbc.Badge(f"{prediction['probability']:.0%} sure", color="success", className="ms-2")
        if sure
        else dbc.Badge("Not sure", color="warning", text_color="dark", className="ms-2")
    )
    title = f"{prediction['name']}" if sure else f"Maybe {prediction['name']}"
    filename = file_label(result["filename"])
    # the number drawn on the photo above; the text below says it in words, so screen readers skip this one
    number = (html.Span(str(result["coin"]), className="coin-number me-2", **{"aria-hidden": "true"})
              if numbered else None)
    # the file's name cut to its place (its whole name in a tooltip), what is said of the coin always in full
    where = ([html.Span(f"coin {result['coin']} of ", className="coin-of"), file_name(filename)] if numbered
             else [file_name(filename), html.Span(f" · coin {result['coin']}", className="coin-of")])
    body = [
        html.Div(
            [
                html.Img(src=thumbnail, alt=f"Coin {result['coin']} of {filename}", className="coin-thumb me-3")
                if thumbnail else None,
                html.Div(
                    [
                        html.H2([number, title, badge], className="h5 mb-1"),
                        html.Div([html.Span(flag + " ", **{"aria-hidden": "true"}), prediction["country"]]),
                        html.Div(
                            [
                                f"Face value: {prediction['face_value']} {prediction['currency']}",
                                " ",
                                html.Span(f"≈ {converted['formatted']}", className="converted-value text-nowrap")
                                if converted else None,
                            ],
                            className="fw-semibold",
                        ),
                        html.Small(where, className="text-muted coin-source"),
                    ],
                    className="coin-heading",
                ),
            ],
            className="d-flex align-items-start",
        ),
    ]
    if not sure:
        advice = "Check the alternatives below, or try a sharper photo of one face in good light."
        if result.get("maybe_not_a_coin"):  # the coin finder's doubt, whatever the model names it
            doubt = ("The coin finder is not sure this is a coin: it lies against another one, half hidden, or it "
                     "is a shadow or reflection beside it. ")
            advice = "Spread the coins out so that none covers another, and try again."
        elif hint_mass is not None and too_little_mass(hint_mass):  # likeliest within the hint, unlike the hint
            doubt = ("Of the chosen currencies it looks most like this, but to the model it looks like none of "
                     f"them (less than {MIN_MASS:.1%} likely): is it really one of them? ")
        else:
            doubt = f"The model is only {prediction['probability']:.0%} sure. "
        body.append(dbc.Alert(doubt + advice, color="warning", className="py-2 my-2 small"))
    body.append(probability_chart(result["top"]))
    if why is not None:
        body.append(why)
    return html.Div(dbc.Card(dbc.CardBody(body), className="h-100 shadow-sm coin-card"), className="result-cell")


def multi_coin_photo(filename: str, overview: str, count: int, cards: list):
    """A photo holding several coins: shown once, each coin outlined and numbered, in a cell of the results grid
    like any card, then its coins' cards in the cells after it (the section groups them for assistive technology
    and takes no room of its own: ``display: contents``, assets/style.css)."""
    filename = file_label(filename)
    return html.Section(
        [
            html.Div(
                dbc.Card(
                    dbc.CardBody(
                        html.Figure(
                            [
                                html.Img(src=page_image(overview), className="photo-overview",
                                         alt=f"Photo {filename} with {count} coins found, numbered 1-{count}"),
                                html.Figcaption([f"{count} coins found in ", file_name(filename),
                                                 ", numbered as on their cards."],
                                                className="small text-muted mt-2 mb-0"),
                            ],
                            className="mb-0",
                        )
                    ),
                    className="h-100 shadow-sm overview-card",
                ),
                className="result-cell",
            ),
            *cards,
        ],
        className="multi-coin-photo",
        **{"aria-label": f"{filename}: {count} coins"},
    )


def results_grid(cells: list):
    """Every card of a classification in one regular grid (1, 2 or 3 equal columns by the screen's width;
    assets/style.css), single-coin photos, a multi-coin photo with its coins' cards, and failed files alike:
    rows line up whatever the mix, and no card is left alone on a row of its own for want of a neighbour."""
    return html.Div(cells, className="results-grid")


def error_card(result: dict):
    return html.Div(
        dbc.Alert([html.Strong(file_name(result["filename"])), html.Br(), result["error"]], color="danger",
                  className="h-100 mb-0"),
        className="result-cell error-card",
    )


def summary_card(summary: dict, model_name: str, conversion: dict, currencies=None):
    """The coins counted per currency and, from ``CoinSpotter.convert``, their total in one currency
    (``{"total": ...}``) or why there is none (``{"rates_error": ...}``); ``{}`` when none was asked for.
    Only the coins the model is sure of are counted; the not-sure ones are listed apart, with what they could
    add (``summary["not_sure"]``, ``conversion["not_sure"]``), never in the total.
    ``currencies``: the "Coins from" hint the coins were classified with, said under the model."""
    note = coins_from_note(currencies)
    not_sure = summary.get("not_sure") or {"coins": 0, "which": [], "by_currency": []}
    if not summary["coins"] and not not_sure["coins"]:
        return dbc.Alert([NO_COIN_IDENTIFIED + ".", html.Br() if note else None, note], color="secondary")
    lines = [
        html.Li(f"{counted(entry['coins'], 'coin')}: {entry['amount']} {entry['currency']}")
        for entry in summary["by_currency"]
    ]
    if "total" in conversion:
        converted = [
            html.Div(["Total: ", html.Strong(conversion["total"]["formatted"], className="total-amount")],
                     className="fs-5 rates-total"),
            rates_note(conversion["total"]["rates"]),
        ]
    elif "rates_error" in conversion:
        converted = [dbc.Alert(conversion["rates_error"], color="warning", className="py-2 my-2 small rates-error")]
    else:
        converted = []
    heading = f"{counted(summary['coins'], 'coin')} found"
    doubt = None
    if not_sure["coins"]:
        heading = f"{counted(summary['coins'], 'coin')} counted, {not_sure['coins']} not sure"
        could = conversion.get("not_sure")
        adds = (could["formatted"] if could else
                " and ".join(f"{entry['amount']} {entry['currency']}" for entry in not_sure["by_currency"]))
        which = ", ".join(f"{file_label(item['filename'])} coin {item['coin']}" for item in not_sure["which"])
        doubt = html.Div(
            [html.Strong(f"Not sure, not in the total: {counted(not_sure['coins'], 'coin')}"), f" ({which}). ",
             f"If each is the coin it most likely is, they add {adds}."],
            className="small my-2 not-sure-summary",
        )
    return dbc.Card(
        dbc.CardBody(
            [
                html.H2(heading, className="h5"),
                html.Ul(lines, className="mb-1 summary-totals") if lines else None,
                *converted,
                doubt,
                html.Small(f"Model: {model_name}", className="text-muted"),
                html.Small(note, className="text-muted d-block coins-from-note") if note else None,
            ]
        ),
        className="mb-3 shadow-sm summary-card",
    )


def rates_note(rates: dict):
    """Where the total's rates come from (``RateOrigin.as_dict``): a warning when they are offline or out of date,
    and the provider's credit where its terms ask for one (ExchangeRate-API)."""
    attribution = rates["attribution"]
    credit = (
        [" · ", html.A(attribution["text"], href=attribution["url"], target="_blank", rel="noopener",
                       className="rates-attribution")]
        if attribution else []
    )
    if rates["offline"]:
        message = f"Using {rates['label']}: no live exchange rates are available, so converted values are approximate."
    elif rates["stale"]:
        message = f"Using {rates['label']}: no newer rates could be fetched."
    else:
        return html.Small([f"Using {rates['label']}.", *credit], className="text-muted d-block mb-1 rates-source")
    return dbc.Alert([message, *credit], color="warning", className="py-2 my-2 small rates-note")
