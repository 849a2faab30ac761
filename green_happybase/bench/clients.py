"""The variants under test, each behind the same small interface.

A client's :meth:`leaser` gives greenlet number *i* a callable that returns a
context manager yielding a connection. For the pools that callable is the
pool's own ``connection`` method, so the hot loop measures the pool and
nothing of ours. Where a client's ``lease_timeout`` is true, the callable
also takes a timeout in seconds, and raises ``happybase.NoConnectionsAvailable``
(or a subclass) when it expires.
"""

import contextlib
import functools
import importlib.util
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import gevent
import gevent.lock
import happybase
from gevent.hub import Waiter

from green_happybase import ConnectionPool, GreenConnection

from .security import needs_green, pool_kwargs

__all__ = ["OPEN_VARIANTS", "PATCHED", "SETUPS", "VARIANTS", "make_client", "setup_unavailable",
           "unavailable"]

#: The variants of the closed-loop workloads, in report order.
VARIANTS = ("green", "happybase", "raw", "per_request", "raw_patched", "raw_fifo")
#: The variants of the open-loop workload, in report order: the pool with
#: each waiter queue policy, and the pools users run today.
OPEN_VARIANTS = ("green_fifo", "green_adaptive", "happybase", "semaphore", "raw_fifo")
#: The variants whose process runs ``gevent.monkey.patch_all()`` first.
PATCHED = frozenset(["happybase", "per_request", "raw_patched", "semaphore"])
#: The waiter queue policy of each green variant that names one.
_POLICIES = {"green_fifo": "fifo", "green_adaptive": "adaptive"}
#: The pool setups of the costs table, in report order, with what each is.
SETUPS = {
    "plain": "the pool as it comes (keepalive 30 s, scanner cleanup on)",
    "no_keepalive_cleanup": "keepalive=None, scanner_cleanup=False",
    "otel_api": "OpenTelemetry, API only: instrument(pool), no SDK configured",
    "otel_sdk": "OpenTelemetry SDK: in-memory metric reader, spans to an in-memory exporter",
}
#: Pool options of the setups that have some.
_SETUP_OPTIONS: dict[str, dict[str, Any]] = {
    "no_keepalive_cleanup": {"keepalive": None, "scanner_cleanup": False}}
#: The variants built on ``happybase.Connection``, which reaches plain TCP
#: gateways only: the patched ones.
_HAPPYBASE_BASED = PATCHED

Address = tuple[str, int]
Lease = Callable[..., Any]


@functools.cache
def _has_queue_policies() -> bool:
    """Whether this version of the pool takes a ``queue`` policy."""
    try:
        # No socket: the options are checked before anything connects.
        ConnectionPool(1, queue="fifo", autoconnect=False).close()
    except TypeError:
        return False
    return True


def unavailable(variant: str, options: Mapping[str, Any] | None = None,
                security: Mapping[str, Any] | None = None) -> str | None:
    """Why *variant* cannot run, against a gateway served with *options*
    and *security*, or with this version of the pool; ``None`` if it can."""
    if variant == "green_adaptive" and not _has_queue_policies():
        return "this ConnectionPool has no 'queue' option"
    if variant in _HAPPYBASE_BASED and needs_green(options or {}, security or {}):
        return "happybase.Connection speaks neither TLS, HTTP nor SASL"
    return None


def setup_unavailable(setup: str) -> str | None:
    """Why the pool *setup* of the costs table cannot run here, or ``None``."""
    if setup.startswith("otel") and importlib.util.find_spec("opentelemetry.metrics") is None:
        return "needs the OpenTelemetry API: pip install 'green_happybase[otel]'"
    if setup == "otel_sdk" and importlib.util.find_spec("opentelemetry.sdk") is None:
        return "needs the OpenTelemetry SDK: pip install opentelemetry-sdk"
    return None


class _PoolClient:
    """``green_happybase.ConnectionPool`` or ``happybase.ConnectionPool``."""

    # Both take ``connection(timeout)`` in seconds.
    lease_timeout = True

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._sdk: Any = None

    def leaser(self, i: int) -> Lease:
        lease: Lease = self.pool.connection
        return lease

    def instrument(self, sdk: bool) -> None:
        """Trace and measure the pool through OpenTelemetry: the global
        providers (no-op without an SDK), or the SDK's, kept in memory."""
        from green_happybase import otel

        if sdk:
            from .telemetry import InMemorySdk

            self._sdk = InMemorySdk()
            otel.instrument(self.pool, self._sdk.meter_provider, self._sdk.tracer_provider)
        else:
            otel.instrument(self.pool)

    def report(self) -> dict[str, Any]:
        """What the SDK received, if the pool reports to one."""
        return {} if self._sdk is None else self._sdk.report()

    def close(self) -> None:
        close = getattr(self.pool, "close", None)  # happybase's pool has none
        if close is not None:
            close()


class _FifoWaiter(Waiter):  # type: ignore[type-arg]  # not generic at run time
    """A greenlet queued for a :class:`_FifoLock`."""

    #: Set once a release has handed this waiter the lock.
    handed = False
    #: Set when it stopped waiting; a release skips it.
    cancelled = False


