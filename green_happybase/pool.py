"""The pool: greenlet-scoped leases, a LIFO of warm connections, queued waiters.

Where a connection the pool made can be, and how the pool counts it:

============  =========================================  =======================
place         what holds it                              counted as
============  =========================================  =======================
connecting    ``_connecting`` (a slot is taken; connect   slot
              and ``on_connect`` may yield)
idle          the ``_idle`` LIFO stack                   slot, open, idle
leased        ``_leases``, under its owner greenlet      slot, open, in use
in flight     handed to a waiter that has not run yet    slot, open
gone          closed, or forgotten after ``os.fork()``   nothing
============  =========================================  =======================

A free slot can be in flight too (handed to a waiter, to connect with).
Three moves change a connection's place, each the only way to make that move
and each complete under ``BaseException``: :meth:`ConnectionPool._take`
(a free slot or an idle or handed connection becomes a lease),
:meth:`ConnectionPool._give_back` (a returned connection goes to a waiter, to
the stack, or away) and :meth:`ConnectionPool._discard` (any place to gone,
freeing the slot or handing it to a waiter). Where user code or I/O can yield
inside a move (hooks, connects, checks), the connection is first put where an
interruption leaves the books right.
"""

import logging
import os
import random
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

from . import _green
from .auth import Auth
from .connection import GreenConnection
from .diagnose import diagnose, probe
from .errors import (
    AuthenticationFailed,
    ConnectDeadline,
    ConnectionFailed,
    PoolClosed,
    PoolError,
    PoolExhausted,
    _Forked,
)
from .histogram import Histogram
from .hosts import Host, HostList
from .maintenance import Maintenance
from .options import DEFAULT_PORT, check_seconds, options_doc, resolve
from .urls import parse_url
from .waiters import CLOSED, FORKED, Signal, WaitQueue

__all__ = ["ConnectionPool"]

logger = logging.getLogger("green_happybase")

_getcurrent = _green.getcurrent
_thread_id = _green.thread_id
_monotonic = time.monotonic
_UNSET: Any = object()
_SLOT: Any = object()  # a free slot, handed to a waiter to connect with
_NOT_QUIET = "socket shows EOF or unread bytes"
_SCANNER_CLEANUP_SECONDS = 1.0
_PROBE_SECONDS = 5.0  # a probe's bound when connect_timeout is None

#: Upper bounds, in seconds, of the lease wait histogram in :meth:`stats`.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, float("inf"))

_count = 0
_live_pools: "weakref.WeakSet[ConnectionPool]" = weakref.WeakSet()


