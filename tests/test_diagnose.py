"""probe() and diagnose() against real peers on loopback: the embedded server
set up as each misconfigured gateway, and tiny raw peers for what it cannot
pretend to be (HTTP, TLS, SASL, echo, SSH, silence)."""
from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import gevent
import gevent.socket
import gevent.ssl
import pytest
import trustme
from gevent.event import Event
from gevent.server import StreamServer
from thriftpy2.protocol import TCompactProtocol, TCyBinaryProtocol
from thriftpy2.transport import TCyBufferedTransport, TSocket, TTransportException

from green_happybase.diagnose import PROBE_SEQID, diagnose, probe
from green_happybase.errors import ReplyMismatch
from green_happybase.testing import HBaseServer
from poolkit import make_pool

#: Seconds each diagnosis connection may take; the peers answer at once.
TIMEOUT = 2.0
#: A diagnosis that takes longer than this hangs (it should take about TIMEOUT
#: at worst, twice with tls=): generous, so a slow machine does not fail it.
HANG_BOUND = 30.0
_MAX_ROUNDS = 1000  # requests or reads one raw peer serves on a connection

METHOD = b"getThriftServerType"


# -- Peers ----------------------------------------------------------------------

@contextlib.contextmanager
def listening(handle: Callable[[Any], None],
              ssl_context: ssl.SSLContext | None = None) -> Iterator[Any]:
    """A gevent StreamServer on 127.0.0.1 running *handle(sock)*; with
    *ssl_context*, on each accepted socket wrapped in TLS (handshake done).
    Yields an object with ``host``, ``port`` and ``open`` (connections the
    handler has not finished) and ``idle`` (an Event set when none is open)."""
    state = SimpleNamespace(host="127.0.0.1", port=0, open=0, idle=Event())
    state.idle.set()

    def serve(sock: Any, _address: Any) -> None:
        state.open += 1
        state.idle.clear()
        try:
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_side=True)
            handle(sock)
        except (OSError, ValueError):
            pass  # a client that left, or a plain client on the TLS port
        finally:
            sock.close()
            state.open -= 1
            if not state.open:
                state.idle.set()

    server = StreamServer(("127.0.0.1", 0), serve)
    server.start()
    state.port = server.server_port
    try:
        yield state
    finally:
        server.stop(timeout=1)


def read_call(sock: Any, data: bytes = b"") -> tuple[bytes, bytes, int, bytes] | None:
    """One binary, buffered call without arguments: ``(name, seqid bytes,
    seqid, rest)``; ``None`` at EOF."""
    for _ in range(_MAX_ROUNDS):
        if not b"\x80\x01\x00\x01".startswith(data[:4]):
            return None  # not a strict binary call: hang up, as a server does
        if len(data) >= 8:
            size = struct.unpack("!i", data[4:8])[0]
            if not 0 < size < 1024:
                return None
            end = 8 + size + 4 + 1  # name, seqid, the args struct's STOP
            if len(data) >= end:
                seqid_bytes = data[8 + size:12 + size]
                return (data[8:8 + size], seqid_bytes, struct.unpack("!i", seqid_bytes)[0],
                        data[end:])
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return None


def reply(name: bytes, seqid: int, value: int, kind: int = 2) -> bytes:
    """A binary REPLY whose result struct holds ``0: i32 value``."""
    return (struct.pack("!I", 0x80010000 | kind) + struct.pack("!i", len(name)) + name
            + struct.pack("!i", seqid) + b"\x08\x00\x00" + struct.pack("!i", value) + b"\x00")


def unknown_method(name: bytes, seqid: int) -> bytes:
    """A binary EXCEPTION: TApplicationException(UNKNOWN_METHOD), as HBase 1 sends."""
    message = b"Invalid method name: '" + name + b"'"
    return (struct.pack("!I", 0x80010003) + struct.pack("!i", len(name)) + name
            + struct.pack("!i", seqid) + b"\x0b\x00\x01" + struct.pack("!i", len(message))
            + message + b"\x08\x00\x02" + struct.pack("!i", 1) + b"\x00")


def thrift_peer(answer: Callable[[bytes, int], bytes], seen: list[int] | None = None
                ) -> Callable[[Any], None]:
    """A handler answering each binary, buffered call with *answer(name, seqid)*."""
    def handle(sock: Any) -> None:
        rest = b""
        for _ in range(_MAX_ROUNDS):
            call = read_call(sock, rest)
            if call is None:
                return
            name, _, seqid, rest = call
            if seen is not None:
                seen.append(seqid)
            sock.sendall(answer(name, seqid))
    return handle


