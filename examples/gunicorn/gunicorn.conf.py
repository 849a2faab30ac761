"""gunicorn settings for the example app: gevent workers, one pool per worker.

Run from the repository root (or anywhere: the app's directory is put on
``sys.path`` below)::

    GREEN_HAPPYBASE_URL='hbase://localhost:9090/?size=8' \\
        .venv/bin/gunicorn -c examples/gunicorn/gunicorn.conf.py --no-control-socket

It is safe with ``preload_app = True`` (``--preload``): the master imports the
app, but no pool exists until each worker builds its own in
``post_worker_init``, after gevent has patched that worker. (A pool created at
import would also survive the fork: the pool and the registry drop inherited
connections in the child. Building it in the worker is simply clearer and
fails the worker's boot if HBase is unreachable.)

This file imports green_happybase only inside the hooks, which run in the
workers. Imported here, in the master, it would bring in thriftpy2 and with
it ``ssl`` before each worker patches, and gevent would warn about ssl
(``MonkeyPatchWarning``) in every worker. With ``--preload`` the master
imports the app, and so ``ssl``, before any worker exists, and the warning
comes back once per worker. The cures (patching the master, or keeping every
HBase import out of the app's module level) cost more than the warning: the
pool uses gevent's sockets directly, never ``ssl``, and needs no patching.
"""

import os
from typing import Any

worker_class = "gevent"
workers = 2
wsgi_app = "app:application"
# The app module lives beside this file, wherever gunicorn is started from.
pythonpath = os.path.dirname(os.path.abspath(__file__))
# Lets in-flight requests finish their HBase call on shutdown.
graceful_timeout = 10


def post_worker_init(worker: Any) -> None:
    """Build this worker's pool from ``GREEN_HAPPYBASE_URL``, then the table."""
    import green_happybase

    # The app module is importable here: gunicorn has loaded it already.
    from app import ensure_table
    from green_happybase.config import ENV_URL

    url = os.environ.get(ENV_URL)
    if not url:
        raise RuntimeError("set %s, e.g. hbase://localhost:9090/?size=8" % ENV_URL)
    pool = green_happybase.configure(url)
    ensure_table()
    worker.log.info("worker %d: pool %s ready (size %d)", os.getpid(), pool.name, pool.size)


def worker_exit(server: Any, worker: Any) -> None:
    """Return every connection before the worker goes."""
    import green_happybase

    green_happybase.close_all(timeout=5)
