"""The variants under test, each behind the same small interface.

A client's :meth:`leaser` gives greenlet number *i* a callable that returns a
context manager yielding a connection. For the pools that callable is the
pool's own ``connection`` method, so the hot loop measures the pool and
nothing of ours.
"""

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Tuple

import gevent
import gevent.lock
import happybase
from gevent.hub import Waiter

from green_happybase import ConnectionPool, GreenConnection

__all__ = ["VARIANTS", "PATCHED", "make_client"]

#: Every variant, in report order.
VARIANTS = ("green", "happybase", "raw", "per_request", "raw_patched", "raw_fifo")
#: The variants whose process runs ``gevent.monkey.patch_all()`` first.
PATCHED = frozenset(["happybase", "per_request", "raw_patched"])

Address = Tuple[str, int]
Lease = Callable[[], Any]


class _PoolClient:
    """``green_happybase.ConnectionPool`` or ``happybase.ConnectionPool``."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def leaser(self, i: int) -> Lease:
        return self.pool.connection

    def close(self) -> None:
        close = getattr(self.pool, "close", None)  # happybase's pool has none
        if close is not None:
            close()


class _FifoLock:
    """A lock handed to its oldest waiter on release, never to a newcomer.

    gevent's own locks let the releasing greenlet take the lock straight
    back; this one serves waiters in order, as the pool does, so that
    ``raw_fifo`` shows what fairness alone costs. (The throughput workload
    interrupts nobody, so a waiter is never cancelled.)
    """

    def __init__(self) -> None:
        self._held = False
        self._waiters: Deque[Any] = deque()

    def acquire(self) -> None:
        if self._held:
            waiter: Any = Waiter()
            self._waiters.append(waiter)
            waiter.get()  # the releaser handed the lock over: still held
        else:
            self._held = True

    def release(self) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.hub.loop.run_callback(waiter.switch, None)
        else:
            self._held = False


class _Group:
    """One connection shared by a group of greenlets, one at a time."""

    def __init__(self, conn: Any, owned: bool, fair: bool = False) -> None:
        self.conn = conn
        self._lock: Any = _FifoLock() if fair else gevent.lock.Semaphore()
        # A GreenConnection serves only the greenlet recorded as holding it.
        self._owned = owned

    def lease(self) -> "_Group":
        return self

    def __enter__(self) -> Any:
        self._lock.acquire()
        if self._owned:
            self.conn._owner = gevent.getcurrent()
        return self.conn

    def __exit__(self, *exc_info: Any) -> None:
        if self._owned:
            self.conn._owner = None
        self._lock.release()


class _RawClient:
    """*size* persistent connections; greenlet *i* uses number ``i % size``."""

    def __init__(self, size: int, address: Address, options: Dict[str, Any],
                 green: bool, fair: bool = False) -> None:
        self._groups: List[_Group] = []
        for _ in range(size):
            if green:
                # No pool: the connection is opened and leased by hand.
                conn = GreenConnection(None, address[0], address[1], **options)
                conn.open()
            else:
                conn = happybase.Connection(address[0], address[1], **options)
            self._groups.append(_Group(conn, owned=green, fair=fair))

    def leaser(self, i: int) -> Lease:
        return self._groups[i % len(self._groups)].lease

    def close(self) -> None:
        for group in self._groups:
            group.conn.close()


class _PerRequest:
    """A new connection for every lease, at most *size* at once."""

    def __init__(self, size: int, address: Address, options: Dict[str, Any]) -> None:
        self._slots = gevent.lock.Semaphore(size)
        self._address = address
        self._options = options

    def leaser(self, i: int) -> Lease:
        return self.lease

    def lease(self) -> "_OneShot":
        return _OneShot(self)

    def close(self) -> None:
        pass


class _OneShot:
    """One request's connection, opened on entry and closed on exit."""

    __slots__ = ("_client", "_conn")

    def __init__(self, client: _PerRequest) -> None:
        self._client = client
        self._conn: Any = None

    def __enter__(self) -> happybase.Connection:
        client = self._client
        client._slots.acquire()
        try:
            self._conn = happybase.Connection(client._address[0], client._address[1],
                                              **client._options)
        except BaseException:
            client._slots.release()
            raise
        return self._conn

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._conn.close()
        finally:
            self._client._slots.release()


def make_client(variant: str, size: int, address: Address, options: Dict[str, Any]) -> Any:
    """Build the client of *variant* with *size* connections to *address*.

    *options* are ``happybase.Connection`` keyword arguments (transport,
    protocol, timeout).
    """
    if variant == "green":
        return _PoolClient(ConnectionPool(size, host=address[0], port=address[1], **options))
    if variant == "happybase":
        return _PoolClient(happybase.ConnectionPool(size, host=address[0], port=address[1],
                                                    **options))
    if variant == "raw":
        return _RawClient(size, address, options, green=True)
    if variant == "raw_patched":
        return _RawClient(size, address, options, green=False)
    if variant == "raw_fifo":
        return _RawClient(size, address, options, green=True, fair=True)
    if variant == "per_request":
        return _PerRequest(size, address, options)
    raise ValueError("unknown variant %r; choose from %s" % (variant, ", ".join(VARIANTS)))
