"""pytest fixtures for code that talks to HBase: ``hbase_server`` and ``hbase_pool``.

Installing green_happybase registers this plugin (a ``pytest11`` entry point
named ``green_happybase``; ``-p no:green_happybase`` turns it off), so any
test can ask for the fixtures by name::

    def test_put_then_get(hbase_pool):
        with hbase_pool.connection() as conn:
            conn.create_table("t", {"cf": {}})
            conn.table("t").put(b"k", {b"cf:c": b"v"})

The plugin costs nothing until a fixture is used: importing it imports
neither gevent nor the server.

By default ``hbase_server`` is a fresh, empty in-process
:class:`~green_happybase.testing.HBaseServer` on a free port, with HBase's
limits (60 s idle cut, 2 MiB frames, 60 s scanner leases). The
``hbase_server`` marker passes options to it, for one test or a whole
module (``pytestmark``)::

    @pytest.mark.hbase_server(idle_timeout=0.5)
    def test_pool_outlives_idle_cuts(hbase_pool): ...

    @pytest.mark.hbase_server(subprocess=True)
    def test_with_a_blocking_client(hbase_server):
        conn = happybase.Connection(hbase_server.host, hbase_server.port)

Its keywords are :class:`~green_happybase.testing.HBaseServer`'s:
``transport``, ``protocol``, ``subprocess``, ``idle_timeout``,
``max_frame_size``, ``scanner_timeout``, ``server_type``, and the secure
modes' ``http_path``, ``ssl_context``, ``tls_cert``, ``tls_key`` and
``auth``::

    @pytest.mark.hbase_server(transport="http", auth=ServerAuth(users={"alice": "pw"}))
    def test_over_basic_auth(hbase_server): ...

``hbase_pool`` passes the pool only the host, port, transport and protocol:
against a server with ``transport="http"``, TLS or ``auth``, build the pool
in the test with the matching client options. The in-process
server runs in the test's gevent hub: a plain blocking
``happybase.Connection`` cannot be served by it, and gets an error saying so
after 2 s; use ``subprocess=True`` (or the pool) for such clients.

Environment variables point the fixtures at a real gateway instead:

``GREEN_HAPPYBASE_TEST_HOST``, ``GREEN_HAPPYBASE_TEST_PORT`` (default 9090)
    Use that real HBase Thrift gateway. Fault-injection methods then skip
    the test, as does the ``hbase_server`` marker, and every table the test
    created is disabled and deleted at teardown.
``GREEN_HAPPYBASE_TEST_TRANSPORT``, ``GREEN_HAPPYBASE_TEST_PROTOCOL``
    ``buffered``/``framed`` and ``binary``/``compact`` (defaults ``buffered``
    and ``binary``), for the server and for the pool.

.. versionadded:: 0.2
   The ``hbase_server`` marker (with the secure modes' keywords); the
   plugin imports nothing heavy until used.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

_ENV = "GREEN_HAPPYBASE_TEST_"
_MARKER = "hbase_server"
_OPTIONS = frozenset(["transport", "protocol", "subprocess", "idle_timeout", "max_frame_size",
                      "scanner_timeout", "server_type", "http_path", "ssl_context", "tls_cert",
                      "tls_key", "auth"])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "%s(**options): options of the embedded server the hbase_server fixture starts "
        "(HBaseServer's keywords: %s)" % (_MARKER, ", ".join(sorted(_OPTIONS))),
    )


def _setting(name: str, default: str, choices: Any = None) -> str:
    value = os.environ.get(_ENV + name, "") or default
    if choices is not None and value not in choices:
        raise pytest.UsageError(
            "%s%s must be one of %s, not %r" % (_ENV, name, ", ".join(choices), value)
        )
    return value


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(_MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise TypeError("@pytest.mark.%s takes keywords only, not %r" % (_MARKER, marker.args))
    unknown = sorted(set(marker.kwargs) - _OPTIONS)
    if unknown:
        raise TypeError("@pytest.mark.%s got unknown option(s) %s; it takes %s"
                        % (_MARKER, ", ".join(unknown), ", ".join(sorted(_OPTIONS))))
    return dict(marker.kwargs)


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

    def _tables(self) -> set[bytes]:
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
def hbase_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh, empty HBase Thrift server, or the real gateway named by
    ``GREEN_HAPPYBASE_TEST_HOST``; closed (or cleaned) at teardown.

    Options come from the ``hbase_server`` marker. The in-process server
    runs in this thread's gevent hub: talk to it with cooperative clients
    (``hbase_pool``, gevent sockets), or mark the test
    ``@pytest.mark.hbase_server(subprocess=True)`` for a blocking client.
    """
    options = _marker_options(request)
    transport = options.pop("transport", None) or _setting(
        "TRANSPORT", "buffered", ("buffered", "framed"))
    protocol = options.pop("protocol", None) or _setting(
        "PROTOCOL", "binary", ("binary", "compact"))
    host = _setting("HOST", "")
    if host:
        if options:
            pytest.skip("@pytest.mark.%s(%s) needs the embedded server"
                        % (_MARKER, ", ".join(sorted(options))))
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

    with HBaseServer(transport=transport, protocol=protocol, **options) as server:
        yield server


@pytest.fixture
def hbase_pool(hbase_server: Any) -> Iterator[Any]:
    """A ``green_happybase.ConnectionPool`` of 4 on ``hbase_server``, closed at teardown."""
    from green_happybase import ConnectionPool

    # The client's certificate trust and credentials cannot be derived from
    # the server's: those tests build their pool themselves.
    secure = [name for name, on in (
        ("TLS", getattr(hbase_server, "tls", False)),
        ("auth", getattr(hbase_server, "auth", None) is not None)) if on]
    if secure:
        pytest.fail("hbase_pool connects with host, port, transport, protocol and "
                    "http_path only; the server runs with %s: build the pool in the test "
                    "with the matching tls= and auth= options" % " and ".join(secure),
                    pytrace=False)

    pool = ConnectionPool(4, host=hbase_server.host, port=hbase_server.port,
                          transport=hbase_server.transport, protocol=hbase_server.protocol,
                          http_path=getattr(hbase_server, "http_path", None) or "/")
    try:
        yield pool
    finally:
        pool.close()
