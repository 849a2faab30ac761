"""Connect-time diagnosis: one cheap probe, and what a failed one means.

:func:`probe` makes one ``getThriftServerType()`` round trip on an open
connection: HBase 2 gateways answer it (``ONE`` or ``TWO``) without touching
the cluster, older ones answer ``TApplicationException(UNKNOWN_METHOD)``,
which proves as well that transport and protocol are right. The pool makes
it once per host on the first connection, and as its keepalive ping.

When a probe or a connect fails, :func:`diagnose` looks at the peer with a
few fresh raw sockets and says in one paragraph what is most likely
misconfigured, and which option fixes it: buffered vs framed transport,
binary vs compact protocol, a gateway in HTTP mode, TLS expected or not
spoken, SASL authentication expected, a Thrift2 gateway, or a port that is
not a Thrift server at all.

Everything runs on gevent sockets, so it is cooperative whether or not the
process is monkey-patched.

.. versionadded:: 0.2
"""
from __future__ import annotations

import logging
import numbers
import re
import socket
import ssl
import struct
import time
from typing import Any, ClassVar

import gevent
import gevent.queue
from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.protocol.compact import TCompactProtocol
from thriftpy2.thrift import TApplicationException, TMessageType, TPayload, TType
from thriftpy2.transport import TMemoryBuffer

from . import _green
from .errors import ReplyMismatch
from .transports import wrap_tls

__all__ = ["PROBE_METHOD", "PROBE_SEQID", "diagnose", "probe"]

log = logging.getLogger("green_happybase.diagnose")

#: The method :func:`probe` calls; not in happybase's IDL, answered by HBase 2
#: gateways (Thrift1 and Thrift2 alike).
PROBE_METHOD = "getThriftServerType"
#: The sequence id :func:`probe` uses unless told otherwise (``"PROB"``).
PROBE_SEQID = 0x50524F42
_MAX_SEQID = 0x7FFFFFFF

# HBase's TThriftServerType enum (Hbase.thrift and thrift2/hbase.thrift).
_SERVER_TYPES = {1: "ONE", 2: "TWO"}

# thriftpy2's pure-Python classes write and parse the raw probes (its Cython
# protocols read only Cython transports); typed Any, as parts of thriftpy2
# are unannotated.
_MemoryBuffer: Any = TMemoryBuffer
_PROTOCOL_CLASSES: dict[str, Any] = {"binary": TBinaryProtocol, "compact": TCompactProtocol}

_TCP_TRANSPORTS = ("buffered", "framed")
_TRANSPORTS = _TCP_TRANSPORTS + ("http",)
_PROTOCOLS = ("binary", "compact")

# Raw replies: how much is read at most, in what chunks, how much is quoted.
_MAX_REPLY = 64 * 1024
_RECV_CHUNK = 4096
_QUOTE_BYTES = 32
_MAX_SYMPTOM = 200
# Larger frames are not a reply to our probe (HBase's own limit is 2 MiB).
_MAX_FRAME = 16 * 1024 * 1024
# Statuses of Thrift's SASL negotiation a server sends to refuse a client.
_SASL_REFUSALS = {3: "BAD", 4: "ERROR"}
_MAX_SASL_MESSAGE = 64 * 1024
# Outcomes of an attempt: a Thrift answer (the settings are right); little
# told (no reply, no connection).
_ANSWERS = ("one", "two", "unknown_method", "thrift_error")
_NO_ANSWER = ("eof", "silence", "unfinished")
_NOT_CONNECTED = ("unresolved", "refused", "connect_silence", "handshake_failed")
# Seconds granted beyond the attempts' own deadlines before they are killed.
_JOIN_MARGIN = 1.0

_PORT_HINT = ("check host and port (HBase's Thrift gateway listens on "
              "hbase.regionserver.thrift.port, 9090 by default)")
_SERVER_SETTING = {
    "framed": "hbase.regionserver.thrift.framed",
    "compact": "hbase.regionserver.thrift.compact",
}


class _ProbeArgs(TPayload):
    """``getThriftServerType_args``: no fields."""

    thrift_spec: ClassVar[dict[int, tuple[Any, ...]]] = {}
    default_spec: ClassVar[list[tuple[str, Any]]] = []


class _ProbeResult(TPayload):
    """``getThriftServerType_result``: ``0: TThriftServerType success`` (an i32)."""

    thrift_spec: ClassVar[dict[int, tuple[Any, ...]]] = {0: (TType.I32, "success", False)}
    default_spec: ClassVar[list[tuple[str, Any]]] = [("success", None)]
    success: Any


