"""The secure and HTTP modes of the embedded server, as building blocks.

Each piece takes an accepted gevent socket:

* :func:`tls_accept` makes it a TLS socket (handshake done);
* :func:`sasl_accept` runs Thrift's SASL negotiation (PLAIN or GSSAPI, as
  the client chooses among those :class:`ServerAuth` enables) and returns a
  :class:`~green_happybase.transports.SaslStream`: a socket-like object to
  read Thrift messages from (``recv``, unwrapped) and write replies to
  (``sendall``, one frame per call, wrapped under auth-int/auth-conf);
* :class:`HttpGateway` serves Thrift over HTTP POST on it until the client
  closes, calling ``answer(request) -> reply`` with one complete binary
  Thrift message per request.

They behave as HBase's gateway does where a client can tell: SASL refused
with framed transport, ``401`` with ``WWW-Authenticate``, the ``doAs``
header, one GSSAPI security layer offered (``hbase.thrift.security.qop``).

Counters go to a ``stats`` dict (see :func:`new_stats`): ``connections``
(HTTP connections served), ``requests`` (HTTP requests read),
``auth_failures``, ``users`` (requests or SASL connections by effective
user, ``doAs`` included) and ``last_user``.

.. versionadded:: 0.2
"""
from __future__ import annotations

import base64
import binascii
import hmac
import http
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from thriftpy2.transport import TTransportException

from ..auth import check_text, qop_name
from ..errors import AuthenticationFailed
from ..transports import (
    LAYER_BITS,
    MAX_WRAPPED,
    SASL_BAD,
    SASL_COMPLETE,
    SASL_ERROR,
    SASL_OK,
    SASL_START,
    HttpError,
    HttpReader,
    SaslMechanism,
    SaslStream,
    decode_layers,
    encode_layers,
    offload,
    recv_sasl,
    send_sasl,
    wrap_tls,
)

__all__ = [
    "HttpGateway",
    "ServerAuth",
    "check_server_mode",
    "new_stats",
    "parse_users",
    "sasl_accept",
    "tls_accept",
]

log = logging.getLogger("green_happybase.testing.gateways")

#: Largest HTTP request body served, as the TCP server's message limit.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
_MAX_ROUNDS = 16


def new_stats() -> dict[str, Any]:
    """An empty stats dict for :func:`sasl_accept` and :class:`HttpGateway`.

    .. versionadded:: 0.2
    """
    return {"connections": 0, "requests": 0, "auth_failures": 0, "users": {}, "last_user": None}


def _record_user(stats: dict[str, Any] | None, user: str) -> None:
    if stats is not None:
        stats["users"][user] = stats["users"].get(user, 0) + 1
        stats["last_user"] = user


def _count(stats: dict[str, Any] | None, key: str) -> None:
    if stats is not None:
        stats[key] += 1


def _short_name(principal: Any) -> str:
    # HBase's effective user is the principal's first component.
    return str(principal).split("@", 1)[0].split("/", 1)[0]


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def parse_users(entries: Iterable[str]) -> dict[str, str]:
    """``["alice:secret", ...]`` (the CLI's ``--users``) as a user table.

    Errors name the entry's position and user, never its password.

    .. versionadded:: 0.2
    """
    users = {}
    for number, entry in enumerate(entries, 1):
        user, colon, password = entry.partition(":")
        if not colon or not user:
            raise ValueError("users entry #%d must be 'user:password' (user %r)"
                             % (number, user if colon else "?"))
        users[user] = password
    return users


