"""The wire under a connection: plain TCP, TLS, HTTP(S) and SASL, all green.

:func:`open_channel` connects to a gateway and returns a :class:`Channel`:
a socket and the thriftpy2 transport that happybase's protocol classes wrap.
Every mode runs on ``gevent`` sockets (TLS through ``gevent.ssl``), so it is
cooperative whether or not the process is monkey-patched, and every GSSAPI
call (which is C code that may talk to the KDC while holding the GIL) runs in
the hub's thread pool, so other greenlets keep running during a handshake.

================  ===============================================================
mode              what goes over the socket
================  ===============================================================
buffered/framed   Thrift as happybase sends it (thriftpy2's Cython transports)
``tls=...``       the same inside TLS
``http``          one HTTP/1.1 POST per call on a keep-alive connection
``auth=`` on TCP  SASL negotiation, then 4-byte length-prefixed frames, each one
                  GSSAPI-wrapped when the negotiated qop is auth-int or auth-conf
================  ===============================================================

The framing helpers (SASL frames, the GSSAPI security layer, HTTP messages)
are shared with the embedded server's :mod:`green_happybase.testing.gateways`.

.. versionadded:: 0.2
"""
from __future__ import annotations

import base64
import logging
import re
import select
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

from gevent import ssl as green_ssl
from thriftpy2.transport import TCyBufferedTransport, TCyFramedTransport, TTransportException

from . import _green
from .auth import Auth, Kerberos, Plain, check_combination
from .errors import AuthenticationFailed

__all__ = ["Channel", "HttpError", "open_channel"]

log = logging.getLogger("green_happybase.transports")

_POLL_FLAGS = select.POLLIN | select.POLLPRI
_RECV_CHUNK = 65536
# TLS 1.3 servers send session tickets after the handshake; OpenSSL sends two.
_TLS_DRAIN_ROUNDS = 8

# -- SASL frames (Thrift's TSaslTransport) ---------------------------------

SASL_START, SASL_OK, SASL_BAD, SASL_ERROR, SASL_COMPLETE = 1, 2, 3, 4, 5
_SASL_STATUS = {1: "START", 2: "OK", 3: "BAD", 4: "ERROR", 5: "COMPLETE"}
#: Largest negotiation message accepted (a Kerberos ticket with a large PAC
#: stays far below).
MAX_SASL_TOKEN = 1 << 20
_SASL_HEADER = struct.Struct("!BI")
_LENGTH = struct.Struct("!I")
_MAX_NEGOTIATION_ROUNDS = 16

#: GSSAPI security layers (RFC 4752): bit in the negotiation message, by qop.
LAYER_BITS = {"auth": 1, "auth-int": 2, "auth-conf": 4}
_LAYER_ORDER = ("auth", "auth-int", "auth-conf")
#: Largest wrapped message we announce we can receive (the 3-byte maximum).
MAX_WRAPPED = 0xFFFFFF

_SPNEGO_OID = "1.3.6.1.5.5.2"

# -- HTTP -----------------------------------------------------------------

MAX_HTTP_HEAD = 64 * 1024
MAX_HTTP_HEADERS = 100
# A reply this large is garbage, not a scan batch.
_MAX_HTTP_REPLY = 1 << 30
_THRIFT_TYPES = ("application/x-thrift", "application/octet-stream")
_EXCERPT = 160


