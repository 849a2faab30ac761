"""Exceptions raised by green_happybase.

Every exception the pool raises derives from :class:`PoolError`.
:class:`PoolExhausted` also derives from happybase's own
``NoConnectionsAvailable``, so code written for ``happybase.ConnectionPool``
keeps catching it unchanged.
"""

from happybase import NoConnectionsAvailable

__all__ = [
    "PoolError",
    "PoolExhausted",
    "PoolClosed",
    "ConnectionFailed",
    "LeaseError",
    "ReplyMismatch",
    "PoolNotConfigured",
    "AuthenticationFailed",
    "ConnectDeadline",
]


class PoolError(Exception):
    """Base class of every error raised by green_happybase."""


class PoolExhausted(PoolError, NoConnectionsAvailable):  # type: ignore[misc]  # untyped base
    """No connection became free in time, or too many greenlets wait already."""


class PoolClosed(PoolError):
    """The pool was closed; it hands out no more connections."""


class ConnectionFailed(PoolError):
    """A new connection could not be opened.

    The message names the ``host:port`` that failed; the underlying error is
    chained as ``__cause__``.
    """


class LeaseError(PoolError):
    """A connection was used by a greenlet that does not hold its lease.

    Typical causes: a ``table.scan()`` generator consumed after its
    ``with pool.connection()`` block ended, or a connection object handed to
    another greenlet.
    """


class ReplyMismatch(PoolError):
    """A Thrift reply did not answer the call just made.

    The reply's method name or sequence id differs from the request's: the
    connection was out of step with the server. It is discarded.
    """


class ConnectDeadline(PoolExhausted, ConnectionFailed):
    """The caller's deadline passed while a new connection was being opened.

    It is a :class:`PoolExhausted` (no connection in time) and a
    :class:`ConnectionFailed` (the message names the server); the server is
    not put into back-off for it.

    .. versionadded:: 0.2
    """


class _Forked(Exception):
    """The process forked while this greenlet was mid-move: start it again."""


class PoolNotConfigured(PoolError, LookupError):
    """``get_pool()`` found no pool under that name, and no URL to build one."""


class AuthenticationFailed(ConnectionFailed):
    """The gateway refused our credentials, or we refused its certificate.

    A misconfiguration, not an outage: the host is not backed off as if it
    were down. :attr:`host` is the ``host:port``, :attr:`mechanism` the
    method that failed (``"GSSAPI"``, ``"SPNEGO"``, ``"PLAIN"``, ``"Basic"``,
    ``"Bearer"``, ``"Headers"``, ``"TLS"``...) and :attr:`reason` what the
    server or the security library said (a SASL status and message, an HTTP
    401, a GSSAPI error with its minor status, a certificate error).

    .. versionadded:: 0.2
    """

    def __init__(self, host: str, mechanism: str, reason: str) -> None:
        super().__init__(host, mechanism, reason)
        self.host = host
        self.mechanism = mechanism
        self.reason = reason

    def __str__(self) -> str:
        return "%s authentication with %s failed: %s" % (self.mechanism, self.host, self.reason)


for _cls in (PoolError, PoolExhausted, PoolClosed, ConnectionFailed, LeaseError, ReplyMismatch,
             PoolNotConfigured, AuthenticationFailed, ConnectDeadline):
    _cls.__module__ = "green_happybase"
del _cls