def http_peer(status: bytes, body: bytes = b"") -> Callable[[Any], None]:
    """Answers whatever arrives with one HTTP reply, then closes, as Jetty does."""
    def handle(sock: Any) -> None:
        sock.recv(65536)
        sock.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/x-thrift\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    return handle


def echo(sock: Any) -> None:
    for _ in range(_MAX_ROUNDS):
        data = sock.recv(4096)
        if not data:
            return
        sock.sendall(data)


def ssh(sock: Any) -> None:
    sock.sendall(b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n")
    sock.recv(4096)
    sock.sendall(b"Invalid SSH identification string.\r\n")


def sasl(sock: Any) -> None:
    """What HBase's TSaslServerTransport answers a client that starts with Thrift."""
    data = sock.recv(4096)
    message = b"Invalid status %d" % struct.unpack("!b", data[:1])[0]
    sock.sendall(b"\x04" + struct.pack("!I", len(message)) + message)


def silent(sock: Any) -> None:
    for _ in range(_MAX_ROUNDS):
        if not sock.recv(4096):
            return


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def thrift2_server() -> Any:
    """The embedded server as a Thrift2 gateway, or a raw peer answering TWO."""
    try:
        return HBaseServer(server_type="two")
    except TypeError:  # an embedded server without server_type
        return listening(thrift_peer(lambda name, seqid: reply(name, seqid, 2)))


# -- Helpers --------------------------------------------------------------------

def run(peer: Any, transport: str = "buffered", protocol: str = "binary", **options: Any) -> str:
    """diagnose() against *peer*, failing the test if it hangs."""
    options.setdefault("timeout", TIMEOUT)
    with gevent.Timeout(HANG_BOUND):
        message = diagnose(peer.host, peer.port, transport=transport, protocol=protocol,
                           **options)
    assert "%s:%s" % (peer.host, peer.port) in message
    return message


@contextlib.contextmanager
def raw_protocol(peer: Any, protocol: str = "binary") -> Iterator[Any]:
    """The protocol a happybase client builds, on a gevent socket to *peer*."""
    sock = gevent.socket.create_connection((peer.host, peer.port), timeout=TIMEOUT)
    try:
        transport = TCyBufferedTransport(TSocket(sock=sock))
        if protocol == "binary":
            yield TCyBinaryProtocol(transport, decode_response=False)
        else:
            yield TCompactProtocol(transport, decode_response=False)
    finally:
        sock.close()


# -- probe ----------------------------------------------------------------------

@pytest.mark.parametrize("transport,protocol", [("buffered", "binary"), ("framed", "compact")])
def test_probe_on_a_pool_connection(transport: str, protocol: str) -> None:
    with HBaseServer(transport=transport, protocol=protocol) as server:
        pool = make_pool(server, 1, transport=transport, protocol=protocol)
        with pool.connection() as conn:
            with gevent.Timeout(HANG_BOUND):
                assert probe(conn.client._oprot) in ("ONE", "UNKNOWN_METHOD")
                assert probe(conn.client._iprot, 7) in ("ONE", "UNKNOWN_METHOD")
            # The connection is still in step: happybase's calls work after it.
            assert conn.tables() == []


def test_probe_answers_two_on_a_thrift2_gateway() -> None:
    with thrift2_server() as server, raw_protocol(server) as protocol:
        assert probe(protocol) == "TWO"


def test_probe_answers_unknown_method_on_an_older_gateway() -> None:
    with listening(thrift_peer(unknown_method)) as peer, raw_protocol(peer) as protocol:
        assert probe(protocol) == "UNKNOWN_METHOD"
        assert probe(protocol) == "UNKNOWN_METHOD"


def test_probe_sends_the_sequence_id_it_is_given() -> None:
    seen: list[int] = []
    with listening(thrift_peer(lambda name, seqid: reply(name, seqid, 1), seen)) as peer, \
            raw_protocol(peer) as protocol:
        assert probe(protocol, 12345) == "ONE"
        assert probe(protocol) == "ONE"
    assert seen == [12345, PROBE_SEQID]


@pytest.mark.parametrize("answer", [
    lambda name, seqid: reply(name, seqid + 1, 1),
    lambda name, seqid: reply(b"getTableNames", seqid, 1),
], ids=["seqid", "name"])
def test_probe_refuses_a_reply_to_another_call(answer: Any) -> None:
    with listening(thrift_peer(answer)) as peer, raw_protocol(peer) as protocol:
        with pytest.raises(ReplyMismatch, match="does not answer the probe"):
            probe(protocol)


def test_probe_refuses_an_unknown_server_type() -> None:
    with listening(thrift_peer(lambda name, seqid: reply(name, seqid, 9))) as peer, \
            raw_protocol(peer) as protocol:
        with pytest.raises(Exception, match="neither ONE"):
            probe(protocol)


def test_probe_fails_on_a_wrong_transport_so_that_diagnose_can_run() -> None:
    with HBaseServer(transport="framed") as server, raw_protocol(server) as protocol:
        with pytest.raises(TTransportException) as failure:
            probe(protocol)
    assert "TSocket read 0 bytes" in str(failure.value)


def test_probe_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="protocol must be a thriftpy2 protocol"):
        probe(None)
    with listening(silent) as peer, raw_protocol(peer) as protocol:
        with pytest.raises(ValueError, match="seqid must be between 0 and 2147483647, not -1"):
            probe(protocol, -1)
        with pytest.raises(TypeError, match="seqid must be an int, not '1'"):
            probe(protocol, "1")  # type: ignore[arg-type]


