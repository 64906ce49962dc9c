"""gunicorn settings for Coin Spotter (used by the Procfile and app.yaml: ``gunicorn -c web-app/gunicorn.conf.py``).

Tuned for a small box (2 cores), and why:
- one worker process: each holds its own models (LiteRT interpreters; ~0.3 GB from requirements.txt alone,
  ~1.1 GB under load where a card serves its .h5 through TensorFlow, README "Load"), and one prediction
  already spreads over both cores, so a second process would only double the memory and fight the first for
  the same cores;
- four threads: a request spends much of its time receiving a phone's upload or waiting on a rate look-up,
  not computing, and the gthread worker reads each body in its own thread; the CPU-heavy part is held to
  ``COINSPOTTER_IMAGES_AT_ONCE`` photos at a time (2) by the service, whatever the number of threads, so
  more threads cost no memory beyond their requests' bytes;
- threads per model call: ``COINSPOTTER_TF_INTRA_THREADS`` (LiteRT, and TensorFlow's pools where a .h5 is served:
  ``configure_tensorflow_threads``, one intra-op thread per core, one inter-op thread).
WEB_CONCURRENCY and GUNICORN_THREADS override the first two on a larger box.
"""
import os
import sys

chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "app:server"
bind = f"0.0.0.0:{os.environ.get('PORT', '8050')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
preload_app = True  # import Dash and the page once, before forking (the models load in the worker)
timeout = 120  # a cold worker loads the models and may then get a batch of large photos
graceful_timeout = 30
keepalive = 5
max_requests = 0  # no recycling: the models take seconds to load, and memory stays flat (README "Load")
# The worker's heartbeat file lives in memory where the system has a RAM-backed folder, not on the disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The app writes one JSON line per request (web-app/hardening.py: method, path, status, ms, bytes, request id);
# gunicorn's own access log would add a second line with the client's address. To have it as well:
# GUNICORN_CMD_ARGS="--access-logfile -".
accesslog = None
errorlog = "-"


def post_worker_init(worker):
    """Load and warm the models inside the worker, after the fork (see app.py)."""
    app_module = sys.modules.get("app")
    if app_module is not None:
        app_module.spotter.load(warm_up=True)
