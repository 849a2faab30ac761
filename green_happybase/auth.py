"""How a connection proves who it is to a secure HBase Thrift gateway.

Pass one of these objects as ``auth=``::

    ConnectionPool(8, host="gw.example.com", auth=Kerberos(qop="auth-conf"))
    ConnectionPool(8, host="gw.example.com", transport="http", tls=True,
                   auth=Bearer(fetch_token), do_as="alice")

Over TCP (``transport="buffered"``) authentication is SASL: :class:`Kerberos`
(mechanism GSSAPI) or :class:`Plain`. Over HTTP (``transport="http"``) it is
an ``Authorization`` header on every request: :class:`Kerberos` (SPNEGO),
:class:`Basic`, :class:`Bearer` or :class:`Headers`.

The objects hold credentials, so their ``repr()`` never shows a password, a
token or a header value, and neither does any error they raise.

.. versionadded:: 0.2
"""
from __future__ import annotations

import base64
import importlib.util
import re
import ssl
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "Auth",
    "Basic",
    "Bearer",
    "Headers",
    "Kerberos",
    "Plain",
    "check_combination",
]

#: ``hbase.thrift.security.qop`` values, in HBase's two spellings, by the
#: SASL name used on the wire.
_QOPS = {
    "auth": "auth", "authentication": "auth",
    "auth-int": "auth-int", "integrity": "auth-int",
    "auth-conf": "auth-conf", "privacy": "auth-conf",
}

TRANSPORTS = ("buffered", "framed", "http")
PROTOCOLS = ("binary", "compact")

# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the transport writes itself: a user value would corrupt the framing.
_RESERVED_HEADERS = frozenset(
    ["content-length", "content-type", "transfer-encoding", "connection", "host",
     "accept", "expect", "doas"])


def qop_name(qop: Any) -> str:
    """The SASL name (``auth``, ``auth-int``, ``auth-conf``) of a qop in either
    of HBase's spellings."""
    if not isinstance(qop, str) or qop.lower() not in _QOPS:
        raise ValueError("qop must be one of 'auth', 'auth-int', 'auth-conf' (or "
                         "'authentication', 'integrity', 'privacy'), not %r" % (qop,))
    return _QOPS[qop.lower()]


def check_text(name: str, value: Any, *, secret: bool = False, allow_empty: bool = False) -> str:
    """A ``str`` argument; a secret one is never quoted in the error."""
    if not isinstance(value, str):
        raise TypeError("%s must be a str, not %s" % (
            name, type(value).__name__ if secret else repr(value)))
    if not value and not allow_empty:
        raise ValueError("%s must not be empty" % name)
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError("%s must not contain a line break or NUL%s" % (
            name, "" if secret else ", not %r" % (value,)))
    return value


class Auth:
    """Base class of the ``auth=`` objects.

    :attr:`sasl` says whether it authenticates a TCP connection by SASL,
    :attr:`http` whether it authenticates HTTP requests.

    .. versionadded:: 0.2
    """

    #: SASL mechanism over TCP, or ``None`` when the object is HTTP only.
    sasl_mechanism: str | None = None
    #: Authorization scheme over HTTP, or ``None`` when the object is SASL only.
    http_scheme: str | None = None

    @property
    def sasl(self) -> bool:
        return self.sasl_mechanism is not None

    @property
    def http(self) -> bool:
        return self.http_scheme is not None

    def headers(self) -> list[tuple[str, str]]:
        """The headers for one HTTP request (called per request)."""
        raise NotImplementedError