# -- diagnose: transport and protocol -------------------------------------------

@pytest.mark.parametrize("server,client,fix", [
    (("framed", "binary"), ("buffered", "binary"), "set transport='framed'."),
    (("buffered", "binary"), ("framed", "binary"), "set transport='buffered'."),
    (("buffered", "compact"), ("buffered", "binary"), "set protocol='compact'."),
    (("buffered", "binary"), ("buffered", "compact"), "set protocol='binary'."),
    (("framed", "compact"), ("buffered", "binary"),
     "set transport='framed', protocol='compact'."),
    (("buffered", "binary"), ("framed", "compact"),
     "set transport='buffered', protocol='binary'."),
    (("buffered", "binary"), ("http", "binary"), "set transport='buffered'."),
], ids=lambda value: "-".join(value) if isinstance(value, tuple) else "")
def test_wrong_transport_or_protocol(server: tuple[str, str], client: tuple[str, str],
                                     fix: str) -> None:
    with HBaseServer(transport=server[0], protocol=server[1]) as gateway:
        message = run(gateway, *client)
    assert "the gateway does not answer %s transport" % client[0] in message \
        or "does not answer HTTP transport" in message
    assert "but answers %s transport and %s protocol" % server in message
    assert message.endswith(fix)


def test_the_message_starts_with_the_symptom_the_user_saw() -> None:
    error = TTransportException(TTransportException.END_OF_FILE, "TSocket read 0 bytes")
    with HBaseServer(transport="framed", protocol="compact") as gateway:
        message = run(gateway, error=error)
    assert message.startswith("TSocket read 0 bytes (talking to %s:%s): "
                              % (gateway.host, gateway.port))
    assert "hbase.regionserver.thrift.framed=true" in message


def test_right_settings_are_called_right() -> None:
    with HBaseServer(transport="framed", protocol="compact") as gateway:
        message = run(gateway, "framed", "compact", error=TimeoutError("timed out"))
    assert message.startswith("timed out (talking to ")
    assert "so they are right" in message
    assert "hbase.thrift.server.socket.read.timeout" in message


def test_thrift2_gateway() -> None:
    with thrift2_server() as gateway:
        message = run(gateway)
    assert "Thrift2 gateway" in message
    assert "hbase thrift`" in message


# -- diagnose: HTTP, TLS, SASL ----------------------------------------------------

def test_http_gateway() -> None:
    with listening(http_peer(b"400 Bad Request")) as peer:
        message = run(peer, "framed", "compact",
                      error=Exception("Bad protocol id in the message: 72"))
    assert message.startswith("Bad protocol id in the message: 72 (talking to")
    assert "HTTP/1.1 400 Bad Request" in message
    assert "hbase.regionserver.thrift.http=true" in message
    assert message.endswith("set transport='http', protocol='binary'.")


def test_http_gateway_that_wants_authentication() -> None:
    with listening(http_peer(b"401 Unauthorized")) as peer:
        message = run(peer, "http")
    assert "401 Unauthorized" in message
    assert "requires authentication: pass auth=" in message


def test_http_gateway_with_the_right_settings() -> None:
    body = reply(METHOD, PROBE_SEQID, 1)
    with listening(http_peer(b"200 OK", body)) as peer:
        message = run(peer, "http")
    assert "answers the probe with ONE" in message
    assert "so they are right" in message


def test_tls_expected(server_tls: ssl.SSLContext) -> None:
    answer = thrift_peer(lambda name, seqid: reply(name, seqid, 1))
    with listening(answer, server_tls) as peer:
        message = run(peer)
    assert "the gateway expects TLS" in message
    assert "set tls=True" in message


