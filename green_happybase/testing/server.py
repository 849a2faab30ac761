"""The embedded HBase Thrift server: sockets, framing and fault injection.

:class:`HBaseServer` puts an in-memory
:class:`~green_happybase.testing.handler.HBaseHandler` on a TCP port, speaking
HBase's Thrift1 ``Hbase`` service the way ``hbase thrift start`` does, and lets
a test misbehave on purpose: slow replies, dropped connections, refused
connects, a restart on the same port, connections closed after some calls.
"""
from __future__ import annotations

import json
import logging
import numbers
import socket
import struct
import sys
import tempfile
from typing import Any, Dict, Optional

import gevent
import gevent.lock
import gevent.socket
import gevent.subprocess
from gevent.pool import Group
from gevent.server import StreamServer

import happybase  # noqa: F401  (loads the Hbase_thrift module)
from Hbase_thrift import Hbase  # type: ignore[import-not-found]
from thriftpy2.protocol import TCompactProtocol, TCyBinaryProtocol
from thriftpy2.thrift import TApplicationException, TMessageType, TProcessor
from thriftpy2.transport import (
    TCyBufferedTransport,
    TCyFramedTransport,
    TCyMemoryBuffer,
    TSocket,
    TTransportException,
)

from .handler import HBaseHandler

__all__ = ["HBaseServer", "MAX_MESSAGE_BYTES"]

log = logging.getLogger("green_happybase.testing.server")

_TRANSPORTS = {"buffered": TCyBufferedTransport, "framed": TCyFramedTransport}
_PROTOCOLS = {"binary": TCyBinaryProtocol, "compact": TCompactProtocol}

#: Largest request the server accepts, in bytes. A peer that announces or
#: sends more (in a frame header, a string or a container length) is cut off.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# thriftpy2's Cython buffers grow by rounding a request up to a multiple of
# their current size, so a legitimate read never asks for twice the limit.
_MAX_READ = 2 * MAX_MESSAGE_BYTES + 65536
_RECV_CHUNK = 65536

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


class _MessageTooLarge(Exception):
    """A peer announced or sent more than :data:`MAX_MESSAGE_BYTES`."""