class HttpError(TTransportException):
    """An HTTP message that is not a Thrift reply (or request).

    On the client, :attr:`status` is the gateway's HTTP status (a non-2xx
    reply, or a 2xx reply that is not ``application/x-thrift``); on the
    server, the status to answer a malformed request with. Raised inside a
    call, so the connection is discarded as after any transport error.

    .. versionadded:: 0.2
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(TTransportException.UNKNOWN, message)
        self.status = status


def offload(func: Callable[..., Any], *args: Any) -> Any:
    """Run *func* in the hub's thread pool and wait for it cooperatively.

    For GSSAPI calls: C code that may block on the KDC and hold the GIL.
    An interrupted wait leaves the call to finish in its thread.
    """
    ok, value = _green.get_hub().threadpool.apply(_capture, (func, args))
    if ok:
        return value
    raise value


def _capture(func: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    # Returned, not raised: gevent's pool would print an error the caller
    # handles (a refused ticket) as if it were a crash.
    try:
        return True, func(*args)
    except Exception as error:
        return False, error


def recv_exact(sock: Any, size: int, what: str, *, eof_ok: bool = False) -> bytes:
    """Exactly *size* bytes, never more; ``b""`` at a clean EOF when *eof_ok*."""
    data = bytearray()  # grows in place: a large frame costs linear time
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            if eof_ok and not data:
                return b""
            raise TTransportException(TTransportException.END_OF_FILE,
                                      "connection closed in the middle of %s" % what)
        data += chunk
    return bytes(data)


def send_sasl(sock: Any, status: int, payload: bytes) -> None:
    """One SASL negotiation message: status byte, 4-byte length, payload."""
    sock.sendall(_SASL_HEADER.pack(status, len(payload)) + payload)


def recv_sasl(sock: Any) -> tuple[int, bytes]:
    """One SASL negotiation message, bounded by :data:`MAX_SASL_TOKEN`."""
    status, size = _SASL_HEADER.unpack(recv_exact(sock, 5, "a SASL message"))
    if status not in _SASL_STATUS:
        raise TTransportException(TTransportException.UNKNOWN,
                                  "not a SASL message (status byte %d)" % status)
    if size > MAX_SASL_TOKEN:
        raise TTransportException(TTransportException.UNKNOWN,
                                  "SASL message of %d bytes; the limit is %d"
                                  % (size, MAX_SASL_TOKEN))
    return status, recv_exact(sock, size, "a SASL message")


def encode_layers(bits: int, max_size: int) -> bytes:
    """RFC 4752's 4-byte message: layer bit mask, then a 3-byte maximum size."""
    return bytes([bits]) + max_size.to_bytes(3, "big")


def decode_layers(message: bytes) -> tuple[int, int]:
    """The layer bits and maximum size of an RFC 4752 message (extra bytes are
    the authorization id)."""
    if len(message) < 4:
        raise ValueError("security layer message of %d bytes, not 4" % len(message))
    return message[0], int.from_bytes(message[1:4], "big")


class SaslMechanism:
    """A SASL mechanism, either side: steps, then the agreed security layer.

    Without a GSSAPI context the layer is ``"auth"``: frames carry the bytes
    as they are.
    """

    name = ""
    complete = False
    layer = "auth"
    context: Any = None

    def wrap(self, data: bytes) -> bytes:
        if self.layer == "auth":
            return data
        wrapped: bytes = offload(self.context.wrap, data, self.layer == "auth-conf").message
        return wrapped

    def unwrap(self, data: bytes) -> bytes:
        if self.layer == "auth":
            return data
        result = offload(self.context.unwrap, data)
        if self.layer == "auth-conf" and not result.encrypted:
            raise TTransportException(TTransportException.UNKNOWN,
                                      "an unencrypted SASL frame under qop auth-conf")
        plain: bytes = result.message
        return plain


class SaslStream:
    """What a connection is after SASL: a stream of length-prefixed frames.

    It looks like a socket (``recv``, ``sendall``, ``shutdown``, ``close``):
    ``sendall`` sends one frame, wrapped under auth-int and
    auth-conf; ``recv`` returns the bytes of the frames received, unwrapped,
    and ``b""`` when the peer closes between two frames.
    """

    def __init__(self, sock: Any, mechanism: SaslMechanism, max_frame: int = MAX_WRAPPED) -> None:
        self.sock = sock
        self.mechanism = mechanism
        self._max_frame = max_frame
        self._plain = b""
        self._pos = 0

    @property
    def layer(self) -> str:
        return self.mechanism.layer

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._plain):
            header = recv_exact(self.sock, 4, "a SASL frame", eof_ok=True)
            if not header:
                return b""
            (length,) = _LENGTH.unpack(header)
            if length > self._max_frame:
                raise TTransportException(TTransportException.UNKNOWN,
                                          "SASL frame of %d bytes; the limit is %d"
                                          % (length, self._max_frame))
            self._plain = self.mechanism.unwrap(recv_exact(self.sock, length, "a SASL frame"))
            self._pos = 0
        chunk = self._plain[self._pos:self._pos + size]
        self._pos += len(chunk)
        return chunk

    def sendall(self, data: bytes) -> None:
        frame = self.mechanism.wrap(data)
        self.sock.sendall(_LENGTH.pack(len(frame)) + frame)

    def pending(self) -> bool:
        """Whether unwrapped bytes wait to be read."""
        return self._pos < len(self._plain)

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


