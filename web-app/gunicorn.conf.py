"""gunicorn settings for Coin Spotter (used by the Procfile and app.yaml: ``gunicorn -c web-app/gunicorn.conf.py``).

Tuned for a small box (2 cores): one worker process with a few threads. TensorFlow already spreads one
prediction over every core, so more processes would only fight over them, and each would hold its
own copy of the models.
"""
import os
import sys

chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "app:server"
bind = f"0.0.0.0:{os.environ.get('PORT', '8050')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))  # uploads and rate look-ups wait on I/O, not CPU
worker_class = "gthread"
preload_app = True  # import Dash, TensorFlow and the page once, before forking
timeout = 120  # a cold worker loads the models and may then get a batch of large photos
graceful_timeout = 30
keepalive = 5
max_requests = 0  # no recycling: the models take seconds to load
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


def post_worker_init(worker):
    """Load and warm the models inside the worker, after the fork (see app.py)."""
    app_module = sys.modules.get("app")
    if app_module is not None:
        app_module.spotter.load(warm_up=True)
