"""The embedded server's gateway limits, on by default with HBase's values:
the idle cut, the framed frame limit, scanner leases; and what it does for a
blocking client its own hub can never serve.

In-process servers are reached over gevent sockets (the ``green`` fixture);
subprocess servers by plain blocking happybase.
"""
import logging
import socket
import time

import gevent
import gevent.socket
import happybase
import pytest
from Hbase_thrift import IllegalArgument, TScan
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TSocket, TTransportException

import green_happybase
from green_happybase.testing import HBaseServer
from green_happybase.testing.server import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_SCANNER_TIMEOUT,
)

TIMEOUT_MS = 10000
# A connection the server closed: EOF, or a reset when it left bytes unread.
CUT = (TTransportException, ConnectionResetError, BrokenPipeError)


class _GreenTSocket(TSocket):
    """thriftpy2's TSocket on a gevent socket: cooperative, no monkey-patching."""

    def _init_sock(self):
        self.sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)


@pytest.fixture
def green(monkeypatch):
    monkeypatch.setattr(happybase.connection, "TSocket", _GreenTSocket)


def connect(server, **kwargs):
    return happybase.Connection(server.host, server.port, timeout=TIMEOUT_MS,
                                transport=server.transport, protocol=server.protocol, **kwargs)


def wait_until(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(0.02)
    return predicate()


def test_limits_default_to_hbase_values():
    server = HBaseServer()
    assert (server.idle_timeout, server.max_frame_size, server.scanner_timeout) == (
        DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, DEFAULT_SCANNER_TIMEOUT) == (
        60.0, 2 * 1024 * 1024, 60.0)
    assert server.server_type == "one"


@pytest.mark.parametrize("option,value,error", [
    ("idle_timeout", 0, ValueError), ("idle_timeout", "1", TypeError),
    ("scanner_timeout", -1, ValueError), ("max_frame_size", 0, ValueError),
    ("max_frame_size", 1.5, TypeError), ("max_frame_size", 2**40, ValueError),
    ("server_type", "2", ValueError),
])
def test_bad_limits_name_the_option(option, value, error):
    with pytest.raises(error, match=option):
        HBaseServer(**{option: value})


# The idle cut (hbase.thrift.server.socket.read.timeout)


def test_idle_connection_is_cut_and_a_busy_one_kept(green, caplog):
    caplog.set_level(logging.INFO, logger="green_happybase.testing.server")
    with HBaseServer(idle_timeout=0.3) as server:
        idle, busy = connect(server), connect(server)
        idle.tables()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # busy never waits 0.3 s
            busy.tables()
            gevent.sleep(0.05)
        assert wait_until(lambda: server.stats()["connections"] == 1)
        with pytest.raises(TTransportException):
            idle.tables()  # "TSocket read 0 bytes", as against HBase
        assert busy.tables() == []
        busy.close()
    assert any("idle for 0.3 s" in r.getMessage() for r in caplog.records)


def test_idle_cut_also_in_subprocess_mode():
    with HBaseServer(subprocess=True, idle_timeout=0.3, server_type="one") as server:
        conn = connect(server)
        conn.tables()
        assert wait_until(lambda: server.stats()["connections"] == 0)
        with pytest.raises(TTransportException):
            conn.tables()
        conn.close()
        fresh = connect(server)
        assert fresh.tables() == []
        fresh.close()


def test_half_sent_request_is_cut_after_the_idle_timeout(green):
    """A slow or stalled client (slowloris) holds one greenlet for at most
    the idle timeout, and nobody else waits meanwhile."""
    with HBaseServer(idle_timeout=0.3) as server:
        good = connect(server)
        stalled = gevent.socket.create_connection((server.host, server.port), timeout=10)
        stalled.sendall(b"\x80\x01\x00\x01\x00\x00\x00\x0dgetTab")
        with gevent.Timeout(1.0):
            assert good.tables() == []
        stalled.settimeout(5)
        assert stalled.recv(1) == b""
        stalled.close()
        good.close()


def test_pool_with_default_settings_never_shows_the_idle_cut(green):
    """Against a 0.3 s idle cut, every call through the pool succeeds: the
    pool replaces the connections the server closed while they sat idle."""
    with HBaseServer(idle_timeout=0.3) as server:
        pool = green_happybase.ConnectionPool(2, host=server.host, port=server.port)
        try:
            for _ in range(3):
                with pool.connection() as conn:
                    assert conn.tables() == []
                assert wait_until(lambda: server.stats()["connections"] == 0)
            with pool.connection() as conn:
                conn.create_table("t", {"cf": {}})
        finally:
            pool.close()


# The framed frame limit (hbase.regionserver.thrift.framed.max_frame_size_in_mb)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_frame_over_the_limit_closes_only_its_connection(green, caplog, protocol):
    with HBaseServer(transport="framed", protocol=protocol, max_frame_size=4096) as server:
        good, bad = connect(server), connect(server)
        good.create_table("t", {"cf": {}})
        good.table("t").put(b"small", {b"cf:c": b"v" * 1000})
        with pytest.raises(CUT):
            bad.table("t").put(b"big", {b"cf:c": b"v" * 5000})
        assert good.table("t").row(b"small") == {b"cf:c": b"v" * 1000}
        assert good.table("t").row(b"big") == {}
        good.close()
    assert any("larger than max length (4096)!" in r.getMessage() for r in caplog.records)


def test_default_frame_limit_is_two_mebibytes(green):
    with HBaseServer(transport="framed") as server:
        conn = connect(server)
        conn.create_table("t", {"cf": {}})
        conn.table("t").put(b"fits", {b"cf:c": b"v" * (DEFAULT_MAX_FRAME_SIZE - 1024)})
        with pytest.raises(CUT):
            conn.table("t").put(b"too big", {b"cf:c": b"v" * DEFAULT_MAX_FRAME_SIZE})
        conn.close()
    with HBaseServer(transport="framed", max_frame_size=None) as server:
        conn = connect(server)
        conn.create_table("t", {"cf": {}})
        conn.table("t").put(b"big", {b"cf:c": b"v" * (3 * DEFAULT_MAX_FRAME_SIZE)})
        conn.close()


# Scanner leases (hbase.client.scanner.timeout.period)


@pytest.fixture
def scan_table(green):
    def make(server):
        conn = connect(server)
        conn.create_table("t", {"cf": {}})
        for key in (b"a", b"c", b"e"):
            conn.table("t").put(key, {b"cf:c": key})
        return conn

    return make


def test_scanner_unused_twice_the_timeout_is_forgotten(scan_table):
    """The gateway's scanner cache expires after twice the scanner timeout:
    then the id is unknown, as after a close."""
    with HBaseServer(scanner_timeout=0.2) as server:
        conn = scan_table(server)
        sid = conn.client.scannerOpenWithScan(b"t", TScan(), {})
        assert [r.row for r in conn.client.scannerGetList(sid, 1)] == [b"a"]
        gevent.sleep(0.5)
        for call in (lambda: conn.client.scannerGetList(sid, 1),
                     lambda: conn.client.scannerClose(sid)):
            with pytest.raises(IllegalArgument) as info:
                call()
            assert info.value.message == b"scanner ID is invalid"
        # A scanner in use keeps its lease.
        sid = conn.client.scannerOpenWithScan(b"t", TScan(), {})
        for key in (b"a", b"c", b"e"):
            gevent.sleep(0.1)
            assert [r.row for r in conn.client.scannerGetList(sid, 1)] == [key]
        conn.client.scannerClose(sid)
        conn.close()


def test_leaked_scanners_do_not_outlive_their_lease(scan_table):
    with HBaseServer(scanner_timeout=0.1) as server:
        conn = scan_table(server)
        leaked = [conn.client.scannerOpenWithScan(b"t", TScan(), {}) for _ in range(3)]
        gevent.sleep(0.3)
        conn.client.scannerOpenWithScan(b"t", TScan(), {})
        for sid in leaked:
            with pytest.raises(IllegalArgument):
                conn.client.scannerClose(sid)
        conn.close()


def test_scanner_past_its_lease_reopens_after_its_last_row(scan_table):
    """Unused for longer than its lease (but not twice as long), a scanner is
    reopened after the last row it returned, as HBase 2's client scanner
    does: it then sees rows written since it was first opened."""
    with HBaseServer(scanner_timeout=1.0) as server:
        conn = scan_table(server)
        fresh = conn.client.scannerOpenWithScan(b"t", TScan(), {})
        lapsed = conn.client.scannerOpenWithScan(b"t", TScan(), {})
        for sid in (fresh, lapsed):
            assert [r.row for r in conn.client.scannerGetList(sid, 1)] == [b"a"]
        conn.table("t").put(b"b", {b"cf:c": b"b"})
        assert [r.row for r in conn.client.scannerGetList(fresh, 5)] == [b"c", b"e"]
        gevent.sleep(1.3)
        assert [r.row for r in conn.client.scannerGetList(lapsed, 5)] == [b"b", b"c", b"e"]
        conn.close()


# A blocking client on an in-process server


@pytest.mark.parametrize("transport,protocol", [("buffered", "binary"), ("framed", "compact")])
def test_blocking_client_in_the_server_thread_fails_at_once(transport, protocol, caplog,
                                                           monkeypatch):
    """A plain happybase.Connection blocks the hub its in-process server
    needs: instead of hanging, its call fails within seconds, saying what to
    use instead, and the server serves green clients again afterwards."""
    with HBaseServer(transport=transport, protocol=protocol) as server:
        if transport == "framed":
            gevent.sleep(0.1)  # let the server accept it: then the request waits there
        blocking = connect(server)  # happybase's own blocking sockets, 10 s timeout
        gevent.sleep(0.1)
        with pytest.raises(TApplicationException) as info:
            blocking.tables()
        assert b"subprocess=True" in info.value.message
        assert b"green_happybase.ConnectionPool" in info.value.message
        blocking.close()
        monkeypatch.setattr(happybase.connection, "TSocket", _GreenTSocket)
        green_conn = connect(server)
        assert green_conn.tables() == []
        green_conn.close()
    assert any("blocked hub" in r.getMessage() for r in caplog.records)


def test_blocking_client_with_the_fixture_fails_at_once(hbase_server):
    blocking = connect(hbase_server)
    with pytest.raises(TApplicationException) as info:
        blocking.tables()
    assert b"hbase_server(subprocess=True)" in info.value.message
    blocking.close()


@pytest.mark.hbase_server(subprocess=True)
def test_blocking_client_with_the_subprocess_marker_works(hbase_server):
    blocking = connect(hbase_server)
    blocking.create_table("t", {"cf": {}})
    assert blocking.tables() == [b"t"]
    blocking.close()