def negotiate_sasl(sock: Any, mechanism: Any, address: str) -> None:
    """Run Thrift's SASL negotiation as the client; :exc:`AuthenticationFailed`
    when the gateway says BAD or ERROR."""
    send_sasl(sock, SASL_START, mechanism.name.encode("ascii"))
    response = mechanism.initial()
    send_sasl(sock, SASL_COMPLETE if mechanism.complete else SASL_OK, response)
    for _ in range(_MAX_NEGOTIATION_ROUNDS):
        status, payload = _recv_sasl_reply(sock, mechanism.name, address)
        if mechanism.complete:
            if status != SASL_COMPLETE:
                raise AuthenticationFailed(address, mechanism.name,
                                           "the gateway sent %s after the client finished"
                                           % _SASL_STATUS[status])
            return
        response = mechanism.step(payload)
        if status == SASL_COMPLETE:
            if not mechanism.complete:
                raise AuthenticationFailed(address, mechanism.name,
                                           "the gateway finished before the client")
            return
        send_sasl(sock, SASL_COMPLETE if mechanism.complete else SASL_OK, response)
    raise AuthenticationFailed(address, mechanism.name,
                               "no agreement after %d rounds" % _MAX_NEGOTIATION_ROUNDS)


def _recv_sasl_reply(sock: Any, mechanism: str, address: str) -> tuple[int, bytes]:
    status, payload = recv_sasl(sock)
    if status in (SASL_BAD, SASL_ERROR):
        raise AuthenticationFailed(address, mechanism, "SASL %s: %s" % (
            _SASL_STATUS[status], payload.decode("utf-8", "replace") or "(no message)"))
    if status not in (SASL_OK, SASL_COMPLETE):
        raise AuthenticationFailed(address, mechanism, "unexpected SASL %s from the gateway"
                                   % _SASL_STATUS[status])
    return status, payload


class _PlainClient(SaslMechanism):
    name = "PLAIN"

    def __init__(self, auth: Plain) -> None:
        self._auth = auth

    def initial(self) -> bytes:
        self.complete = True
        return self._auth.initial_response()


def gss_error(address: str, mechanism: str, error: BaseException) -> AuthenticationFailed:
    """A GSSAPI failure as :exc:`AuthenticationFailed`, keeping the minor status
    text (``str()`` of python-gssapi's errors has both major and minor)."""
    failure = AuthenticationFailed(address, mechanism, str(error))
    failure.__cause__ = error
    return failure


def _gssapi() -> Any:
    import gssapi  # imported on first use: an optional dependency

    return gssapi


def _initiator(target: str, principal: str | None, spnego: bool) -> Any:
    """A new initiating GSSAPI context (in a pool thread: it reads the ticket
    cache or the client keytab)."""
    gssapi = _gssapi()
    name = None if principal is None else gssapi.Name(principal,
                                                      gssapi.NameType.kerberos_principal)
    creds = gssapi.Credentials(name=name, usage="initiate")
    flags = gssapi.RequirementFlag
    return gssapi.SecurityContext(
        name=gssapi.Name(target, gssapi.NameType.hostbased_service), creds=creds,
        usage="initiate",
        mech=gssapi.OID.from_int_seq(_SPNEGO_OID) if spnego else None,
        flags=(flags.mutual_authentication | flags.integrity | flags.confidentiality
               | flags.out_of_sequence_detection))


def _first_token(target: str, principal: str | None, spnego: bool) -> tuple[Any, bytes]:
    context = _initiator(target, principal, spnego)
    return context, context.step()


class _GssapiClient(SaslMechanism):
    name = "GSSAPI"

    def __init__(self, auth: Kerberos, host: str, address: str) -> None:
        self._auth = auth
        self._target = auth.target(host, http=False)
        self._address = address

    def initial(self) -> bytes:
        gssapi = _gssapi()
        try:
            self.context, token = offload(_first_token, self._target, self._auth.principal, False)
        except gssapi.exceptions.GSSError as error:
            raise gss_error(self._address, self.name, error) from None
        return token or b""

    def step(self, challenge: bytes) -> bytes:
        gssapi = _gssapi()
        try:
            if not self.context.complete:
                return offload(self.context.step, challenge) or b""
            return self._choose_layer(challenge)
        except gssapi.exceptions.GSSError as error:
            raise gss_error(self._address, self.name, error) from None

    def _choose_layer(self, challenge: bytes) -> bytes:
        offered, _ = decode_layers(offload(self.context.unwrap, challenge).message)
        wanted = _LAYER_ORDER.index(self._auth.qop)
        for layer in _LAYER_ORDER[wanted:]:
            if offered & LAYER_BITS[layer]:
                break
        else:
            raise AuthenticationFailed(
                self._address, self.name, "the gateway offers qop %s; Kerberos(qop=%r) accepts "
                "no less than %s" % (_layer_names(offered) or "(none)", self._auth.qop,
                                     self._auth.qop))
        size = 0 if layer == "auth" else MAX_WRAPPED
        reply: bytes = offload(self.context.wrap, encode_layers(LAYER_BITS[layer], size),
                               False).message
        self.layer = layer
        self.complete = True
        log.debug("%s: SASL GSSAPI agreed on qop %s", self._address, layer)
        return reply


