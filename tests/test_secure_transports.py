"""TLS, HTTP(S) and SASL PLAIN transports against the gateways of the embedded
server, on loopback: what works, and what each misconfiguration says."""
from __future__ import annotations

import importlib.util
import os
import select
import socket
import ssl
from typing import Any

import gevent
import gevent.socket
import happybase  # noqa: F401  (loads the Hbase_thrift module)
import pytest
import trustme
from gevent.event import Event
from gevent.server import StreamServer
from Hbase_thrift import Hbase
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TClient
from thriftpy2.transport import (
    TCyBufferedTransport,
    TCyFramedTransport,
    TSocket,
    TTransportException,
)

from gatewaykit import HANG, Gateway, answer, calls_work, client, sockets_to, wait_for
from green_happybase import AuthenticationFailed, ConnectionFailed
from green_happybase.auth import Basic, Bearer, Headers, Kerberos, Plain, check_combination
from green_happybase.testing.gateways import (
    HttpGateway,
    ServerAuth,
    check_server_mode,
    parse_users,
    tls_accept,
)
from green_happybase.transports import HttpError, HttpReader, open_channel

SECRET = "s3cr3t-value"
needs_gssapi = pytest.mark.skipif(importlib.util.find_spec("gssapi") is None,
                                  reason="Kerberos() needs python-gssapi")


# -- auth objects and combinations -----------------------------------------------

@pytest.mark.parametrize("auth", [
    Plain("alice", SECRET), Basic("alice", SECRET), Bearer(SECRET), Bearer(lambda: SECRET),
    Headers({"X-Api-Key": SECRET}), Headers(lambda: {"X-Api-Key": SECRET}),
])
def test_repr_never_shows_a_secret(auth: Any) -> None:
    assert SECRET not in repr(auth) and SECRET not in str(auth)
    assert type(auth).__name__ in repr(auth)


