"""A small key-value web service that keeps its values in HBase.

``PUT /kv/<key>`` stores the request body, ``GET /kv/<key>`` returns it (404
when there is none). The key is the path's bytes as sent, percent-escapes
decoded: ``/kv/caf%C3%A9`` is the row ``b"caf\\xc3\\xa9"``, ``/kv/%FF`` the row
``b"\\xff"``. Every request leases a connection from the process's pool, which
``gunicorn.conf.py`` creates in each worker. From the repository root::

    GREEN_HAPPYBASE_URL='hbase://localhost:9090/?size=8' \\
        .venv/bin/gunicorn -c examples/gunicorn/gunicorn.conf.py --no-control-socket

Plain WSGI, so that nothing but the pool is on show.
"""
import os
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

import happybase  # noqa: F401  (side effect: defines the Hbase_thrift module)
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


def _reply(start_response: StartResponse, status: str, body: bytes = b"",
           content_type: str = "text/plain") -> list[bytes]:
    start_response(status, [("Content-Type", content_type),
                            ("Content-Length", str(len(body))),
                            ("X-Worker", str(os.getpid()))])
    return [body]


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    method = environ["REQUEST_METHOD"]
    if not path.startswith("/kv/") or len(path) == 4:
        return _reply(start_response, "404 Not Found", b"no such resource\n")
    # WSGI (PEP 3333) hands over the path's bytes decoded as latin-1: encoding
    # it back the same way gives the key's bytes exactly as the client sent them.
    key = path[4:].encode("latin-1")
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