def _check_seqid(seqid: Any) -> int:
    if isinstance(seqid, bool) or not isinstance(seqid, int):
        raise TypeError("seqid must be an int, not %r" % (seqid,))
    # Non-negative: thriftpy2's compact protocol cannot write a negative one.
    if not 0 <= seqid <= _MAX_SEQID:
        raise ValueError("seqid must be between 0 and %d, not %r" % (_MAX_SEQID, seqid))
    return seqid


def probe(protocol: Any, seqid: int = PROBE_SEQID) -> str:
    """One ``getThriftServerType()`` round trip on an open Thrift connection.

    :param protocol: the thriftpy2 protocol a ``happybase.Connection``'s
        client uses (``conn.client._oprot``, the same object as ``_iprot``);
        the call goes through it, so any transport under it works
    :param seqid: the sequence id to send (0 to 2**31 - 1); the reply must
        echo it and the method name
    :returns: ``"ONE"`` (a Thrift1 gateway), ``"TWO"`` (a Thrift2 gateway,
        which happybase cannot use) or ``"UNKNOWN_METHOD"`` (a gateway older
        than HBase 2: transport and protocol are right all the same)
    :raises ReplyMismatch: the reply names another method or sequence id
    :raises thriftpy2.thrift.TApplicationException: any other application
        error, a reply of another message type, or no known answer
    :raises TypeError: *protocol* is not a protocol object, or *seqid* not
        an int
    :raises ValueError: *seqid* is out of range

    Any other exception comes from the transport (``TTransportException``,
    ``OSError``) or the protocol (``TProtocolException``): hand it to
    :func:`diagnose`. After any exception the connection may hold part of a
    reply: close it.

    .. versionadded:: 0.2
    """
    if not all(hasattr(protocol, name) for name in
               ("write_message_begin", "read_message_begin", "trans")):
        raise TypeError("protocol must be a thriftpy2 protocol object (conn.client._oprot), "
                        "not %r" % (protocol,))
    seqid = _check_seqid(seqid)
    protocol.write_message_begin(PROBE_METHOD, TMessageType.CALL, seqid)
    _ProbeArgs().write(protocol)
    protocol.write_message_end()
    protocol.trans.flush()
    name, kind, reply_seqid = protocol.read_message_begin()
    if isinstance(name, bytes):  # the compact protocol with decode_response=False
        name = name.decode("utf-8", "replace")
    if name != PROBE_METHOD or reply_seqid != seqid:
        raise ReplyMismatch("reply %r #%s does not answer the probe %r #%d; the connection is "
                            "out of step: close it" % (name, reply_seqid, PROBE_METHOD, seqid))
    if kind == TMessageType.EXCEPTION:
        error = TApplicationException()
        error.read(protocol)
        protocol.read_message_end()
        if isinstance(error.message, bytes):
            error.message = error.message.decode("utf-8", "replace")
        if error.type == TApplicationException.UNKNOWN_METHOD:
            return "UNKNOWN_METHOD"
        raise error
    if kind != TMessageType.REPLY:
        raise TApplicationException(TApplicationException.INVALID_MESSAGE_TYPE,
                                    "the probe's reply has message type %r, not REPLY" % (kind,))
    result = _ProbeResult()
    result.read(protocol)
    protocol.read_message_end()
    answer = _SERVER_TYPES.get(result.success)
    if answer is None:
        raise TApplicationException(
            TApplicationException.MISSING_RESULT,
            "%s answered %r, neither ONE (1) nor TWO (2)" % (PROBE_METHOD, result.success))
    return answer


# -- Raw probes ----------------------------------------------------------------

def _message(protocol: str) -> bytes:
    buffer = _MemoryBuffer()
    proto = _PROTOCOL_CLASSES[protocol](buffer)
    proto.write_message_begin(PROBE_METHOD, TMessageType.CALL, PROBE_SEQID)
    _ProbeArgs().write(proto)
    proto.write_message_end()
    data: bytes = buffer.getvalue()
    return data


_MESSAGES = {protocol: _message(protocol) for protocol in _PROTOCOLS}


def _address(host: str, port: int) -> str:
    return ("[%s]:%s" if ":" in host else "%s:%s") % (host, port)