class _GuardedSocket(TSocket):
    """An accepted socket as a thriftpy2 transport with a size budget.

    thriftpy2 allocates whatever length a peer announces before reading it,
    so every read is checked here: how much one read asks for, and how much
    the current message has brought so far.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock=sock)
        self.received = 0

    def read(self, sz: int) -> bytes:
        if sz > _MAX_READ:
            raise _MessageTooLarge(
                "peer announced %d bytes; the limit is %d" % (sz, MAX_MESSAGE_BYTES)
            )
        data = self.sock.recv(min(sz, _RECV_CHUNK))
        if not data:
            raise TTransportException(TTransportException.END_OF_FILE, "TSocket read 0 bytes")
        self.received += len(data)
        if self.received > MAX_MESSAGE_BYTES:
            raise _MessageTooLarge("message exceeds %d bytes" % MAX_MESSAGE_BYTES)
        return data


def _check_choice(name: str, value: Any, choices: Dict[str, Any]) -> None:
    if value not in choices:
        raise ValueError("%s must be one of %s, not %r" % (name, ", ".join(sorted(choices)), value))


def _check_seconds(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a number of seconds, not %r" % (name, value))
    if value < 0 or (positive and value == 0):
        raise ValueError("%s must be %s, not %r" % (name, "> 0" if positive else ">= 0", value))
    return float(value)


def _check_calls(n: Any) -> Optional[int]:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("n must be an int or None, not %r" % (n,))
    if n < 1:
        raise ValueError("n must be >= 1 or None, not %r" % (n,))
    return n


class _GreenServer:
    """The server proper: a StreamServer and one greenlet per client."""

    def __init__(self, host: str, port: int, transport: str, protocol: str) -> None:
        self.host = host
        self.port = port
        self._transport = _TRANSPORTS[transport]
        self._protocol = _PROTOCOLS[protocol]
        self._framed = transport == "framed"
        self._processor = TProcessor(Hbase, HBaseHandler())
        self._clients = Group()
        self._listener: Optional[StreamServer] = None
        self._relisten: Optional[gevent.Greenlet] = None
        self._closed = False
        self._latency = 0.0
        self._close_after: Optional[int] = None
        # Bumped by close_after(), so each connection counts from that moment.
        self._close_after_epoch = 0
        self._accepted = 0
        self._calls = 0

    # Listening

    def _listen(self) -> None:
        listener = StreamServer((self.host, self.port), self._serve, spawn=self._spawn_client)
        listener.start()
        self.port = listener.socket.getsockname()[1]
        self._listener = listener

    def _spawn_client(self, func: Any, /, *args: Any, **kwargs: Any) -> gevent.Greenlet:
        return self._clients.spawn(func, *args, **kwargs)

    def _unlisten(self) -> None:
        if self._listener is not None:
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

    def stop(self) -> None:
        self._cancel_relisten()
        self._unlisten()
        self.drop_connections()

    def close(self) -> None:
        self.stop()
        self._closed = True

    # Fault injection

    def set_latency(self, seconds: float) -> None:
        self._latency = seconds

    def drop_connections(self) -> None:
        self._clients.kill(block=True, timeout=_KILL_TIMEOUT)

    def refuse_connections(self, seconds: float) -> None:
        if self._closed:
            raise RuntimeError("the server is closed")
        self._cancel_relisten()
        self._unlisten()
        self._relisten = gevent.spawn_later(seconds, self._listen_again)

    def close_after(self, n: Optional[int]) -> None:
        self._close_after = n
        self._close_after_epoch += 1

    def stats(self) -> Dict[str, int]:
        return {"connections": len(self._clients), "accepted": self._accepted,
                "calls": self._calls}

    # Serving

    def _serve(self, sock: gevent.socket.socket, address: Any) -> None:
        self._accepted += 1
        peer = "%s:%s" % address[:2]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        guard = _GuardedSocket(sock)
        iprot = self._protocol(self._transport(guard))
        epoch, served = self._close_after_epoch, 0
        try:
            while True:
                guard.received = 0
                sock.sendall(self._answer(iprot))
                self._calls += 1
                if epoch != self._close_after_epoch:
                    epoch, served = self._close_after_epoch, 0
                served += 1
                if self._close_after is not None and served >= self._close_after:
                    log.debug("closing %s after %d calls", peer, served)
                    break
        except TTransportException as exc:
            if exc.type != TTransportException.END_OF_FILE:
                log.warning("closing connection from %s: %s", peer, exc)
        except OSError as exc:
            log.debug("connection from %s ended: %s", peer, exc)
        except Exception as exc:
            # Garbage or an oversized message: this client only is cut off.
            log.warning("closing connection from %s: %s: %s", peer, type(exc).__name__, exc)
        finally:
            guard.close()

    def _answer(self, iprot: Any) -> bytes:
        """Read one call, run it and return the encoded reply."""
        api, seqid, result, call = self._processor.process_in(iprot)
        if self._latency:
            gevent.sleep(self._latency)
        if call is None:
            result = TApplicationException(
                TApplicationException.UNKNOWN_METHOD, "Invalid method name: %r" % (api,)
            )
        else:
            try:
                result.success = call()
            except TApplicationException as exc:
                result = exc
            except Exception as exc:
                if not self._processor.handle_exception(exc, result):
                    log.exception("handler failed in %s", api)
                    result = _internal_error(api, exc)
        try:
            return self._encode(api, seqid, result)
        except Exception as exc:
            log.exception("cannot encode the reply to %s", api)
            return self._encode(api, seqid, _internal_error(api, exc))

    def _encode(self, api: str, seqid: int, result: Any) -> bytes:
        # Encoded apart from the socket, so a reply that fails half-way
        # never leaves a fragment on the wire.
        buf = TCyMemoryBuffer()
        oprot = self._protocol(buf)
        if isinstance(result, TApplicationException):
            oprot.write_message_begin(api, TMessageType.EXCEPTION, seqid)
        else:
            oprot.write_message_begin(api, TMessageType.REPLY, seqid)
        result.write(oprot)
        oprot.write_message_end()
        data = buf.getvalue()
        if self._framed:
            return struct.pack("!i", len(data)) + data
        return data


def _internal_error(api: str, exc: Exception) -> TApplicationException:
    return TApplicationException(
        TApplicationException.INTERNAL_ERROR,
        "Internal error processing %s: %s: %s" % (api, type(exc).__name__, exc),
    )


def _readline(stream: Any, seconds: float) -> bytes:
    """One line from a child's pipe; ``b""`` at its end or after ``seconds``."""
    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        return stream.readline()
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        return b""
    finally:
        timer.close()