def _layer_names(bits: int) -> str:
    return ", ".join(layer for layer in _LAYER_ORDER if bits & LAYER_BITS[layer])


# -- HTTP messages ----------------------------------------------------------

class HttpReader:
    """Reads HTTP/1.1 messages off a socket, keeping what it read ahead."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._buf = bytearray()

    def pending(self) -> bool:
        """Whether bytes past the last message were received."""
        return bool(self._buf)

    def _fill(self, size: int) -> bool:
        data = self.sock.recv(size)
        self._buf += data
        return bool(data)

    def head(self) -> tuple[str, dict[str, str]] | None:
        """The start line and the headers (lower-case names; repeated ones
        joined with ``", "``), or ``None`` if the peer closed before a byte."""
        while True:
            # Empty lines before a message are allowed (RFC 9112 2.2).
            while self._buf[:2] == b"\r\n":
                del self._buf[:2]
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > MAX_HTTP_HEAD:
                raise HttpError(431, "HTTP header section over %d bytes" % MAX_HTTP_HEAD)
            if not self._fill(_RECV_CHUNK):
                if not self._buf:
                    return None
                raise TTransportException(TTransportException.END_OF_FILE,
                                          "connection closed in the middle of an HTTP header")
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[:end + 4]
        if len(lines) - 1 > MAX_HTTP_HEADERS:
            raise HttpError(431, "%d HTTP headers; the limit is %d"
                            % (len(lines) - 1, MAX_HTTP_HEADERS))
        headers: dict[str, str] = {}
        for number, line in enumerate(lines[1:], 1):
            name, colon, value = line.partition(":")
            # A header value may be a secret: errors name the line, not its text.
            if not colon or not name or name != name.strip():
                raise HttpError(400, "malformed HTTP header line %d" % number)
            key = name.lower()
            value = value.strip()
            headers[key] = headers[key] + ", " + value if key in headers else value
        return lines[0], headers

    def body(self, headers: dict[str, str], limit: int, *, to_eof: bool) -> bytes:
        """The body the headers announce (Content-Length or chunked); without
        either, up to the peer's EOF when *to_eof*, else nothing."""
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                raise HttpError(501, "unsupported Transfer-Encoding %r" % (coding,))
            return self._chunked(limit)
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise HttpError(400, "bad Content-Length %r" % (length,))
            size = int(length)
            if size > limit:
                raise HttpError(413, "HTTP body of %d bytes; the limit is %d" % (size, limit))
            return self._take(size)
        if not to_eof:
            return b""
        while self._fill(_RECV_CHUNK):
            if len(self._buf) > limit:
                raise HttpError(413, "HTTP body over %d bytes" % limit)
        body = bytes(self._buf)
        self._buf.clear()
        return body

    def _take(self, size: int) -> bytes:
        while len(self._buf) < size:
            if not self._fill(min(size - len(self._buf), 1 << 20)):
                raise TTransportException(TTransportException.END_OF_FILE,
                                          "connection closed in the middle of an HTTP body")
        body = bytes(self._buf[:size])
        del self._buf[:size]
        return body

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[:end + 2]
                return line
            if len(self._buf) > MAX_HTTP_HEAD:
                raise HttpError(400, "chunk header over %d bytes" % MAX_HTTP_HEAD)
            if not self._fill(_RECV_CHUNK):
                raise TTransportException(TTransportException.END_OF_FILE,
                                          "connection closed in the middle of an HTTP body")

    def _chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(400, "bad chunk size %r" % (size_text[:20],)) from None
            if size == 0:
                break
            total += size
            if total > limit:
                raise HttpError(413, "HTTP body over %d bytes" % limit)
            parts.append(self._take(size))
            if self._take(2) != b"\r\n":
                raise HttpError(400, "chunk not followed by CRLF")
        while self._line():  # trailer fields, ignored
            pass
        return b"".join(parts)


