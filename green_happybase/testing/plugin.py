"""pytest fixtures for code that talks to HBase: ``hbase_server`` and ``hbase_pool``.

Installing green_happybase registers this plugin (a ``pytest11`` entry
point), so any test can ask for the fixtures by name::

    def test_put_then_get(hbase_pool):
        with hbase_pool.connection() as conn:
            conn.create_table("t", {"cf": {}})
            conn.table("t").put(b"k", {b"cf:c": b"v"})

By default ``hbase_server`` is a fresh, empty in-process
:class:`~green_happybase.testing.HBaseServer` on a free port. Environment
variables change that:

``GREEN_HAPPYBASE_TEST_HOST``, ``GREEN_HAPPYBASE_TEST_PORT`` (default 9090)
    Use that real HBase Thrift gateway instead. Fault-injection methods then
    skip the test, and every table the test created is disabled and deleted
    at teardown.
``GREEN_HAPPYBASE_TEST_TRANSPORT``, ``GREEN_HAPPYBASE_TEST_PROTOCOL``
    ``buffered``/``framed`` and ``binary``/``compact`` (defaults ``buffered``
    and ``binary``), for the server and for the pool.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Set

import pytest

_ENV = "GREEN_HAPPYBASE_TEST_"


def _setting(name: str, default: str, choices: Any = None) -> str:
    value = os.environ.get(_ENV + name, "") or default
    if choices is not None and value not in choices:
        raise pytest.UsageError(
            "%s%s must be one of %s, not %r" % (_ENV, name, ", ".join(choices), value)
        )
    return value


class RealGateway:
    """A real HBase Thrift gateway standing in for the embedded server.

    It has the embedded server's attributes; its fault-injection methods
    skip the calling test.
    """

    def __init__(self, host: str, port: int, transport: str, protocol: str) -> None:
        self.host = host
        self.port = port
        self.transport = transport
        self.protocol = protocol
        self._tables_before = self._tables()

    @property
    def address(self) -> str:
        return "%s:%s" % (self.host, self.port)

    def _skip(self, *args: Any) -> Any:
        pytest.skip("needs the embedded server")

    set_latency = drop_connections = refuse_connections = _skip
    stop = start = close_after = stats = _skip

    def _connection(self) -> Any:
        import happybase

        return happybase.Connection(self.host, self.port, transport=self.transport,
                                    protocol=self.protocol)

    def _tables(self) -> Set[bytes]:
        conn = self._connection()
        try:
            return set(conn.tables())
        finally:
            conn.close()

    def close(self) -> None:
        """Disable and delete every table made since this object was built."""
        conn = self._connection()
        try:
            for name in set(conn.tables()) - self._tables_before:
                conn.delete_table(name, disable=True)
        finally:
            conn.close()


@pytest.fixture
def hbase_server() -> Iterator[Any]:
    """A fresh, empty HBase Thrift server, or the real gateway named by
    ``GREEN_HAPPYBASE_TEST_HOST``; closed (or cleaned) at teardown.

    The embedded server runs in this thread's gevent hub: talk to it with
    cooperative clients (``hbase_pool``, gevent sockets), not a plain blocking
    ``happybase.Connection``.
    """
    transport = _setting("TRANSPORT", "buffered", ("buffered", "framed"))
    protocol = _setting("PROTOCOL", "binary", ("binary", "compact"))
    host = _setting("HOST", "")
    if host:
        port = _setting("PORT", "9090")
        if not port.isdigit():
            raise pytest.UsageError("%sPORT must be a port number, not %r" % (_ENV, port))
        gateway = RealGateway(host, int(port), transport, protocol)
        try:
            yield gateway
        finally:
            gateway.close()
        return
    from .server import HBaseServer

    with HBaseServer(transport=transport, protocol=protocol) as server:
        yield server


@pytest.fixture
def hbase_pool(hbase_server: Any) -> Iterator[Any]:
    """A ``green_happybase.ConnectionPool`` of 4 on ``hbase_server``, closed at teardown."""
    from green_happybase import ConnectionPool

    pool = ConnectionPool(4, host=hbase_server.host, port=hbase_server.port,
                          transport=hbase_server.transport, protocol=hbase_server.protocol)
    try:
        yield pool
    finally:
        pool.close()
