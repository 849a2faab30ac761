"""A tiny Thrift gateway for the transport tests: every mode of
green_happybase.testing.gateways around a trivial handler, in this hub."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import gevent
import happybase  # noqa: F401  (loads the Hbase_thrift module)
import pytest
from gevent.event import Event
from gevent.server import StreamServer
from Hbase_thrift import Hbase, TCell, TRowResult
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TClient, TProcessor
from thriftpy2.transport import (
    TCyBufferedTransport,
    TCyFramedTransport,
    TCyMemoryBuffer,
    TSocket,
    TTransportException,
)

from green_happybase.testing.gateways import (
    HttpGateway,
    ServerAuth,
    new_stats,
    sasl_accept,
    tls_accept,
)

log = logging.getLogger("gatewaykit")

# Generous bounds that only catch hangs.
HANG = 10.0


class Handler:
    """Answers two calls: enough to tell one reply from another."""

    def getTableNames(self) -> list[bytes]:
        return [b"t1", b"t2"]

    def getRow(self, tableName: bytes, row: bytes, attributes: Any) -> list[Any]:
        return [TRowResult(row=row, columns={b"cf:q": TCell(value=tableName + b"/" + row,
                                                            timestamp=1)})]


def answer(request: bytes) -> bytes:
    """One binary Thrift message in, its reply out (the HTTP gateway's callback)."""
    out = TCyMemoryBuffer()
    TProcessor(Hbase, Handler()).process(TCyBinaryProtocol(TCyMemoryBuffer(request)),
                                         TCyBinaryProtocol(out))
    return out.getvalue()


def serve_stream(stream: Any, framed: bool) -> None:
    """Serve Thrift calls read off a socket-like stream until the client closes."""
    transport = (TCyFramedTransport if framed else TCyBufferedTransport)(TSocket(sock=stream))
    protocol = TCyBinaryProtocol(transport)
    processor = TProcessor(Hbase, Handler())
    while True:
        try:
            processor.process(protocol, protocol)
        except TTransportException as error:
            if error.type == TTransportException.END_OF_FILE:
                return
            raise


class Gateway:
    """A gateway on 127.0.0.1, port 0, in one of the modes.

    :param transport: "buffered", "framed" or "http"
    :param tls: a server ssl.SSLContext, or None
    :param auth: a ServerAuth (SASL over TCP, checked headers over HTTP)
    """

    def __init__(self, transport: str = "buffered", *, tls: Any = None,
                 auth: ServerAuth | None = None, path: str = "/") -> None:
        self.transport = transport
        self.tls = tls
        self.auth = auth
        self.path = path
        self.stats = new_stats()
        self.accepted = 0
        self.layers: list[str] = []
        self.errors: list[BaseException] = []
        self.closed = Event()  # set each time a client connection ends
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, address: Any) -> None:
        self.accepted += 1
        try:
            if self.tls is not None:
                sock = tls_accept(sock, self.tls)
            if self.transport == "http":
                HttpGateway(answer, path=self.path, auth=self.auth, stats=self.stats).serve(sock)
                return
            if self.auth is not None:
                sock = sasl_accept(sock, self.auth, stats=self.stats)
                self.layers.append(sock.layer)
            serve_stream(sock, self.transport == "framed")
        except Exception as error:
            log.info("gateway: %s: %s", type(error).__name__, error)
            self.errors.append(error)
        finally:
            sock.close()
            self.closed.set()

    def close(self) -> None:
        self.server.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _missing() -> list[str]:
    missing = [name for name in ("krb5kdc", "kdb5_util")
               if shutil.which(name) is None and not os.path.exists("/usr/sbin/" + name)]
    return missing + [name for name in ("gssapi", "k5test")
                      if importlib.util.find_spec(name) is None]


MISSING = _missing()
#: Skips a test (or module) where a real Kerberos realm cannot be made.
needs_realm = pytest.mark.skipif(
    bool(MISSING), reason="a real Kerberos realm needs %s (apt-get install krb5-kdc "
    "krb5-admin-server libkrb5-dev; pip install gssapi k5test)" % ", ".join(MISSING))

# The realm's principals: the client is "user@KRBTEST.COM" (kinit'd by k5test).
USER = "user"


def _free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return int(port)


@contextlib.contextmanager
def kerberos_realm() -> Iterator[Any]:
    """A realm (it takes seconds: one per module), its environment set in
    this process, with the gateway principals hbase/localhost and HTTP/localhost."""
    import k5test

    realm = k5test.K5Realm(portbase=_free_port(), krb5_conf={
        "libdefaults": {"rdns": "false", "dns_canonicalize_hostname": "false"}})
    saved = {name: os.environ.get(name) for name in realm.env}
    os.environ.update(realm.env)
    try:
        for service in ("hbase", "HTTP"):
            realm.addprinc("%s/localhost" % service)
            realm.extract_keytab("%s/localhost" % service, keytab(realm, service))
        yield realm
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        realm.stop()


def keytab(realm: Any, service: str) -> str:
    return os.path.join(realm.tmpdir, service + ".keytab")


def gateway_auth(realm: Any, service: str = "hbase", qop: str = "auth") -> ServerAuth:
    return ServerAuth(keytab=keytab(realm, service), principal=service + "/localhost", qop=qop)


def client(channel: Any) -> Any:
    """A plain thriftpy2 client on a channel, as happybase builds one."""
    return TClient(Hbase, TCyBinaryProtocol(channel.transport, decode_response=False))


def sockets_to(port: int) -> int:
    """Sockets this process has open to *port* on loopback (client side): a
    connect that failed or was interrupted must leave none."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
    return count


def wait_for(event: Event, what: str) -> None:
    with gevent.Timeout(HANG, AssertionError("timed out waiting for " + what)):
        event.wait()


def calls_work(channel: Any, n: int = 3) -> None:
    """*n* gets through *channel* answered right, and nothing left unread."""
    c = client(channel)
    for i in range(n):
        row = b"row-%d" % i
        assert c.getRow(b"t", row, {})[0].columns[b"cf:q"].value == b"t/" + row
    assert channel.quiet()
