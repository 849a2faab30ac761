"""The embedded server under hostile input: no request can stall the other
clients or blow up the server's memory.

Each attack runs against a server while another client keeps calling; that
client must be answered within a second throughout (a bound to catch a stall,
not a benchmark).
"""
import os
import socket
import struct
import time

import gevent
import gevent.socket
import happybase
import pytest
from gevent.event import Event
from Hbase_thrift import IOError as HBaseIOError
from thriftpy2.transport import TSocket

from green_happybase.testing import HBaseServer
from green_happybase.testing.wire import MAX_DEPTH

TIMEOUT_MS = 10000


class _GreenTSocket(TSocket):
    def _init_sock(self):
        self.sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)


@pytest.fixture
def green(monkeypatch):
    monkeypatch.setattr(happybase.connection, "TSocket", _GreenTSocket)


def connect(server):
    return happybase.Connection(server.host, server.port, timeout=TIMEOUT_MS,
                                transport=server.transport, protocol=server.protocol)


def i32(n):
    return struct.pack("!i", n)


def call(name, fields, framed=False):
    """A strict binary call ``name`` whose args struct holds ``fields``."""
    body = b"\x80\x01\x00\x01" + i32(len(name)) + name + i32(0) + fields + b"\x00"
    return i32(len(body)) + body if framed else body


def closed_by_server(sock):
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


class Bystander:
    """A client that keeps calling, each call within a second, while an attack runs."""

    def __init__(self, server):
        self.conn = connect(server)
        self.calls = 0
        self._progress = Event()
        self.greenlet = gevent.spawn(self._run)

    def _run(self):
        while True:
            with gevent.Timeout(1.0, AssertionError("a bystander waited a second")):
                self.conn.tables()
            self.calls += 1
            self._progress.set()
            gevent.sleep(0.01)

    def served(self, calls):
        """Wait (5 s at most) until the bystander has made ``calls`` calls."""
        deadline = time.monotonic() + 5
        while self.calls < calls and not self.greenlet.dead and time.monotonic() < deadline:
            self._progress.clear()
            self._progress.wait(deadline - time.monotonic())
        return self.calls >= calls

    def stop(self):
        """Raise what went wrong for the bystander, if anything; return its calls."""
        self.served(1)
        if self.greenlet.dead:
            self.greenlet.get()
        self.greenlet.kill()
        self.conn.close()
        return self.calls


@pytest.mark.parametrize("element", [1, 0, 2, 12], ids=["void", "stop", "bool", "struct"])
@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_huge_container_in_a_tiny_request_is_refused_at_once(green, caplog, element, transport):
    """A 40-byte request announcing a list of 2**31 - 1 elements (in an
    unknown field, so a decoder would skip them) is refused before anything
    is built or skipped."""
    with HBaseServer(transport=transport) as server:
        bystander = Bystander(server)
        request = call(b"getTableNames", b"\x0f\x00\x09" + bytes([element]) + i32(2**31 - 1),
                       framed=transport == "framed")
        assert len(request) <= 44
        bad = gevent.socket.create_connection((server.host, server.port), timeout=10)
        bad.sendall(request)
        assert closed_by_server(bad)
        bad.close()
        assert bystander.stop() > 0
    assert any("closing connection" in r.getMessage() for r in caplog.records)


def test_huge_container_in_compact_is_refused_at_once(green):
    with HBaseServer(protocol="compact") as server:
        bystander = Bystander(server)
        # getTableNames(), field 9 (delta 0): a list of 2**31 - 1 booleans.
        request = (b"\x82\x21\x00\x0dgetTableNames" + b"\x09\x12" + b"\xf1"
                   + b"\xff\xff\xff\xff\x07" + b"\x00")
        bad = gevent.socket.create_connection((server.host, server.port), timeout=10)
        bad.sendall(request)
        assert closed_by_server(bad)
        bad.close()
        assert bystander.stop() > 0


def test_deep_nesting_is_refused(green):
    with HBaseServer() as server:
        nested = b"\x0c\x00\x09" * (MAX_DEPTH + 1) + b"\x00" * (MAX_DEPTH + 1)
        bad = gevent.socket.create_connection((server.host, server.port), timeout=10)
        bad.sendall(call(b"getTableNames", nested))
        assert closed_by_server(bad)
        bad.close()
        good = connect(server)
        assert good.tables() == []
        good.close()


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_flood_of_empty_structs_does_not_grow_the_server():
    """A 4 MB mutateRows of empty BatchMutations would decode into about
    400 MB of objects: refused while its memory estimate outgrows its size."""
    with HBaseServer(subprocess=True) as server:
        conn = happybase.Connection(server.host, server.port, timeout=1000)
        conn.create_table("t", {"cf": {}})
        before = _rss_kib(server.pid)
        count = 4 * 1024 * 1024
        flood = call(b"mutateRows", b"\x0b\x00\x01" + i32(1) + b"t"
                     + b"\x0f\x00\x02\x0c" + i32(count) + b"\x00" * count)
        bad = socket.create_connection((server.host, server.port), timeout=10)
        try:
            bad.sendall(flood)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_server(bad)
        bad.close()
        assert conn.tables() == [b"t"]  # answered within its 1 s socket timeout
        grown = _rss_kib(server.pid) - before
        assert grown < 64 * 1024, "the server grew by %d KiB" % grown
        conn.close()


def test_many_idle_connections_and_garbage_leave_service_intact(green):
    with HBaseServer() as server:
        idle = [gevent.socket.create_connection((server.host, server.port), timeout=10)
                for _ in range(1000)]
        bystander = Bystander(server)
        deadline = time.monotonic() + 10
        while server.stats()["connections"] < 1001 and time.monotonic() < deadline:
            gevent.sleep(0.02)
        assert server.stats()["connections"] == 1001
        assert bystander.served(3)
        for sock in idle[:100]:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        for sock in idle:
            sock.close()
        assert bystander.stop() > 0


@pytest.fixture
def regex_table(green):
    def make(server, rows):
        conn = connect(server)
        conn.create_table("t", {"cf": {}})
        with conn.table("t").batch() as batch:
            for key, value in rows.items():
                batch.put(key, {b"cf:v": value})
        return conn

    return make


def test_catastrophic_regex_is_answered_at_once(regex_table):
    """``(a+)+$`` against ``'a' * 27 + 'b'`` backtracks for tens of seconds in
    a backtracking engine; here it is answered, rightly, while others run."""
    with HBaseServer() as server:
        conn = regex_table(server, {b"no": b"a" * 27 + b"b", b"yes": b"a" * 28})
        bystander = Bystander(server)
        scan = gevent.spawn(lambda: [key for key, _ in conn.table("t").scan(
            filter="ValueFilter(=, 'regexstring:^(a+)+$')")])
        assert scan.get(timeout=10) == [b"yes"]
        assert bystander.stop() > 0
        conn.close()


def test_regex_budget_ends_a_long_request_with_an_io_error(regex_table):
    """A scanner call may spend about a second matching; past that it answers
    an IOError naming the budget, and other clients ran all along."""
    with HBaseServer() as server:
        rows = {b"r%03d" % i: b"ab" * 10000 for i in range(60)}
        conn = regex_table(server, rows)
        bystander = Bystander(server)
        with pytest.raises(HBaseIOError) as info:
            list(conn.table("t").scan(filter="ValueFilter(=, 'regexstring:(a|b)*c')"))
        assert b"budget" in info.value.message
        assert bystander.stop() > 10
        assert conn.tables() == [b"t"]
        conn.close()
