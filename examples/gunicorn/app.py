"""A small key-value web service that keeps its values in HBase.

``PUT /kv/<key>`` stores the request body, ``GET /kv/<key>`` returns it (404
when there is none). Every request leases a connection from the process's
pool, which ``gunicorn.conf.py`` creates in each worker::

    GREEN_HAPPYBASE_URL='hbase://localhost:9090/?size=8' \\
        gunicorn -c gunicorn.conf.py app:application

Plain WSGI, so that nothing but the pool is on show.
"""
import os

import happybase  # noqa: F401  (loads the Hbase_thrift module)
from Hbase_thrift import AlreadyExists

import green_happybase

TABLE = "kv"
FAMILY = "d"
COLUMN = b"d:value"
MAX_BODY = 1 << 20


def ensure_table() -> None:
    """Create the table unless it exists (two workers may race to create it)."""
    with green_happybase.get_pool().connection() as conn:
        if TABLE.encode() in conn.tables():
            return
        try:
            conn.create_table(TABLE, {FAMILY: {"max_versions": 1}})
        except AlreadyExists:
            pass


def _reply(start_response, status, body=b"", content_type="text/plain"):
    start_response(status, [("Content-Type", content_type),
                            ("Content-Length", str(len(body))),
                            ("X-Worker", str(os.getpid()))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ["REQUEST_METHOD"]
    if not path.startswith("/kv/") or len(path) == 4:
        return _reply(start_response, "404 Not Found", b"no such resource\n")
    key = path[4:].encode("utf-8")
    if method == "GET":
        with green_happybase.get_pool().table(TABLE) as table:
            row = table.row(key, columns=[COLUMN])
        if not row:
            return _reply(start_response, "404 Not Found", b"no such key\n")
        return _reply(start_response, "200 OK", row[COLUMN], "application/octet-stream")
    if method == "PUT":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return _reply(start_response, "400 Bad Request", b"bad Content-Length\n")
        value = environ["wsgi.input"].read(length)
        with green_happybase.get_pool().table(TABLE) as table:
            table.put(key, {COLUMN: value})
        return _reply(start_response, "204 No Content")
    return _reply(start_response, "405 Method Not Allowed", b"GET or PUT\n")