class _ChildServer:
    """A server in a child process, driven by JSON lines on its stdin."""

    def __init__(self, host: str, port: int, transport: str, protocol: str) -> None:
        self.host = host
        self.port = port
        self._args = ["--transport", transport, "--protocol", protocol]
        self._proc: Optional[gevent.subprocess.Popen] = None
        self._stdin: Any = None
        self._stdout: Any = None
        self._stderr: Any = None
        self._lock = gevent.lock.Semaphore()
        self._closed = False

    @property
    def pid(self) -> Optional[int]:
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
            stderr=self._stderr,
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

    def close_after(self, n: Optional[int]) -> None:
        self._call("close_after", n)

    def stats(self) -> Dict[str, int]:
        return self._call("stats")


class HBaseServer:
    """An in-memory HBase Thrift1 server for tests, demos and benchmarks.

    Each server starts empty and keeps its tables until it is closed (a
    :meth:`stop` and :meth:`start` keep them, as a restarted HBase does).
    Use it as a context manager; entering starts it::

        with HBaseServer() as server:
            pool = ConnectionPool(4, host=server.host, port=server.port)

    :param host: address to bind; the default accepts only local clients.
    :param port: TCP port; ``0`` picks a free one (read :attr:`port`).
    :param transport: ``"buffered"`` or ``"framed"``, as happybase names them.
    :param protocol: ``"binary"`` or ``"compact"``.
    :param subprocess: serve from a child process instead of this one.

    In-process (the default), the server runs as greenlets in the calling
    thread's gevent hub: it serves only while that hub gets to run, so the
    clients must be cooperative (gevent sockets, the green pool, or a
    monkey-patched program). A plain blocking ``happybase.Connection`` in the
    same thread would wait for a reply the blocked hub can never send: use
    ``subprocess=True`` for such clients. In that mode the fault-injection
    methods and :meth:`stats` are forwarded to the child, and leaving the
    ``with`` block terminates it and waits for it to exit.

    Idle client connections are kept open indefinitely. A malformed request,
    or one larger than :data:`MAX_MESSAGE_BYTES`, closes that one connection
    (and is logged); an unexpected error in the handler becomes a
    ``TApplicationException`` reply.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: str = "buffered",
        protocol: str = "binary",
        subprocess: bool = False,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError("host must be a non-empty str, not %r" % (host,))
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError("port must be an int, not %r" % (port,))
        if not 0 <= port <= 65535:
            raise ValueError("port must be between 0 and 65535, not %r" % (port,))
        _check_choice("transport", transport, _TRANSPORTS)
        _check_choice("protocol", protocol, _PROTOCOLS)
        self.transport = transport
        self.protocol = protocol
        self.subprocess = bool(subprocess)
        backend = _ChildServer if subprocess else _GreenServer
        self._server: Any = backend(host, port, transport, protocol)

    def __repr__(self) -> str:
        mode = "subprocess" if self.subprocess else "in-process"
        return "<HBaseServer %s %s/%s %s>" % (self.address, self.transport, self.protocol, mode)

    @property
    def host(self) -> str:
        """The address the server binds."""
        return self._server.host

    @property
    def port(self) -> int:
        """The TCP port; the one actually bound once started."""
        return self._server.port

    @property
    def address(self) -> str:
        """``"host:port"``."""
        return "%s:%s" % (self.host, self.port)

    @property
    def pid(self) -> Optional[int]:
        """The child's process id in subprocess mode, else ``None``."""
        return self._server.pid if self.subprocess else None

    def __enter__(self) -> "HBaseServer":
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
        self._server.set_latency(_check_seconds("seconds", seconds, positive=False))

    def drop_connections(self) -> None:
        """Close every open client connection now; keep listening."""
        self._server.drop_connections()

    def refuse_connections(self, seconds: float) -> None:
        """Close the listening socket, so connects get ``ECONNREFUSED``,
        and listen again on the same port after ``seconds``.

        Open connections are not touched.
        """
        self._server.refuse_connections(_check_seconds("seconds", seconds, positive=True))

    def close_after(self, n: Optional[int]) -> None:
        """Close each connection right after its reply to its ``n``-th call.

        Calls are counted from this moment (or from the connection's start,
        if later). ``None`` turns this off.
        """
        self._server.close_after(_check_calls(n))

    def stats(self) -> Dict[str, int]:
        """Counters since the server was created.

        ``connections``: client connections open now; ``accepted``: client
        connections accepted in total; ``calls``: calls answered in total.
        """
        return dict(self._server.stats())