def test_tls_expected_by_a_gateway_that_sends_an_alert() -> None:
    def alert(sock: Any) -> None:  # as Java's TLS stack answers plain bytes
        sock.recv(4096)
        sock.sendall(b"\x15\x03\x03\x00\x02\x02\x0a")

    with listening(alert) as peer:
        message = run(peer, "framed", "compact")
    assert "the gateway expects TLS (it answered plain bytes with a TLS alert record)" in message
    assert "set tls=True" in message


def test_tls_with_an_untrusted_certificate(server_tls: ssl.SSLContext) -> None:
    answer = thrift_peer(lambda name, seqid: reply(name, seqid, 1))
    with listening(answer, server_tls) as peer:
        message = run(peer, tls=True)
    assert "its certificate is refused" in message
    assert "tls=ssl.create_default_context(cafile=...)" in message


def test_tls_with_the_right_settings(ca: trustme.CA, server_tls: ssl.SSLContext) -> None:
    client = ssl.create_default_context()
    ca.configure_trust(client)
    answer = thrift_peer(lambda name, seqid: reply(name, seqid, 1))
    with listening(answer, server_tls) as peer:
        message = run(peer, tls=client)
    assert "so they are right" in message
    assert "tls=True" in message


@pytest.mark.parametrize("server,fix", [
    (("buffered", "binary"), "set tls=False."),
    (("framed", "compact"), "set tls=False, transport='framed', protocol='compact'."),
])
def test_tls_not_spoken(server: tuple[str, str], fix: str) -> None:
    with HBaseServer(transport=server[0], protocol=server[1]) as gateway:
        message = run(gateway, tls=True)
    assert "the gateway does not speak TLS" in message
    assert fix in message


def test_sasl_expected() -> None:
    with listening(sasl) as peer:
        message = run(peer, "framed")
    assert "expects SASL authentication" in message
    assert "a SASL ERROR message 'Invalid status 0'" in message
    assert "Pass auth=" in message
    assert "set transport='buffered'" in message


# -- diagnose: not a Thrift server -------------------------------------------------

def test_echo_server() -> None:
    with listening(echo) as peer:
        message = run(peer)
    assert "not a Thrift server" in message
    assert "echo" in message
    assert "check host and port" in message


def test_ssh_server() -> None:
    with listening(ssh) as peer:
        message = run(peer, "framed", "compact")
    assert "not a Thrift server: it answered b'SSH-2.0-OpenSSH_9.6p1 Debian-3\\r\\n'" in message
    assert "check host and port" in message


def test_silent_server_and_every_socket_closed() -> None:
    with listening(silent) as peer:
        message = run(peer, timeout=0.5)
        assert peer.idle.wait(HANG_BOUND), "diagnose left %d connections open" % peer.open
    assert message.startswith("no reply within 0.5 s (talking to")
    assert "answers none of buffered or framed transport" in message
    assert "check host and port" in message


def test_interrupted_diagnosis_closes_its_sockets() -> None:
    with listening(silent) as peer:
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.2):
                diagnose(peer.host, peer.port, transport="buffered", protocol="binary",
                         timeout=HANG_BOUND)
        assert peer.idle.wait(HANG_BOUND), "diagnose left %d connections open" % peer.open


def test_nothing_listening() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
        peer = SimpleNamespace(host="127.0.0.1", port=bound.getsockname()[1])
        message = run(peer)
    assert "nothing accepts connections there" in message
    assert "check host and port" in message


@pytest.mark.parametrize("change,error", [
    ({"host": ""}, (TypeError, "host must be a non-empty str, not ''")),
    ({"port": "9090"}, (TypeError, "port must be an int, not '9090'")),
    ({"port": 0}, (ValueError, "port must be between 1 and 65535, not 0")),
    ({"transport": "tcp"}, (ValueError, "transport must be one of .*, not 'tcp'")),
    ({"protocol": "json"}, (ValueError, "protocol must be one of .*, not 'json'")),
    ({"timeout": 0}, (ValueError, "timeout must be a number of seconds > 0, not 0")),
    ({"timeout": None}, (TypeError, "timeout must be a number of seconds, not None")),
    ({"error": "boom"}, (TypeError, "error must be an exception or None, not 'boom'")),
    ({"tls": "yes"}, (TypeError, "tls must be True, False or an ssl.SSLContext, not 'yes'")),
])
def test_diagnose_rejects_bad_arguments(change: dict[str, Any], error: tuple[type, str]) -> None:
    arguments: dict[str, Any] = {"host": "127.0.0.1", "port": 9090, "transport": "buffered",
                                 "protocol": "binary", "timeout": 1.0}
    arguments.update(change)
    with pytest.raises(error[0], match=error[1]):
        diagnose(**arguments)