@pytest.mark.parametrize("make, error, words", [
    (lambda: Plain("", "x"), ValueError, ["username", "empty"]),
    (lambda: Plain(7, "x"), TypeError, ["username", "7"]),
    (lambda: Basic("a:b", "x"), ValueError, ["username", "'a:b'"]),
    (lambda: Bearer(""), ValueError, ["token", "empty"]),
    (lambda: Bearer(12345), TypeError, ["token", "int"]),
    pytest.param(lambda: Kerberos(qop="bogus"), ValueError, ["qop", "'bogus'"],
                 marks=needs_gssapi),
    pytest.param(lambda: Kerberos(service="hbase/host"), ValueError,
                 ["service", "'hbase/host'"], marks=needs_gssapi),
    (lambda: Headers({"Bad Name": "v"}), ValueError, ["'Bad Name'", "header name"]),
    (lambda: Headers({"Content-Length": "1"}), ValueError, ["'Content-Length'", "transport"]),
    (lambda: Headers([("X-A", "1")]), TypeError, ["headers", "list"]),
])
def test_bad_input_names_the_argument_and_value(make: Any, error: type, words: list[str]) -> None:
    with pytest.raises(error) as raised:
        make()
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize("make", [
    lambda: Plain("alice", SECRET + "\n"),
    lambda: Bearer(SECRET + "\r\n"),
    lambda: Headers({"X-Api-Key": SECRET + "\n"}),
    lambda: Plain("alice", 12345),
])
def test_a_bad_secret_is_refused_without_being_shown(make: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as raised:
        make()
    assert SECRET not in str(raised.value) and "12345" not in str(raised.value)


@needs_gssapi
def test_qop_accepts_hbase_spellings() -> None:
    assert [Kerberos(qop=q).qop for q in ("privacy", "integrity", "authentication", "AUTH-CONF")] \
        == ["auth-conf", "auth-int", "auth", "auth-conf"]


@pytest.mark.parametrize("args, words", [
    (lambda: ("framed", "binary", False, Plain("a", "b"), None), ["framed", "buffered"]),
    pytest.param(lambda: ("framed", "compact", False, Kerberos(), None), ["framed", "buffered"],
                 marks=needs_gssapi),
    (lambda: ("buffered", "binary", False, Basic("a", "b"), None), ["Basic", "http"]),
    (lambda: ("buffered", "binary", False, Bearer("t"), None), ["Bearer", "http"]),
    (lambda: ("framed", "binary", True, Headers({"X-A": "1"}), None), ["Headers", "http"]),
    (lambda: ("buffered", "binary", False, None, "alice"), ["do_as", "'alice'", "HTTP"]),
    (lambda: ("http", "compact", False, None, None), ["compact", "http"]),
    (lambda: ("http", "binary", False, Plain("a", "b"), None), ["PLAIN", "http"]),
    pytest.param(lambda: ("http", "binary", False, Kerberos(qop="auth-conf"), None),
                 ["auth-conf", "tls"], marks=needs_gssapi),
    (lambda: ("udp", "binary", False, None, None), ["transport", "'udp'"]),
    (lambda: ("http", "json", False, None, None), ["protocol", "'json'"]),
])
def test_combinations_the_gateway_refuses_are_named(args: Any, words: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        check_combination(*args())
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize("args, words", [
    (("buffered", "binary", "yes", None, None), ["tls", "'yes'"]),
    (("buffered", "binary", False, "kerberos", None), ["auth", "'kerberos'"]),
    (("http", "binary", False, None, 42), ["do_as", "42"]),
])
def test_wrong_types_are_named(args: tuple, words: list[str]) -> None:
    with pytest.raises(TypeError) as raised:
        check_combination(*args)
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize("args", [
    pytest.param(lambda: ("buffered", "compact", True, Kerberos(qop="auth-conf"), None),
                 marks=needs_gssapi),
    lambda: ("buffered", "binary", False, Plain("a", "b"), None),
    lambda: ("framed", "compact", ssl.create_default_context(), None, None),
    pytest.param(lambda: ("http", "binary", True, Kerberos(qop="privacy"), "alice"),
                 marks=needs_gssapi),
    lambda: ("http", "binary", False, Bearer(lambda: "t"), None),
])
def test_combinations_the_gateway_serves_pass(args: Any) -> None:
    check_combination(*args())


def test_the_server_refuses_sasl_with_framed_and_compact_over_http() -> None:
    users = ServerAuth(users={"alice": SECRET})
    with pytest.raises(ValueError, match="framed"):
        check_server_mode("framed", "binary", users)
    with pytest.raises(ValueError, match="compact"):
        check_server_mode("http", "compact", None)
    with pytest.raises(ValueError, match="HTTP requests only"):
        check_server_mode("buffered", "binary", ServerAuth(tokens={SECRET: "svc"}))
    check_server_mode("http", "binary", users)
    assert SECRET not in repr(users) and SECRET not in repr(ServerAuth(tokens={SECRET: "x"}))


def test_parse_users_never_echoes_a_password() -> None:
    assert parse_users(["alice:a:b", "bob:"]) == {"alice": "a:b", "bob": ""}
    with pytest.raises(ValueError, match="#2") as raised:
        parse_users(["alice:x", SECRET])
    assert SECRET not in str(raised.value)


# -- TLS ---------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_tls_calls_and_an_idle_channel_with_session_tickets_is_quiet(
        transport: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    """TLS 1.3 session tickets arrive after the handshake and make poll() say
    readable: quiet() reads them at the TLS layer and still says quiet."""
    with Gateway(transport, tls=server_tls) as gw:
        channel = open_channel("127.0.0.1", gw.port, transport=transport, tls=client_tls,
                               timeout=HANG)
        assert channel.sock.version() == "TLSv1.3"
        gevent.socket.wait_read(channel.sock.fileno(), timeout=HANG)
        poller = select.poll()
        poller.register(channel.sock.fileno(), select.POLLIN)
        assert poller.poll(0), "the session tickets should be readable"
        assert channel.quiet()
        assert not poller.poll(0), "quiet() should have consumed the tickets"
        calls_work(channel)
        channel.close()
        assert not channel.quiet()


def test_wrong_ca_is_an_authentication_failure_naming_the_host(server_tls: ssl.SSLContext) -> None:
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    with Gateway(tls=server_tls) as gw, pytest.raises(AuthenticationFailed) as raised:
        open_channel("127.0.0.1", gw.port, tls=stranger, timeout=HANG)
    error = raised.value
    assert isinstance(error, ConnectionFailed)
    assert error.mechanism == "TLS" and error.host == "127.0.0.1:%d" % gw.port
    assert "certificate" in str(error) and "127.0.0.1:%d" % gw.port in str(error)


def test_wrong_hostname_is_an_authentication_failure(ca: trustme.CA,
                                                     client_tls: ssl.SSLContext) -> None:
    elsewhere = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("hbase.example.org").configure_cert(elsewhere)
    with Gateway(tls=elsewhere) as gw, pytest.raises(AuthenticationFailed) as raised:
        open_channel("127.0.0.1", gw.port, tls=client_tls, timeout=HANG)
    assert raised.value.mechanism == "TLS"
    assert "mismatch" in raised.value.reason and "127.0.0.1" in raised.value.reason


def test_plain_client_to_a_tls_gateway_says_so_at_the_first_call(
        server_tls: ssl.SSLContext) -> None:
    with Gateway(tls=server_tls) as gw:
        channel = open_channel("127.0.0.1", gw.port, timeout=HANG)
        with pytest.raises(TTransportException) as raised:
            client(channel).getTableNames()
        channel.close()
    message = str(raised.value)
    assert "127.0.0.1:%d" % gw.port in message and "before its first reply" in message
    assert "TLS" in message


def test_tls_client_to_a_plain_gateway_fails_at_connect(client_tls: ssl.SSLContext) -> None:
    with Gateway() as gw, pytest.raises(TTransportException) as raised:
        open_channel("127.0.0.1", gw.port, tls=client_tls, timeout=HANG)
    assert raised.value.type == TTransportException.NOT_OPEN
    assert "TLS handshake with 127.0.0.1:%d failed" % gw.port in str(raised.value)


def raw_tls_server(server_tls: ssl.SSLContext, then: Any) -> StreamServer:
    def handle(sock: Any, address: Any) -> None:
        tls = tls_accept(sock, server_tls)
        try:
            then(tls)
        finally:
            tls.close()

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize("misdeed", ["closes", "talks"])
def test_quiet_is_false_when_the_server_closed_or_spoke_unasked(
        tls: bool, misdeed: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    go = Event()

    def misbehave(sock: Any) -> None:
        go.wait()
        if misdeed == "talks":
            sock.sendall(b"\x80\x01\x00\x02 stale reply")
            sock.recv(1)  # until the client closes

    if tls:
        server = raw_tls_server(server_tls, misbehave)
    else:
        server = StreamServer(("127.0.0.1", 0), lambda sock, _: (misbehave(sock), sock.close()))
        server.start()
    try:
        channel = open_channel("127.0.0.1", server.server_port, tls=client_tls if tls else False,
                               timeout=HANG)
        if tls:
            gevent.socket.wait_read(channel.sock.fileno(), timeout=HANG)  # session tickets
        assert channel.quiet()
        go.set()
        gevent.socket.wait_read(channel.sock.fileno(), timeout=HANG)
        for _ in range(3):  # the answer does not change on a second look
            assert not channel.quiet()
        channel.close()
    finally:
        server.close()


def test_forget_sends_no_tls_close_notify(server_tls: ssl.SSLContext,
                                          client_tls: ssl.SSLContext) -> None:
    """After fork the parent still uses the connection: the child's forget()
    must not send close_notify. The server's next read gets our raw byte (a
    TLS error), not a clean TLS close (b'')."""
    seen: list[Any] = []
    done = Event()

    def read_next(tls: Any) -> None:
        try:
            seen.append(tls.recv(100))
        except ssl.SSLError as error:
            seen.append(error)
        done.set()

    server = raw_tls_server(server_tls, read_next)
    try:
        channel = open_channel("127.0.0.1", server.server_port, tls=client_tls, timeout=HANG)
        parent = os.dup(channel.sock.fileno())  # what the parent process keeps
        channel.forget()
        assert channel.sock.fileno() == -1
        os.write(parent, b"not a TLS record")
        wait_for(done, "the server's read")
        os.close(parent)
    finally:
        server.close()
    assert isinstance(seen[0], ssl.SSLError), seen


@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_forget_leaves_a_shared_descriptor_working(transport: str) -> None:
    """No shutdown() and no bytes: the descriptor the parent keeps still
    carries calls."""
    with Gateway(transport) as gw:
        channel = open_channel("127.0.0.1", gw.port, transport=transport, timeout=HANG)
        parent = gevent.socket.socket(fileno=os.dup(channel.sock.fileno()))
        channel.forget()
        assert not channel.quiet()
        cython = TCyFramedTransport if transport == "framed" else TCyBufferedTransport
        kept = cython(TSocket(sock=parent))
        assert TClient(Hbase, TCyBinaryProtocol(kept)).getTableNames() == [b"t1", b"t2"]
        kept.close()


# -- HTTP ---------------------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, True])
def test_http_basic_auth_and_do_as(tls: bool, server_tls: ssl.SSLContext,
                                   client_tls: ssl.SSLContext) -> None:
    auth = ServerAuth(users={"alice": SECRET})
    with Gateway("http", tls=server_tls if tls else None, auth=auth, path="/thrift") as gw:
        channel = open_channel("127.0.0.1", gw.port, transport="http", http_path="/thrift",
                               tls=client_tls if tls else False, auth=Basic("alice", SECRET),
                               do_as="bob", timeout=HANG)
        calls_work(channel, 4)
        channel.close()
    assert gw.stats["users"] == {"bob": 4} and gw.stats["connections"] == 1


def test_http_wrong_password_is_a_401_authentication_failure() -> None:
    with Gateway("http", auth=ServerAuth(users={"alice": SECRET})) as gw:
        channel = open_channel("127.0.0.1", gw.port, transport="http",
                               auth=Basic("alice", "wrong"), timeout=HANG)
        with pytest.raises(AuthenticationFailed) as raised:
            client(channel).getTableNames()
        error = raised.value
        assert error.mechanism == "Basic" and "127.0.0.1:%d" % gw.port in error.host
        assert "401" in error.reason and "Basic" in error.reason
        assert "wrong" not in str(error)

        anonymous = open_channel("127.0.0.1", gw.port, transport="http", timeout=HANG)
        with pytest.raises(AuthenticationFailed, match="401.*asks for Basic"):
            client(anonymous).getTableNames()
    assert gw.stats["auth_failures"] == 2 and gw.stats["users"] == {}


def test_bearer_callable_rotated_mid_run() -> None:
    """The callable runs per request: a token rotated (and the old one
    revoked) mid-run is picked up on the same keep-alive connection."""
    current = ["t1"]
    auth = ServerAuth(tokens={"t1": "svc-v1", "t2": "svc-v2"})
    with Gateway("http", auth=auth) as gw:
        channel = open_channel("127.0.0.1", gw.port, transport="http",
                               auth=Bearer(lambda: current[0]), timeout=HANG)
        calls_work(channel, 3)
        current[0] = "t2"
        del auth.tokens["t1"]
        calls_work(channel, 3)
        current[0] = "t1"  # revoked now
        with pytest.raises(AuthenticationFailed, match="Bearer"):
            client(channel).getTableNames()
    assert gw.stats["users"] == {"svc-v1": 3, "svc-v2": 3} and gw.stats["connections"] == 1


@pytest.mark.parametrize("headers", [{"X-Api-Key": "k1"}, lambda: {"X-Api-Key": "k1"}])
def test_custom_headers(headers: Any) -> None:
    auth = ServerAuth(tokens={"k1": "svc"}, token_header="X-Api-Key")
    with Gateway("http", auth=auth) as gw:
        channel = open_channel("127.0.0.1", gw.port, transport="http", auth=Headers(headers),
                               timeout=HANG)
        calls_work(channel, 2)
        bad = open_channel("127.0.0.1", gw.port, transport="http",
                           auth=Headers({"X-Api-Key": "k2"}), timeout=HANG)
        with pytest.raises(AuthenticationFailed, match="401"):
            client(bad).getTableNames()
    assert gw.stats["users"] == {"svc": 2}


def test_keep_alive_one_tcp_connection_per_channel() -> None:
    with Gateway("http") as gw:
        channels = [open_channel("127.0.0.1", gw.port, transport="http", timeout=HANG)
                    for _ in range(2)]
        for _ in range(5):
            for channel in channels:
                calls_work(channel, 1)
    assert gw.accepted == 2 and gw.stats["connections"] == 2 and gw.stats["requests"] == 10


def canned_http_server(reply: Any) -> StreamServer:
    """Reads each request and answers ``reply(body) -> bytes`` (a raw response)."""
    def handle(sock: Any, address: Any) -> None:
        reader = HttpReader(sock)
        while True:
            head = reader.head()
            if head is None:
                return
            response = reply(reader.body(head[1], 1 << 20, to_eof=False))
            sock.sendall(response)
            if b"Connection: close" in response:
                sock.close()
                return

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server


def http_reply(status: str, body: bytes, *headers: str) -> bytes:
    lines = ["HTTP/1.1 " + status, *headers]
    if not any(h.startswith("Transfer-Encoding") for h in headers):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.mark.parametrize("status, content_type, words", [
    ("502 Bad Gateway", "text/html", ["502", "Bad Gateway", "nginx upstream"]),
    ("200 OK", "text/html; charset=utf-8", ["200", "text/html", "Please sign in"]),
    ("500 Server Error", "application/x-thrift", ["500", "Server Error"]),
])
def test_a_page_that_is_not_thrift_is_a_clear_error(status: str, content_type: str,
                                                     words: list[str]) -> None:
    page = b"<html><body><h1>%s</h1><p>nginx upstream</p><p>Please sign in</p></body></html>" \
        % status.encode()
    server = canned_http_server(lambda _: http_reply(status, page, "Content-Type: " + content_type))
    try:
        channel = open_channel("127.0.0.1", server.server_port, transport="http", timeout=HANG)
        with pytest.raises(HttpError) as raised:
            client(channel).getTableNames()
    finally:
        server.close()
    assert raised.value.status == int(status.split()[0])
    for word in words:
        assert word in str(raised.value)
    assert "<" not in raised.value.message


def test_chunked_replies_and_a_server_that_closes_keep_alive() -> None:
    def chunked(body: bytes) -> bytes:
        reply = answer(body)
        chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part)
                          for part in (reply[:5], reply[5:]))
        return http_reply("200 OK", chunks + b"0\r\nX-Trailer: 1\r\n\r\n",
                          "Transfer-Encoding: chunked", "Content-Type: application/x-thrift",
                          "Connection: close")

    server = canned_http_server(chunked)
    try:
        channel = open_channel("127.0.0.1", server.server_port, transport="http", timeout=HANG)
        assert client(channel).getTableNames() == [b"t1", b"t2"]
        assert not channel.quiet()  # the server said it closes: the pool replaces the channel
        with pytest.raises(TTransportException, match="closed this HTTP connection"):
            client(channel).getTableNames()
    finally:
        server.close()


def raw_request(port: int, request: bytes) -> tuple[str, dict[str, str]]:
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=HANG)
    try:
        sock.sendall(request)
        head = HttpReader(sock).head()
        assert head is not None
        return head
    finally:
        sock.close()