def excerpt(body: bytes) -> str:
    """A short, single-line, tag-free view of a body for error messages."""
    text = body[:4 * _EXCERPT].decode("utf-8", "replace")
    text = " ".join(re.sub(r"<[^>]*>", " ", text).split())
    return text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else "")


def _header_block(lines: list[tuple[str, str]]) -> bytes:
    out = []
    for name, value in lines:
        try:
            out.append(("%s: %s\r\n" % (name, value)).encode("latin-1"))
        except UnicodeEncodeError:
            raise ValueError("HTTP header %s must be Latin-1 text" % name) from None
    return b"".join(out)


# -- client transports --------------------------------------------------------

class _SocketTransport:
    """The part of a thriftpy2 ``TSocket`` the Cython transports call, over a
    connected gevent socket; also the owner of that socket."""

    def __init__(self, sock: Any, address: str) -> None:
        self.sock = sock
        self.address = address

    def is_open(self) -> bool:
        return self.sock is not None

    def open(self) -> None:
        if self.sock is None:
            raise TTransportException(TTransportException.NOT_OPEN,
                                      "the channel to %s is closed; open a new one" % self.address)

    def flush(self) -> None:
        pass

    def idle(self) -> bool:
        """No bytes of an earlier reply are waiting above the socket."""
        return True

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def forget(self) -> None:
        # After fork the descriptor is shared with the parent: no shutdown,
        # no TLS close_notify, no bytes; close this process's copy only.
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _closed(self, when: str = "") -> TTransportException:
        return TTransportException(TTransportException.END_OF_FILE,
                                   "%s closed the connection%s (TSocket read 0 bytes)"
                                   % (self.address, when))


def _mismatch(data: bytes) -> str | None:
    """What a first reply that is not Thrift says about the gateway, if anything."""
    if data.startswith(b"HTTP/"):
        return ("an HTTP reply: the gateway runs in HTTP mode "
                "(hbase.regionserver.thrift.http); use transport='http'")
    if data[:1] in (b"\x15", b"\x16") and data[1:2] == b"\x03":
        return "a TLS record: the gateway expects TLS; use tls=True or an ssl.SSLContext"
    if data[:1] in (b"\x03", b"\x04") and len(data) > 5 and data[5:].isascii() \
            and data[5:].decode("ascii").isprintable():
        return ("a SASL error (%r): the gateway expects SASL; use auth=Kerberos() "
                "or auth=Plain(...)" % data[5:5 + _EXCERPT].decode("ascii"))
    return None


class _StreamTransport(_SocketTransport):
    """Thrift bytes straight on the (TLS) socket: buffered, framed, or SASL
    frames without a security layer."""

    def __init__(self, sock: Any, address: str) -> None:
        super().__init__(sock, address)
        self._first = True

    def read(self, size: int) -> bytes:
        if self._first:
            return self._read_first(size)
        data: bytes = self.sock.recv(size)
        if data:
            return data
        raise self._closed()

    def _read_first(self, size: int) -> bytes:
        # The first reply tells whether the gateway speaks what we speak: a
        # mismatch otherwise shows up as "TSocket read 0 bytes" or a hang.
        hint = (" before its first reply: the gateway may expect TLS, SASL (auth=), HTTP "
                "or another transport or protocol")
        try:
            data: bytes = self.sock.recv(size)
        except ConnectionResetError as error:
            raise TTransportException(TTransportException.END_OF_FILE, "%s reset the connection%s"
                                      % (self.address, hint)) from error
        if not data:
            raise self._closed(hint)
        self._first = False
        what = _mismatch(data)
        if what is not None:
            raise TTransportException(TTransportException.UNKNOWN, "%s answered with %s"
                                      % (self.address, what))
        return data

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)


class _SaslTransport(_SocketTransport):
    """Thrift bytes in wrapped SASL frames (qop auth-int or auth-conf)."""

    def __init__(self, stream: SaslStream, address: str) -> None:
        super().__init__(stream.sock, address)
        self._stream = stream
        self._out: list[bytes] = []

    def read(self, size: int) -> bytes:
        data = self._stream.recv(size)
        if data:
            return data
        raise self._closed()

    def write(self, data: bytes) -> None:
        self._out.append(data)

    def flush(self) -> None:
        data = b"".join(self._out)
        self._out.clear()
        self._stream.sendall(data)

    def idle(self) -> bool:
        return not self._stream.pending()


