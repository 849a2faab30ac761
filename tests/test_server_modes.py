"""The embedded HBase server in its secure modes: TLS, HTTP(S), SASL PLAIN
and Kerberos (SASL GSSAPI, SPNEGO), each through a real client
(green_happybase.transports.open_channel and thriftpy2) doing real calls
against the full server; its faults, stats, subprocess mode, CLI and marker."""
from __future__ import annotations

import logging
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.socket
import happybase  # noqa: F401  (loads the Hbase_thrift module)
import pytest
import trustme
from Hbase_thrift import ColumnDescriptor, Hbase, Mutation, TScan
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TClient
from thriftpy2.transport import TCyMemoryBuffer, TTransportException

from gatewaykit import HANG, USER, gateway_auth, kerberos_realm, needs_realm
from green_happybase import AuthenticationFailed
from green_happybase.auth import Basic, Bearer, Kerberos, Plain
from green_happybase.testing import HBaseServer
from green_happybase.testing.__main__ import main
from green_happybase.testing.gateways import ServerAuth
from green_happybase.transports import HttpError, open_channel

pytest_plugins = ["pytester"]

SECRET = "s3cr3t-Pa55"
TOKEN = "t0ken-Value"


# -- certificates and clients -----------------------------------------------------

@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The server certificate and its key as PEM files."""
    where = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(where / "cert.pem"))
    cert.private_key_pem.write_to_path(str(where / "key.pem"))
    return str(where / "cert.pem"), str(where / "key.pem")


def connect(server: Any, **options: Any) -> Any:
    """A channel to *server* in its mode (options: open_channel's)."""
    options.setdefault("transport", server.transport)
    if server.transport == "http":
        options.setdefault("http_path", server.http_path)
    return open_channel(server.host, server.port, timeout=HANG, connect_timeout=HANG, **options)


def thrift(channel: Any) -> Any:
    """A plain thriftpy2 client on a channel, as happybase builds one."""
    return TClient(Hbase, TCyBinaryProtocol(channel.transport, decode_response=False))


def exercise(c: Any, table: bytes = b"t") -> None:
    """Create a table, put three rows, get one, scan them all."""
    c.createTable(table, [ColumnDescriptor(name=b"cf:")])
    for i in range(3):
        c.mutateRow(table, b"row-%d" % i, [Mutation(column=b"cf:c", value=b"v%d" % i)], {})
    assert c.getRow(table, b"row-1", {})[0].columns[b"cf:c"].value == b"v1"
    scanner = c.scannerOpenWithScan(table, TScan(startRow=b"row-0"), {})
    rows = c.scannerGetList(scanner, 10)
    c.scannerClose(scanner)
    assert [(r.row, r.columns[b"cf:c"].value) for r in rows] \
        == [(b"row-%d" % i, b"v%d" % i) for i in range(3)]
    assert table in c.getTableNames()


def closed_by_server(channel: Any) -> bool:
    """Wait (bounded) until the server closes *channel*'s connection."""
    sock = channel.sock
    gevent.socket.wait_read(sock.fileno(), timeout=HANG)
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


# -- each mode, real calls ---------------------------------------------------------

@pytest.mark.parametrize("transport", ["buffered", "framed"])
def test_tls_over_tcp(transport: str, server_tls: ssl.SSLContext,
                      client_tls: ssl.SSLContext) -> None:
    with HBaseServer(transport=transport, ssl_context=server_tls) as server:
        assert server.tls and "tls" in repr(server)
        channel = connect(server, tls=client_tls)
        assert channel.sock.version() == "TLSv1.3"
        exercise(thrift(channel))
        channel.close()
        assert server.stats()["calls"] == 9


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_http_and_https(tls: bool, server_tls: ssl.SSLContext,
                        client_tls: ssl.SSLContext) -> None:
    with HBaseServer(transport="http", http_path="/hbase",
                     ssl_context=server_tls if tls else None) as server:
        channel = connect(server, tls=client_tls if tls else False)
        exercise(thrift(channel))
        # Keep-alive: one TCP connection for every call.
        assert server.stats()["accepted"] == 1 and server.stats()["calls"] == 9
        elsewhere = connect(server, tls=client_tls if tls else False, http_path="/")
        with pytest.raises(HttpError) as raised:
            thrift(elsewhere).getTableNames()
        assert raised.value.status == 404
        channel.close()
        elsewhere.close()


def raw_http(server: Any, request: bytes) -> bytes:
    """Send *request* on a fresh connection; everything the server sends
    until it closes."""
    sock = gevent.socket.create_connection((server.host, server.port), timeout=HANG)
    try:
        sock.sendall(request)
        reply = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply
    finally:
        sock.close()


def post(body: bytes, method: str = "POST") -> bytes:
    return (b"%s / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-thrift\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (method.encode(), len(body), body))


def test_http_refuses_other_methods_and_bodies_that_are_not_thrift(
        caplog: pytest.LogCaptureFixture) -> None:
    # getRows("t", rows=<a list of 2**31 - 1 empty strings>): 40 bytes.
    huge = (b"\x80\x01\x00\x01" + struct.pack("!i", 7) + b"getRows" + struct.pack("!i", 0)
            + b"\x0b\x00\x01" + struct.pack("!i", 1) + b"t"
            + b"\x0f\x00\x02\x0b" + struct.pack("!i", 2**31 - 1))
    with HBaseServer(transport="http") as server:
        good = connect(server)
        thrift(good).getTableNames()
        reply = raw_http(server, post(b"", "GET"))
        assert reply.startswith(b"HTTP/1.1 405 ") and b"Allow: POST" in reply
        for body in (b"<html>not thrift</html>", huge, b"\x80\x01\x00\x01"):
            assert raw_http(server, post(body)).startswith(b"HTTP/1.1 400 ")
        # A whole request followed by garbage is no request either.
        buf = TCyMemoryBuffer()
        out = TCyBinaryProtocol(buf)
        out.write_message_begin("getTableNames", 1, 0)
        Hbase.getTableNames_args().write(out)
        out.write_message_end()
        assert raw_http(server, post(buf.getvalue() + b"junk")).startswith(b"HTTP/1.1 400 ")
        assert raw_http(server, post(buf.getvalue())).startswith(b"HTTP/1.1 200 ")
        assert thrift(good).getTableNames() == []
        good.close()


def test_sasl_plain(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "green_happybase")
    with HBaseServer(auth=ServerAuth(users={"alice": SECRET, "bob": "other"})) as server:
        assert "auth=PLAIN" in repr(server) and SECRET not in repr(server)
        channel = connect(server, auth=Plain("alice", SECRET))
        exercise(thrift(channel))
        channel.close()
        with pytest.raises(AuthenticationFailed) as raised:
            connect(server, auth=Plain("alice", "wrong-" + SECRET))
        assert raised.value.mechanism == "PLAIN" and "alice" in raised.value.reason
        stats = server.stats()
        assert stats["users"] == {"alice": 1} and stats["auth_failures"] == 1
    refusals = [r for r in caplog.records if "refused connection" in r.getMessage()]
    assert refusals and all(r.levelno == logging.INFO for r in refusals)
    assert SECRET not in caplog.text


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_http_auth_401_without_credentials_and_users_with_doas(
        tls: bool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "green_happybase")
    auth = ServerAuth(users={"alice": SECRET}, tokens={TOKEN: "svc"})
    with HBaseServer(transport="http", auth=auth,
                     ssl_context=server_tls if tls else None) as server:
        client_tls_option = client_tls if tls else False
        anonymous = connect(server, tls=client_tls_option)
        with pytest.raises(AuthenticationFailed, match="401") as raised:
            thrift(anonymous).getTableNames()
        assert "Basic" in raised.value.reason and "Bearer" in raised.value.reason
        wrong = connect(server, tls=client_tls_option, auth=Basic("alice", "nope"))
        with pytest.raises(AuthenticationFailed, match="401"):
            thrift(wrong).getTableNames()
        alice = connect(server, tls=client_tls_option, auth=Basic("alice", SECRET))
        exercise(thrift(alice))
        proxied = connect(server, tls=client_tls_option, auth=Basic("alice", SECRET),
                          do_as="bob")
        assert thrift(proxied).getTableNames() == [b"t"]
        service = connect(server, tls=client_tls_option, auth=Bearer(TOKEN), do_as="carol")
        thrift(service).getTableNames()
        thrift(service).getTableNames()
        stats = server.stats()
        assert stats["users"] == {"alice": 9, "bob": 1, "carol": 2}
        assert stats["auth_failures"] == 2 and stats["calls"] == 12
        for channel in (anonymous, wrong, alice, proxied, service):
            channel.close()
    assert SECRET not in caplog.text and TOKEN not in caplog.text


def test_doas_without_auth_is_recorded_too() -> None:
    with HBaseServer(transport="http") as server:
        channel = connect(server, do_as="dave")
        thrift(channel).getTableNames()
        channel.close()
        assert server.stats()["users"] == {"dave": 1}


# -- what the constructor refuses ---------------------------------------------------

def test_sasl_with_framed_is_refused_at_construction() -> None:
    with pytest.raises(ValueError) as raised:
        HBaseServer(transport="framed", auth=ServerAuth(users={"alice": SECRET}))
    message = str(raised.value)
    assert "auth" in message and "framed" in message and "buffered" in message
    assert SECRET not in message


@pytest.mark.parametrize("options, error, words", [
    (dict(transport="http", protocol="compact"), ValueError, ["compact", "http"]),
    (dict(http_path="/hbase"), ValueError, ["http_path", "'/hbase'", "transport"]),
    (dict(transport="http", http_path="hbase"), ValueError, ["http_path", "'hbase'"]),
    (dict(transport="udp"), ValueError, ["transport", "'udp'"]),
    (dict(tls_key="/k.pem"), ValueError, ["tls_key", "'/k.pem'", "tls_cert"]),
    (dict(tls_cert="/nonexistent/cert.pem"), ValueError, ["tls_cert", "/nonexistent/cert.pem"]),
    (dict(tls_cert=42), TypeError, ["tls_cert", "42"]),
    (dict(ssl_context="yes"), TypeError, ["ssl_context", "'yes'"]),
    (dict(ssl_context=ssl.create_default_context()), ValueError, ["ssl_context", "client"]),
    (dict(auth="alice:pw"), TypeError, ["auth", "'alice:pw'"]),
    (dict(auth=ServerAuth(keytab="/nonexistent.keytab")), ValueError,
     ["keytab", "/nonexistent.keytab"]),
    (dict(auth=ServerAuth(tokens={TOKEN: "svc"})), ValueError, ["buffered", "HTTP"]),
])
def test_bad_options_name_themselves(options: dict[str, Any], error: type[Exception],
                                     words: list[str]) -> None:
    with pytest.raises(error) as raised:
        HBaseServer(**options)
    for word in words:
        assert word in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_ssl_context_cannot_go_to_a_subprocess(server_tls: ssl.SSLContext,
                                               cert_files: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="subprocess.*tls_cert"):
        HBaseServer(subprocess=True, ssl_context=server_tls)
    with pytest.raises(ValueError, match="one or the other"):
        HBaseServer(ssl_context=server_tls, tls_cert=cert_files[0])
    cert, key = cert_files
    with pytest.raises(ValueError, match="tls_cert=.*tls_key="):
        HBaseServer(tls_cert=key, tls_key=cert)  # swapped: neither loads


# -- faults in the secure modes -----------------------------------------------------

def test_close_after_over_http_closes_the_connection_after_the_reply() -> None:
    with HBaseServer(transport="http") as server:
        server.close_after(2)
        channel = connect(server)
        c = thrift(channel)
        assert c.getTableNames() == [] and c.getTableNames() == []
        assert closed_by_server(channel)
        with pytest.raises((TTransportException, OSError)):
            c.getTableNames()
        channel.close()
        server.close_after(None)
        fresh = connect(server)
        for _ in range(3):
            thrift(fresh).getTableNames()
        fresh.close()


def test_drop_stop_and_start_under_tls(server_tls: ssl.SSLContext,
                                       client_tls: ssl.SSLContext) -> None:
    with HBaseServer(ssl_context=server_tls) as server:
        channel = connect(server, tls=client_tls)
        thrift(channel).createTable(b"t", [ColumnDescriptor(name=b"cf:")])
        server.drop_connections()
        assert closed_by_server(channel)
        channel.close()
        server.stop()
        with pytest.raises(TTransportException):
            connect(server, tls=client_tls)
        server.start()
        again = connect(server, tls=client_tls)
        assert thrift(again).getTableNames() == [b"t"]  # data kept
        again.close()


def test_refused_connects_over_https(server_tls: ssl.SSLContext,
                                     client_tls: ssl.SSLContext) -> None:
    with HBaseServer(transport="http", ssl_context=server_tls) as server:
        server.refuse_connections(60)
        with pytest.raises(TTransportException, match="could not connect"):
            connect(server, tls=client_tls)
        server.start()  # listens again at once
        channel = connect(server, tls=client_tls)
        assert thrift(channel).getTableNames() == []
        channel.close()


@pytest.mark.parametrize("mode", ["tls", "http", "https", "sasl"])
def test_idle_cut_in_each_mode(mode: str, server_tls: ssl.SSLContext,
                               client_tls: ssl.SSLContext,
                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "green_happybase.testing")
    tls = mode in ("tls", "https")
    with HBaseServer(transport="http" if mode.startswith("http") else "buffered",
                     ssl_context=server_tls if tls else None, idle_timeout=0.3,
                     auth=ServerAuth(users={"alice": SECRET}) if mode == "sasl" else None) \
            as server:
        channel = connect(server, tls=client_tls if tls else False,
                          auth=Plain("alice", SECRET) if mode == "sasl" else None)
        assert thrift(channel).getTableNames() == []
        assert closed_by_server(channel)
        channel.close()
        # Nothing sent at all (not even a TLS ClientHello or SASL START).
        silent = gevent.socket.create_connection((server.host, server.port), timeout=HANG)
        gevent.socket.wait_read(silent.fileno(), timeout=HANG)
        assert silent.recv(1) == b""
        silent.close()
    assert sum("idle for 0.3 s" in r.getMessage() for r in caplog.records) == 2


def test_latency_over_sasl_lets_other_greenlets_run() -> None:
    with HBaseServer(auth=ServerAuth(users={"alice": SECRET})) as server:
        channel = connect(server, auth=Plain("alice", SECRET))
        server.set_latency(0.2)
        ticks: list[None] = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(5)])
        assert thrift(channel).getTableNames() == []
        assert len(ticks) == 5
        ticker.join()
        channel.close()


