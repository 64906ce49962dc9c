"""The JSON API on the page's own Flask server: ``POST /api/classify``, ``GET /api/rates`` and ``GET /healthz``.

Limits, errors as JSON and the security headers are the whole app's (hardening.py).
"""
from __future__ import annotations

from flask import Blueprint, Flask, jsonify, request

from coinspotter.rates import RateUnavailable
from coinspotter.service import CoinSpotter, RequestError, Upload
from hardening import json_error


# the form field ``explain``: "1" asks for a heat map per coin; an empty field is the default, none
EXPLAIN_VALUES = {"1": True, "true": True, "0": False, "false": False, "": False}


def register(server: Flask, spotter: CoinSpotter) -> None:
    blueprint = Blueprint("api", __name__)

    @blueprint.post("/api/classify")
    def classify():
        files = request.files.getlist("image")
        model = request.form.get("model", "student")
        currency = request.form.get("currency", "").strip() or None  # an empty field means "no conversion"
        try:
            top = int(request.form.get("top", "5"))
        except ValueError:
            return json_error(400, "top must be a whole number")
        explain = EXPLAIN_VALUES.get(request.form.get("explain", "0").strip().lower())
        if explain is None:
            return json_error(400, "explain must be 1 (add a Grad-CAM heat map to each coin) or 0")
        # "Coins from": codes separated by commas, in one field or several; none or empty: every currency
        currencies = ",".join(request.form.getlist("currencies"))
        uploads = [Upload(file.filename or "", file.read()) for file in files]
        try:
            return jsonify(spotter.classify(uploads, model=model, top=top, currency=currency, explain=explain,
                                            currencies=currencies))
        except RequestError as error:
            return json_error(400, str(error))

    @blueprint.get("/api/rates")
    def rates():
        base = request.args.get("base", "").strip() or "USD"
        symbols = [code for code in request.args.get("symbols", "").split(",") if code.strip()]
        try:
            return jsonify(spotter.exchange_rates(base, symbols or None))
        except RequestError as error:
            return json_error(400, str(error))
        except RateUnavailable as error:
            return json_error(503, str(error))

    @blueprint.get("/healthz")
    def healthz():
        # cheap on purpose: load balancers call it often; it reads state, it runs no model
        status = spotter.model_status()
        return jsonify({"status": "ok", "models": {name: info["available"] for name, info in status.items()}})

    # Dash answers every unknown GET with its page; API paths answer JSON instead.
    @blueprint.route("/api/classify", methods=["GET", "PUT", "PATCH", "DELETE"])
    def classify_wrong_method():
        return json_error(405, "use POST with a multipart form; send the photos in the field 'image'")

    @blueprint.route("/api/rates", methods=["POST", "PUT", "PATCH", "DELETE"])
    def rates_wrong_method():
        return json_error(405, "use GET, e.g. /api/rates?base=USD&symbols=EUR,JPY")

    @blueprint.route("/api/<path:unknown>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown_api_path(unknown):
        return json_error(404, "no such API endpoint; see POST /api/classify and GET /api/rates")

    server.register_blueprint(blueprint)
