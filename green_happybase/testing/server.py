"""The embedded HBase Thrift server: sockets, framing, limits, processes.

:class:`HBaseServer` puts the in-memory service (:mod:`.surface` over
:mod:`.store`) on a TCP port, speaking HBase's Thrift1 ``Hbase`` service the
way ``hbase thrift start`` does, with the gateway's limits, and lets a test
misbehave on purpose (:mod:`.faults`). Its secure modes (TLS, HTTP, SASL)
come from :mod:`.gateways`.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import socket
import ssl
import struct
import sys
import tempfile
from typing import Any

import gevent
import gevent.lock
import gevent.socket
import gevent.subprocess
from gevent.pool import Group
from gevent.server import StreamServer
from thriftpy2.protocol import TCompactProtocol, TCyBinaryProtocol
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TCyMemoryBuffer, TMemoryBuffer, TTransportException

from ..errors import AuthenticationFailed
from . import faults as _faults
from .faults import Faults
from .gateways import (
    HttpGateway,
    ServerAuth,
    check_server_mode,
    new_stats,
    sasl_accept,
    tls_accept,
)
from .store import Store
from .surface import SERVER_TYPES, HBaseHandler, Processor
from .watchdog import HubWatchdog, starved_message
from .wire import MAX_MESSAGE_BYTES, Closed, Inbox, Rejected

__all__ = [
    "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_FRAME_SIZE", "DEFAULT_SCANNER_TIMEOUT", "HBaseServer",
    "MAX_MESSAGE_BYTES",
]

log = logging.getLogger("green_happybase.testing.server")

#: HBase's ``hbase.thrift.server.socket.read.timeout`` (60000 ms), in seconds.
DEFAULT_IDLE_TIMEOUT = 60.0
#: HBase's ``hbase.regionserver.thrift.framed.max_frame_size_in_mb`` (2), in bytes.
DEFAULT_MAX_FRAME_SIZE = 2 * 1024 * 1024
#: HBase's ``hbase.client.scanner.timeout.period`` (60000 ms), in seconds.
DEFAULT_SCANNER_TIMEOUT = 60.0

_TRANSPORTS = ("buffered", "framed", "http")
# HBase's TBinaryProtocol.Factory() reads old-style (non-strict) messages too
# and writes strict ones.
_PROTOCOLS: dict[str, Any] = {
    "binary": functools.partial(TCyBinaryProtocol, strict_read=False),
    "compact": TCompactProtocol,
}
_BUFFERS: dict[str, Any] = {"binary": TCyMemoryBuffer, "compact": TMemoryBuffer}

_STARTUP_TIMEOUT = 30.0
_CONTROL_TIMEOUT = 10.0
_EXIT_TIMEOUT = 10.0
_KILL_TIMEOUT = 5.0

# Control-channel methods of the child process, and the errors it forwards.
_CONTROL_METHODS = frozenset(
    ["set_latency", "drop_connections", "refuse_connections", "stop", "start",
     "close_after", "stats"]
)
_FORWARDED_ERRORS = {"ValueError": ValueError, "TypeError": TypeError}

#: The environment variable that hands a child process its ServerAuth (as
#: JSON): the environment, unlike the command line, is private to the user.
AUTH_ENV = "_GREEN_HAPPYBASE_SERVER_AUTH"


def _pause() -> None:
    # Not sleep(0): that runs the greenlets already scheduled but may skip
    # polling sockets and timers; a tiny timer makes the hub do both.
    gevent.sleep(0.0001)


class _Options:
    """The gateway's limits and identity, checked once."""

    def __init__(self, idle_timeout: float | None, max_frame_size: int | None,
                 scanner_timeout: float | None, server_type: str) -> None:
        self.idle_timeout = None if idle_timeout is None else _faults.seconds(
            "idle_timeout", idle_timeout, positive=True)
        if max_frame_size is not None:
            if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int):
                raise TypeError("max_frame_size must be a number of bytes or None, not %r"
                                % (max_frame_size,))
            if not 0 < max_frame_size <= MAX_MESSAGE_BYTES:
                raise ValueError("max_frame_size must be between 1 and %d (the largest request) "
                                 "or None, not %r" % (MAX_MESSAGE_BYTES, max_frame_size))
        self.max_frame_size = max_frame_size
        self.scanner_timeout = None if scanner_timeout is None else _faults.seconds(
            "scanner_timeout", scanner_timeout, positive=True)
        _faults.choice("server_type", server_type, SERVER_TYPES)
        self.server_type = server_type

    def argv(self) -> list[str]:
        """The same options as command-line flags of ``python -m green_happybase.testing``."""
        def flag(value: Any) -> str:
            return "none" if value is None else repr(value)

        return ["--idle-timeout", flag(self.idle_timeout),
                "--max-frame-size", flag(self.max_frame_size),
                "--scanner-timeout", flag(self.scanner_timeout),
                "--server-type", self.server_type]