def _request(host: str, port: int, transport: str, protocol: str) -> bytes:
    """The probe as a client configured so sends it."""
    body = _MESSAGES[protocol]
    if transport == "framed":
        return struct.pack("!I", len(body)) + body
    if transport == "http":
        head = ("POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-thrift\r\n"
                "Accept: application/x-thrift\r\nUser-Agent: green_happybase-diagnose\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (_address(host, port), len(body)))
        return head.encode("ascii") + body
    return body


class _Incomplete(Exception):
    """More bytes are needed to tell."""


class _Received:
    """Received bytes as a read-only transport: a short read raises _Incomplete."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int) -> bytes:
        if size < 0:
            raise ValueError("negative length %d" % size)
        end = self._pos + size
        if end > len(self._data):
            raise _Incomplete()
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk


def _thrift_message(payload: bytes, protocol: str) -> tuple[str, str]:
    """What a complete Thrift message says: ``(kind, detail)``.

    :raises _Incomplete: more bytes are needed
    :raises Exception: not a message of *protocol*
    """
    if not payload or payload[0] != (0x80 if protocol == "binary" else 0x82):
        raise ValueError("not %s" % protocol)
    received = _Received(payload)
    proto = _PROTOCOL_CLASSES[protocol](received, decode_response=False)
    name, kind, seqid = proto.read_message_begin()
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if kind in (TMessageType.CALL, TMessageType.ONEWAY):
        return "echo", "a Thrift call %r" % (name,)
    if kind == TMessageType.EXCEPTION:
        error = TApplicationException()
        error.read(proto)
        message = error.message
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        if name == PROBE_METHOD and error.type == TApplicationException.UNKNOWN_METHOD:
            return "unknown_method", "UNKNOWN_METHOD"
        return "thrift_error", "TApplicationException(%s, %r) to %r" % (error.type, message, name)
    if kind != TMessageType.REPLY:
        raise ValueError("message type %r" % (kind,))
    result = _ProbeResult()
    result.read(proto)
    if name == PROBE_METHOD and seqid == PROBE_SEQID and result.success in _SERVER_TYPES:
        answer = _SERVER_TYPES[result.success]
        return answer.lower(), answer
    return "thrift_error", "a reply %r #%s that does not answer the probe" % (name, seqid)


def _thrift_reply(data: bytes, transport: str, protocol: str) -> tuple[str, str]:
    """:func:`_thrift_message` under *transport*'s framing."""
    if transport != "framed":
        return _thrift_message(data, protocol)
    if len(data) < 4:
        raise _Incomplete()
    size = struct.unpack("!i", data[:4])[0]
    if not 0 < size <= _MAX_FRAME:
        raise ValueError("frame of %d bytes" % size)
    if len(data) > 4 and data[4] != (0x80 if protocol == "binary" else 0x82):
        raise ValueError("not %s" % protocol)
    if len(data) < 4 + size:
        raise _Incomplete()
    return _thrift_message(data[4:4 + size], protocol)


def _http_reply(data: bytes, whole: bool, ended: bool) -> tuple[str, str] | None:
    """An HTTP reply: its status line, or with *whole* the Thrift reply in its
    body; ``None`` until enough has arrived (*ended*: nothing more will)."""
    end_of_line = data.find(b"\n")
    if end_of_line < 0:
        return None if len(data) < _MAX_REPLY else ("http", _quote(data))
    status_line = data[:end_of_line].rstrip(b"\r").decode("latin-1")
    if not whole or not re.match(r"HTTP/\d(\.\d)? 2\d\d", status_line):
        return "http", status_line
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = data[:head_end].decode("latin-1").lower()
    body = data[head_end + 4:]
    if re.search(r"^transfer-encoding:.*chunked", head, re.M):
        try:
            body = _dechunk(body)
        except _Incomplete:
            return None
    else:
        match = re.search(r"^content-length:\s*(\d+)", head, re.M)
        if match is None:
            if not ended:
                return None  # the body ends with the connection
        elif len(body) < int(match.group(1)):
            return None
        else:
            body = body[:int(match.group(1))]
    try:
        kind, detail = _thrift_message(body, "binary")
    except _Incomplete:
        return "http", status_line + " with a truncated Thrift reply"
    except Exception:
        return "http", status_line + " without a Thrift reply"
    return kind, detail


def _dechunk(body: bytes) -> bytes:
    """The data of a chunked body; :class:`_Incomplete` before its last chunk."""
    data = b""
    pos = 0
    for _ in range(len(body) + 1):  # each round consumes at least 4 bytes
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise _Incomplete()
        size = int(body[pos:line_end].split(b";")[0].strip() or b"x", 16)
        if size == 0:
            return data
        if len(body) < line_end + 2 + size + 2:
            raise _Incomplete()
        data += body[line_end + 2:line_end + 2 + size]
        pos = line_end + 2 + size + 2
    raise _Incomplete()


def _sasl_reply(data: bytes) -> tuple[str, str] | None:
    if len(data) < 5:
        return None
    size = struct.unpack("!I", data[1:5])[0]
    if size > _MAX_SASL_MESSAGE:
        raise ValueError("SASL message of %d bytes" % size)
    if len(data) < 5 + size:
        return None
    text = data[5:5 + size].decode("utf-8", "replace")
    return "sasl", "a SASL %s message %r" % (_SASL_REFUSALS[data[0]], text)


def _verdict(data: bytes, transport: str, protocol: str, request: bytes,
             ended: bool = False) -> tuple[str, str] | None:
    """What the peer's reply *data* (not empty) says, or ``None`` if more is
    needed (*ended*: nothing more will come). Never raises."""
    if data.startswith(b"HTTP/"):
        try:
            return _http_reply(data, transport == "http", ended)
        except Exception:
            return "http", _quote(data.split(b"\n", 1)[0])
    if b"HTTP/".startswith(data):
        return None
    if data[0] in (0x15, 0x16):  # TLS alert or handshake record
        if len(data) < 2:
            return None
        if data[1] == 0x03:
            return "tls", "a TLS %s record" % ("alert" if data[0] == 0x15 else "handshake")
    if data.startswith(request):
        return "echo", "the request itself"
    if request.startswith(data):
        return None
    if data[0] in _SASL_REFUSALS:
        try:
            return _sasl_reply(data)
        except Exception:
            pass
    incomplete = False
    tcp = transport if transport != "http" else "buffered"
    for candidate in _combinations(tcp, protocol):
        try:
            return _thrift_reply(data, *candidate)
        except _Incomplete:
            incomplete = True
        except Exception:
            continue
    if incomplete and len(data) < _MAX_REPLY:
        return None
    return "garbage", _quote(data)


def _final(data: bytes, transport: str, protocol: str, request: bytes,
           ended: str) -> tuple[str, str]:
    """The verdict once the peer closed (*ended* ``"eof"``) or went silent."""
    if not data:
        return ended, ""
    verdict = _verdict(data, transport, protocol, request, ended=True)
    if verdict is not None:
        return verdict
    if data.startswith(b"HTTP/") or b"HTTP/".startswith(data):
        return "http", _quote(data)
    if request.startswith(data):
        return "echo", "part of the request"
    return "garbage", _quote(data)


def _quote(data: bytes) -> str:
    """The first bytes of *data*, printable-escaped."""
    text = repr(bytes(data[:_QUOTE_BYTES]))
    return text + (" (%d bytes in all)" % len(data) if len(data) > _QUOTE_BYTES else "")


def _combinations(transport: str, protocol: str) -> list[tuple[str, str]]:
    """Every TCP transport and protocol, nearest to the configured ones first."""
    other_transport = "framed" if transport == "buffered" else "buffered"
    other_protocol = "compact" if protocol == "binary" else "binary"
    return [(transport, protocol), (transport, other_protocol),
            (other_transport, protocol), (other_transport, other_protocol)]


class _Outcome:
    """What one raw attempt saw."""

    def __init__(self, tls: bool, transport: str, protocol: str) -> None:
        self.tls = tls
        self.transport = transport
        self.protocol = protocol
        self.kind = "unfinished"
        self.detail = ""
        self.handshake = False  # a TLS handshake completed

    def __repr__(self) -> str:
        return "<%s%s/%s: %s %s>" % ("tls " if self.tls else "", self.transport, self.protocol,
                                     self.kind, self.detail)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _attempt(outcome: _Outcome, host: str, port: int, timeout: float,
             context: ssl.SSLContext | None = None, send: bool = True) -> _Outcome:
    """Connect, maybe shake hands, send the probe, read the reply: all within
    *timeout* seconds. Fills *outcome* in; raises nothing but BaseExceptions
    from outside (``gevent.Timeout`` of the caller, ``GreenletExit``)."""
    request = _request(host, port, outcome.transport, outcome.protocol)
    timer = _green.Timeout(timeout)
    sock: Any = None
    data = b""
    stage = "connect"
    try:
        timer.start()
        sock = _green.green_socket.create_connection((host, port))
        if outcome.tls:
            stage = "handshake"
            sock = wrap_tls(sock, context or _unverified_context(), server_hostname=host)
            sock.do_handshake()
            outcome.handshake = True
        if not send:
            outcome.kind = "handshake"
            return outcome
        stage = "reply"
        try:
            sock.sendall(request)
        except OSError:
            pass  # the peer may have answered and closed already: read it
        # Every round reads at least one byte, and stops at _MAX_REPLY.
        for _ in range(_MAX_REPLY):
            chunk = sock.recv(_RECV_CHUNK)
            if not chunk:
                break
            data += chunk
            verdict = _verdict(data, outcome.transport, outcome.protocol, request)
            if verdict is not None:
                outcome.kind, outcome.detail = verdict
                return outcome
            if len(data) >= _MAX_REPLY:
                break
        outcome.kind, outcome.detail = _final(data, outcome.transport, outcome.protocol,
                                              request, "eof")
    except _green.Timeout as error:
        if error is not timer:
            raise
        if stage == "reply":
            outcome.kind, outcome.detail = _final(data, outcome.transport, outcome.protocol,
                                                  request, "silence")
        else:
            outcome.kind = "connect_silence" if stage == "connect" else "handshake_failed"
            outcome.detail = "no answer within %s s" % timeout
    except ssl.SSLCertVerificationError as error:
        outcome.kind = "certificate"
        outcome.detail = str(error.verify_message or error.reason or error)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        if stage == "connect":
            outcome.kind = "unresolved" if isinstance(error, socket.gaierror) else "refused"
            outcome.detail = _describe(error)
        elif stage == "handshake":
            outcome.kind, outcome.detail = "handshake_failed", _describe(error)
        else:
            outcome.kind, outcome.detail = _final(data, outcome.transport, outcome.protocol,
                                                  request, "eof")
    finally:
        timer.close()
        if sock is not None:
            sock.close()
    return outcome


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return "%s: %s" % (type(error).__name__, text) if text else type(error).__name__


def _guarded(finished: Any, *args: Any) -> None:
    """:func:`_attempt`, with any unexpected error logged, not raised; its
    outcome is put in *finished* in any case."""
    try:
        _attempt(*args)
    except Exception:
        log.exception("diagnosis attempt %r failed unexpectedly", args[0])
    finally:
        finished.put(args[0])


def _decisive(outcome: _Outcome) -> bool:
    """True when *outcome* tells enough that the other attempts need not finish."""
    return outcome.handshake or outcome.kind not in _NO_ANSWER + _NOT_CONNECTED


def _run(attempts: list[tuple[Any, ...]], timeout: float) -> list[_Outcome]:
    """Run *attempts* (``_attempt`` arguments; the configured settings first)
    side by side and return their outcomes once all have finished, or once
    enough is known: another setting got a Thrift answer, or the configured
    attempt finished and some attempt is decisive. One that did not finish
    stays ``unfinished``, as no answer."""
    finished: Any = gevent.queue.Queue()
    greenlets = [_green.spawn(_guarded, finished, *args) for args in attempts]
    deadline = time.monotonic() + timeout + _JOIN_MARGIN
    configured: _Outcome = attempts[0][0]
    done: list[_Outcome] = []
    try:
        for _ in attempts:
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                outcome = finished.get(timeout=wait)
            except gevent.queue.Empty:
                break
            done.append(outcome)
            if outcome is not configured and outcome.kind in _ANSWERS:
                break
            if configured in done and any(_decisive(o) for o in done):
                break
        return [args[0] for args in attempts]
    finally:
        gevent.killall([g for g in greenlets if not g.ready()], block=True,
                       timeout=_JOIN_MARGIN)


# -- Conclusions -----------------------------------------------------------------


def _describe_settings(transport: str, protocol: str) -> str:
    if transport == "http":
        return "HTTP transport with %s protocol" % protocol
    return "%s transport and %s protocol" % (transport, protocol)


def _settings(changes: dict[str, Any]) -> str:
    return ", ".join("%s=%r" % item for item in changes.items())


def _changes(outcome: _Outcome, transport: str, protocol: str,
             tls: bool) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if outcome.tls != tls:
        changes["tls"] = outcome.tls
    if outcome.transport != transport:
        changes["transport"] = outcome.transport
    if outcome.protocol != protocol:
        changes["protocol"] = outcome.protocol
    return changes


def _observed(outcome: _Outcome, timeout: float) -> str:
    """The symptom when the caller gave no error: what the configured probe met."""
    if outcome.kind == "eof":
        return "TSocket read 0 bytes"
    if outcome.kind == "silence":
        return "no reply within %s s" % timeout
    if outcome.kind == "unfinished":
        return "no reply"
    if outcome.kind in _NOT_CONNECTED + ("certificate",):
        return outcome.detail
    if outcome.kind == "two":
        return "getThriftServerType answered TWO"
    if outcome.kind in _ANSWERS:
        return "the probe works now"
    return "the reply was %s" % outcome.detail


def _symptom(error: BaseException | None) -> str | None:
    if error is None:
        return None
    # thriftpy2's exceptions show as "TTransportException(type=4, message=...)":
    # quote their message, which is what users search for.
    message = getattr(error, "message", None)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if not isinstance(message, str) or not message.strip():
        message = str(error)
    text = " ".join(message.split()) or type(error).__name__
    if len(text) > _MAX_SYMPTOM:
        text = text[:_MAX_SYMPTOM] + "..."
    return text


def _check_arguments(host: Any, port: Any, transport: Any, protocol: Any, timeout: Any,
                     error: Any, tls: Any) -> float:
    if not isinstance(host, str) or not host:
        raise TypeError("host must be a non-empty str, not %r" % (host,))
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError("port must be an int, not %r" % (port,))
    if not 1 <= port <= 65535:
        raise ValueError("port must be between 1 and 65535, not %r" % (port,))
    if transport not in _TRANSPORTS:
        raise ValueError("transport must be one of %s, not %r"
                         % (", ".join(map(repr, _TRANSPORTS)), transport))
    if protocol not in _PROTOCOLS:
        raise ValueError("protocol must be one of %s, not %r"
                         % (", ".join(map(repr, _PROTOCOLS)), protocol))
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError("timeout must be a number of seconds, not %r" % (timeout,))
    if not 0 < float(timeout) < float("inf"):
        raise ValueError("timeout must be a number of seconds > 0, not %r" % (timeout,))
    if error is not None and not isinstance(error, BaseException):
        raise TypeError("error must be an exception or None, not %r" % (error,))
    if not isinstance(tls, (bool, ssl.SSLContext)):
        raise TypeError("tls must be True, False or an ssl.SSLContext, not %r" % (tls,))
    return float(timeout)


def diagnose(host: str, port: int, *, transport: str, protocol: str, timeout: float,
             error: BaseException | None = None, tls: bool | ssl.SSLContext = False) -> str:
    """Why a connection to a gateway failed, and which option fixes it.

    Looks at the peer with fresh gevent sockets (at most six short
    connections, side by side; each gets *timeout* seconds, the whole
    diagnosis about twice that at most): sends ``getThriftServerType()`` as
    the configured client would, reads the raw reply, and tries the other
    settings when the reply says too little.

    :param host: the gateway's host name or address
    :param port: its port
    :param transport: the configured transport: ``"buffered"``, ``"framed"``
        or ``"http"``
    :param protocol: the configured protocol: ``"binary"`` or ``"compact"``
    :param timeout: seconds each connection may take (> 0)
    :param error: the exception the probe or connect raised, quoted as the
        symptom; without it the symptom is what the configured probe meets
    :param tls: the configured ``tls=``: ``False``, ``True`` or an
        ``ssl.SSLContext``
    :returns: one paragraph: the symptom, ``host:port``, the likely cause and
        the option to set
    :raises TypeError: an argument of the wrong type
    :raises ValueError: an argument out of range (never for what the peer
        does)

    .. versionadded:: 0.2
    """
    timeout = _check_arguments(host, port, transport, protocol, timeout, error, tls)
    address = _address(host, port)
    tls_on = tls is not False
    configured = _Outcome(tls_on, transport, protocol)
    others = [_Outcome(tls_on, *combination) for combination in _combinations(
        transport if transport != "http" else "buffered", protocol)
        if combination != (transport, protocol)]
    if tls_on:
        # Stage 1: the configured settings; then, if the handshake failed,
        # plain Thrift, or, if it worked, the other settings inside TLS.
        first = _run([(configured, host, port, timeout)], timeout)[0]
        if first.kind == "handshake_failed":
            plain = [_Outcome(False, transport, protocol)]
            plain += [_Outcome(False, o.transport, o.protocol) for o in others]
            outcomes = [first] + _run([(o, host, port, timeout) for o in plain], timeout)
        elif first.kind in _NO_ANSWER:
            outcomes = [first] + _run([(o, host, port, timeout) for o in others], timeout)
        else:
            outcomes = [first]
    else:
        # One stage: the configured settings, the others, and a TLS handshake
        # (with the configured probe inside), side by side.
        secure = _Outcome(True, transport, protocol)
        attempts = [(o, host, port, timeout) for o in [configured] + others + [secure]]
        outcomes = _run(attempts, timeout)
    log.debug("diagnosis of %s: %s", address, outcomes)
    cause = _conclude(outcomes, host, port, transport, protocol, tls, timeout)
    symptom = _symptom(error) or _observed(outcomes[0], timeout)
    message = "%s (talking to %s): %s" % (symptom, address, cause)
    log.debug("diagnosis of %s: %s", address, message)
    return message


def _conclude(outcomes: list[_Outcome], host: str, port: int, transport: str, protocol: str,
              tls: bool | ssl.SSLContext, timeout: float) -> str:
    """The likely cause and its fix, from what the attempts saw (the
    configured one first, then nearest settings first)."""
    tls_on = tls is not False
    first = outcomes[0]
    configured = _describe_settings(transport, protocol)
    if first.kind == "unresolved":
        return "the host name does not resolve (%s): check host." % first.detail
    if first.kind in ("refused", "connect_silence"):
        return ("nothing accepts connections there (%s). Check that the gateway is running, "
                "and %s." % (first.detail, _PORT_HINT))
    if first.kind in _ANSWERS and first.kind != "two":
        return _settings_right(first, host, port, transport, protocol, tls, timeout)
    for outcome in outcomes:
        if outcome.kind == "two":
            changes = _changes(outcome, transport, protocol, tls_on)
            extra = ("; it answered with %s" % _settings(changes)) if changes else ""
            return ("the gateway is a Thrift2 gateway (getThriftServerType answered TWO%s: it "
                    "was started with `hbase thrift2`), but happybase speaks HBase's Thrift1 "
                    "API: start the gateway with `hbase thrift`, or set host/port to a Thrift1 "
                    "gateway." % extra)
    for outcome in outcomes:
        if outcome.kind in _ANSWERS:
            return _other_settings(outcome, first, transport, protocol, tls_on)
    for outcome in outcomes:
        if outcome.kind == "http":
            return _http_cause(outcome, transport, protocol, tls_on)
    if not tls_on:
        for outcome in outcomes:
            if outcome.kind == "tls" and not outcome.tls:
                return ("the gateway expects TLS (it answered plain bytes with %s): set tls=True "
                        "(or tls=ssl.SSLContext(...) trusting the gateway's certificate)."
                        % outcome.detail)
        for outcome in outcomes:
            if outcome.handshake:
                return ("the gateway expects TLS (a TLS handshake succeeded; inside it, %s %s): "
                        "set tls=True (or tls=ssl.SSLContext(...) trusting the gateway's "
                        "certificate), then check transport and protocol."
                        % (configured, _no_answer(outcome, timeout)))
    for outcome in outcomes:
        if outcome.kind == "sasl":
            changes = _changes(outcome, transport, protocol, tls_on)
            changes.pop("protocol", None)
            changes["transport"] = "buffered"
            return ("the gateway expects SASL authentication (it answered %s): it runs with "
                    "hbase.thrift.security.qop set. Pass auth=green_happybase.auth.Kerberos(...) "
                    "and set %s (HBase refuses SASL over framed transport)."
                    % (outcome.detail, _settings(changes)))
    for outcome in outcomes:
        if outcome.kind == "echo":
            return ("the peer is not a Thrift server: it sent %s back (an echo service?); %s."
                    % (outcome.detail, _PORT_HINT))
        if outcome.kind in ("garbage", "tls"):
            return ("the peer is not a Thrift server: it answered %s; %s."
                    % (outcome.detail, _PORT_HINT))
    tried = "buffered or framed transport with binary or compact protocol"
    if tls_on and first.kind == "handshake_failed":
        return ("the TLS handshake failed (%s), and plain Thrift (%s) %s as well: the peer "
                "speaks neither TLS nor Thrift as happybase does; %s, and look at the gateway's "
                "log." % (first.detail, tried, _no_answer(outcomes[1], timeout), _PORT_HINT))
    where = "inside TLS " if tls_on else ""
    tls_too = "" if tls_on else ", nor to a TLS handshake"
    return ("the gateway accepts connections but answers %snone of %s%s (with %s it %s). It may "
            "be no HBase Thrift gateway, it may be overloaded, or it may expect SASL "
            "authentication; %s, and look at the gateway's log."
            % (where, tried, tls_too, configured, _no_answer(first, timeout), _PORT_HINT))


def _no_answer(outcome: _Outcome, timeout: float) -> str:
    if outcome.kind == "silence":
        return "got no reply within %s s" % timeout
    if outcome.kind == "eof":
        return "got the connection closed without a reply"
    if outcome.kind == "unfinished":
        return "got no reply in time"
    return "got %s" % (outcome.detail or outcome.kind)


def _other_settings(outcome: _Outcome, first: _Outcome, transport: str, protocol: str,
                    tls_on: bool) -> str:
    """The gateway answers the probe, with settings other than the configured ones."""
    changes = _changes(outcome, transport, protocol, tls_on)
    answers = _describe_settings(outcome.transport, outcome.protocol)
    hints = [_SERVER_SETTING[value] + "=true" for name, value in changes.items()
             if name != "tls" and value in _SERVER_SETTING]
    hint = (" (the gateway runs with %s)" % " and ".join(hints)) if hints else ""
    if changes.get("tls") is False:
        return ("the gateway does not speak TLS (the TLS handshake failed: %s) but answers plain "
                "Thrift with %s%s: set %s. HBase's gateway serves TLS only in HTTP mode "
                "(hbase.thrift.ssl.enabled); raw TCP needs a TLS proxy in front."
                % (first.detail, answers, hint, _settings(changes)))
    if changes.get("tls") is True:
        return ("the gateway expects TLS: inside a TLS connection it answers %s: set %s (or "
                "tls=ssl.SSLContext(...) trusting the gateway's certificate)."
                % (answers, _settings(changes)))
    return ("the gateway does not answer %s but answers %s%s: set %s."
            % (_describe_settings(transport, protocol), answers, hint, _settings(changes)))


def _http_cause(outcome: _Outcome, transport: str, protocol: str, tls_on: bool) -> str:
    if outcome.transport != "http":
        changes: dict[str, Any] = {"transport": "http"}
        if protocol != "binary":
            changes["protocol"] = "binary"
        if outcome.tls != tls_on:
            changes["tls"] = outcome.tls
        return ("the gateway answered with HTTP (%s): it runs in HTTP mode "
                "(hbase.regionserver.thrift.http=true), Thrift over HTTP POST with binary "
                "protocol only: set %s." % (outcome.detail, _settings(changes)))
    status = outcome.detail
    code = re.match(r"HTTP/\S+ (\d{3})", status)
    number = int(code.group(1)) if code else 0
    if number in (401, 403):
        advice = ("the gateway requires authentication: pass auth= (Kerberos() for SPNEGO, "
                  "Basic, Bearer or Headers from green_happybase.auth)")
    elif number == 404:
        advice = "check http_path (the path the gateway serves Thrift on)"
    elif protocol != "binary":
        advice = "HBase's HTTP mode speaks binary protocol only: set protocol='binary'"
    else:
        advice = "look at the gateway's log"
    tls_change = "" if outcome.tls == tls_on else " (with tls=%r)" % outcome.tls
    return ("the HTTP gateway%s refused the Thrift POST with %s: %s."
            % (tls_change, status, advice))


def _settings_right(first: _Outcome, host: str, port: int, transport: str, protocol: str,
                    tls: bool | ssl.SSLContext, timeout: float) -> str:
    """The configured settings work now: a certificate problem, or a transient failure."""
    settings: dict[str, Any] = {"transport": transport, "protocol": protocol}
    if tls is not False:
        # The probe ran without checking the certificate: check it now.
        context = tls if isinstance(tls, ssl.SSLContext) else ssl.create_default_context()
        check = _run([(_Outcome(True, transport, protocol), host, port, timeout, context, False)],
                     timeout)[0]
        if check.kind == "certificate":
            return ("the gateway speaks TLS and Thrift with these settings, but its certificate "
                    "is refused (%s): pass tls=ssl.create_default_context(cafile=...) naming "
                    "the CA that signed it, or fix the certificate's host names." % check.detail)
        settings["tls"] = True
    answer = ("answers the probe with %s" % first.detail if first.kind != "thrift_error"
              else "speaks Thrift (it answered %s)" % first.detail)
    return ("the gateway %s with these settings (%s), so they are right; the failure was most "
            "likely transient: the gateway cuts connections idle for 60 s "
            "(hbase.thrift.server.socket.read.timeout), it restarted, or the network dropped "
            "the connection. Retry on a fresh connection; if it keeps failing, look at the "
            "gateway's log." % (answer, _settings(settings)))