class ServerAuth:
    """What the embedded server accepts as proof of identity.

    :param users: user name -> password, for SASL PLAIN and HTTP Basic
    :param tokens: token -> user name, for HTTP Bearer (and *token_header*)
    :param token_header: a custom header that may carry one of the *tokens*
        instead of ``Authorization: Bearer``
    :param keytab: the service keytab, for SASL GSSAPI and SPNEGO
    :param principal: the service principal in it (``"hbase/localhost"``,
        ``"HTTP/localhost"``); ``None`` accepts any key in the keytab
    :param qop: the one SASL GSSAPI security layer offered, as HBase's
        ``hbase.thrift.security.qop``

    .. versionadded:: 0.2
    """

    def __init__(self, *, users: Mapping[str, str] | None = None,
                 tokens: Mapping[str, str] | None = None, token_header: str | None = None,
                 keytab: str | None = None, principal: str | None = None,
                 qop: str = "auth") -> None:
        if not (users or tokens or keytab):
            raise ValueError("ServerAuth needs users, tokens or a keytab")
        self.users = {check_text("users key", user): check_text("password of %r" % user, pw,
                                                                secret=True, allow_empty=True)
                      for user, pw in (users or {}).items()}
        self.tokens = {check_text("tokens key", token, secret=True):
                       check_text("tokens value", user) for token, user in (tokens or {}).items()}
        if token_header is not None:
            check_text("token_header", token_header)
            if not self.tokens:
                raise ValueError("token_header=%r needs tokens" % (token_header,))
        if principal is not None:
            check_text("principal", principal)
        if keytab is not None:
            check_text("keytab", keytab)
        elif principal is not None:
            raise ValueError("principal=%r needs a keytab" % (principal,))
        self.token_header = token_header
        self.keytab = keytab
        self.principal = principal
        self.qop = qop_name(qop)
        self._credentials: Any = None

    def __repr__(self) -> str:
        return ("ServerAuth(users=%r, tokens=<%d hidden>, token_header=%r, keytab=%r, "
                "principal=%r, qop=%r)" % (sorted(self.users), len(self.tokens),
                                           self.token_header, self.keytab, self.principal,
                                           self.qop))

    @property
    def sasl_mechanisms(self) -> list[str]:
        """The SASL mechanisms offered over TCP."""
        return [name for name, on in (("GSSAPI", self.keytab), ("PLAIN", self.users)) if on]

    def password_ok(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        return expected is not None and _same(expected, password)

    def token_user(self, token: str) -> str | None:
        for known, user in self.tokens.items():
            if _same(known, token):
                return user
        return None

    def acceptor(self) -> Any:
        """A new accepting GSSAPI context on the keytab (call it in a pool
        thread: reading the keytab is blocking C code)."""
        import gssapi

        if self._credentials is None:
            name = None if self.principal is None else gssapi.Name(
                self.principal, gssapi.NameType.kerberos_principal)
            self._credentials = gssapi.Credentials(name=name, usage="accept",
                                                   store={"keytab": str(self.keytab)})
        return gssapi.SecurityContext(creds=self._credentials, usage="accept")


def check_server_mode(transport: str, protocol: str, auth: ServerAuth | None) -> None:
    """Refuse what HBase's gateway refuses to start with, naming it.

    :raises ValueError: SASL (``auth`` over TCP) with framed transport, the
        compact protocol over HTTP, or tokens (HTTP only) as the only
        credentials over TCP

    .. versionadded:: 0.2
    """
    if transport not in ("buffered", "framed", "http"):
        raise ValueError("transport must be one of buffered, framed, http, not %r" % (transport,))
    if transport == "http" and protocol != "binary":
        raise ValueError("protocol=%r with transport='http': HBase's HTTP gateway speaks the "
                         "binary protocol only" % (protocol,))
    if auth is None:
        return
    if not isinstance(auth, ServerAuth):
        raise TypeError("auth must be a ServerAuth or None, not %r" % (auth,))
    if transport == "framed":
        raise ValueError("auth with transport='framed': HBase refuses to run SASL over framed "
                         "transport; use transport='buffered'")
    if transport == "buffered" and not auth.sasl_mechanisms:
        raise ValueError("%r with transport='buffered': tokens authenticate HTTP requests only; "
                         "SASL needs users (PLAIN) or a keytab (GSSAPI)" % (auth,))


def tls_accept(sock: Any, context: ssl.SSLContext) -> Any:
    """Run the server side of a TLS handshake on an accepted socket.

    :returns: the ``gevent.ssl.SSLSocket``; on failure (or interruption)
        the socket is closed and the error raised

    .. versionadded:: 0.2
    """
    tls = wrap_tls(sock, context, server_side=True)
    try:
        tls.do_handshake()
    except BaseException:
        tls.close()
        raise
    return tls


def _peer(sock: Any) -> str:
    try:
        return "%s:%s" % sock.getpeername()[:2]
    except OSError:
        return "unknown peer"


class _Refused(Exception):
    """The client's credentials or choices are refused (the message is sent
    to the client)."""


class _PlainServer(SaslMechanism):
    name = "PLAIN"

    def __init__(self, auth: ServerAuth) -> None:
        self._auth = auth
        self.user = ""

    def step(self, response: bytes) -> bytes:
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise _Refused("malformed PLAIN message")
        authzid, user, password = (part.decode("utf-8", "replace") for part in parts)
        if authzid and authzid != user:
            raise _Refused("user %r may not act as %r" % (user, authzid))
        if not self._auth.password_ok(user, password):
            raise _Refused("bad user name or password for %r" % (user,))
        self.user = user
        self.complete = True
        return b""


class _GssapiServer(SaslMechanism):
    name = "GSSAPI"

    def __init__(self, auth: ServerAuth) -> None:
        self._auth = auth
        self._offered = False
        self.user = ""

    def step(self, response: bytes) -> bytes:
        from gssapi.raw.misc import GSSError

        try:
            return self._step(response)
        except GSSError as error:
            raise _Refused("GSSAPI: %s" % (error,)) from error

    def _step(self, response: bytes) -> bytes:
        if self.context is None:
            self.context = offload(self._auth.acceptor)
        if not self.context.complete:
            token: bytes | None = offload(self.context.step, response)
            return token or b""
        offer = LAYER_BITS[self._auth.qop]
        if not self._offered:
            self._offered = True
            offered: bytes = offload(self.context.wrap, encode_layers(offer, MAX_WRAPPED),
                                     False).message
            return offered
        chosen, _ = decode_layers(offload(self.context.unwrap, response).message)
        if chosen != offer:
            raise _Refused("security layer %d chosen; this gateway offers qop %s only"
                           % (chosen, self._auth.qop))
        self.layer = self._auth.qop
        self.user = _short_name(self.context.initiator_name)
        self.complete = True
        return b""


def sasl_accept(sock: Any, auth: ServerAuth, *, stats: dict[str, Any] | None = None) -> SaslStream:
    """Run Thrift's SASL negotiation as the server on an accepted socket.

    :returns: the stream to read Thrift messages from and write replies to;
        its ``mechanism.user`` is the authenticated user
    :raises AuthenticationFailed: the client was refused (it was told why,
        with a SASL BAD or ERROR message, before this is raised)

    .. versionadded:: 0.2
    """
    peer = _peer(sock)
    try:
        status, payload = recv_sasl(sock)
    except TTransportException as error:
        if error.type == TTransportException.END_OF_FILE:
            raise
        # Most likely a client without auth= sending Thrift straight away.
        _refuse(sock, peer, "SASL", SASL_ERROR,
                "expected SASL negotiation (%s); configure the client's auth="
                % (error.message,), stats)
    if status != SASL_START:
        _refuse(sock, peer, "SASL", SASL_ERROR,
                "expected a SASL START message, got status %d" % status, stats)
    name = payload.decode("ascii", "replace")
    mechanism: Any
    if name == "PLAIN" and auth.users:
        mechanism = _PlainServer(auth)
    elif name == "GSSAPI" and auth.keytab:
        mechanism = _GssapiServer(auth)
    else:
        _refuse(sock, peer, name, SASL_BAD, "unsupported SASL mechanism %r; this gateway offers "
                "%s" % (name, ", ".join(auth.sasl_mechanisms)), stats)
    for _ in range(_MAX_ROUNDS):
        status, payload = recv_sasl(sock)
        if status not in (SASL_OK, SASL_COMPLETE):
            _refuse(sock, peer, name, SASL_ERROR, "unexpected SASL status %d" % status, stats)
        try:
            challenge = mechanism.step(payload)
        except _Refused as error:
            _refuse(sock, peer, name, SASL_BAD, str(error), stats)
        if mechanism.complete:
            send_sasl(sock, SASL_COMPLETE, challenge)
            _record_user(stats, mechanism.user)
            log.debug("%s: SASL %s as %r, qop %s", peer, name, mechanism.user, mechanism.layer)
            return SaslStream(sock, mechanism)
        send_sasl(sock, SASL_OK, challenge)
    _refuse(sock, peer, name, SASL_ERROR, "no agreement after %d rounds" % _MAX_ROUNDS, stats)


def _refuse(sock: Any, peer: str, mechanism: str, status: int, reason: str,
            stats: dict[str, Any] | None) -> NoReturn:
    _count(stats, "auth_failures")
    try:
        send_sasl(sock, status, reason.encode("utf-8"))
    except OSError:
        pass  # the client left already; the reason is still raised here
    raise AuthenticationFailed(peer, mechanism, reason)


class HttpGateway:
    """Thrift over HTTP, as HBase's gateway in HTTP mode serves it.

    :param answer: ``answer(request) -> reply``: one complete binary Thrift
        message in, its encoded reply out
    :param path: the path POSTs must go to (others get ``404``)
    :param auth: when given, every request must carry credentials it
        accepts (``Authorization: Basic``, ``Bearer`` or ``Negotiate``, or
        its *token_header*), else ``401`` with ``WWW-Authenticate``
    :param stats: a dict from :func:`new_stats` to count into
    :param max_body: largest request body served (``413`` above)
    :param after_reply: called after each Thrift reply is sent; when it
        returns ``True`` the connection is closed at once, unannounced (the
        embedded server's ``close_after()``)

    Methods other than POST get ``405``; a request that is not Thrift gets
    ``400`` and the connection is closed. Keep-alive is HTTP/1.1's default.

    .. versionadded:: 0.2
    """

    def __init__(self, answer: Callable[[bytes], bytes], *, path: str = "/",
                 auth: ServerAuth | None = None, stats: dict[str, Any] | None = None,
                 max_body: int = MAX_REQUEST_BYTES,
                 after_reply: Callable[[], bool] | None = None) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("path must start with '/', not %r" % (path,))
        if auth is not None and not isinstance(auth, ServerAuth):
            raise TypeError("auth must be a ServerAuth or None, not %r" % (auth,))
        self._answer = answer
        self.path = path
        self.auth = auth
        self.stats = new_stats() if stats is None else stats
        self.max_body = max_body
        self._after_reply = after_reply

    def serve(self, sock: Any) -> None:
        """Serve requests on *sock* until the client closes or a request is
        malformed; the caller closes *sock*."""
        self.stats["connections"] += 1
        reader = HttpReader(sock)
        while True:
            try:
                head = reader.head()
                if head is None or not self._request(sock, reader, *head):
                    return
            except HttpError as error:
                log.info("%s: %s", _peer(sock), error)
                self._send(sock, error.status, str(error.message).encode("utf-8"), close=True)
                return

    def _request(self, sock: Any, reader: HttpReader, start: str, headers: dict[str, str]) -> bool:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            raise HttpError(400, "malformed HTTP request line")
        method, target, version = parts
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        if headers.get("expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = reader.body(headers, self.max_body, to_eof=False)
        self.stats["requests"] += 1
        if method != "POST":
            self._send(sock, 405, b"only POST is served", [("Allow", "POST")], close=not keep)
        elif target.split("?", 1)[0] != self.path:
            self._send(sock, 404, b"no Thrift service at this path", close=not keep)
        else:
            user = self._authenticate(headers)
            if user is None:
                self.stats["auth_failures"] += 1
                self._send(sock, 401, b"Authentication Error", self._challenges(), close=not keep)
                return keep
            effective = headers.get("doas") or user
            if effective:
                _record_user(self.stats, effective)
            try:
                reply = self._answer(body)
            except Exception as error:
                raise HttpError(400, "not a Thrift request (%s)" % (error,)) from error
            self._send(sock, 200, reply, content_type="application/x-thrift", close=not keep)
            if self._after_reply is not None and self._after_reply():
                return False
        return keep

    def _authenticate(self, headers: dict[str, str]) -> str | None:
        """The authenticated user (``""`` without auth), or ``None``."""
        auth = self.auth
        if auth is None:
            return ""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic" and auth.users:
            try:
                pair = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, _, password = pair.partition(":")
            return user if auth.password_ok(user, password) else None
        if scheme == "bearer" and auth.tokens:
            return auth.token_user(value)
        if scheme == "negotiate" and auth.keytab:
            return self._spnego_user(value)
        if auth.token_header is not None:
            token = headers.get(auth.token_header.lower())
            if token:
                return auth.token_user(token)
        return None

    def _spnego_user(self, value: str) -> str | None:
        try:
            token = base64.b64decode(value, validate=True)
        except binascii.Error:
            return None
        user, refusal = offload(_accept_spnego, self.auth, token)
        if refusal:
            log.info("SPNEGO token refused: %s", refusal)
        return user  # type: ignore[no-any-return]

    def _challenges(self) -> list[tuple[str, str]]:
        auth = self.auth
        assert auth is not None
        schemes = [("Negotiate", auth.keytab), ('Basic realm="hbase"', auth.users),
                   ("Bearer", auth.tokens)]
        return [("WWW-Authenticate", scheme) for scheme, on in schemes if on]

    @staticmethod
    def _send(sock: Any, status: int, body: bytes, headers: Sequence[tuple[str, str]] = (),
              *, content_type: str = "text/plain; charset=utf-8", close: bool = False) -> None:
        lines = ["HTTP/1.1 %d %s" % (status, http.HTTPStatus(status).phrase),
                 "Content-Type: %s" % content_type, "Content-Length: %d" % len(body)]
        lines.extend("%s: %s" % pair for pair in headers)
        if close:
            lines.append("Connection: close")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _accept_spnego(auth: ServerAuth, token: bytes) -> tuple[str | None, str]:
    """The user a SPNEGO token proves, or ``None`` and why (in a pool thread)."""
    from gssapi.raw.misc import GSSError

    try:
        context = auth.acceptor()
        context.step(token)
    except GSSError as error:
        return None, str(error)
    if not context.complete:
        return None, "the token needs more than one round"
    return _short_name(context.initiator_name), ""