class _HttpTransport(_SocketTransport):
    """Thrift over HTTP/1.1 POST: the request body is collected until
    ``flush()``, which sends it and reads the whole reply."""

    def __init__(self, sock: Any, address: str, host: str, path: str, auth: Auth | None,
                 do_as: str | None) -> None:
        super().__init__(sock, address)
        self._host = host
        self._host_header = "[%s]:%s" % (host, address.rpartition(":")[2]) if ":" in host \
            else address
        self._path = path
        self._auth = auth
        self._do_as = do_as
        self._reader = HttpReader(sock)
        self._out: list[bytes] = []
        self._body = b""
        self._pos = 0
        self._server_closed = False

    def write(self, data: bytes) -> None:
        self._out.append(data)

    def flush(self) -> None:
        body = b"".join(self._out)
        self._out.clear()
        if self._server_closed:
            raise TTransportException(TTransportException.NOT_OPEN,
                                      "%s closed this HTTP connection after its last reply"
                                      % self.address)
        self.sock.sendall(self._request_head(len(body)) + body)
        self._read_reply()

    def read(self, size: int) -> bytes:
        if self._pos >= len(self._body):
            raise TTransportException(TTransportException.END_OF_FILE,
                                      "the HTTP reply from %s ended inside a Thrift message"
                                      % self.address)
        chunk = self._body[self._pos:self._pos + size]
        self._pos += len(chunk)
        return chunk

    def idle(self) -> bool:
        return (self._pos >= len(self._body) and not self._server_closed
                and not self._reader.pending())

    def _request_head(self, length: int) -> bytes:
        lines = [("Host", self._host_header), ("Content-Type", "application/x-thrift"),
                 ("Accept", "application/x-thrift"), ("Content-Length", str(length)),
                 ("User-Agent", "green_happybase")]
        auth = self._auth
        if isinstance(auth, Kerberos):
            lines.append(("Authorization", "Negotiate " + self._spnego_token(auth)))
        elif auth is not None:
            lines.extend(auth.headers())
        if self._do_as is not None:
            lines.append(("doAs", self._do_as))
        return ("POST %s HTTP/1.1\r\n" % self._path).encode("latin-1") \
            + _header_block(lines) + b"\r\n"

    def _spnego_token(self, auth: Kerberos) -> str:
        # HBase's servlet keeps no session: every request carries a new token.
        gssapi = _gssapi()
        try:
            _, token = offload(_first_token, auth.target(self._host, http=True), auth.principal,
                               True)
        except gssapi.exceptions.GSSError as error:
            raise gss_error(self.address, "SPNEGO", error) from None
        return base64.b64encode(token).decode("ascii")

    def _read_reply(self) -> None:
        self._body, self._pos = b"", 0
        for _ in range(8):  # interim 1xx replies precede the real one
            head = self._reader.head()
            if head is None:
                raise self._closed(" instead of answering the HTTP request")
            status_line, headers = head
            version, _, rest = status_line.partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise HttpError(0, "%s answered %r, not an HTTP status line"
                                % (self.address, status_line[:_EXCERPT]))
            status = int(code)
            if status >= 200:
                break
        else:
            raise HttpError(status, "%s sent only interim HTTP replies" % self.address)
        delimited = status in (204, 304) or "content-length" in headers \
            or "transfer-encoding" in headers
        body = self._reader.body(headers, _MAX_HTTP_REPLY, to_eof=not delimited)
        connection = headers.get("connection", "").lower()
        if not delimited or "close" in connection \
                or (version == "HTTP/1.0" and "keep-alive" not in connection):
            self._server_closed = True
        where = "%s%s" % (self.address, self._path)
        if status == 401:
            asked = headers.get("www-authenticate", "nothing")
            mechanism = self._auth.http_scheme if self._auth is not None else "HTTP"
            raise AuthenticationFailed(where, mechanism or "HTTP", "HTTP 401 %s (the gateway "
                                       "asks for %s): %s" % (reason, asked, excerpt(body)))
        if not 200 <= status < 300:
            raise HttpError(status, "HTTP %d %s from %s: %s" % (status, reason, where,
                                                                 excerpt(body)))
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in _THRIFT_TYPES:
            raise HttpError(status, "HTTP %d from %s is %s, not application/x-thrift: %s"
                            % (status, where, content_type, excerpt(body)))
        self._body = body


