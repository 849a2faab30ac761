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
]


class PoolError(Exception):
    """Base class of every error raised by green_happybase."""


class PoolExhausted(PoolError, NoConnectionsAvailable):
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


class PoolNotConfigured(PoolError, LookupError):
    """``get_pool()`` found no pool under that name, and no URL to build one."""


for _cls in (PoolError, PoolExhausted, PoolClosed, ConnectionFailed, LeaseError, ReplyMismatch,
             PoolNotConfigured):
    _cls.__module__ = "green_happybase"
del _cls