def test_the_http_gateway_answers_only_posts_to_its_path_within_bounds() -> None:
    with Gateway("http", path="/hbase") as gw:
        status, headers = raw_request(gw.port, b"GET /hbase HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status.startswith("HTTP/1.1 405") and headers["allow"] == "POST"
        status, _ = raw_request(gw.port, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert status.startswith("HTTP/1.1 404")
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(200))
        status, _ = raw_request(gw.port, b"POST /hbase HTTP/1.1\r\n" + many + b"\r\n")
        assert status.startswith("HTTP/1.1 431")
        status, _ = raw_request(gw.port, b"POST /hbase HTTP/1.1\r\nContent-Length: 99999999999"
                                b"\r\n\r\n")
        assert status.startswith("HTTP/1.1 413")
        status, _ = raw_request(gw.port, b"POST /hbase HTTP/1.1\r\nContent-Length: 4\r\n\r\n"
                                b"oops")
        assert status.startswith("HTTP/1.1 400")


def test_http_gateway_validates_its_options() -> None:
    with pytest.raises(ValueError, match="'thrift'"):
        HttpGateway(answer, path="thrift")
    with pytest.raises(TypeError, match="ServerAuth"):
        HttpGateway(answer, auth=Basic("a", "b"))  # type: ignore[arg-type]


# -- SASL PLAIN ---------------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, True])
def test_sasl_plain(tls: bool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    with Gateway(auth=ServerAuth(users={"alice": SECRET}),
                 tls=server_tls if tls else None) as gw:
        channel = open_channel("127.0.0.1", gw.port, auth=Plain("alice", SECRET),
                               tls=client_tls if tls else False, timeout=HANG)
        calls_work(channel)
        channel.close()
    assert gw.stats["users"] == {"alice": 1} and gw.layers == ["auth"]


def test_sasl_plain_bad_password_names_the_server_reason() -> None:
    with Gateway(auth=ServerAuth(users={"alice": SECRET})) as gw:
        with pytest.raises(AuthenticationFailed) as raised:
            open_channel("127.0.0.1", gw.port, auth=Plain("alice", "guess"), timeout=HANG)
        assert sockets_to(gw.port) == 0
    error = raised.value
    assert error.mechanism == "PLAIN" and error.host == "127.0.0.1:%d" % gw.port
    assert "SASL BAD" in error.reason and "'alice'" in error.reason
    assert "guess" not in str(error) and gw.stats["auth_failures"] == 1


def test_plain_client_to_a_sasl_gateway_says_so() -> None:
    with Gateway(auth=ServerAuth(users={"alice": SECRET})) as gw:
        channel = open_channel("127.0.0.1", gw.port, timeout=HANG)
        with pytest.raises(TTransportException, match="expects SASL; use auth="):
            client(channel).getTableNames()
        channel.close()


# -- interruption -----------------------------------------------------------------------

class SilentServer:
    """Accepts, reads and never answers; reports each connection's end."""

    def __init__(self) -> None:
        self.accepted = Event()
        self.received = Event()
        self.ended = Event()
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, address: Any) -> None:
        self.accepted.set()
        try:
            while sock.recv(4096):
                self.received.set()
        except OSError:
            pass
        finally:
            sock.close()
            self.ended.set()

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize("mode", ["tls", "sasl"])
def test_connect_timeout_covers_the_handshake_and_leaves_no_socket(
        mode: str, client_tls: ssl.SSLContext) -> None:
    silent = SilentServer()
    try:
        options: dict[str, Any] = ({"tls": client_tls} if mode == "tls"
                                   else {"auth": Plain("alice", SECRET)})
        with pytest.raises(TTransportException) as raised:
            open_channel("127.0.0.1", silent.port, connect_timeout=0.2, **options)
        assert raised.value.type == TTransportException.TIMED_OUT
        assert "connect_timeout=0.2" in str(raised.value)
        wait_for(silent.ended, "the server to see the client's socket closed")
        assert sockets_to(silent.port) == 0
    finally:
        silent.close()


def test_callers_own_timeout_passes_through_and_leaves_no_socket(
        client_tls: ssl.SSLContext) -> None:
    silent = SilentServer()
    try:
        timeout = gevent.Timeout(0.2)
        with pytest.raises(gevent.Timeout) as raised, timeout:
            open_channel("127.0.0.1", silent.port, tls=client_tls, connect_timeout=HANG)
        assert raised.value is timeout
        wait_for(silent.ended, "the server to see the client's socket closed")
        assert sockets_to(silent.port) == 0
    finally:
        silent.close()


def test_killed_during_sasl_negotiation_leaves_no_socket() -> None:
    silent = SilentServer()
    try:
        connecting = gevent.spawn(open_channel, "127.0.0.1", silent.port,
                                  auth=Plain("alice", SECRET))
        wait_for(silent.received, "the SASL START message")
        connecting.kill(block=True, timeout=HANG)
        assert connecting.dead and isinstance(connecting.value, gevent.GreenletExit)
        wait_for(silent.ended, "the server to see the client's socket closed")
        assert sockets_to(silent.port) == 0
    finally:
        silent.close()


def test_refused_connect_names_the_address() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with pytest.raises(TTransportException, match="could not connect to 127.0.0.1:%d" % port):
        open_channel("127.0.0.1", port, timeout=HANG)


@pytest.mark.parametrize("options, words", [
    ({"timeout": 0}, ["timeout", "0"]),
    ({"connect_timeout": "1"}, ["connect_timeout", "'1'"]),
    ({"transport": "http", "http_path": "thrift"}, ["http_path", "'thrift'"]),
])
def test_open_channel_validates_its_options(options: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        open_channel("127.0.0.1", 1, **options)
    for word in words:
        assert word in str(raised.value)


def test_a_channel_does_not_reopen() -> None:
    with Gateway() as gw:
        channel = open_channel("127.0.0.1", gw.port, timeout=HANG)
        channel.close()
        assert not channel.transport.is_open()
        with pytest.raises(TTransportException, match="closed; open a new one"):
            channel.transport.open()


@pytest.mark.parametrize("transport, options, cython", [
    ("buffered", {}, TCyBufferedTransport),
    ("framed", {}, TCyFramedTransport),
    ("buffered", {"auth": Plain("alice", SECRET)}, TCyFramedTransport),
])
def test_plain_tcp_keeps_thriftpy2s_cython_transports(transport: str, options: dict[str, Any],
                                                      cython: type) -> None:
    """Client CPU per call: no Python layer between the protocol and the socket
    beyond what a TSocket does (SASL without a security layer is framed)."""
    with Gateway(transport, auth=ServerAuth(users={"alice": SECRET}) if options else None) as gw:
        channel = open_channel("127.0.0.1", gw.port, transport=transport, timeout=HANG, **options)
        assert type(channel.transport) is cython
        channel.close()