class _Lease:
    """The context manager returned by :meth:`ConnectionPool.connection`.

    It keeps no state of its own: the lease is found through the current
    greenlet, so one object can serve every greenlet and nesting level.
    """

    __slots__ = ("_pool", "_timeout")

    def __init__(self, pool: "ConnectionPool", timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout

    def __enter__(self) -> GreenConnection:
        pool = self._pool
        if pool._thread != _thread_id():
            pool._bind_thread()
        me = _getcurrent()
        conn = pool._leases.get(me)
        if conn is not None:
            conn._depth += 1
            return conn
        if pool._idle and not pool._closed:
            # The top of the warm stack, through the one checkout rule
            # (_lease_to); waiting, connecting and retries are _take's.
            conn = pool._idle.pop()
            if pool._lease_to(me, conn, self._timeout):
                if pool._instrumented:
                    pool._waited(0.0)
                return conn
        return pool._take(me, self._timeout)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """End the lease (the outermost one returns the connection)."""
        pool = self._pool
        me = _getcurrent()
        conn = pool._leases.get(me)
        if conn is None:
            return  # forgotten across fork, or closed by close(timeout)
        if conn._depth > 1:
            conn._depth -= 1
            return
        # Both steps may yield; an interruption of either is raised once
        # the lease has ended.
        interrupted = None
        if conn._scanners and pool._scanner_cleanup:
            interrupted = pool._close_scanners(conn)
        if pool._on_checkin is not None:
            interrupted = pool._run_hook(pool._on_checkin, conn) or interrupted
            if pool._leases.get(me) is not conn:
                if interrupted is not None:
                    raise interrupted
                return  # the pool closed it during the hook
        pool._end_lease(me, conn)
        if interrupted is not None:
            raise interrupted


class _PrefixedLease(_Lease):
    """A lease whose tables use another table prefix while it lasts."""

    __slots__ = ("_prefix",)

    def __init__(self, pool: "ConnectionPool", timeout: float | None,
                 prefix: bytes | None) -> None:
        super().__init__(pool, timeout)
        self._prefix = prefix

    def __enter__(self) -> GreenConnection:
        conn = super().__enter__()
        conn._saved_prefixes.append(conn.table_prefix)
        conn.table_prefix = self._prefix
        return conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn = self._pool._leases.get(_getcurrent())
        if conn is not None and conn._saved_prefixes:
            conn.table_prefix = conn._saved_prefixes.pop()
        super().__exit__(exc_type, exc, tb)


class _TableLease:
    """The context manager returned by :meth:`ConnectionPool.table`."""

    __slots__ = ("_lease", "_name")

    def __init__(self, lease: _Lease, name: Any) -> None:
        self._lease = lease
        self._name = name

    def __enter__(self) -> Any:
        conn = self._lease.__enter__()
        try:
            return conn.table(self._name)
        except BaseException as error:
            self._lease.__exit__(type(error), error, error.__traceback__)
            raise

    def __exit__(self, *exc_info: Any) -> None:
        self._lease.__exit__(*exc_info)


class ConnectionPool:
    """A pool of HBase connections for the greenlets of one gevent hub.

    A drop-in for ``happybase.ConnectionPool``: *size* and every keyword
    argument of ``happybase.Connection`` mean the same. Every other option is
    keyword-only; a misspelt one is a ``TypeError`` naming the closest.

    A pool belongs to the OS thread that first uses it (its constructor, when
    *autoconnect* is on): a lease from another thread raises
    :class:`PoolError` at once. Across ``os.fork()`` the child forgets every
    inherited connection at fork time, without writing to it, and opens its
    own; greenlets the child inherited while they waited retry in the child.

    Hooks run in the greenlet concerned. An ``Exception`` from a hook is
    logged and ignored; a ``BaseException`` (``gevent.Timeout``, a kill) is
    re-raised once the pool's books are right. It never costs a slot.

    :param int size: the most connections open at once
    {options}

    .. versionadded:: 0.1
    .. versionadded:: 0.2
       *connect_timeout*, *queue*, *queue_target*, *queue_interval*,
       *keepalive*, *gateway_idle_timeout*, *scanner_cleanup*,
       *reconnect_timeout*, *reconnect_failed*, *tls*, *auth*, *http_path*,
       *do_as*, ``transport="http"``; IPv6 addresses, and callables, for
       *hosts*; callables for *auth* and *table_prefix*
    """

    def __init__(self, size: int, **options: Any) -> None:
        global _count
        settings = resolve(size, options)
        _count += 1
        self.name: str = settings.name if settings.name is not None else "pool%d" % _count
        self.size: int = settings.size
        self.min_size: int = settings.min_size
        self._max_idle: int = settings.max_idle
        self._idle_timeout: float | None = settings.idle_timeout
        self._max_lifetime: float | None = settings.max_lifetime
        self._acquire_timeout: float | None = settings.acquire_timeout
        self._connect_timeout: float | None = settings.connect_timeout
        self._max_waiting: int | None = settings.max_waiting
        self._retry_interval: float = settings.retry_interval
        self._check: Any = settings.check
        self._check_after: float = settings.check_after
        self._leak_timeout: float | None = settings.leak_timeout
        self._on_connect = settings.on_connect
        self._on_checkout = settings.on_checkout
        self._on_checkin = settings.on_checkin
        self._on_discard = settings.on_discard
        self._queue_policy: str = settings.queue
        self._keepalive: float | None = settings.keepalive
        self._gateway_idle_timeout: float | None = settings.gateway_idle_timeout
        self._scanner_cleanup: bool = settings.scanner_cleanup
        self._reconnect_timeout: float = settings.reconnect_timeout
        self._reconnect_failed = settings.reconnect_failed
        self._max_idle_follows_size = options.get("max_idle") is None
        self._connection_kwargs = settings.connection_kwargs()
        self._hosts = HostList(settings.addresses, settings.retry_interval, settings.retry_max,
                               DEFAULT_PORT)
        self._default_lease = _Lease(self, None)
        self._watch_leases = self._leak_timeout is not None or self._on_checkout is not None
        self._instrumented = False
        #: ``wrap(conn, method, args, call)`` around every Thrift call, or None.
        self._call_wrapper: Callable[..., Any] | None = None
        self._observe: Callable[[str, float], None] | None = None
        self._thread: int | None = None  # the OS thread whose hub the pool serves
        self._closed = False
        self._epoch = 0  # bumped in a forked child: what is older is the parent's
        self._waiters = WaitQueue(self._pass_on, settings.queue, settings.queue_target,
                                  settings.queue_interval)
        self._queued = self._waiters.queued  # read on every return: no call
        self._reset()
        self._constructed = False  # the maintainer waits for the constructor
        _live_pools.add(self)
        logger.debug("pool %s: size %d, servers %s", self.name, self.size,
                     ", ".join(h.address for h in self._hosts.hosts))
        if settings.autoconnect:
            self._bind_thread()
            try:
                for _ in range(max(1, self.min_size)):
                    self._n_slots += 1
                    self._give_back(self._open(None))
            except BaseException:
                self.close()
                raise
        self._constructed = True
        if settings.autoconnect:
            self._start_maintainer()

    def _reset(self) -> None:
        """Start with no connections (at construction, and in a forked child)."""
        # A plain list as the LIFO stack: nobody ever blocks on it (waiting
        # is the WaitQueue's job), and list.pop/append cost a tenth of
        # LifoQueue.get_nowait/put on the lease's hot path.
        self._idle: list[GreenConnection] = []
        self._leases: dict[Any, GreenConnection] = {}
        self._connecting: set[GreenConnection] = set()
        self._drained = _green.Event()  # set when a closed pool has no lease left
        self._maintainer: Any = None
        self._maintaining = False  # the maintainer is in a step, not asleep
        self._next_refill = 0.0
        # Plain integers, bumped inline: stats() reads them from any thread.
        self._n_slots = 0  # connecting + open + free slots in flight
        self._n_open = 0
        self._acquired_total = 0
        self._exhausted_total = 0
        self._discarded_total = 0
        self._connect_errors_total = 0
        self._scanners_closed_total = 0
        self._keepalive_total = 0
        self._unreachable_since: float | None = None  # every connect failing since
        self._reconnect_failed_called = False
        self._quiet_leases: dict[GreenConnection, Any] = {}  # (holder, seqid, since)
        self._waits = Histogram(WAIT_BUCKETS)  # only leases that had to wait
        # Filled while instrumented (see green_happybase.otel): free when off.
        self._create_times = Histogram()
        self._use_times = Histogram()
        self._operation_times = Histogram()
        for host in self._hosts.hosts:
            host.open = 0

    # -- public API --------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> "ConnectionPool":
        """Build a pool from an ``hbase://`` URL, every option included.

        ``hbase://a:9090,b:9090/?size=10&min_size=2&transport=framed&timeout=5000``;
        keyword *overrides* win over the URL. Unknown or malformed
        parameters raise ``ValueError`` naming them.
        """
        size, kwargs = parse_url(url, **overrides)
        return cls(size, **kwargs)

    def connection(self, timeout: float | None = None, block: bool = True,
                   table_prefix: Any = _UNSET) -> _Lease:
        """Lease a connection for the current greenlet.

        Use it as ``with pool.connection() as conn:``. A lease belongs to
        the greenlet that took it: nested leases in that greenlet share the
        connection, and only the outermost one returns it.

        :param float timeout: seconds to wait for a connection, covering the
            wait for a free slot and the connect (default: the pool's
            *acquire_timeout*); ``0`` never waits for another greenlet's
            connection, and connects within *connect_timeout* when a slot is
            free
        :param bool block: ``False`` behaves as ``timeout=0``
        :param str table_prefix: for this lease, the table prefix to use
            instead of the pool's (``None`` for none)
        :raises PoolExhausted: no connection in time, too many waiters, or
            shed by the adaptive queue; the message says which
        :raises PoolClosed: the pool is closed
        :raises ConnectionFailed: every server failed or is backing off
        """
        if timeout is None and block is True and table_prefix is _UNSET:
            return self._default_lease
        if timeout is not None:
            check_seconds("timeout", timeout)
        if not isinstance(block, bool):
            raise TypeError("'block' must be True or False, got %r" % (block,))
        if not block:
            timeout = 0
        if table_prefix is _UNSET:
            return _Lease(self, timeout)
        if table_prefix is not None:
            if not isinstance(table_prefix, (str, bytes)):
                raise TypeError("'table_prefix' must be a string, got %r" % (table_prefix,))
            if isinstance(table_prefix, str):
                table_prefix = table_prefix.encode("utf-8")
        return _PrefixedLease(self, timeout, table_prefix)

    def table(self, name: Any, timeout: float | None = None, block: bool = True,
              table_prefix: Any = _UNSET) -> _TableLease:
        """Lease a connection and yield its ``happybase.Table`` *name*.

        Takes the arguments of :meth:`connection`; the lease ends with the
        ``with`` block, or at once if happybase refuses *name*.
        """
        return _TableLease(self.connection(timeout, block, table_prefix), name)

    def stats(self) -> dict[str, Any]:
        """The pool's figures as a plain dict; safe to call from any thread.

        ============================  ==========================================
        key                           meaning
        ============================  ==========================================
        ``name``, ``size``            the pool's name and size
        ``min_size``, ``max_idle``    as configured
        ``open``                      connections open (idle, leased or handed
                                      to a waiter that has not run yet)
        ``idle``                      open connections waiting to be leased
        ``in_use``                    connections leased, counted from the
                                      lease table
        ``connecting``                connections being opened
        ``waiting``                   greenlets queued for a connection
        ``queue``                     the queue policy, ``fifo``/``adaptive``
        ``standing_queue``            the adaptive queue serves newest first
        ``acquired_total``            leases handed out
        ``exhausted_total``           :class:`PoolExhausted` raised
        ``shed_total``                waiters shed by the adaptive queue
        ``discarded_total``           connections closed by the pool
        ``connect_errors_total``      failed connects
        ``scanners_closed_total``     scanners a lease left open, closed by the
                                      pool when the lease ended
        ``keepalive_total``           keepalive round trips on idle connections
        ``closed``                    the pool is closed
        ``hosts``                     per ``host:port``: ``open``,
                                      ``connects_total``,
                                      ``connect_errors_total``, ``failures``
                                      (in a row), ``retry_in`` (seconds)
        ``wait_histogram``            seconds each lease took to get its
                                      connection when none was idle (queueing
                                      and connecting; 0 when one was): ``le``
                                      (bucket bounds in
                                      seconds), ``counts`` (cumulative),
                                      ``sum`` (seconds), ``count``
        ``create_time_histogram``,    the same shape, filled only while the
        ``use_time_histogram``,       pool is instrumented
        ``operation_histogram``       (:func:`green_happybase.otel.instrument`):
                                      seconds to open a connection, leases
                                      held, and Thrift calls
        ============================  ==========================================

        .. versionadded:: 0.2
           ``min_size``, ``max_idle``, ``connecting``, ``queue``,
           ``standing_queue``, ``shed_total``, ``scanners_closed_total``,
           ``keepalive_total``
        """
        now = _monotonic()
        acquired = self._acquired_total
        # Leases that did not wait count as waits of 0 s.
        waits = self._waits.snapshot(extra_in_first=acquired - self._waits.count)
        return {
            "name": self.name,
            "size": self.size,
            "min_size": self.min_size,
            "max_idle": self._max_idle,
            "open": self._n_open,
            "idle": len(self._idle),
            "in_use": len(self._leases),
            "connecting": len(self._connecting),
            "waiting": len(self._waiters),
            "queue": self._queue_policy,
            "standing_queue": self._waiters.standing,
            "acquired_total": acquired,
            "exhausted_total": self._exhausted_total,
            "shed_total": self._waiters.shed_total,
            "discarded_total": self._discarded_total,
            "connect_errors_total": self._connect_errors_total,
            "scanners_closed_total": self._scanners_closed_total,
            "keepalive_total": self._keepalive_total,
            "closed": self._closed,
            "hosts": {h.address: h.stats(now) for h in self._hosts.hosts},
            "wait_histogram": waits,
            "create_time_histogram": self._create_times.snapshot(),
            "use_time_histogram": self._use_times.snapshot(),
            "operation_histogram": self._operation_times.snapshot(),
        }

    def drain(self) -> None:
        """Replace every connection gracefully.

        Idle connections are closed now, leased ones when they come back
        (nothing is interrupted); new leases get fresh connections. For a
        gateway's rolling restart or a credential change.

        .. versionadded:: 0.2
        """
        self._check_thread()
        for conn in self._open_connections():
            conn._expires = 0.0  # discarded as "drained" where it is next returned
        self._close_idle("drained")
        logger.info("pool %s: drained", self.name)

    def resize(self, size: int, min_size: int | None = None) -> None:
        """Change the pool's size (and *min_size*) while it runs.

        Growing serves queued waiters at once; shrinking closes idle
        connections now and leased ones as they come back.

        .. versionadded:: 0.2
        """
        self._check_thread()
        options = {"min_size": self.min_size if min_size is None else min_size}
        if not self._max_idle_follows_size:
            options["max_idle"] = min(self._max_idle, size)
        settings = resolve(size, options)
        if self._closed:
            raise PoolClosed("pool %s is closed" % self.name)
        self.size, self.min_size, self._max_idle = (
            settings.size, settings.min_size, settings.max_idle)
        self._next_refill = 0.0
        while self._n_slots < self.size and self._queued and self._waiters.hand_off(_SLOT):
            self._n_slots += 1
        excess = self._n_slots - self.size
        if excess > 0:
            while excess and self._idle:
                self._discard(self._idle.pop(), "resized")
                excess -= 1
            # The rest are leased or on their way: each closes when returned.
            for conn in self._open_connections()[:excess]:
                conn._expires = 0.0
        logger.info("pool %s: resized to size %d, min_size %d", self.name, self.size,
                    self.min_size)

    def wait(self, timeout: float | None = None) -> None:
        """Block until *min_size* connections are open: readiness to take traffic.

        Opens the missing ones in this greenlet (servers backing off are
        retried as their back-off ends).

        :raises ConnectionFailed: servers failed until *timeout*; it says how
            many of *min_size* are open and why the rest are not
        :raises PoolExhausted: *timeout* passed first
        :raises PoolClosed: the pool is closed

        .. versionadded:: 0.2
        """
        self._check_thread()
        started = _monotonic()
        deadline = None if timeout is None else started + check_seconds("timeout", timeout)
        error: ConnectionFailed | None = None
        while self._n_open < self.min_size:
            if self._closed:
                raise PoolClosed("pool %s is closed" % self.name)
            if deadline is not None and _monotonic() >= deadline:
                missing = "%d of min_size=%d connections open after %.3f s" % (
                    self._n_open, self.min_size, _monotonic() - started)
                if error is not None:
                    raise ConnectionFailed("pool %s is not ready: %s; last error: %s"
                                           % (self.name, missing, error)) from error
                raise self._exhausted(started, "not ready: %s" % missing)
            if self._n_slots >= self.size:
                # Other greenlets are connecting in the slots left: let them.
                _green.sleep(0.01)
                continue
            self._n_slots += 1
            try:
                self._give_back(self._open(deadline))
                error = None
            except _Forked:
                continue  # the child starts again with its own books
            except ConnectionFailed as failure:
                error = failure
                pause = min([h.retry_at for h in self._hosts.hosts]) - _monotonic()
                if deadline is not None:
                    pause = min(pause, deadline - _monotonic())
                _green.sleep(max(0.001, pause))

    def close(self, timeout: float | None = None) -> None:
        """Close the pool.

        Idle connections and connects in progress are closed now; waiting
        greenlets and later :meth:`connection` calls get
        :class:`PoolClosed`. Without *timeout* it does not wait: leased
        connections are closed when they come back. With *timeout*, it first
        waits up to that many seconds for them, then closes them where they
        are; their holders get :class:`PoolClosed` on their next call.
        Several greenlets may close at once: all wait for the same leases.
        """
        if timeout is not None:
            check_seconds("timeout", timeout)
        if self._thread is not None:
            self._check_thread()
        interrupted: BaseException | None = None
        if not self._closed:
            self._closed = True
            logger.debug("pool %s: closing", self.name)
            self._waiters.wake_all(CLOSED)
            interrupted = self._close_idle("pool closed")
            for conn in list(self._connecting):
                conn.close()  # its connect fails; the connecting greenlet frees the slot
            if self._maintainer is not None and not self._maintaining:
                self._maintainer.kill(block=False)
            if not self._leases:
                self._drained.set()
        if timeout is not None and self._leases:
            self._drained.wait(timeout)
            for holder, conn in list(self._leases.items()):
                del self._leases[holder]
                conn._in_call = True  # the holder's next call raises PoolClosed
                interrupted = self._discard(conn, "pool closed while leased",
                                            defer=True) or interrupted
            self._drained.set()
        if interrupted is not None:
            raise interrupted

    def __enter__(self) -> "ConnectionPool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<%s %s size=%d open=%d in_use=%d waiting=%d%s>" % (
            type(self).__name__, self.name, self.size, self._n_open,
            len(self._leases), len(self._waiters), " closed" if self._closed else "")

    # -- the moves -------------------------------------------------------------

    def _take(self, me: Any, timeout: float | None) -> GreenConnection:
        """Lease a connection to *me*: idle, newly opened, or handed by a waiter."""
        if self._closed:
            raise PoolClosed("pool %s is closed" % self.name)
        if timeout is None:
            timeout = self._acquire_timeout
        started = 0.0
        deadline = connect_deadline = None
        while True:
            while self._idle:  # the warm stack first: no clock needed
                conn = self._idle.pop()
                if self._lease_to(me, conn, timeout):
                    if started or self._instrumented:
                        self._waited(started)
                    return conn
            if not started:
                started = _monotonic()
                deadline = None if timeout is None else started + timeout
                # A zero timeout never waits for another greenlet, but a
                # connect it makes is bounded by connect_timeout alone.
                connect_deadline = deadline if timeout else None
            if self._n_slots < self.size:
                self._n_slots += 1
                item = _SLOT
            else:
                item = self._wait(started, deadline, timeout == 0)
                if item is FORKED:
                    continue
            if item is _SLOT:
                try:
                    item = self._open(connect_deadline)
                except _Forked:
                    continue
            elif self._closed:
                self._discard(item, "pool closed")
                raise PoolClosed("pool %s was closed while waiting" % self.name)
            if self._lease_to(me, item, timeout):
                self._waited(started)
                return cast(GreenConnection, item)

    def _wait(self, started: float, deadline: float | None, at_once: bool) -> Any:
        """Queue for a connection or a free slot; the item handed, or :data:`FORKED`."""
        if at_once or (self._max_waiting is not None
                       and len(self._waiters) >= self._max_waiting):
            raise self._exhausted(started, "max_waiting=%s reached" % self._max_waiting
                                  if not at_once else "timeout=0 does not wait")
        item = self._waiters.wait(deadline)
        if isinstance(item, Signal) and item is not FORKED:
            if item is CLOSED:
                raise PoolClosed("pool %s was closed while waiting" % self.name)
            raise self._exhausted(started, item.reason)
        return item

    def _lease_to(self, me: Any, conn: GreenConnection, timeout: float | None) -> bool:
        """Make *conn* the lease of *me* if it passes the checkout checks.

        ``False``: it did not, and it was discarded. The checks: with
        ``check=True`` (the default) one ``poll(0)`` (EOF or unread bytes
        mean the server closed it or it is out of step); a *check* callable
        also runs when the connection was idle longer than *check_after*, as
        the lease's holder, so it may make calls.
        """
        self._leases[me] = conn
        conn._owner = me
        conn._depth = 1
        conn._lease_timeout = timeout
        check = self._check
        reason = None
        if check is not False:
            if conn._poll(0):
                reason = _NOT_QUIET
            elif check is not True and _monotonic() - conn._last_used > self._check_after:
                try:
                    check(conn)
                except Exception as error:
                    reason = "check failed: %s" % error
                except BaseException:
                    self._unlease(me, conn)
                    self._discard(conn, "check interrupted")
                    raise
        if reason is not None:
            self._unlease(me, conn)
            self._discard(conn, reason, logging.INFO)
            return False
        self._acquired_total += 1
        if self._watch_leases:
            conn._leased_at = _monotonic()
            conn._leak_warned = False
            if self._on_checkout is not None:
                interrupted = self._run_hook(self._on_checkout, conn)
                if interrupted is not None:
                    if self._leases.get(me) is conn:
                        self._end_lease(me, conn)
                    raise interrupted
        return True

    def _unlease(self, me: Any, conn: GreenConnection) -> None:
        del self._leases[me]
        conn._owner = None

    def _close_scanners(self, conn: GreenConnection) -> BaseException | None:
        """Close the scanners a lease left open, within a second in all.

        Best effort: a failure (or the second running out) discards the
        connection instead of holding up its caller; HBase then expires the
        scanners. A ``BaseException`` that cuts it is returned, to be raised
        once the lease has ended.
        """
        if conn._in_call:
            return None  # to be discarded anyway
        timer = _green.Timeout.start_new(_SCANNER_CLEANUP_SECONDS)
        try:
            while conn._scanners:
                conn.client.scannerClose(next(iter(conn._scanners)))
                self._scanners_closed_total += 1
        except Exception as error:
            logger.debug("pool %s: closing a scanner failed (%s); discarding the "
                         "connection", self.name, error)
            conn._in_call = True
        except BaseException as error:
            conn._in_call = True
            if error is not timer:
                return error
            logger.debug("pool %s: closing scanners took too long; discarding the "
                         "connection", self.name)
        finally:
            timer.close()
        return None

    def _end_lease(self, me: Any, conn: GreenConnection, timed: bool = True) -> None:
        if self._instrumented and timed:
            used = _monotonic() - conn._leased_at
            self._use_times.observe(used)
            if self._observe is not None:
                self._observe("use", used)
        del self._leases[me]
        conn._owner = None
        if self._closed:
            try:
                self._give_back(conn)
            finally:
                if not self._leases:
                    self._drained.set()
        else:
            self._give_back(conn)

    def _give_back(self, conn: GreenConnection) -> None:
        """Hand a returned connection to a waiter, stack it, or discard it."""
        if conn._epoch != self._epoch:
            conn._forget()  # the parent's, inherited across fork
            return
        now = _monotonic()
        if conn._in_call:
            reason = "interrupted call"
        elif conn._socket.sock is None:
            reason = "closed"
        elif self._closed:
            reason = "pool closed"
        elif now >= conn._expires:
            reason = "max_lifetime" if conn._expires else "drained"
        else:
            conn._last_used = now
            if self._queued and self._waiters.hand_off(conn):
                return
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
            reason = "max_idle"
        self._discard(conn, reason)

    def _pass_on(self, item: Any) -> None:
        """Take back what a waiter was handed but could not use."""
        if item is _SLOT:
            self._release_slot()
        else:
            self._give_back(item)

    def _discard(self, conn: GreenConnection, reason: str, level: int = logging.DEBUG,
                 defer: bool = False) -> BaseException | None:
        """Close *conn* and free its slot (or hand the slot to a waiter).

        The books are right before ``on_discard`` runs; an interruption of
        the hook is raised after, or returned with *defer*.
        """
        if not self._close(conn, reason, level) or self._on_discard is None:
            return None
        interrupted = self._run_hook(self._on_discard, conn, reason)
        if interrupted is not None and not defer:
            raise interrupted
        return interrupted

    def _close(self, conn: GreenConnection, reason: str, level: int = logging.DEBUG) -> bool:
        """The books and the socket of a discard, without yielding.

        ``False``: *conn* was the parent's (inherited across fork), only
        forgotten.
        """
        if conn._epoch != self._epoch:
            conn._forget()
            return False
        self._n_open -= 1
        if conn._host is not None:
            conn._host.open -= 1
            conn._host = None
        self._discarded_total += 1
        conn.close()
        logger.log(level, "pool %s: discarding connection to %s: %s",
                   self.name, conn.address, reason)
        self._release_slot()
        return True

    def _release_slot(self) -> None:
        """Free a slot, or hand it to the next waiter to connect with."""
        if not self._closed and self._queued and self._waiters.hand_off(_SLOT):
            return
        self._n_slots -= 1

    # -- opening connections ---------------------------------------------------

    def _open(self, deadline: float | None) -> GreenConnection:
        """Open a connection in a slot already counted; on failure free the slot."""
        epoch = self._epoch
        kwargs = self._connection_kwargs
        if callable(kwargs["table_prefix"]) or callable(kwargs["auth"]):
            kwargs = self._current_settings(kwargs)
        conn = GreenConnection(self, "localhost", DEFAULT_PORT, **kwargs)
        self._connecting.add(conn)
        try:
            if self._closed:  # a slot handed over just before close()
                raise PoolClosed("pool %s is closed" % self.name)
            self._connect(conn, deadline)
            if self._on_connect is not None:
                interrupted = self._run_hook(self._on_connect, conn)
                if interrupted is not None:
                    raise interrupted
            if self._closed:
                raise PoolClosed("pool %s was closed while connecting" % self.name)
            if epoch != self._epoch:
                raise _Forked()
        except BaseException as error:
            self._connecting.discard(conn)
            if epoch != self._epoch:
                conn._forget()
                if isinstance(error, Exception):
                    raise _Forked() from None  # the child dropped the socket: retry
                raise
            if conn._host is not None:
                conn._host.open -= 1
                conn._host = None
            conn.close()
            self._release_slot()
            raise
        self._connecting.discard(conn)
        self._n_open += 1
        if self._maintainer is None and self._constructed:
            self._start_maintainer()
        return conn

    def _current_settings(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The connection's settings, with the callable ones asked now."""
        kwargs = dict(kwargs)
        for name, valid in (("table_prefix", (str, bytes, type(None))), ("auth", Auth)):
            source = kwargs[name]
            if not callable(source) or isinstance(source, Auth):
                continue
            try:
                kwargs[name] = source()
            except Exception as error:
                raise ConnectionFailed("pool %s: the %s callable failed: %r"
                                       % (self.name, name, error)) from error
            if not isinstance(kwargs[name], valid):
                raise ConnectionFailed("pool %s: the %s callable returned %r"
                                       % (self.name, name, kwargs[name]))
        return kwargs

    def _connect(self, conn: GreenConnection, deadline: float | None) -> None:
        """Connect *conn* to the next server that answers.

        Each connect takes at most *connect_timeout*; a server that fails
        within it backs off. The caller's *deadline* cuts the attempt with
        :class:`PoolExhausted` and says nothing about the server.
        """
        now = _monotonic()
        try:
            self._hosts.refresh()
        except Exception as error:
            raise ConnectionFailed("pool %s: the hosts callable failed: %r"
                                   % (self.name, error)) from error
        ready, backing_off = self._hosts.candidates(now)
        failures = []
        last_error: Exception | None = None
        refused: AuthenticationFailed | None = None
        for host in ready:
            limit = self._connect_timeout
            timer = None
            if deadline is not None:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    raise self._exhausted(now, "the deadline passed before connecting to %s"
                                          % host.address, ConnectDeadline)
                if limit is None or remaining < limit:
                    timer = _green.Timeout.start_new(remaining)
            attempt = _monotonic()
            try:
                conn._connect(host.host, host.port, limit)
                if not host.probed:
                    self._check_gateway(conn, host, limit)
            except BaseException as error:
                conn.close()
                if error is timer:
                    raise self._exhausted(now, "the deadline passed while connecting to %s"
                                          % host.address, ConnectDeadline) from None
                if not isinstance(error, Exception):
                    raise
                if conn._epoch != self._epoch:
                    # The process forked mid-connect and the child dropped the
                    # socket: no fault of the server's.
                    raise _Forked() from None
                if self._closed:  # close() cut the connect: no fault either
                    raise PoolClosed("pool %s was closed while connecting to %s"
                                     % (self.name, host.address)) from None
                self._connect_errors_total += 1
                if isinstance(error, AuthenticationFailed):
                    # Refused credentials or certificate: the server is up,
                    # no back-off; every server is tried, then this is raised.
                    refused = refused or error
                    failures.append("%s (%s)" % (host.address, error))
                    continue
                self._hosts.failed(host, error)
                failures.append("%s (%s)" % (host.address, error))
                last_error = error
                continue
            finally:
                if timer is not None:
                    timer.close()
            if self._instrumented:
                created = _monotonic() - attempt
                self._create_times.observe(created)
                if self._observe is not None:
                    self._observe("create", created)
            self._hosts.succeeded(host)
            self._unreachable_since = None
            self._reconnect_failed_called = False
            conn._host = host
            host.open += 1
            conn._created = conn._last_used = _monotonic()
            conn._expires = (float("inf") if self._max_lifetime is None else
                             conn._created + self._max_lifetime * (1 - 0.1 * random.random()))
            logger.debug("pool %s: connected to %s", self.name, host.address)
            return
        for host in backing_off:
            failures.append("%s (backing off, next try in %.2f s)"
                            % (host.address, host.retry_at - now))
        if self._unreachable_since is None:
            self._unreachable_since = now
        if self._constructed:
            self._start_maintainer()  # it watches for reconnect_timeout
        if refused is not None:
            raise refused
        raise ConnectionFailed("pool %s could not connect to %s"
                               % (self.name, "; ".join(failures))) from last_error

    def _check_gateway(self, conn: GreenConnection, host: Host,
                       limit: float | None) -> None:
        """The first exchange with *host*: one probe, or a diagnosis of what is wrong.

        :raises ConnectionFailed: naming the likely misconfiguration and its fix
        """
        try:
            kind = self._probe(conn, limit)
        except AuthenticationFailed:
            conn.close()  # over HTTP, the first request meets the 401: precise already
            raise
        except Exception as error:
            conn.close()
            raise ConnectionFailed(self._diagnose(host, limit, error)) from error
        if kind == "TWO":
            conn.close()
            raise ConnectionFailed(self._diagnose(host, limit, None))
        host.probed = True

    def _probe(self, conn: GreenConnection, limit: float | None) -> str:
        """One cheap round trip (``getThriftServerType``), within *limit* seconds."""
        conn._set_io_timeout(limit or _PROBE_SECONDS)
        try:
            return probe(conn.client._oprot)
        finally:
            conn._set_io_timeout(None)

    def _diagnose(self, host: Host, limit: float | None, error: Exception | None) -> str:
        kwargs = self._connection_kwargs
        return diagnose(host.host, host.port, transport=kwargs["transport"],
                        protocol=kwargs["protocol"], timeout=limit or _PROBE_SECONDS,
                        error=error, tls=kwargs["tls"])

    def _renew(self, conn: GreenConnection) -> None:
        """Give a leased connection whose last call was cut a fresh socket.

        It stays marked mid-call until the new socket is up, so a renew that
        fails or is interrupted leaves it to be discarded when the lease ends.
        """
        if self._closed:
            raise PoolClosed("pool %s is closed; the connection leased to %r was closed "
                             "with it" % (self.name, conn._owner))
        self._discarded_total += 1
        logger.debug("pool %s: reconnecting a lease after an interrupted call to %s",
                     self.name, conn.address)
        if conn._host is not None:
            conn._host.open -= 1
            conn._host = None
        conn.close()
        timeout = conn._lease_timeout
        if timeout is None:
            timeout = self._acquire_timeout
        try:
            self._connect(conn, _monotonic() + timeout if timeout else None)
        except _Forked:
            # The process forked while this lease reconnected: the child
            # dropped the connection, as it does every leased one.
            raise conn._not_leased() from None
        if self._closed:
            conn._host.open -= 1
            conn._host = None
            conn.close()
            raise PoolClosed("pool %s was closed while a lease reconnected" % self.name)
        conn._in_call = False

    # -- helpers ---------------------------------------------------------------

    def _instrument(self, wrap: Callable[..., Any] | None = None,
                    observe: Callable[[str, float], None] | None = None) -> None:
        """Time connects, leases and calls into ``stats()``; *wrap* each call.

        *wrap* is ``wrap(conn, method, args, call)`` and must return
        ``call()``'s result (an OpenTelemetry span, say); *observe* is
        ``observe(kind, seconds)`` for each ``"create"``, ``"wait"`` (every
        lease, 0 when it did not wait) and ``"use"``. Costs nothing until
        called: see :func:`green_happybase.otel.instrument`.
        """
        operation_times = self._operation_times

        def timed(conn: GreenConnection, method: str, args: Any, call: Any) -> Any:
            started = _monotonic()
            try:
                return wrap(conn, method, args, call) if wrap else call()
            finally:
                operation_times.observe(_monotonic() - started)

        self._instrumented = self._watch_leases = True
        self._call_wrapper = timed
        self._observe = observe

    def _waited(self, started: float) -> None:
        """A lease began after *started* (0: straight from the stack, no wait).

        Only leases that did not come straight from the stack are observed
        one by one; ``stats()`` counts the rest as waits of 0 s.
        """
        waited = _monotonic() - started if started else 0.0
        if started:
            self._waits.observe(waited)
        if self._observe is not None:
            self._observe("wait", waited)

    def _close_idle(self, reason: str) -> BaseException | None:
        """Discard every idle connection; the first hook interruption, if any."""
        interrupted = None
        while self._idle:
            interrupted = self._discard(self._idle.pop(), reason, defer=True) or interrupted
        return interrupted

    def _open_connections(self) -> list[GreenConnection]:
        """Every open connection: leased first, then handed to waiters, then idle."""
        handed = [item for item in self._waiters.in_flight() if item is not _SLOT]
        return list(self._leases.values()) + handed + list(self._idle)

    def _check_thread(self) -> None:
        if self._thread != _thread_id():
            self._bind_thread()

    def _bind_thread(self) -> None:
        """Tie the pool to this OS thread, or refuse a second one."""
        current = _thread_id()
        if self._thread is None:
            self._thread = current
            return
        raise PoolError(
            "pool %s belongs to OS thread %#x, where it was first used, and cannot "
            "serve thread %#x: a pool serves the greenlets of one thread's gevent "
            "hub. Make one pool per thread (e.g. in a threading.local), or use the "
            "pool from greenlets of its own thread" % (self.name, self._thread, current))

    def _exhausted(self, started: float, why: str,
                   kind: Callable[[str], PoolExhausted] = PoolExhausted) -> PoolExhausted:
        self._exhausted_total += 1
        return kind(
            "no connection available in pool %s: %s (size %d, %d leased, %d waiting, "
            "waited %.3f s)" % (self.name, why, self.size, len(self._leases),
                                len(self._waiters), _monotonic() - started))

    def _run_hook(self, hook: Callable[..., Any], *args: Any) -> BaseException | None:
        """Run a user hook; log an ``Exception``, return a ``BaseException``."""
        try:
            hook(*args)
        except Exception:
            logger.exception("pool %s: hook %r failed", self.name, hook)
        except BaseException as interrupted:
            return interrupted
        return None

    # -- background work -------------------------------------------------------

    def _start_maintainer(self) -> None:
        if not self._closed and self._maintainer is None:
            self._maintainer = _green.spawn(Maintenance(self).run, self._epoch)

    # -- fork --------------------------------------------------------------------

    def _forget_inherited(self) -> None:
        """In a forked child, at fork time: drop the parent's connections, start afresh.

        Sockets are closed without ``shutdown()`` and without a byte written,
        so the parent's connections are untouched. Greenlets the child
        inherited while they waited wake and retry against the child's pool;
        greenlets that held a lease find their connection gone.
        """
        inherited: list[Any] = list(self._idle)
        inherited += self._leases.values()
        inherited += self._connecting
        inherited += self._waiters.after_fork()
        for conn in self._leases.values():
            conn._owner = None
        self._epoch += 1
        self._thread = None
        self._reset()
        for conn in inherited:
            if isinstance(conn, GreenConnection):
                conn._forget()


ConnectionPool.__doc__ = (ConnectionPool.__doc__ or "").replace(
    "{options}", options_doc().replace("\n", "\n    "))


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._forget_inherited()


# At fork time, not on the child's first use: until then the child's hub
# could run inherited greenlets against the parent's sockets.
os.register_at_fork(after_in_child=_after_fork_in_child)
