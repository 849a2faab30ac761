"""The embedded server's network side: transports, protocols, robustness,
fault injection, subprocess mode, CLI and pytest fixtures.

In-process servers are reached by happybase.Connection over gevent sockets
(the ``green`` fixture); subprocess servers by plain blocking happybase.
"""
import io
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import gevent
import gevent.socket
import happybase
import pytest
import thriftpy2
from gevent.event import Event
from Hbase_thrift import AlreadyExists, ColumnDescriptor, Hbase, Mutation
from thriftpy2.protocol import TBinaryProtocol, TCompactProtocol, TCyBinaryProtocol
from thriftpy2.thrift import TApplicationException, TClient, TMessageType
from thriftpy2.transport import (
    TCyBufferedTransport,
    TCyFramedTransport,
    TCyMemoryBuffer,
    TSocket,
    TTransportException,
)

from green_happybase.testing import HBaseServer
from green_happybase.testing.surface import HBaseHandler

pytest_plugins = ["pytester"]

# A connection the server closed: EOF, or a reset when it left bytes unread.
CUT = (TTransportException, ConnectionResetError, BrokenPipeError)
COMBINATIONS = [(t, p) for t in ("buffered", "framed") for p in ("binary", "compact")]
PROTOCOLS = {"binary": TCyBinaryProtocol, "compact": TCompactProtocol}
TIMEOUT_MS = 10000


class _GreenTSocket(TSocket):
    """thriftpy2's TSocket on a gevent socket: cooperative, no monkey-patching."""

    def _init_sock(self):
        sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock


@pytest.fixture
def green(monkeypatch):
    """Make happybase.Connection build gevent sockets for this test."""
    monkeypatch.setattr(happybase.connection, "TSocket", _GreenTSocket)


def connect(server, **kwargs):
    return happybase.Connection(server.host, server.port, timeout=TIMEOUT_MS,
                                transport=server.transport, protocol=server.protocol, **kwargs)


def put_get(conn, table=b"t", row=b"r\xff\x00", value=b"v\x00\xfe"):
    if table not in conn.tables():
        conn.create_table(table, {"cf": {}})
    conn.table(table).put(row, {b"cf:c": value})
    return conn.table(table).row(row)