class Kerberos(Auth):
    """Kerberos: SASL GSSAPI over TCP, SPNEGO (``Negotiate``) over HTTP.

    Credentials come from the ticket cache (``kinit``, ``KRB5CCNAME``) or,
    when the cache has none, from the client keytab named by
    ``KRB5_CLIENT_KTNAME``: MIT Kerberos then renews tickets by itself, so a
    long-running worker needs no ``kinit`` cron job.

    :param service: the gateway's service name: the first part of its
        principal ``service/host@REALM``. ``None`` (the default) means
        ``"hbase"`` over TCP and ``"HTTP"`` over HTTP, as HBase's gateway
        expects (``hbase.thrift.kerberos.principal`` and
        ``hbase.thrift.spnego.principal``).
    :param principal: the client principal to use (``"alice@EXAMPLE.COM"``);
        ``None`` takes the ticket cache's default.
    :param qop: the least protection accepted over SASL, as the gateway's
        ``hbase.thrift.security.qop``: ``"auth"`` (authentication only),
        ``"auth-int"`` (integrity) or ``"auth-conf"`` (confidentiality);
        HBase's names ``"authentication"``, ``"integrity"`` and
        ``"privacy"`` are accepted too. A gateway that offers only more
        protection than asked is accepted; one that offers less is refused.
        Over HTTP the protection comes from TLS instead.
    :param hostname: the host part of the gateway's principal; ``None`` uses
        the host connected to.

    .. versionadded:: 0.2
    """

    sasl_mechanism = "GSSAPI"
    http_scheme = "Negotiate"

    def __init__(self, service: str | None = None, principal: str | None = None,
                 qop: str = "auth", hostname: str | None = None) -> None:
        if importlib.util.find_spec("gssapi") is None:
            raise ImportError("Kerberos needs python-gssapi: pip install "
                              "'green_happybase[kerberos]' (it builds against the MIT Kerberos "
                              "headers, libkrb5-dev)")
        if service is not None:
            check_text("service", service)
            if "@" in service or "/" in service:
                raise ValueError("service must be a bare service name such as 'hbase', "
                                 "not %r" % (service,))
        if principal is not None:
            check_text("principal", principal)
        if hostname is not None:
            check_text("hostname", hostname)
        self.service = service
        self.principal = principal
        self.qop = qop_name(qop)
        self.hostname = hostname

    def __repr__(self) -> str:
        return "Kerberos(service=%r, principal=%r, qop=%r, hostname=%r)" % (
            self.service, self.principal, self.qop, self.hostname)

    def target(self, host: str, http: bool) -> str:
        """The gateway's GSSAPI host-based service name, ``service@host``."""
        service = self.service or ("HTTP" if http else "hbase")
        return "%s@%s" % (service, self.hostname or host)


class _Password(Auth):
    """A user name and a password, shared by :class:`Plain` and :class:`Basic`."""

    def __init__(self, username: str, password: str) -> None:
        check_text("username", username)
        check_text("password", password, secret=True, allow_empty=True)
        self.username = username
        self._password = password

    def __repr__(self) -> str:
        return "%s(username=%r, password=<hidden>)" % (type(self).__name__, self.username)


class Plain(_Password):
    """SASL PLAIN over TCP: a user name and a password, sent in clear.

    Use it only inside TLS (``tls=True``) or on a trusted network.

    .. versionadded:: 0.2
    """

    sasl_mechanism = "PLAIN"

    def initial_response(self) -> bytes:
        """RFC 4616's message: no authorisation id, user, password."""
        return b"\0" + self.username.encode("utf-8") + b"\0" + self._password.encode("utf-8")


