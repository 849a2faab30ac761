"""gunicorn settings for the example app: gevent workers, one pool per worker.

Run from this directory::

    GREEN_HAPPYBASE_URL='hbase://localhost:9090/?size=8' gunicorn -c gunicorn.conf.py \\
        --no-control-socket [--preload] app:application

It is safe with ``preload_app = True`` (``--preload``): the master imports the
app, but no pool exists until each worker builds its own in
``post_worker_init``, after gevent has patched that worker. (A pool created at
import would also survive the fork: the pool and the registry drop inherited
connections in the child. Building it in the worker is simply clearer and
fails the worker's boot if HBase is unreachable.)

With ``--preload`` gevent warns that ``ssl`` was imported before the worker
patched it (thriftpy2 imports it); the pool does not use ssl, nor needs the
patching.
"""
import os

import green_happybase

worker_class = "gevent"
workers = 2
# Lets in-flight requests finish their HBase call on shutdown.
graceful_timeout = 10


def post_worker_init(worker):
    """Build this worker's pool from ``GREEN_HAPPYBASE_URL``, then the table."""
    url = os.environ.get(green_happybase.config.ENV_URL)
    if not url:
        raise RuntimeError("set %s, e.g. hbase://localhost:9090/?size=8"
                           % green_happybase.config.ENV_URL)
    pool = green_happybase.configure(url)
    # The app module is importable here: gunicorn has loaded it already.
    from app import ensure_table

    ensure_table()
    worker.log.info("worker %d: pool %s ready (size %d)", os.getpid(), pool.name, pool.size)


def worker_exit(server, worker):
    """Return every connection before the worker goes."""
    green_happybase.close_all(timeout=5)