def _path(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError("%s must be a file path, not %r" % (name, value))
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise ValueError("%s must be a non-empty file path, not %r" % (name, value))
    return path


def server_tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate (chain) and its
    (unencrypted) key.

    :raises ValueError: naming the file that cannot be loaded
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An encrypted key fails instead of prompting on the terminal.
        context.load_cert_chain(cert, key, password=b"")
    except (OSError, ssl.SSLError) as exc:
        # OpenSSL's reasons name no key material.
        raise ValueError("cannot load tls_cert=%r, tls_key=%r: %s" % (cert, key, exc)) from None
    return context


def auth_to_json(auth: ServerAuth) -> str:
    """*auth* as JSON, secrets included: only for :data:`AUTH_ENV`."""
    return json.dumps({"users": auth.users, "tokens": auth.tokens,
                       "token_header": auth.token_header, "keytab": auth.keytab,
                       "principal": auth.principal, "qop": auth.qop})


def auth_from_json(text: str) -> ServerAuth:
    """The inverse of :func:`auth_to_json`."""
    fields = json.loads(text)
    return ServerAuth(**fields)


class _Security:
    """The gateway's mode (HTTP, TLS, SASL) and credentials, checked once."""

    def __init__(self, transport: str, protocol: str, subprocess: bool, http_path: Any,
                 ssl_context: Any, tls_cert: Any, tls_key: Any, auth: Any) -> None:
        check_server_mode(transport, protocol, auth)
        if not isinstance(http_path, str) or not http_path.startswith("/") \
                or any(c.isspace() for c in http_path):
            raise ValueError("http_path must be a path starting with '/' and without spaces, "
                             "not %r" % (http_path,))
        if http_path != "/" and transport != "http":
            raise ValueError("http_path=%r needs transport='http', not %r"
                             % (http_path, transport))
        if ssl_context is not None:
            if not isinstance(ssl_context, ssl.SSLContext):
                raise TypeError("ssl_context must be an ssl.SSLContext or None, not %r"
                                % (ssl_context,))
            if ssl_context.protocol == ssl.PROTOCOL_TLS_CLIENT:
                raise ValueError("ssl_context=%r is a client context (PROTOCOL_TLS_CLIENT); the "
                                 "server needs ssl.PROTOCOL_TLS_SERVER" % (ssl_context,))
            if tls_cert is not None or tls_key is not None:
                raise ValueError("ssl_context and tls_cert=%r/tls_key=%r: give one or the other"
                                 % (tls_cert, tls_key))
            if subprocess:
                raise ValueError("ssl_context=%r with subprocess=True: an SSLContext cannot "
                                 "cross to the child process; pass tls_cert= and tls_key= "
                                 "(file paths) instead" % (ssl_context,))
        self.tls_cert = None if tls_cert is None else _path("tls_cert", tls_cert)
        self.tls_key = None if tls_key is None else _path("tls_key", tls_key)
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("tls_key=%r needs tls_cert" % (self.tls_key,))
        if self.tls_cert is not None:
            # Loaded here in subprocess mode too: a bad file fails in the caller.
            ssl_context = server_tls_context(self.tls_cert, self.tls_key)
        if auth is not None and auth.keytab is not None and not os.path.isfile(auth.keytab):
            raise ValueError("auth's keytab %r is not a file" % (auth.keytab,))
        self.transport = transport
        self.http_path = http_path
        self.ssl_context: ssl.SSLContext | None = ssl_context
        self.auth: ServerAuth | None = auth

    def argv(self) -> list[str]:
        """The same mode as command-line flags (credentials go by :meth:`env`)."""
        args = ["--http-path", self.http_path] if self.transport == "http" else []
        if self.tls_cert is not None:
            args += ["--tls-cert", self.tls_cert]
        if self.tls_key is not None:
            args += ["--tls-key", self.tls_key]
        if self.auth is not None:
            args.append("--auth-env")
        return args

    def env(self) -> dict[str, str]:
        """The child's environment: this one, plus the credentials if any."""
        env = dict(os.environ)
        if self.auth is not None:
            env[AUTH_ENV] = auth_to_json(self.auth)
        return env


class _Body:
    """An HTTP request body, read like a socket by :class:`.wire.Inbox`."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._body):
            raise Rejected("the body ends inside its Thrift message")
        chunk = self._body[self._pos:self._pos + size]
        self._pos += len(chunk)
        return chunk


class _GreenServer:
    """The server proper: a StreamServer and one greenlet per client."""

    def __init__(self, host: str, port: int, transport: str, protocol: str,
                 options: _Options, security: _Security) -> None:
        self.host = host
        self.port = port
        self._http = transport == "http"
        self._http_path = security.http_path
        self._ssl_context = security.ssl_context
        self._auth = security.auth
        self._gateway_stats = new_stats()
        self._framed = transport == "framed"
        self._binary = protocol == "binary"
        self._protocol = _PROTOCOLS[protocol]
        self._buffer = _BUFFERS[protocol]
        self._idle_timeout = options.idle_timeout
        self._max_frame = options.max_frame_size or MAX_MESSAGE_BYTES
        store = Store(options.scanner_timeout, pause=_pause)
        self._processor = Processor(HBaseHandler(store, pause=_pause), self._protocol,
                                    options.server_type)
        self._faults = Faults()
        self._watchdog = HubWatchdog(self._starved_reply, self._adopt)
        self._clients = Group()
        self._listener: StreamServer | None = None
        self._relisten: gevent.Greenlet[..., Any] | None = None
        self._closed = False
        self._accepted = 0
        self._calls = 0

    # Listening

    def _listen(self) -> None:
        listener = StreamServer((self.host, self.port), self._serve, spawn=self._spawn_client)
        listener.start()
        self.port = listener.socket.getsockname()[1]
        self._listener = listener
        self._watchdog.listening(listener.socket.fileno())

    def _spawn_client(self, func: Any, /, *args: Any, **kwargs: Any) -> gevent.Greenlet[..., Any]:
        return self._clients.spawn(func, *args, **kwargs)

    def _unlisten(self) -> None:
        if self._listener is not None:
            self._watchdog.listening(-1)
            self._listener.close()
            self._listener = None

    def _cancel_relisten(self) -> None:
        if self._relisten is not None:
            self._relisten.kill()
            self._relisten = None

    def _listen_again(self) -> None:
        self._relisten = None
        try:
            self._listen()
        except OSError:
            log.exception("cannot listen again on %s:%s", self.host, self.port)

    def start(self) -> None:
        if self._closed:
            raise RuntimeError("the server is closed")
        self._cancel_relisten()
        if self._listener is None:
            self._listen()
        self._watchdog.start()

    def stop(self) -> None:
        self._cancel_relisten()
        self._unlisten()
        self.drop_connections()

    def close(self) -> None:
        self.stop()
        self._watchdog.stop()
        self._closed = True

    # Fault injection

    def set_latency(self, seconds: float) -> None:
        self._faults.latency = seconds

    def drop_connections(self) -> None:
        self._clients.kill(block=True, timeout=_KILL_TIMEOUT)

    def refuse_connections(self, seconds: float) -> None:
        if self._closed:
            raise RuntimeError("the server is closed")
        self._cancel_relisten()
        self._unlisten()
        self._relisten = gevent.spawn_later(seconds, self._listen_again)

    def close_after(self, n: int | None) -> None:
        self._faults.set_close_after(n)

    def stats(self) -> dict[str, Any]:
        return {"connections": len(self._clients), "accepted": self._accepted,
                "calls": self._calls, "auth_failures": self._gateway_stats["auth_failures"],
                "users": dict(self._gateway_stats["users"])}

    # Serving

    def _serve(self, sock: gevent.socket.socket, address: Any) -> None:
        self._accepted += 1
        peer = "%s:%s" % address[:2]
        fd = sock.fileno()
        self._watchdog.track(fd)
        stream: Any = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # HBase's TServerSocket read timeout: a read waiting this long ends
            # the connection, between requests or within one (a TLS handshake
            # and a SASL negotiation included).
            sock.settimeout(self._idle_timeout)
            if self._ssl_context is not None:
                stream = tls_accept(sock, self._ssl_context)
            if self._http:
                self._serve_http(stream)
                return
            if self._auth is not None:
                stream = sasl_accept(stream, self._auth, stats=self._gateway_stats)
            self._serve_thrift(stream, peer)
        except Closed as exc:
            log.debug("connection from %s closed %s", peer, exc)
        except TimeoutError:
            log.info("closing connection from %s: idle for %s s "
                     "(hbase.thrift.server.socket.read.timeout)", peer, self._idle_timeout)
        except Rejected as exc:
            log.warning("closing connection from %s: %s", peer, exc)
        except AuthenticationFailed as exc:
            # The reason names the user at most, never a password or token.
            log.info("refused connection from %s: %s", peer, exc)
        except ssl.SSLError as exc:
            log.info("TLS with %s failed: %s", peer, exc)
        except TTransportException as exc:
            level = logging.DEBUG if exc.type == TTransportException.END_OF_FILE else logging.INFO
            log.log(level, "connection from %s ended: %s", peer, exc.message)
        except OSError as exc:
            log.debug("connection from %s ended: %s", peer, exc)
        except Exception as exc:
            # Garbage that passed the bounds but not the decoder.
            log.warning("closing connection from %s: %s: %s", peer, type(exc).__name__, exc)
        finally:
            self._watchdog.untrack(fd)
            stream.close()
            sock.close()  # a no-op when TLS took the descriptor over

    def _serve_thrift(self, stream: Any, peer: str) -> None:
        """Answer calls read off a socket (or a TLS or SASL stream) until one side closes."""
        inbox = Inbox(stream, framed=self._framed, binary=self._binary,
                      max_frame=self._max_frame, pause=_pause)
        counter = self._faults.counter()
        while True:
            stream.sendall(self._reply(inbox.next()))
            self._calls += 1
            if counter.served():
                log.debug("closing %s after its call, as close_after() asked", peer)
                return

    def _serve_http(self, stream: Any) -> None:
        """Answer HTTP POSTs, one call each, until one side closes."""
        HttpGateway(self._http_reply, path=self._http_path, auth=self._auth,
                    stats=self._gateway_stats, max_body=MAX_MESSAGE_BYTES,
                    after_reply=self._faults.counter().served).serve(stream)

    def _http_reply(self, body: bytes) -> bytes:
        # The same bounds as on a socket; a body that breaks one is a 400.
        request = Inbox(_Body(body), framed=False, binary=True, max_frame=MAX_MESSAGE_BYTES,
                        pause=_pause).next()
        if len(request) != len(body):
            raise Rejected("%d bytes after the Thrift message" % (len(body) - len(request)))
        reply = self._reply(request)
        self._calls += 1
        return reply

    def _reply(self, request: bytes) -> bytes:
        """Run one request and return the encoded reply."""
        call = self._processor.decode(self._buffer(request))
        if self._faults.latency:
            gevent.sleep(self._faults.latency)
        payload, exception = self._processor.answer(call)
        try:
            return self._encode(call.name, call.seqid, payload, exception)
        except Exception as exc:
            log.exception("cannot encode the reply to %s", call.name)
            return self._encode(call.name, call.seqid, TApplicationException(
                TApplicationException.INTERNAL_ERROR,
                "Internal error processing %s (embedded HBase server bug: %s: %s)"
                % (call.name, type(exc).__name__, exc)), True)

    def _encode(self, name: str, seqid: int, payload: Any, exception: bool) -> bytes:
        # Encoded apart from the socket, so a reply that fails half-way
        # never leaves a fragment on the wire.
        buf = TCyMemoryBuffer()
        self._processor.encode(name, seqid, payload, exception, buf)
        data: bytes = buf.getvalue()
        return struct.pack("!i", len(data)) + data if self._framed else data

    # What the watchdog needs (see watchdog.py).

    def _starved_reply(self, request: bytes, standstill: float) -> bytes:
        if self._ssl_context is not None or (self._auth is not None and not self._http):
            # TLS records or SASL frames: this thread cannot speak them; the
            # connection is closed without a word.
            return b""
        if self._http:
            body = starved_message(standstill).encode("utf-8")
            return b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; " \
                b"charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" \
                % (len(body), body)
        name, seqid = "", 0
        try:
            name, _, seqid = self._protocol(self._buffer(
                request[4:] if self._framed else request)).read_message_begin()
        except Exception:
            log.debug("a starved request without a readable header")
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return self._encode(name, seqid, TApplicationException(
            TApplicationException.INTERNAL_ERROR, starved_message(standstill)), True)

    def _adopt(self, sock: socket.socket) -> None:
        if self._closed or self._listener is None:
            sock.close()
            return
        green = gevent.socket.socket(fileno=sock.detach())
        try:
            peer = green.getpeername()
        except OSError:
            green.close()
            return
        self._clients.spawn(self._serve, green, peer)


def _readline(stream: Any, seconds: float) -> bytes:
    """One line from a child's pipe; ``b""`` at its end or after ``seconds``."""
    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        line: bytes = stream.readline()
        return line
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        return b""
    finally:
        timer.close()


class _ChildServer:
    """A server in a child process, driven by JSON lines on its stdin."""

    def __init__(self, host: str, port: int, transport: str, protocol: str,
                 options: _Options, security: _Security) -> None:
        self.host = host
        self.port = port
        self._args = ["--transport", transport, "--protocol", protocol] + options.argv() \
            + security.argv()
        self._security = security
        self._proc: gevent.subprocess.Popen[bytes] | None = None
        self._stdin: Any = None
        self._stdout: Any = None
        self._stderr: Any = None
        self._lock = gevent.lock.Semaphore()
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self._closed:
            raise RuntimeError("the server is closed")
        if self._proc is None:
            self._spawn()
        else:
            self._call("start")

    def _spawn(self) -> None:
        cmd = [sys.executable, "-m", "green_happybase.testing", "--host", self.host,
               "--port", str(self.port), "--control"] + self._args
        # A file, not a pipe: nobody reads the child's log while it runs.
        self._stderr = tempfile.TemporaryFile()
        self._proc = gevent.subprocess.Popen(
            cmd, stdin=gevent.subprocess.PIPE, stdout=gevent.subprocess.PIPE,
            stderr=self._stderr, env=self._security.env(),
        )
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        line = _readline(self._stdout, _STARTUP_TIMEOUT)
        words = line.decode("utf-8", "replace").split()
        if len(words) == 3 and words[:2] == ["listening", "on"]:
            self.host, _, port = words[2].rpartition(":")
            self.port = int(port)
            return
        error = self._failure("did not start within %.0f s" % _STARTUP_TIMEOUT, line)
        self._end_child()
        raise RuntimeError(error)

    def _failure(self, what: str, line: bytes) -> str:
        proc = self._proc
        assert proc is not None
        if not line:
            try:
                proc.wait(timeout=1.0)
            except gevent.subprocess.TimeoutExpired:
                pass
        self._stderr.seek(0)
        stderr = self._stderr.read().decode("utf-8", "replace").strip()
        if proc.returncode is not None:
            what = "exited with code %s" % proc.returncode
        return "embedded HBase server (pid %s) %s; stdout: %r; stderr:\n%s" % (
            proc.pid, what, line, stderr)

    def _call(self, method: str, *args: Any) -> Any:
        proc = self._proc
        if proc is None or self._closed:
            raise RuntimeError("the server is not running")
        request = json.dumps({"method": method, "args": list(args)}).encode("utf-8") + b"\n"
        with self._lock:
            self._stdin.write(request)
            self._stdin.flush()
            line = _readline(self._stdout, _CONTROL_TIMEOUT)
        if not line:
            raise RuntimeError(self._failure("did not answer %s()" % method, line))
        reply = json.loads(line)
        if "error" in reply:
            raise _FORWARDED_ERRORS.get(reply["type"], RuntimeError)(reply["error"])
        return reply["result"]

    def stop(self) -> None:
        self._call("stop")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            self._end_child()

    def _end_child(self) -> None:
        proc = self._proc
        assert proc is not None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_EXIT_TIMEOUT)
            except gevent.subprocess.TimeoutExpired:
                log.warning("embedded HBase server (pid %s) ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            log.warning("embedded HBase server (pid %s) exited with code %s",
                        proc.pid, proc.returncode)
        self._stdin.close()
        self._stdout.close()
        self._stderr.close()

    def set_latency(self, seconds: float) -> None:
        self._call("set_latency", seconds)

    def drop_connections(self) -> None:
        self._call("drop_connections")

    def refuse_connections(self, seconds: float) -> None:
        self._call("refuse_connections", seconds)

    def close_after(self, n: int | None) -> None:
        self._call("close_after", n)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("stats")
        return result