class Basic(_Password):
    """HTTP Basic authentication (``Authorization: Basic ...``), HTTP only.

    .. versionadded:: 0.2
    """

    http_scheme = "Basic"

    def __init__(self, username: str, password: str) -> None:
        super().__init__(username, password)
        if ":" in username:
            raise ValueError("username must not contain ':' in Basic auth, not %r" % (username,))

    def headers(self) -> list[tuple[str, str]]:
        pair = ("%s:%s" % (self.username, self._password)).encode("utf-8")
        return [("Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))]


class Bearer(Auth):
    """A bearer token (``Authorization: Bearer ...``), HTTP only.

    :param token: the token, or a callable returning the current one. The
        callable runs before every request, in the calling greenlet, so it
        can rotate tokens (and cache them as it sees fit).

    .. versionadded:: 0.2
    """

    http_scheme = "Bearer"

    def __init__(self, token: str | Callable[[], str]) -> None:
        if not callable(token):
            check_text("token", token, secret=True)
        self._token = token

    def __repr__(self) -> str:
        return "Bearer(token=%s)" % ("<callable>" if callable(self._token) else "<hidden>")

    def headers(self) -> list[tuple[str, str]]:
        token = self._token() if callable(self._token) else self._token
        return [("Authorization", "Bearer " + check_text("the Bearer token callable's result",
                                                          token, secret=True))]


class Headers(Auth):
    """Custom request headers (an API key, a tenant id...), HTTP only.

    :param headers: a mapping of header names to values, or a callable
        returning one before every request. Names the transport writes
        itself (``Content-Length``, ``Host``, ``doAs``...) are refused.

    .. versionadded:: 0.2
    """

    http_scheme = "Headers"

    def __init__(self, headers: Mapping[str, str] | Callable[[], Mapping[str, str]]) -> None:
        if callable(headers):
            self._headers: Any = headers
        else:
            self._headers = self._check(headers, "headers")

    def __repr__(self) -> str:
        if callable(self._headers):
            return "Headers(<callable>)"
        return "Headers(%s)" % ", ".join("%s=<hidden>" % name for name in self._headers)

    @staticmethod
    def _check(headers: Any, what: str) -> dict[str, str]:
        if not isinstance(headers, Mapping) or not headers:
            raise TypeError("%s must be a non-empty mapping of header names to values, not %s"
                            % (what, type(headers).__name__))
        checked = {}
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError("%s: %r is not a valid header name" % (what, name))
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError("%s: header %r is written by the transport itself" % (what, name))
            checked[name] = check_text("%s[%r]" % (what, name), value, secret=True)
        return checked

    def headers(self) -> list[tuple[str, str]]:
        if callable(self._headers):
            return list(self._check(self._headers(), "the Headers callable's result").items())
        return list(self._headers.items())


def check_combination(transport: str, protocol: str, tls: Any, auth: Auth | None,
                      do_as: str | None) -> None:
    """Refuse the options a gateway cannot serve, naming them.

    :raises ValueError: a combination HBase's gateway refuses (SASL with
        framed transport, ``compact`` with ``http``, an HTTP-only ``auth`` or
        ``do_as`` over TCP, :class:`Plain` over HTTP, protection asked of
        Kerberos over plain HTTP), or an unknown transport or protocol
    :raises TypeError: *tls*, *auth* or *do_as* of the wrong type

    .. versionadded:: 0.2
    """
    if transport not in TRANSPORTS:
        raise ValueError("transport must be one of %s, not %r" % (", ".join(TRANSPORTS), transport))
    if protocol not in PROTOCOLS:
        raise ValueError("protocol must be one of %s, not %r" % (", ".join(PROTOCOLS), protocol))
    if not isinstance(tls, (bool, ssl.SSLContext)):
        raise TypeError("tls must be True, False or an ssl.SSLContext, not %r" % (tls,))
    if auth is not None and not isinstance(auth, Auth):
        raise TypeError("auth must be None or an object from green_happybase.auth "
                        "(Kerberos, Plain, Basic, Bearer, Headers), not %r" % (auth,))
    if do_as is not None:
        check_text("do_as", do_as)
    http = transport == "http"
    if http and protocol != "binary":
        raise ValueError("protocol=%r with transport='http': HBase's HTTP gateway speaks "
                         "the binary protocol only" % (protocol,))
    if do_as is not None and not http:
        raise ValueError("do_as=%r with transport=%r: the doAs header exists over HTTP only"
                         % (do_as, transport))
    if auth is None:
        return
    if http and not auth.http:
        raise ValueError("auth=%r with transport='http': %s is a SASL mechanism, over TCP "
                         "only" % (auth, auth.sasl_mechanism))
    if not http and not auth.sasl:
        raise ValueError("auth=%r with transport=%r: %s authenticates HTTP requests; use "
                         "transport='http'" % (auth, transport, auth.http_scheme))
    if transport == "framed":
        raise ValueError("auth=%r with transport='framed': HBase's gateway runs SASL over "
                         "buffered transport only; use transport='buffered'" % (auth,))
    if http and isinstance(auth, Kerberos) and auth.qop != "auth" and tls is False:
        raise ValueError("auth=%r with transport='http' and tls=False: over HTTP the qop "
                         "protection comes from TLS; set tls" % (auth,))