# -- the channel ------------------------------------------------------------------

class Channel:
    """An open connection to a gateway and the Thrift transport to use on it.

    :attr:`sock` is the gevent socket (a ``gevent.ssl.SSLSocket`` under
    TLS), for ``fileno()``; :attr:`transport` is a thriftpy2 Cython
    transport to wrap in ``TCyBinaryProtocol(transport,
    decode_response=False)`` (or ``TCompactProtocol``).

    .. versionadded:: 0.2
    """

    def __init__(self, sock: Any, inner: _SocketTransport, transport: Any, address: str,
                 tls: bool) -> None:
        self.sock = sock
        self.transport = transport
        self.address = address
        self._inner = inner
        self._tls = tls
        poller = _green.poll()
        poller.register(sock.fileno(), _POLL_FLAGS)
        self._poll = poller.poll

    def __repr__(self) -> str:
        return "<Channel %s%s %s>" % (self.address, " tls" if self._tls else "",
                                      "open" if self._inner.sock is not None else "closed")

    def quiet(self) -> bool:
        """True when nothing unexpected waits: no EOF, no unread byte.

        Never yields. Under TLS, records without data (the session tickets a
        TLS 1.3 server sends after the handshake) are read and dropped first.
        """
        if self._inner.sock is None:
            return False
        if self._poll(0):
            if not (self._tls and self._only_tls_records()):
                return False
        elif self._tls and self.sock.pending():
            return False
        return self._inner.idle()

    def _only_tls_records(self) -> bool:
        sock = self.sock
        if sock.pending():
            return False
        timeout = sock.gettimeout()
        sock.settimeout(0.0)  # gevent's socket raises instead of waiting: no yield
        try:
            for _ in range(_TLS_DRAIN_ROUNDS):
                try:
                    sock.recv(1)
                except ssl.SSLWantReadError:
                    if not self._poll(0):
                        return True
                    continue
                except OSError:
                    return False
                return False  # EOF, or a byte nobody asked for
            return False
        finally:
            sock.settimeout(timeout)

    def close(self) -> None:
        """Close the connection (``shutdown()`` then close; no TLS close_notify,
        so closing never waits on the peer)."""
        self._inner.close()

    def forget(self) -> None:
        """Release this process's descriptor only (after ``os.fork()``)."""
        self._inner.forget()


_default_tls: ssl.SSLContext | None = None


def _tls_context(tls: Any) -> ssl.SSLContext:
    global _default_tls
    if isinstance(tls, ssl.SSLContext):
        return tls
    if _default_tls is None:
        _default_tls = ssl.create_default_context()
    return _default_tls


def wrap_tls(sock: Any, context: ssl.SSLContext, *, server_hostname: str | None = None,
             server_side: bool = False) -> Any:
    """*sock* as a ``gevent.ssl.SSLSocket`` (handshake not done yet).

    Any ``ssl.SSLContext`` works: gevent's socket drives the context's own
    TLS object, so a stdlib context built by the caller stays cooperative.
    On failure *sock* is closed.
    """
    try:
        return green_ssl.SSLSocket(sock=sock, server_side=server_side,
                                   server_hostname=server_hostname,
                                   do_handshake_on_connect=False, _context=context)
    except BaseException:
        sock.close()  # a no-op once the TLS socket took the descriptor over
        raise


def _tls_handshake(sock: Any, host: str, address: str, tls: Any) -> Any:
    tls_sock = wrap_tls(sock, _tls_context(tls), server_hostname=host)
    try:
        tls_sock.do_handshake()
    except ssl.SSLCertVerificationError as error:
        tls_sock.close()
        raise AuthenticationFailed(address, "TLS", "the gateway's certificate was refused: %s"
                                   % (error.verify_message or error.reason)) from error
    except (ssl.SSLError, OSError) as error:
        tls_sock.close()
        raise TTransportException(TTransportException.NOT_OPEN,
                                  "TLS handshake with %s failed (%s); is the gateway serving "
                                  "TLS on this port?" % (address, error)) from error
    except BaseException:
        tls_sock.close()
        raise
    return tls_sock