class HBaseServer:
    """An in-memory HBase Thrift1 server for tests, demos and benchmarks.

    Each server starts empty and keeps its tables until it is closed (a
    :meth:`stop` and :meth:`start` keep them, as a restarted HBase does).
    Use it as a context manager; entering starts it::

        with HBaseServer() as server:
            pool = ConnectionPool(4, host=server.host, port=server.port)

    :param host: address to bind; the default accepts only local clients.
    :param port: TCP port; ``0`` picks a free one (read :attr:`port`).
    :param transport: ``"buffered"`` or ``"framed"``, as happybase names them,
        or ``"http"``: Thrift over HTTP POST, as HBase's gateway with
        ``hbase.regionserver.thrift.http=true`` (binary protocol only).
    :param protocol: ``"binary"`` or ``"compact"``.
    :param subprocess: serve from a child process instead of this one.
    :param idle_timeout: seconds a connection may keep the server waiting for
        its next bytes before the server closes it, as HBase's
        ``hbase.thrift.server.socket.read.timeout``; ``None``: never.
    :param max_frame_size: largest frame, in bytes, of the framed transport,
        as HBase's ``hbase.regionserver.thrift.framed.max_frame_size_in_mb``;
        a larger frame closes its connection. ``None``: up to
        :data:`MAX_MESSAGE_BYTES`.
    :param scanner_timeout: seconds a scanner may go unused, as HBase's
        ``hbase.client.scanner.timeout.period``: after that its region lease
        is gone and the next call reopens it after the last row returned
        (HBase 2's client does so); after twice that the gateway has forgotten
        it, and calls answer ``IllegalArgument("scanner ID is invalid")``.
        ``None``: never.
    :param server_type: ``"one"``, a Thrift1 gateway; ``"two"`` pretends to
        be a Thrift2 gateway: ``getThriftServerType()`` answers ``TWO`` and
        every Thrift1 call is an unknown method.
    :param http_path: with ``transport="http"``, the path POSTs must go to
        (others get ``404``; methods other than POST ``405``).
    :param ssl_context: a server ``ssl.SSLContext``: TLS on every connection
        (HTTPS with ``transport="http"``; over TCP, as a TLS proxy in front of
        the gateway would). In-process only: a context cannot cross to a
        child process.
    :param tls_cert: instead of *ssl_context*, the path of a PEM certificate
        (chain), loaded into a new server context; works with
        ``subprocess=True`` (the child loads the file).
    :param tls_key: the path of its private key (``None``: in *tls_cert*).
    :param auth: a :class:`~green_happybase.testing.gateways.ServerAuth`:
        over TCP, SASL (PLAIN with its users, GSSAPI with its keytab) before
        any call, so ``transport="framed"`` is refused, as HBase refuses it;
        over HTTP, every request must carry accepted credentials (Basic,
        Bearer, its token header, or SPNEGO's ``Negotiate``), else ``401``
        with ``WWW-Authenticate``. The ``doAs`` header sets the effective
        user. With ``subprocess=True`` the credentials reach the child
        through its environment, never its command line.

    .. versionadded:: 0.2
       ``idle_timeout``, ``max_frame_size``, ``scanner_timeout`` and
       ``server_type``, with HBase's defaults; ``transport="http"``,
       ``http_path``, ``ssl_context``, ``tls_cert``, ``tls_key`` and ``auth``.

    In-process (the default), the server runs as greenlets in the calling
    thread's gevent hub: it serves only while that hub gets to run, so the
    clients must be cooperative (gevent sockets, the green pool, or a
    monkey-patched program). A plain blocking ``happybase.Connection`` in the
    same thread cannot be served: after 2 s of a standstill hub the server
    answers its call, from an OS thread, with a ``TApplicationException``
    saying so. Use ``subprocess=True`` for such clients. In that mode the
    fault-injection methods and :meth:`stats` are forwarded to the child,
    and leaving the ``with`` block terminates it and waits for it to exit.

    A request that breaks a bound (see :mod:`green_happybase.testing.wire`)
    closes that one connection and is logged (over HTTP: a ``400`` reply);
    an unexpected error in the handler becomes a ``TApplicationException``
    reply. Refused credentials and failed TLS handshakes are logged at INFO,
    without secrets.

    The faults work in every mode; over HTTP, :meth:`close_after` closes the
    TCP connection after the reply, unannounced. The hub watchdog answers a
    starved plain or HTTP request with the error; under TLS or SASL it only
    closes the connection.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: str = "buffered",
        protocol: str = "binary",
        subprocess: bool = False,
        *,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE,
        scanner_timeout: float | None = DEFAULT_SCANNER_TIMEOUT,
        server_type: str = "one",
        http_path: str = "/",
        ssl_context: ssl.SSLContext | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        auth: ServerAuth | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError("host must be a non-empty str, not %r" % (host,))
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError("port must be an int, not %r" % (port,))
        if not 0 <= port <= 65535:
            raise ValueError("port must be between 0 and 65535, not %r" % (port,))
        _faults.choice("transport", transport, _TRANSPORTS)
        _faults.choice("protocol", protocol, _PROTOCOLS)
        options = _Options(idle_timeout, max_frame_size, scanner_timeout, server_type)
        security = _Security(transport, protocol, bool(subprocess), http_path, ssl_context,
                             tls_cert, tls_key, auth)
        self.transport = transport
        self.protocol = protocol
        self.subprocess = bool(subprocess)
        #: The options above, as given (checked).
        self.idle_timeout = options.idle_timeout
        self.max_frame_size = options.max_frame_size
        self.scanner_timeout = options.scanner_timeout
        self.server_type = options.server_type
        #: The secure mode, as given (checked): the HTTP path, whether TLS is
        #: on, and the ServerAuth (its repr shows no secret).
        self.http_path = security.http_path
        self.tls = security.ssl_context is not None
        self.auth = security.auth
        backend = _ChildServer if subprocess else _GreenServer
        self._server: Any = backend(host, port, transport, protocol, options, security)

    def __repr__(self) -> str:
        mode = "subprocess" if self.subprocess else "in-process"
        extra = "".join([" tls" if self.tls else "",
                         " auth=%s" % "+".join(self._mechanisms()) if self.auth else ""])
        return "<HBaseServer %s %s/%s%s %s>" % (self.address, self.transport, self.protocol,
                                                extra, mode)

    def _mechanisms(self) -> list[str]:
        auth = self.auth
        assert auth is not None
        if self.transport != "http":
            return auth.sasl_mechanisms
        return [name for name, on in (("Negotiate", auth.keytab), ("Basic", auth.users),
                                      ("Bearer", auth.tokens)) if on]

    @property
    def host(self) -> str:
        """The address the server binds."""
        host: str = self._server.host
        return host

    @property
    def port(self) -> int:
        """The TCP port; the one actually bound once started."""
        port: int = self._server.port
        return port

    @property
    def address(self) -> str:
        """``"host:port"``."""
        return "%s:%s" % (self.host, self.port)

    @property
    def pid(self) -> int | None:
        """The child's process id in subprocess mode, else ``None``."""
        pid: int | None = self._server.pid if self.subprocess else None
        return pid

    def __enter__(self) -> HBaseServer:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> None:
        """Listen (again, on the same port); a no-op while listening."""
        self._server.start()

    def stop(self) -> None:
        """Stop listening and close every client connection; data is kept."""
        self._server.stop()

    def close(self) -> None:
        """Stop for good; in subprocess mode, end the child and reap it."""
        self._server.close()

    def set_latency(self, seconds: float) -> None:
        """Delay every reply by ``seconds`` (``0`` turns the delay off)."""
        self._server.set_latency(_faults.seconds("seconds", seconds, positive=False))

    def drop_connections(self) -> None:
        """Close every open client connection now; keep listening."""
        self._server.drop_connections()

    def refuse_connections(self, seconds: float) -> None:
        """Close the listening socket, so connects get ``ECONNREFUSED``,
        and listen again on the same port after ``seconds``.

        Open connections are not touched.
        """
        self._server.refuse_connections(_faults.seconds("seconds", seconds, positive=True))

    def close_after(self, n: int | None) -> None:
        """Close each connection right after its reply to its ``n``-th call.

        Calls are counted from this moment (or from the connection's start,
        if later). ``None`` turns this off.
        """
        self._server.close_after(_faults.calls(n))

    def stats(self) -> dict[str, Any]:
        """Counters since the server was created.

        ``connections``: client connections open now; ``accepted``: client
        connections accepted in total; ``calls``: calls answered in total;
        ``auth_failures``: SASL negotiations and HTTP requests refused;
        ``users``: effective user name -> SASL connections or HTTP requests
        authenticated as that user (``doAs`` included).
        """
        return dict(self._server.stats())