class _FifoLock:
    """A lock handed to its oldest waiter on release, never to a newcomer.

    gevent's own locks let the releasing greenlet take the lock straight
    back; this one serves waiters in order, as the pool does, so that
    ``raw_fifo`` shows what fairness alone costs. It has no timeout: the
    open-loop workload kills the waiters left at its end.
    """

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[_FifoWaiter] = deque()

    def acquire(self) -> None:
        if not self._held:
            self._held = True
            return
        waiter = _FifoWaiter()
        self._waiters.append(waiter)
        try:
            waiter.get()  # the releaser handed the lock over: still held
        except BaseException:
            # Killed while queued: leave the queue. Killed after the hand-off
            # but before running: the lock is this greenlet's, pass it on.
            if waiter.handed:
                self.release()
            else:
                waiter.cancelled = True
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.cancelled:
                waiter.handed = True
                waiter.hub.loop.run_callback(waiter.switch, None)
                return
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

    lease_timeout = False

    def __init__(self, size: int, address: Address, options: dict[str, Any],
                 green: bool, fair: bool = False) -> None:
        self._groups: list[_Group] = []
        # A GreenConnection keeps its books with a pool; this one opens and
        # leases nothing, the connections are opened and leased by hand.
        self._books = ConnectionPool(size, host=address[0], port=address[1],
                                     autoconnect=False, **options) if green else None
        for _ in range(size):
            if green:
                conn = GreenConnection(self._books, address[0], address[1], **options)
                conn._connect(address[0], address[1], None)  # as the pool connects
            else:
                conn = happybase.Connection(address[0], address[1], **options)
            self._groups.append(_Group(conn, owned=green, fair=fair))

    def leaser(self, i: int) -> Lease:
        return self._groups[i % len(self._groups)].lease

    def close(self) -> None:
        for group in self._groups:
            group.conn.close()
        if self._books is not None:
            self._books.close()


class _SemaphorePool:
    """What users hand-roll: a ``gevent.lock.BoundedSemaphore(size)``
    guarding a list of ``happybase.Connection`` objects.

    The semaphore lets a newcomer take a slot that a release meant for a
    waiter, and a connection goes back to the list whatever happened in
    its lease.
    """

    lease_timeout = True

    def __init__(self, size: int, address: Address, options: dict[str, Any]) -> None:
        self._slots = gevent.lock.BoundedSemaphore(size)
        self._idle: list[happybase.Connection] = []
        for _ in range(size):
            self._idle.append(happybase.Connection(address[0], address[1], **options))

    def leaser(self, i: int) -> Lease:
        return self.connection

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[happybase.Connection]:
        if not self._slots.acquire(timeout=timeout):
            raise happybase.NoConnectionsAvailable("no connection within %s s" % timeout)
        conn = self._idle.pop()
        try:
            yield conn
        finally:
            self._idle.append(conn)
            self._slots.release()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()


class _PerRequest:
    """A new connection for every lease, at most *size* at once."""

    lease_timeout = False

    def __init__(self, size: int, address: Address, options: dict[str, Any]) -> None:
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


def make_client(variant: str, size: int, address: Address, options: dict[str, Any],
                security: Mapping[str, Any] | None = None, setup: str | None = None) -> Any:
    """Build the client of *variant* with *size* connections to *address*.

    *options* are ``happybase.Connection`` keyword arguments (transport,
    protocol, timeout); *security* says how to reach a secure gateway (see
    :mod:`.security`); *setup*, one of :data:`SETUPS`, how the pool of a
    green variant is set up.
    """
    why = unavailable(variant, options, security) or (setup and setup_unavailable(setup))
    if why:
        raise ValueError("variant %s cannot run: %s" % (variant, why))
    green_options = dict(options, **pool_kwargs(options, security or {}))
    if variant == "green" or variant in _POLICIES:
        # "green" takes the pool's default policy; before the pool had
        # policies its one queue was FIFO.
        policy: dict[str, Any] = {"queue": _POLICIES[variant]} \
            if variant in _POLICIES and _has_queue_policies() else {}
        client = _PoolClient(ConnectionPool(size, host=address[0], port=address[1], **policy,
                                            **_SETUP_OPTIONS.get(setup or "", {}),
                                            **green_options))
        if setup in ("otel_api", "otel_sdk"):
            client.instrument(sdk=setup == "otel_sdk")
        return client
    if setup not in (None, "plain"):
        raise ValueError("setup %r is for the green variants, not %s" % (setup, variant))
    if variant == "happybase":
        return _PoolClient(happybase.ConnectionPool(size, host=address[0], port=address[1],
                                                    **options))
    if variant == "raw":
        return _RawClient(size, address, green_options, green=True)
    if variant == "raw_patched":
        return _RawClient(size, address, options, green=False)
    if variant == "raw_fifo":
        return _RawClient(size, address, green_options, green=True, fair=True)
    if variant == "semaphore":
        return _SemaphorePool(size, address, options)
    if variant == "per_request":
        return _PerRequest(size, address, options)
    raise ValueError("unknown variant %r; choose from %s"
                     % (variant, ", ".join(sorted(set(VARIANTS + OPEN_VARIANTS)))))