@pytest.mark.parametrize("mode", ["http", "tls"])
def test_a_blocking_client_fails_at_once_in_secure_modes(
        mode: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    """A stdlib (blocking) client in the server's thread: the watchdog answers
    it over HTTP with the reason, and closes a TLS connection it cannot speak."""
    with HBaseServer(transport="http" if mode == "http" else "buffered",
                     ssl_context=server_tls if mode == "tls" else None) as server:
        sock = socket.create_connection((server.host, server.port), timeout=HANG)
        try:
            if mode == "http":
                sock.sendall(post(b"\x80\x01\x00\x01"))
                reply = b""
                for _ in range(100):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                assert reply.startswith(b"HTTP/1.1 503 ")
                assert b"HBaseServer(subprocess=True)" in reply
            else:
                with pytest.raises(OSError):
                    client_tls.wrap_socket(sock, server_hostname="127.0.0.1").recv(1)
        finally:
            sock.close()


# -- subprocess mode ----------------------------------------------------------------

@pytest.mark.parametrize("transport", ["buffered", "http"])
def test_subprocess_with_tls_cert_files(transport: str, cert_files: tuple[str, str],
                                        client_tls: ssl.SSLContext) -> None:
    cert, key = cert_files
    with HBaseServer(subprocess=True, transport=transport, tls_cert=cert, tls_key=key) as server:
        assert server.tls and server.pid is not None
        channel = connect(server, tls=client_tls)
        exercise(thrift(channel))
        channel.close()
        assert server.stats()["calls"] == 9


def test_subprocess_with_plain_users() -> None:
    with HBaseServer(subprocess=True, auth=ServerAuth(users={"alice": SECRET})) as server:
        with open("/proc/%d/cmdline" % server.pid, "rb") as cmdline:
            assert SECRET.encode() not in cmdline.read()
        channel = connect(server, auth=Plain("alice", SECRET))
        exercise(thrift(channel))
        channel.close()
        with pytest.raises(AuthenticationFailed):
            connect(server, auth=Plain("alice", "wrong"))
        stats = server.stats()
        assert stats["users"] == {"alice": 1} and stats["auth_failures"] == 1


# -- the command line ---------------------------------------------------------------

@pytest.fixture
def cli() -> Iterator[Any]:
    """Start ``python -m green_happybase.testing`` with the given flags; each
    child is stopped with SIGTERM (and must exit 0) at teardown."""
    children: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> int:
        proc = subprocess.Popen([sys.executable, "-m", "green_happybase.testing", "--port", "0",
                                 *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        children.append(proc)
        assert proc.stdout is not None
        assert select.select([proc.stdout], [], [], 30)[0], "no address printed"
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on 127.0.0.1:"), line
        return int(line.rpartition(":")[2])

    yield start
    for proc in children:
        try:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert SECRET.encode() not in out + err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_cli_serves_https(cli: Any, cert_files: tuple[str, str],
                          client_tls: ssl.SSLContext) -> None:
    cert, key = cert_files
    port = cli("--transport", "http", "--http-path", "/hbase", "--tls-cert", cert,
               "--tls-key", key)
    channel = open_channel("127.0.0.1", port, transport="http", http_path="/hbase",
                           tls=client_tls, timeout=HANG)
    exercise(thrift(channel))
    channel.close()


def test_cli_serves_sasl_plain_and_logs_no_password(cli: Any) -> None:
    port = cli("--sasl", "plain", "--users", "alice:%s,bob:x" % SECRET, "--log-level", "DEBUG")
    channel = open_channel("127.0.0.1", port, auth=Plain("alice", SECRET), timeout=HANG)
    exercise(thrift(channel))
    channel.close()
    with pytest.raises(AuthenticationFailed):
        open_channel("127.0.0.1", port, auth=Plain("bob", SECRET), timeout=HANG)


@pytest.mark.parametrize("flags, words", [
    (["--sasl", "plain"], ["--sasl plain", "--users"]),
    (["--sasl", "gssapi"], ["--sasl gssapi", "--keytab"]),
    (["--sasl", "gssapi", "--keytab", "/nonexistent.kt"], ["--keytab", "/nonexistent.kt"]),
    (["--sasl", "plain", "--users", "alice:" + SECRET, "--transport", "framed"],
     ["--sasl plain", "--transport framed"]),
    (["--sasl", "plain", "--users", "alice:" + SECRET, "--qop", "auth-conf"],
     ["--qop", "auth-conf", "gssapi"]),
    (["--sasl", "plain", "--users", "alice:%s,%s" % (SECRET, SECRET)], ["--users", "#2"]),
    (["--users", "alice:" + SECRET], ["--users", "--sasl plain"]),
    (["--keytab", "/k"], ["--keytab /k", "--sasl gssapi"]),
    (["--tls-key", "/k.pem"], ["--tls-key /k.pem", "--tls-cert"]),
    (["--tls-cert", "/nonexistent.pem"], ["--tls-cert", "/nonexistent.pem"]),
    (["--http-path", "/x"], ["--http-path /x", "--transport http"]),
    (["--transport", "http", "--protocol", "compact"], ["--protocol compact", "http"]),
])
def test_cli_errors_name_the_flag_and_value(flags: list[str], words: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(flags) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("invalid option: ")
    for word in words:
        assert word in err
    assert SECRET not in err


# -- the pytest marker ----------------------------------------------------------------

@pytest.mark.hbase_server(transport="http", http_path="/gw",
                          auth=ServerAuth(users={"alice": SECRET}))
def test_marker_takes_the_secure_keywords(hbase_server: Any) -> None:
    channel = connect(hbase_server, auth=Basic("alice", SECRET), do_as="eve")
    exercise(thrift(channel))
    channel.close()
    assert hbase_server.stats()["users"] == {"eve": 9}


def test_hbase_pool_refuses_a_secure_server_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        from green_happybase.testing.gateways import ServerAuth

        @pytest.mark.hbase_server(transport="http", http_path="/gw")
        def test_http_pool(hbase_pool):
            with hbase_pool.connection() as conn:
                assert conn.tables() == []

        @pytest.mark.hbase_server(auth=ServerAuth(users={"a": "b"}))
        def test_sasl_pool(hbase_pool):
            pass
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*hbase_pool connects with host, port, transport, protocol "
                                 "and http_path only; the server runs with auth*"])


# -- Kerberos against the embedded server ---------------------------------------------

@pytest.fixture(scope="module")
def realm() -> Iterator[Any]:
    with kerberos_realm() as made:
        yield made


@needs_realm
def test_sasl_gssapi_against_the_embedded_server(realm: Any) -> None:
    with HBaseServer(auth=gateway_auth(realm, qop="auth-conf")) as server:
        assert "auth=GSSAPI" in repr(server)
        channel = connect(server, auth=Kerberos(qop="auth-conf", hostname="localhost"))
        exercise(thrift(channel))
        channel.close()
        assert server.stats()["users"] == {USER: 1}


@needs_realm
def test_spnego_against_the_embedded_server(realm: Any) -> None:
    with HBaseServer(transport="http", auth=gateway_auth(realm, "HTTP")) as server:
        channel = connect(server, auth=Kerberos(hostname="localhost"))
        exercise(thrift(channel))
        proxied = connect(server, auth=Kerberos(hostname="localhost"), do_as="alice")
        thrift(proxied).getTableNames()
        anonymous = connect(server)
        with pytest.raises(AuthenticationFailed, match="Negotiate"):
            thrift(anonymous).getTableNames()
        for each in (channel, proxied, anonymous):
            each.close()
        stats = server.stats()
        assert stats["users"] == {USER: 9, "alice": 1} and stats["auth_failures"] == 1