def wait_until(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(0.02)
    return predicate()


def can_connect(server):
    try:
        gevent.socket.create_connection((server.host, server.port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


def raw_call(sock, protocol, name, seqid, args):
    """Send one call by hand and return the reply's (name, type, seqid, payload)."""
    out = TCyMemoryBuffer()
    oprot = PROTOCOLS[protocol](out)
    oprot.write_message_begin(name, TMessageType.CALL, seqid)
    args.write(oprot)
    oprot.write_message_end()
    sock.sendall(out.getvalue())
    iprot = PROTOCOLS[protocol](TCyBufferedTransport(TSocket(sock=sock)), decode_response=False)
    rname, rtype, rseqid = iprot.read_message_begin()
    if rtype == TMessageType.EXCEPTION:
        payload = TApplicationException()
    else:
        payload = getattr(Hbase, "%s_result" % name)()
    payload.read(iprot)
    if isinstance(rname, bytes):
        rname = rname.decode()
    return rname, rtype, rseqid, payload


# The part of HBase 2's IDL that happybase's lacks.
GATEWAY = thriftpy2.load_fp(io.StringIO(
    "enum TThriftServerType { ONE = 1, TWO = 2 }\n"
    "service Gateway { TThriftServerType getThriftServerType() }"),
    module_name="test_gateway_thrift")


def raw_client(server, service=Hbase, strict=True):
    """thriftpy2's own client on a gevent socket; ``strict=False`` sends
    old-style binary messages (no version header)."""
    sock = _GreenTSocket(server.host, server.port, socket_timeout=TIMEOUT_MS)
    transport = (TCyFramedTransport if server.transport == "framed" else TCyBufferedTransport)(sock)
    transport.open()
    if server.protocol == "compact":
        protocol = TCompactProtocol(transport, decode_response=False)
    else:
        protocol = TBinaryProtocol(transport, strict_read=strict, strict_write=strict,
                                   decode_response=False)
    return TClient(service, protocol), transport


def closed_by_server(sock):
    """True once the server has closed ``sock`` (read gives EOF or a reset)."""
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# Transports and protocols


@pytest.mark.parametrize("transport,protocol", COMBINATIONS)
def test_blocking_happybase_round_trip_on_subprocess_server(transport, protocol):
    """A plain blocking happybase.Connection works against subprocess mode,
    and a Thrift error comes back as its declared type on a live connection."""
    with HBaseServer(transport=transport, protocol=protocol, subprocess=True) as server:
        conn = connect(server)
        assert put_get(conn) == {b"cf:c": b"v\x00\xfe"}
        with pytest.raises(AlreadyExists):
            conn.create_table(b"t", {"cf": {}})
        assert conn.tables() == [b"t"]
        conn.close()
        assert server.stats()["calls"] >= 6


@pytest.mark.parametrize("transport,protocol", COMBINATIONS)
def test_green_happybase_round_trip_in_process(green, transport, protocol):
    with HBaseServer(transport=transport, protocol=protocol) as server:
        conn = connect(server)
        assert put_get(conn) == {b"cf:c": b"v\x00\xfe"}
        conn.close()


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_reply_echoes_method_name_and_sequence_id(protocol):
    """Every reply carries the request's method name and sequence id, also
    for an unknown method, which gets a TApplicationException reply."""
    with HBaseServer(protocol=protocol) as server:
        sock = gevent.socket.create_connection((server.host, server.port), timeout=10)
        reply = raw_call(sock, protocol, "getTableNames", 12345, Hbase.getTableNames_args())
        assert reply[:3] == ("getTableNames", TMessageType.REPLY, 12345)
        assert reply[3].success == []
        reply = raw_call(sock, protocol, "noSuchMethod", 7, Hbase.getTableNames_args())
        assert reply[:3] == ("noSuchMethod", TMessageType.EXCEPTION, 7)
        assert reply[3].type == TApplicationException.UNKNOWN_METHOD
        assert reply[3].message == b"Invalid method name: 'noSuchMethod'"
        reply = raw_call(sock, protocol, "getTableNames", 2**31 - 1, Hbase.getTableNames_args())
        assert reply[:3] == ("getTableNames", TMessageType.REPLY, 2**31 - 1)
        sock.close()


def test_handler_crash_becomes_a_reply_and_the_connection_lives(green, monkeypatch, caplog):
    def crash(self):
        raise KeyError("boom")

    monkeypatch.setattr(HBaseHandler, "getTableNames", crash)
    with HBaseServer() as server:
        conn = connect(server)
        with pytest.raises(TApplicationException) as info:
            conn.tables()
        assert info.value.type == TApplicationException.INTERNAL_ERROR
        message = info.value.message  # bytes: happybase does not decode replies
        assert b"getTableNames" in message and b"KeyError: 'boom'" in message
        conn.create_table(b"t", {"cf": {}})
        assert conn.is_table_enabled(b"t")
        assert server.stats()["connections"] == 1
        conn.close()
    assert any("getTableNames" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_old_style_binary_messages_are_served(transport):
    """HBase's TBinaryProtocol.Factory() reads messages without a version
    header (strict_read=False) and answers with strict ones."""
    with HBaseServer(transport=transport) as server:
        client, trans = raw_client(server, strict=False)
        client.createTable(b"t", [ColumnDescriptor(name=b"cf:")])
        client.mutateRow(b"t", b"r", [Mutation(column=b"cf:c", value=b"v")], {})
        (row,) = client.getRow(b"t", b"r", {})
        assert row.columns[b"cf:c"].value == b"v"
        assert client.getTableNames() == [b"t"]
        trans.close()


@pytest.mark.parametrize("transport,protocol", COMBINATIONS)
def test_get_thrift_server_type_answers_one(transport, protocol):
    with HBaseServer(transport=transport, protocol=protocol) as server:
        client, trans = raw_client(server, GATEWAY.Gateway)
        assert client.getThriftServerType() == GATEWAY.TThriftServerType.ONE == 1
        trans.close()


def test_server_type_two_pretends_to_be_a_thrift2_gateway():
    """It answers TWO, and Thrift1 calls as a Thrift2 gateway does: unknown."""
    with HBaseServer(server_type="two") as server:
        client, trans = raw_client(server, GATEWAY.Gateway)
        assert client.getThriftServerType() == GATEWAY.TThriftServerType.TWO == 2
        trans.close()
        client, trans = raw_client(server)
        with pytest.raises(TApplicationException) as info:
            client.getTableNames()
        assert info.value.type == TApplicationException.UNKNOWN_METHOD
        assert info.value.message == b"Invalid method name: 'getTableNames'"
        trans.close()
    with HBaseServer(server_type="two", subprocess=True) as server:  # --server-type two
        client, trans = raw_client(server, GATEWAY.Gateway)
        assert client.getThriftServerType() == 2
        trans.close()
    with pytest.raises(ValueError, match="server_type"):
        HBaseServer(server_type="three")


# Many clients, bad clients


def test_fifty_concurrent_green_clients(green):
    """50 clients are served at once: all hold an open connection with a
    call answered at the same moment, and each reads its own row back."""
    with HBaseServer() as server:
        admin = connect(server)
        admin.create_table(b"t", {"cf": {}})
        release = Event()
        results = {}

        def client(i):
            conn = connect(server)
            row = b"row-%d" % i
            conn.table(b"t").put(row, {b"cf:c": row})
            results[i] = conn.table(b"t").row(row)
            release.wait(10)
            conn.close()

        greenlets = [gevent.spawn(client, i) for i in range(50)]
        assert wait_until(lambda: len(results) == 50, 20)
        assert server.stats()["connections"] == 51
        release.set()
        gevent.joinall(greenlets, timeout=20, raise_error=True)
        assert results == {i: {b"cf:c": b"row-%d" % i} for i in range(50)}
        assert wait_until(lambda: server.stats()["connections"] == 1)
        assert server.stats()["accepted"] == 51
        admin.close()


GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4,
    "huge-frame": struct.pack("!i", 2**31 - 1) + b"\x80\x01\x00\x01" * 64,
    "1gb-frame": struct.pack("!i", 2**30) + b"\x80\x01\x00\x01" * 64,
    "negative-frame": struct.pack("!i", -5) + b"x" * 64,
    "huge-name": b"\x80\x01\x00\x01" + struct.pack("!i", 2**31 - 16) + b"x" * 64,
    "1gb-name": b"\x80\x01\x00\x01" + struct.pack("!i", 2**30) + b"x" * 64,
    "compact-1gb-name": b"\x82\x21\x00" + b"\x80\x80\x80\x80\x04" + b"x" * 64,
}


@pytest.mark.parametrize("transport,protocol", COMBINATIONS)
@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_bad_client_is_cut_off_while_another_keeps_working(green, caplog, transport, protocol,
                                                          garbage):
    with HBaseServer(transport=transport, protocol=protocol) as server:
        good = connect(server)
        assert put_get(good) == {b"cf:c": b"v\x00\xfe"}
        bad = gevent.socket.create_connection((server.host, server.port), timeout=10)
        bad.sendall(GARBAGE[garbage])
        assert closed_by_server(bad)
        bad.close()
        assert put_get(good, row=b"after") == {b"cf:c": b"v\x00\xfe"}
        assert wait_until(lambda: server.stats()["connections"] == 1)
        good.close()
    assert any(r.levelname == "WARNING" and "closing connection" in r.getMessage()
               for r in caplog.records)


def test_oversized_buffered_request_is_cut_off_once_it_has_sent_the_limit(green, caplog):
    """A request larger than MAX_MESSAGE_BYTES is cut off once it has sent
    that much, although each of its parts announced a believable size."""
    from green_happybase.testing.server import MAX_MESSAGE_BYTES

    piece = 65536
    count = MAX_MESSAGE_BYTES // piece + 16
    # getRows(tableName, rows=[count strings of 64 KiB])
    head = (b"\x80\x01\x00\x01" + struct.pack("!i", 7) + b"getRows" + struct.pack("!i", 0)
            + b"\x0b\x00\x01" + struct.pack("!i", 1) + b"t"
            + b"\x0f\x00\x02\x0b" + struct.pack("!i", count))
    with HBaseServer() as server:
        bad = gevent.socket.create_connection((server.host, server.port), timeout=10)
        chunk = struct.pack("!i", piece) + b"k" * piece
        try:
            bad.sendall(head)
            for _ in range(count):
                bad.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_server(bad)
        bad.close()
        good = connect(server)
        assert good.tables() == []
        good.close()
    assert any("exceeds %d bytes" % MAX_MESSAGE_BYTES in r.getMessage() for r in caplog.records)


# Fault injection, in-process


def test_set_latency_delays_every_reply(green):
    with HBaseServer() as server:
        conn = connect(server)
        conn.tables()
        server.set_latency(0.2)
        for _ in range(2):
            started = time.monotonic()
            conn.tables()
            assert time.monotonic() - started >= 0.2
        server.set_latency(0)
        conn.tables()
        conn.close()


def test_set_latency_lets_other_clients_run(green):
    """A slow call does not hold up the hub: a ticker keeps ticking."""
    with HBaseServer() as server:
        conn = connect(server)
        server.set_latency(0.3)
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(10)])
        conn.tables()
        assert len(ticks) == 10
        ticker.join()
        conn.close()


def test_drop_connections_closes_clients_and_keeps_listening(green):
    with HBaseServer() as server:
        conn = connect(server)
        assert put_get(conn) == {b"cf:c": b"v\x00\xfe"}
        server.drop_connections()
        assert server.stats()["connections"] == 0
        with pytest.raises(CUT):
            conn.tables()
        fresh = connect(server)
        assert fresh.tables() == [b"t"]
        assert server.stats() == {"connections": 1, "accepted": 2, "calls": 5, "auth_failures": 0,
                                  "users": {}}
        fresh.close()


def test_refuse_connections_for_a_while(green):
    with HBaseServer() as server:
        port = server.port
        conn = connect(server)
        conn.tables()
        started = time.monotonic()
        server.refuse_connections(0.5)
        with pytest.raises(ConnectionRefusedError):
            gevent.socket.create_connection((server.host, server.port), timeout=2)
        assert conn.tables() == []  # open connections are untouched
        assert wait_until(lambda: can_connect(server))
        # gevent's timers run on the loop's cached clock, which may lag
        # time.monotonic() a little: "a while", not to the millisecond.
        assert time.monotonic() - started >= 0.4
        assert server.port == port
        connect(server).close()


def test_stop_then_start_on_the_same_port_keeps_the_data(green):
    with HBaseServer() as server:
        port = server.port
        conn = connect(server)
        assert put_get(conn) == {b"cf:c": b"v\x00\xfe"}
        server.stop()
        assert server.stats()["connections"] == 0
        assert not can_connect(server)
        with pytest.raises(CUT):
            conn.tables()
        server.start()
        assert server.port == port
        fresh = connect(server)
        assert fresh.table(b"t").row(b"r\xff\x00") == {b"cf:c": b"v\x00\xfe"}
        fresh.close()


def test_close_after_n_calls(green):
    with HBaseServer() as server:
        early = connect(server)
        early.tables()
        early.tables()
        server.close_after(2)
        for conn in (early, connect(server)):
            assert conn.tables() == []
            assert conn.tables() == []  # the reply to call n still arrives
            with pytest.raises(CUT):
                conn.tables()
        server.close_after(None)
        late = connect(server)
        for _ in range(3):
            assert late.tables() == []
        late.close()


def test_bad_fault_injection_arguments():
    server = HBaseServer()
    with pytest.raises(ValueError, match="seconds"):
        server.set_latency(-1)
    with pytest.raises(TypeError, match="seconds"):
        server.set_latency("1")
    with pytest.raises(ValueError, match="seconds"):
        server.refuse_connections(0)
    with pytest.raises(ValueError, match="n must"):
        server.close_after(0)
    with pytest.raises(TypeError, match="n must"):
        server.close_after(1.5)
    with pytest.raises(ValueError, match="transport"):
        HBaseServer(transport="thrift")
    with pytest.raises(ValueError, match="protocol"):
        HBaseServer(protocol="json")
    with pytest.raises(ValueError, match="port"):
        HBaseServer(port=70000)


# Subprocess mode


def test_subprocess_fault_injection_over_the_control_channel():
    with HBaseServer(subprocess=True) as server:
        conn = connect(server)
        conn.tables()
        server.set_latency(0.2)
        started = time.monotonic()
        conn.tables()
        assert time.monotonic() - started >= 0.2
        server.set_latency(0)
        server.drop_connections()
        with pytest.raises(CUT):
            conn.tables()
        server.refuse_connections(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=2)
        assert wait_until(lambda: can_connect(server))
        server.close_after(1)
        conn = connect(server)
        conn.tables()
        with pytest.raises(CUT):
            conn.tables()
        server.close_after(None)
        server.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=2)
        server.start()
        last = connect(server)
        assert last.tables() == []
        assert server.stats() == {"connections": 1, "accepted": 4, "calls": 4, "auth_failures": 0,
                                  "users": {}}
        last.close()


