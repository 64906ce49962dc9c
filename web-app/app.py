"""Coin Spotter web app: ``python web-app/app.py`` (development) or the Procfile's gunicorn (production).

Thin on purpose: the page is ``layout.py``, its behaviour ``callbacks.py``, the JSON API ``api.py``;
everything they share lives in the ``coinspotter`` package.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the shared package, when started from any folder or by gunicorn --chdir
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dash  # noqa: E402

import api  # noqa: E402
import callbacks  # noqa: E402
import hardening  # noqa: E402
import layout  # noqa: E402
from coinspotter.service import CoinSpotter  # noqa: E402

# Cards are read here; the models themselves load in each worker after the fork (gunicorn.conf.py's
# post_worker_init): TensorFlow's thread pools do not survive a fork (a model loaded in the --preload master
# hangs its workers), and LiteRT's interpreters are best made where they run. Without that hook they load on the
# first request. Nothing here imports TensorFlow: the deployed app (requirements.txt) serves the models' TFLite
# copies through LiteRT; where a card serves its .h5, loading it sets TensorFlow's threads first
# (inference.load_keras_model).
spotter = CoinSpotter()

app = dash.Dash(
    __name__,
    title="Coin Spotter",
    assets_folder=str(REPO_ROOT / "assets"),
    meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    serve_locally=True,  # no CDN: Bootstrap 5.3.8's CSS is in assets/, so the page works where only this server is reachable
)
# The page is in English: screen readers and "Speak result" (assets/speech.js) pick their voice by <html lang>.
app.index_string = app.index_string.replace("<html>", '<html lang="en">', 1)
app.layout = layout.build_layout(spotter, callbacks.upload_limits(spotter.settings.limits))
callbacks.register(app, spotter)
server = app.server
api.register(server, spotter)
# after every callback is defined: the policy allows Dash's inline scripts by their hashes
hardening.register(server, app.csp_hashes(), spotter.settings.limits)

if __name__ == "__main__":
    spotter.load(warm_up=True)
    # debug stays off: Dash's debug mode would show stack traces and its dev tools to every user
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8050")), debug=False)