def _connect(host: str, port: int, address: str, timeout: float | None) -> Any:
    """A connected gevent socket, trying every address *host* resolves to."""
    try:
        return _green.connect(host, port, timeout)
    except socket.gaierror as error:
        raise TTransportException(TTransportException.NOT_OPEN,
                                  "could not resolve %s: %s" % (address, error)) from error
    except OSError as error:
        raise TTransportException(TTransportException.NOT_OPEN,
                                  "could not connect to %s: %s" % (address, error)) from error


def _check_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("%s must be a number of seconds > 0 or None, not %r" % (name, value))
    return float(value)


def open_channel(host: str, port: int, *, transport: str = "buffered", tls: Any = False,
                 auth: Auth | None = None, http_path: str = "/", do_as: str | None = None,
                 timeout: float | None = None,
                 connect_timeout: float | None = None) -> Channel:
    """Connect to a gateway: TCP, then TLS, then SASL, as the options ask.

    :param transport: ``"buffered"``, ``"framed"`` or ``"http"``
    :param tls: ``False``, ``True`` (system CAs, host name checked) or an
        ``ssl.SSLContext``
    :param auth: an object from :mod:`green_happybase.auth`, or ``None``
    :param http_path: the path HTTP requests are posted to
    :param do_as: the user to act as (the ``doAs`` header; HTTP only)
    :param timeout: seconds each socket operation may take (``None``: no
        limit); it stays on the socket for the calls
    :param connect_timeout: seconds the whole connect (TCP, TLS handshake,
        SASL negotiation) may take, as one deadline; ``None``: no limit
    :raises AuthenticationFailed: credentials or certificate refused
    :raises thriftpy2.transport.TTransportException: the gateway could not
        be reached or does not speak the mode asked for, or the connect took
        longer than *connect_timeout*
    :raises ValueError: an invalid option or combination of options

    A connect that fails or is interrupted (``gevent.Timeout``,
    ``GreenletExit``) leaves no socket open.

    .. versionadded:: 0.2
    """
    check_combination(transport, "binary", tls, auth, do_as)
    if not isinstance(http_path, str) or not http_path.startswith("/") \
            or any(c.isspace() for c in http_path):
        raise ValueError("http_path must be a path starting with '/' and without spaces, not %r"
                         % (http_path,))
    timeout = _check_seconds("timeout", timeout)
    connect_timeout = _check_seconds("connect_timeout", connect_timeout)
    address = "%s:%s" % (host, port)
    timer = _green.Timeout(connect_timeout) if connect_timeout is not None else None
    sock = None
    if timer is not None:
        timer.start()
    try:
        sock = _connect(host, port, address, timeout)
        if tls is not False:
            sock = _tls_handshake(sock, host, address, tls)
        channel = _make_channel(sock, host, address, transport, tls is not False, auth,
                                http_path, do_as)
    except _green.Timeout as error:
        if sock is not None:
            sock.close()
        if error is not timer:
            raise
        raise TTransportException(TTransportException.TIMED_OUT,
                                  "connecting to %s took longer than connect_timeout=%s s"
                                  % (address, connect_timeout)) from None
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    finally:
        if timer is not None:
            timer.close()
    return channel


def _make_channel(sock: Any, host: str, address: str, transport: str, tls: bool,
                  auth: Auth | None, http_path: str, do_as: str | None) -> Channel:
    inner: _SocketTransport
    if transport == "http":
        inner = _HttpTransport(sock, address, host, http_path, auth, do_as)
        return Channel(sock, inner, TCyBufferedTransport(inner), address, tls)
    if auth is None:
        inner = _StreamTransport(sock, address)
        cython = TCyFramedTransport if transport == "framed" else TCyBufferedTransport
        return Channel(sock, inner, cython(inner), address, tls)
    mechanism: Any
    if isinstance(auth, Kerberos):
        mechanism = _GssapiClient(auth, host, address)
    else:
        assert isinstance(auth, Plain)
        mechanism = _PlainClient(auth)
    negotiate_sasl(sock, mechanism, address)
    if mechanism.layer == "auth":
        # Frames without a security layer are Thrift's framed transport.
        inner = _StreamTransport(sock, address)
        return Channel(sock, inner, TCyFramedTransport(inner), address, tls)
    inner = _SaslTransport(SaslStream(sock, mechanism), address)
    return Channel(sock, inner, TCyBufferedTransport(inner), address, tls)