def test_subprocess_exits_and_is_reaped():
    with HBaseServer(subprocess=True) as server:
        pid = server.pid
        os.kill(pid, 0)
    # A zombie would still accept signal 0: the child was waited for.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(RuntimeError):
        server.stats()


def test_subprocess_start_failure_names_the_cause():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(RuntimeError, match=r"(?s)exited with code 1.*in use"):
            HBaseServer(port=taken.getsockname()[1], subprocess=True).start()
    finally:
        taken.close()


# CLI


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_its_address_serves_and_exits_cleanly(signum):
    proc = subprocess.Popen(
        [sys.executable, "-m", "green_happybase.testing", "--port", "0",
         "--transport", "framed", "--protocol", "compact"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert select.select([proc.stdout], [], [], 30)[0], "no address printed"
        line = proc.stdout.readline().decode()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        conn = happybase.Connection("127.0.0.1", int(match.group(1)), timeout=TIMEOUT_MS,
                                    transport="framed", protocol="compact")
        assert put_get(conn) == {b"cf:c": b"v\x00\xfe"}
        conn.close()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_stops_promptly_on_sigterm():
    """SIGTERM ends the server at once, even with connections open and a call
    in flight (typically well under a second; the bound only catches hangs)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "green_happybase.testing", "--port", "0", "--latency", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert select.select([proc.stdout], [], [], 30)[0], "no address printed"
        port = int(proc.stdout.readline().decode().rpartition(":")[2])
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        busy = socket.create_connection(("127.0.0.1", port), timeout=10)
        out = TCyMemoryBuffer()
        oprot = TCyBinaryProtocol(out)
        oprot.write_message_begin("getTableNames", TMessageType.CALL, 0)
        Hbase.getTableNames_args().write(oprot)
        busy.sendall(out.getvalue())  # its reply waits for the 30 s latency
        busy.settimeout(0.2)
        with pytest.raises(socket.timeout):
            busy.recv(1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, err
        assert elapsed < 5.0, "took %.1f s to stop" % elapsed
        idle.close()
        busy.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# pytest fixtures


def test_hbase_server_fixture_is_fresh(green, hbase_server):
    conn = connect(hbase_server)
    assert conn.tables() == []
    assert hbase_server.stats()["accepted"] == 1
    conn.close()


def test_hbase_pool_fixture(hbase_pool, hbase_server):
    with hbase_pool.connection() as conn:
        assert put_get(conn) == {b"cf:c": b"v\x00\xfe"}
    assert hbase_server.stats()["calls"] >= 4


def test_fixtures_point_at_a_real_gateway_by_environment(pytester, monkeypatch):
    """With GREEN_HAPPYBASE_TEST_HOST set, the fixtures use that gateway,
    fault injection skips, and the tables a test made are deleted after it."""
    with HBaseServer(transport="framed", subprocess=True) as gateway:
        kept = connect(gateway)
        kept.create_table(b"kept", {"cf": {}})
        monkeypatch.setenv("GREEN_HAPPYBASE_TEST_HOST", gateway.host)
        monkeypatch.setenv("GREEN_HAPPYBASE_TEST_PORT", str(gateway.port))
        monkeypatch.setenv("GREEN_HAPPYBASE_TEST_TRANSPORT", "framed")
        pytester.makepyfile(
            """
            import happybase

            def test_makes_tables(hbase_server):
                assert hbase_server.address == "%s"
                conn = happybase.Connection(hbase_server.host, hbase_server.port,
                                            transport=hbase_server.transport)
                conn.create_table(b"made", {"cf": {}})
                conn.table(b"made").put(b"r", {b"cf:c": b"v"})
                conn.disable_table(b"made")
                conn.create_table(b"made2", {"cf": {}})
                assert sorted(conn.tables()) == [b"kept", b"made", b"made2"]

            def test_fault_injection_skips(hbase_server):
                hbase_server.set_latency(1)
            """ % gateway.address
        )
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1, skipped=1)
        assert kept.tables() == [b"kept"]
        kept.close()
