"""What every response of the app gets, page and API alike: security headers, one JSON log line, errors
without stack traces; and uploads that never touch the disk.

Errors: the API, /healthz and Dash's own machine routes (``/_dash-*``) answer JSON ``{"error", "status"}``;
anything else a plain page in the app's style. The stack trace of an unexpected error goes to the log only.
"""
from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
import uuid
from http import HTTPStatus

from flask import Flask, Request, g, jsonify, request
from werkzeug.exceptions import HTTPException

from coinspotter.config import Limits, megabytes

log = logging.getLogger(__name__)
request_log = logging.getLogger("coinspotter.requests")

JSON_PATHS = ("/api/", "/_dash-", "/_reload-hash", "/healthz")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a caller's X-Request-ID is kept only when it is this plain
# Static headers of every response. The page is never framed (clickjacking), types are never guessed from
# content (an upload echoed as text stays text), no address leaks to the exchange-rate credit link.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "geolocation=(), microphone=(), payment=(), usb=()",
}
NO_STORE_PATHS = ("/api/", "/_dash-update-component")  # answers about someone's photos: no cache keeps them


def content_security_policy(script_hashes: list[str]) -> str:
    """Everything from this server only. Scripts: its own files plus Dash's one inline starter script, by hash
    (``Dash.csp_hashes``), no 'unsafe-inline' or 'unsafe-eval' (the browser tests check that the page works
    and logs no violation). Styles: 'unsafe-inline', because Plotly writes <style> elements and style
    attributes as it draws. Images: the thumbnails are data: URLs."""
    scripts = " ".join(script_hashes)  # already quoted: "'sha256-...'"
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' {scripts}".strip(),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


class InMemoryUploadsRequest(Request):
    """Multipart file parts stay in memory: Werkzeug would spool any part over 500 KB to a temporary file.
    Memory is bounded all the same, by MAX_CONTENT_LENGTH, and the service reads every part whole anyway."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def json_error(status: int, message: str):
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    return response


FRIENDLY_MESSAGES = {
    400: "That request could not be understood.",
    404: "There is nothing at this address.",
    405: "This address does not take that kind of request.",
    500: "Something went wrong on our side; please try again.",
}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Coin Spotter: {title}</title><link rel="stylesheet" href="/assets/00-bootstrap-5.3.8.min.css"></head>
<body><main class="container py-5"><h1 class="h3">{title}</h1><p>{message}</p>
<p><a href="/">Back to Coin Spotter</a></p></main></body></html>
"""


def wants_json() -> bool:
    return request.path.startswith(JSON_PATHS)


def error_response(status: int, limits: Limits):
    """The answer for an error ``status``: JSON for machines, a plain page for people; our words, never a trace.
    (No part of the request is echoed: the page is a fixed text per status.)"""
    if status == 413:
        message = (f"The upload is too large: the limit is {megabytes(limits.max_request_bytes)} per request. "
                   "Please send fewer or smaller photos.")
    else:
        message = FRIENDLY_MESSAGES.get(status) or FRIENDLY_MESSAGES[500 if status >= 500 else 400]
    if wants_json():
        return json_error(status, message)
    try:
        title = HTTPStatus(status).phrase
    except ValueError:  # a code outside the standard list
        title = "Error"
    return PAGE.format(title=title, message=message), status, {"Content-Type": "text/html; charset=utf-8"}


def register(server: Flask, script_hashes: list[str], limits: Limits) -> None:
    server.request_class = InMemoryUploadsRequest
    server.config["MAX_CONTENT_LENGTH"] = limits.max_request_bytes  # Flask answers 413 past it, page and API alike
    server.config["PROPAGATE_EXCEPTIONS"] = False  # errors go to the handlers below, even under a test client
    policy = content_security_policy(script_hashes)
    if not request_log.handlers:  # one bare JSON object per line, to stderr, where gunicorn's own log goes
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        request_log.addHandler(handler)
        request_log.setLevel(logging.INFO)
        request_log.propagate = False

    @server.before_request
    def start_clock():
        g.request_started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

    @server.after_request
    def finish(response):
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = policy
        if request.path.startswith(NO_STORE_PATHS):
            response.headers["Cache-Control"] = "no-store"
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        # method, path (no query string), status, time and sizes: no client address, no file names or contents
        request_log.info(json.dumps({
            "event": "request",
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "ms": round((time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000, 1),
            "bytes_in": request.content_length,
            "bytes_out": response.content_length,
        }))
        return response

    @server.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return error_response(error.code or 500, limits)

    @server.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.error("unhandled error on %s %s (request %s)", request.method, request.path, g.get("request_id"),
                  exc_info=error)
        return error_response(500, limits)
