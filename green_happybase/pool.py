"""The pool: greenlet-scoped leases, a LIFO of warm connections, FIFO waiters."""

import bisect
import logging
import random
import time
import traceback
from collections import deque
from typing import Any, Callable, Dict, Optional, Sequence

from happybase.connection import COMPAT_MODES, THRIFT_PROTOCOLS, THRIFT_TRANSPORTS

from . import _green
from .config import parse_url
from .connection import GreenConnection
from .errors import ConnectionFailed, PoolClosed, PoolExhausted
from .hosts import HostList, HostSpec, parse_hosts

__all__ = ["ConnectionPool"]

logger = logging.getLogger("green_happybase")

_getcurrent = _green.getcurrent
_monotonic = time.monotonic
_UNSET: Any = object()
_CLOSED: Any = object()  # handed to waiters when the pool closes
_NOTHING: Any = object()  # a waiter that was handed nothing yet
_NOT_QUIET = "socket shows EOF or unread bytes"

#: Upper bounds, in seconds, of the lease wait histogram in :meth:`stats`.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, float("inf"))

_CONNECTION_ARGS = ("host", "port", "timeout", "transport", "protocol", "compat",
                    "table_prefix", "table_prefix_separator")
_DEFAULT_PORT = 9090
_count = 0


def _check_seconds(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%r must be a number of seconds, got %r" % (name, value))
    if value < 0:
        raise ValueError("%r must not be negative, got %r" % (name, value))


def _check_hook(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError("%r must be callable, got %r" % (name, value))


class _Waiter(_green.Waiter):
    """A greenlet queued for a connection: it is handed one item, once."""

    __slots__ = ("item", "cancelled")
    item: Any
    cancelled: bool


class _Lease:
    """The context manager returned by :meth:`ConnectionPool.connection`.

    It keeps no state of its own: the lease is found through the current
    greenlet, so one object can serve every greenlet and nesting level.
    """

    __slots__ = ("_pool", "_timeout", "_block")

    def __init__(self, pool: "ConnectionPool", timeout: Any, block: bool) -> None:
        self._pool = pool
        self._timeout = timeout
        self._block = block

    def __enter__(self) -> GreenConnection:
        pool = self._pool
        if pool._pid != _green.pid:
            pool._after_fork()
        me = _getcurrent()
        conn = pool._leases.get(me)
        if conn is not None:
            conn._depth += 1
            return conn
        # The common case inline: a warm, quiet connection on the stack.
        if pool._n_idle and pool._fast:
            pool._n_idle -= 1
            conn = pool._idle.get_nowait()
            if conn._poll(0):
                pool._discard(conn, _NOT_QUIET, logging.INFO)
                conn = pool._checkout(self._timeout, self._block)
            else:
                pool._acquired_total += 1
        else:
            conn = pool._checkout(self._timeout, self._block)
        conn._owner = me
        conn._depth = 1
        pool._leases[me] = conn
        if pool._watch_leases:
            pool._leased(conn)
        return conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        pool = self._pool
        me = _getcurrent()
        conn = pool._leases.pop(me, None)
        if conn is None:
            return  # dropped since: the process forked, or close() timed out
        if conn._depth > 1:  # a nested lease ends: the outer one holds on
            conn._depth -= 1
            pool._leases[me] = conn
            return
        conn._owner = None
        if pool._on_checkin is not None:
            pool._call_hook(pool._on_checkin, conn)
        now = _monotonic()
        # A connection inherited across fork may go back on the stack here:
        # the next lease's pid check drops the whole stack.
        if (conn._in_call or pool._waiters or not pool._fast or now >= conn._expires
                or pool._n_idle >= pool._max_idle):
            pool._checkin(conn)
        else:
            # The common case inline: a clean connection back on the stack.
            conn._last_used = now
            pool._idle.put(conn)
            pool._n_idle += 1


class _PrefixedLease(_Lease):
    """A lease whose tables use another table prefix while it lasts."""

    __slots__ = ("_prefix",)

    def __init__(self, pool: "ConnectionPool", timeout: Any, block: bool,
                 prefix: Optional[bytes]) -> None:
        super().__init__(pool, timeout, block)
        self._prefix = prefix

    def __enter__(self) -> GreenConnection:
        conn = super().__enter__()
        conn._saved_prefixes.append(conn.table_prefix)
        conn.table_prefix = self._prefix
        return conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn = self._pool._leases.get(_getcurrent())
        if conn is not None:
            conn.table_prefix = conn._saved_prefixes.pop()
        super().__exit__(exc_type, exc, tb)


class ConnectionPool:
    """A pool of HBase connections for the greenlets of one gevent hub.

    A drop-in for ``happybase.ConnectionPool``: *size* and every keyword
    argument of ``happybase.Connection`` (``host``, ``port``, ``timeout`` in
    milliseconds, ``transport``, ``protocol``, ``compat``, ``table_prefix``,
    ``table_prefix_separator``) mean the same. The options below are
    keyword-only.

    :param int size: the most connections open at once
    :param int min_size: connections kept open at all times, refilled in the
        background after losses (default 0)
    :param int max_idle: the most idle connections kept; a connection
        returned beyond it is closed (default: *size*)
    :param float idle_timeout: seconds after which an idle connection above
        *min_size* is closed; below HBase's 60 s idle cut (default 50)
    :param float max_lifetime: seconds after which a connection is closed
        when next returned, less a random 0-10 % so that connections made
        together do not expire together (default 3600; ``None``: never)
    :param float acquire_timeout: default seconds :meth:`connection` waits
        for a connection, both for a free slot and for connecting
        (default ``None``: no limit)
    :param int max_waiting: the most greenlets queued for a connection; the
        next one gets :class:`PoolExhausted` at once (default ``None``: no
        limit)
    :param bool autoconnect: open ``max(1, min_size)`` connections in the
        constructor, so that a wrong host fails at once (default ``True``)
    :param list hosts: several Thrift servers, ``['a:9090', 'b:9091']``,
        instead of *host*/*port*; new connections go round-robin from a
        random start, and a server that fails is skipped while it backs off
    :param float retry_interval: seconds before a server that failed to
        connect is tried again, doubling with jitter (default 0.5)
    :param float retry_max: the longest back-off, in seconds (default 30)
    :param check: checkout health check. ``True`` (default): discard a
        connection whose socket shows EOF or unread bytes, no round trip;
        ``False``: none; a callable ``check(conn)``: that check too, and the
        callable for connections idle longer than *check_after*
    :param float check_after: idle seconds before *check* is called (default 5)
    :param float leak_timeout: seconds a lease may be held before one warning
        with the holder's stack is logged (default ``None``: never)
    :param str name: the pool's name in logs and metrics (default ``poolN``)
    :param on_connect: ``on_connect(conn)`` after a connection is opened
    :param on_checkout: ``on_checkout(conn)`` when a lease starts
    :param on_checkin: ``on_checkin(conn)`` when a lease ends
    :param on_discard: ``on_discard(conn, reason)`` when a connection is closed

    Hooks run in the greenlet concerned; an exception they raise is logged
    and ignored.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        size: int,
        *,
        min_size: int = 0,
        max_idle: Optional[int] = None,
        idle_timeout: Optional[float] = 50.0,
        max_lifetime: Optional[float] = 3600.0,
        acquire_timeout: Optional[float] = None,
        max_waiting: Optional[int] = None,
        autoconnect: bool = True,
        hosts: Optional[Sequence[HostSpec]] = None,
        retry_interval: float = 0.5,
        retry_max: float = 30.0,
        check: Any = True,
        check_after: float = 5.0,
        leak_timeout: Optional[float] = None,
        name: Optional[str] = None,
        on_connect: Optional[Callable[[GreenConnection], Any]] = None,
        on_checkout: Optional[Callable[[GreenConnection], Any]] = None,
        on_checkin: Optional[Callable[[GreenConnection], Any]] = None,
        on_discard: Optional[Callable[[GreenConnection, str], Any]] = None,
        **connection_kwargs: Any,
    ) -> None:
        global _count
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError("'size' must be an int, got %r" % (size,))
        if size < 1:
            raise ValueError("'size' must be at least 1, got %r" % (size,))
        if isinstance(min_size, bool) or not isinstance(min_size, int):
            raise TypeError("'min_size' must be an int, got %r" % (min_size,))
        if not 0 <= min_size <= size:
            raise ValueError("'min_size' must be between 0 and size=%d, got %r"
                             % (size, min_size))
        option: str
        value: Any
        for option, value in (("max_idle", max_idle), ("max_waiting", max_waiting)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError("%r must be an int or None, got %r" % (option, value))
            if value is not None and value < 0:
                raise ValueError("%r must not be negative, got %r" % (option, value))
        for option, value in (("idle_timeout", idle_timeout), ("max_lifetime", max_lifetime),
                              ("acquire_timeout", acquire_timeout),
                              ("leak_timeout", leak_timeout)):
            _check_seconds(option, value)
        for option, value in (("retry_interval", retry_interval), ("retry_max", retry_max),
                              ("check_after", check_after)):
            _check_seconds(option, value, allow_none=False)
        if not (isinstance(check, bool) or callable(check)):
            raise TypeError("'check' must be True, False or a callable, got %r" % (check,))
        for option, value in (("on_connect", on_connect), ("on_checkout", on_checkout),
                              ("on_checkin", on_checkin), ("on_discard", on_discard)):
            _check_hook(option, value)
        self._connection_kwargs = self._check_connection_kwargs(connection_kwargs)
        host = self._connection_kwargs.pop("host", None)
        port = self._connection_kwargs.pop("port", None)
        if hosts is not None:
            if host is not None or port is not None:
                raise ValueError("give either 'hosts' or 'host'/'port', not both "
                                 "(hosts=%r, host=%r, port=%r)" % (hosts, host, port))
            addresses = parse_hosts(hosts, _DEFAULT_PORT)
        else:
            addresses = [(host or "localhost", port or _DEFAULT_PORT)]

        _count += 1
        self.name = name if name is not None else "pool%d" % _count
        self.size = size
        self.min_size = min_size
        self._max_idle = size if max_idle is None else max_idle
        self._idle_timeout = idle_timeout
        self._max_lifetime = max_lifetime
        self._acquire_timeout = acquire_timeout
        self._max_waiting = max_waiting
        self._check = check
        self._check_after = check_after
        self._leak_timeout = leak_timeout
        self._on_connect = on_connect
        self._on_checkout = on_checkout
        self._on_checkin = on_checkin
        self._on_discard = on_discard
        self._hosts = HostList(addresses, retry_interval, retry_max)
        self._default_lease = _Lease(self, None, True)
        self._watch_leases = leak_timeout is not None or on_checkout is not None
        self._reset()
        self._closed = False
        # The inline paths of a lease apply: open, and checked by poll alone.
        self._fast = check is True
        self._drained: Optional[Any] = None
        self._constructed = False  # the maintainer waits for the constructor
        logger.debug("pool %s: size %d, servers %s", self.name, size,
                     ", ".join(h.address for h in self._hosts.hosts))
        if autoconnect:
            try:
                for _ in range(max(1, min_size)):
                    self._n_slots += 1
                    self._checkin(self._new_connection(acquire_timeout, _monotonic()))
            except BaseException:
                self.close()
                raise
        self._constructed = True
        if autoconnect:
            self._start_maintainer()

    @staticmethod
    def _check_connection_kwargs(kwargs: Dict[str, Any]) -> Dict[str, Any]:
        unknown = sorted(set(kwargs) - set(_CONNECTION_ARGS))
        if unknown:
            raise TypeError("unknown argument(s) %s for ConnectionPool"
                            % ", ".join("%s=%r" % (k, kwargs[k]) for k in unknown))
        choices = (("transport", THRIFT_TRANSPORTS), ("protocol", THRIFT_PROTOCOLS),
                   ("compat", COMPAT_MODES))
        for option, allowed in choices:
            if option in kwargs and kwargs[option] not in allowed:
                raise ValueError("%r must be one of %s, got %r"
                                 % (option, ", ".join(sorted(allowed)), kwargs[option]))
        for option in ("table_prefix", "table_prefix_separator"):
            value = kwargs.get(option)
            if value is not None and not isinstance(value, (str, bytes)):
                raise TypeError("%r must be a string, got %r" % (option, value))
        timeout = kwargs.get("timeout")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError("'timeout' must be milliseconds, got %r" % (timeout,))
            if timeout <= 0:
                raise ValueError("'timeout' must be positive milliseconds, got %r" % (timeout,))
        port = kwargs.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 < port < 65536):
            raise ValueError("'port' must be a TCP port number, got %r" % (port,))
        host = kwargs.get("host")
        if host is not None and not isinstance(host, str):
            raise TypeError("'host' must be a string, got %r" % (host,))
        return dict(kwargs)

    def _reset(self) -> None:
        """Start with no connections (at construction, and in a forked child)."""
        self._pid = _green.pid
        self._idle: Any = _green.LifoQueue()
        self._waiters: deque = deque()
        self._leases: Dict[Any, GreenConnection] = {}
        self._maintainer: Any = None
        # Plain integers, bumped inline: stats() reads them from any thread.
        self._n_slots = 0  # connections open or being opened
        self._n_open = 0
        self._n_idle = 0
        self._n_waiting = 0
        self._acquired_total = 0
        self._exhausted_total = 0
        self._discarded_total = 0
        self._connect_errors_total = 0
        self._wait_counts = [0] * len(WAIT_BUCKETS)
        self._wait_sum = 0.0
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

    def connection(self, timeout: Optional[float] = None, block: bool = True,
                   table_prefix: Any = _UNSET) -> _Lease:
        """Lease a connection for the current greenlet.

        Use it as ``with pool.connection() as conn:``. A lease belongs to
        the greenlet that took it: nested leases in that greenlet share the
        connection, and only the outermost one returns it.

        :param float timeout: seconds to wait for a connection, covering the
            wait for a free slot and the connect (default: the pool's
            *acquire_timeout*); ``0`` does not wait
        :param bool block: ``False`` raises :class:`PoolExhausted` at once
            instead of waiting
        :param str table_prefix: for this lease, the table prefix to use
            instead of the pool's (``None`` for none)
        :raises PoolExhausted: no connection in time, or too many waiters
        :raises PoolClosed: the pool is closed
        :raises ConnectionFailed: no server could be connected
        """
        if timeout is None and block is True and table_prefix is _UNSET:
            return self._default_lease
        if timeout is not None:
            _check_seconds("timeout", timeout)
        if table_prefix is _UNSET:
            return _Lease(self, timeout, block)
        if table_prefix is not None:
            if not isinstance(table_prefix, (str, bytes)):
                raise TypeError("'table_prefix' must be a string, got %r" % (table_prefix,))
            if isinstance(table_prefix, str):
                table_prefix = table_prefix.encode("utf-8")
        return _PrefixedLease(self, timeout, block, table_prefix)

    def table(self, name: Any, timeout: Optional[float] = None, block: bool = True,
              table_prefix: Any = _UNSET) -> "_TableLease":
        """Lease a connection and yield its ``happybase.Table`` *name*.

        Takes the arguments of :meth:`connection`.
        """
        return _TableLease(self.connection(timeout, block, table_prefix), name)

    def stats(self) -> Dict[str, Any]:
        """The pool's figures as a plain dict; safe to call from any thread.

        ============================  ==========================================
        key                           meaning
        ============================  ==========================================
        ``name``, ``size``            the pool's name and size
        ``open``                      connections open (``idle + in_use``)
        ``idle``                      open connections waiting to be leased
        ``in_use``                    connections leased by a greenlet
        ``waiting``                   greenlets queued for a connection
        ``acquired_total``            leases handed out
        ``exhausted_total``           :class:`PoolExhausted` raised
        ``discarded_total``           connections closed by the pool
        ``connect_errors_total``      failed connects
        ``hosts``                     per ``host:port``: ``open``,
                                      ``connects_total``,
                                      ``connect_errors_total``, ``failures``
                                      (in a row), ``retry_in`` (seconds)
        ``wait_histogram``            lease waits: ``le`` (bucket bounds in
                                      seconds), ``counts`` (cumulative),
                                      ``sum`` (seconds), ``count``
        ============================  ==========================================
        """
        now = _monotonic()
        waited = list(self._wait_counts)
        acquired = self._acquired_total
        waited[0] += acquired - sum(waited)  # leases that did not wait at all
        cumulative, running = [], 0
        for count in waited:
            running += count
            cumulative.append(running)
        return {
            "name": self.name,
            "size": self.size,
            "open": self._n_open,
            "idle": self._n_idle,
            "in_use": self._n_open - self._n_idle,
            "waiting": self._n_waiting,
            "acquired_total": acquired,
            "exhausted_total": self._exhausted_total,
            "discarded_total": self._discarded_total,
            "connect_errors_total": self._connect_errors_total,
            "closed": self._closed,
            "hosts": {h.address: h.stats(now) for h in self._hosts.hosts},
            "wait_histogram": {"le": list(WAIT_BUCKETS), "counts": cumulative,
                               "sum": self._wait_sum, "count": acquired},
        }

    def close(self, timeout: Optional[float] = None) -> None:
        """Close the pool.

        Idle connections are closed now, waiting greenlets and later
        :meth:`connection` calls get :class:`PoolClosed`. Leased connections
        are closed when they come back; with *timeout*, first wait up to that
        many seconds for them, then close them where they are.
        """
        _check_seconds("timeout", timeout)
        if self._pid != _green.pid:
            self._after_fork()
        if not self._closed:
            self._closed = True
            self._fast = False
            logger.debug("pool %s: closing", self.name)
            while self._hand_off(_CLOSED):
                pass
            while self._n_idle:
                self._discard(self._pop_idle(), "pool closed")
            if self._maintainer is not None:
                self._maintainer.kill(block=False)
                self._maintainer = None
        if timeout is not None and self._leases:
            self._drained = _green.Event()
            self._drained.wait(timeout)
            # Still leased: close them under their holders, who get an error
            # on their next call; the lease's end then finds nothing to return.
            for holder, conn in list(self._leases.items()):
                del self._leases[holder]
                self._discard(conn, "pool closed while leased")

    def __enter__(self) -> "ConnectionPool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<%s %s size=%d open=%d in_use=%d waiting=%d%s>" % (
            type(self).__name__, self.name, self.size, self._n_open,
            self._n_open - self._n_idle, self._n_waiting,
            " closed" if self._closed else "")

    # -- leases --------------------------------------------------------------

    def _leased(self, conn: GreenConnection) -> None:
        """Start watching a new lease: leak timer, checkout hook."""
        if self._leak_timeout is not None:
            conn._leased_at = _monotonic()
            conn._leak_warned = False
        if self._on_checkout is not None:
            self._call_hook(self._on_checkout, conn)

    def _checkout(self, timeout: Optional[float], block: bool) -> GreenConnection:
        if self._closed:
            raise PoolClosed("pool %s is closed" % self.name)
        if timeout is None:
            timeout = self._acquire_timeout
        while self._n_idle:
            conn = self._pop_idle()
            reason = self._unusable(conn)
            if reason is None:
                self._acquired_total += 1
                return conn
            self._discard(conn, reason, logging.INFO)
        if self._n_slots < self.size:
            self._n_slots += 1
            conn = self._new_connection(timeout, _monotonic())
        else:
            conn = self._wait(timeout, block)
        self._acquired_total += 1
        return conn

    def _wait(self, timeout: Optional[float], block: bool) -> GreenConnection:
        started = _monotonic()
        if not block or timeout == 0 or (
                self._max_waiting is not None and self._n_waiting >= self._max_waiting):
            raise self._exhausted(started)
        item = self._wait_for_item(None if timeout is None else started + timeout, started)
        waited = _monotonic() - started
        self._wait_counts[bisect.bisect_left(WAIT_BUCKETS, waited)] += 1
        self._wait_sum += waited
        if item is not None:
            reason = self._unusable(item)
            if reason is None:
                return item
            # Keep its slot and connect with it.
            self._drop(item, reason, logging.INFO)
        return self._new_connection(timeout, started)

    def _wait_for_item(self, deadline: Optional[float], started: float) -> Any:
        """Queue this greenlet and return what a returning lease hands it.

        That is a connection, or ``None``: a free slot to connect with.
        """
        waiter = _Waiter()
        waiter.item = _NOTHING
        waiter.cancelled = False
        self._waiters.append(waiter)
        self._n_waiting += 1
        timer = None
        try:
            if deadline is not None:
                timer = _green.Timeout.start_new(max(0.0, deadline - _monotonic()))
            waiter.get()
        except BaseException as error:
            if waiter.item is _NOTHING:
                waiter.cancelled = True
                self._n_waiting -= 1
            else:
                # Handed an item and interrupted before taking it: pass it on,
                # so that no connection or slot is lost.
                self._give_back(waiter.item)
            if error is timer:
                raise self._exhausted(started) from None
            raise
        finally:
            if timer is not None:
                timer.close()
        if waiter.item is _CLOSED:
            raise PoolClosed("pool %s was closed while waiting" % self.name)
        return waiter.item

    def _exhausted(self, started: float) -> PoolExhausted:
        self._exhausted_total += 1
        return PoolExhausted(
            "no connection available in pool %s: size %d, %d leased, %d waiting, "
            "waited %.3f s" % (self.name, self.size, self._n_open - self._n_idle,
                               self._n_waiting, _monotonic() - started))

    def _hand_off(self, item: Any) -> bool:
        """Give *item* to the oldest live waiter, if any."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.cancelled:
                continue
            self._n_waiting -= 1
            waiter.item = item
            waiter.hub.loop.run_callback(waiter.switch, None)
            return True
        return False

    def _give_back(self, item: Any) -> None:
        if item is None:
            self._release_slot()
        elif item is not _CLOSED:
            self._checkin(item)

    def _checkin(self, conn: GreenConnection) -> None:
        if conn._pid != _green.pid:
            conn._forget()  # inherited across fork: the parent still uses it
            return
        now = _monotonic()
        if conn._in_call:
            reason = "interrupted call"
        elif conn._socket.sock is None:
            reason = "closed"
        elif self._closed:
            reason = "pool closed"
        elif now >= conn._expires:
            reason = "max_lifetime"
        elif self._n_idle >= self._max_idle and not self._waiters:
            reason = "max_idle"
        else:
            conn._last_used = now
            if not (self._waiters and self._hand_off(conn)):
                self._idle.put(conn)
                self._n_idle += 1
            return
        self._discard(conn, reason)

    def _pop_idle(self) -> GreenConnection:
        self._n_idle -= 1
        return self._idle.get_nowait()

    def _unusable(self, conn: GreenConnection) -> Optional[str]:
        """Why a connection about to be leased must not be, or ``None``."""
        if self._check is False:
            return None
        if conn._poll(0):
            return _NOT_QUIET
        if self._check is not True and _monotonic() - conn._last_used > self._check_after:
            conn._owner = _green.getcurrent()
            try:
                self._check(conn)
            except Exception as error:
                return "check failed: %s" % error
            except BaseException:
                self._discard(conn, "check interrupted")
                raise
            finally:
                conn._owner = None
        return None

    # -- opening and closing connections -------------------------------------

    def _new_connection(self, timeout: Optional[float], started: float) -> GreenConnection:
        """Open a connection in a slot already counted in ``_n_slots``."""
        conn = GreenConnection(self, "localhost", _DEFAULT_PORT, **self._connection_kwargs)
        try:
            self._connect(conn, None if timeout is None else started + timeout)
        except BaseException:
            conn.close()  # a connect cut by a timeout or kill leaves a socket
            self._release_slot()
            raise
        self._n_open += 1
        conn._host.open += 1
        if self._maintainer is None and self._constructed:
            self._start_maintainer()
        if self._on_connect is not None:
            self._call_hook(self._on_connect, conn)
        return conn

    def _connect(self, conn: GreenConnection, deadline: Optional[float]) -> None:
        """Connect *conn* to the next server that answers, within *deadline*."""
        now = _monotonic()
        ready, backing_off = self._hosts.candidates(now)
        failures = []
        last_error: Optional[Exception] = None
        for host in ready:
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                failures.append("%s (deadline passed)" % host.address)
                break
            try:
                conn._connect(host.host, host.port, remaining)
            except Exception as error:
                self._connect_errors_total += 1
                self._hosts.failed(host, error)
                failures.append("%s (%s)" % (host.address, error))
                last_error = error
                continue
            self._hosts.succeeded(host)
            conn._host = host
            conn._created = conn._last_used = _monotonic()
            conn._expires = (float("inf") if self._max_lifetime is None else
                             conn._created + self._max_lifetime * (1 - 0.1 * random.random()))
            logger.debug("pool %s: connected to %s", self.name, host.address)
            return
        for host in backing_off:
            failures.append("%s (backing off, next try in %.2f s)"
                            % (host.address, host.retry_at - now))
        raise ConnectionFailed("pool %s could not connect to %s"
                               % (self.name, "; ".join(failures))) from last_error

    def _renew(self, conn: GreenConnection) -> None:
        """Replace the socket of a leased connection whose last call was cut."""
        self._count_discard(conn, "interrupted call")
        conn.close()
        old_host = conn._host
        # On failure the connection stays closed and is discarded on return.
        self._connect(conn, None)
        old_host.open -= 1
        conn._host.open += 1

    def _discard(self, conn: GreenConnection, reason: str, level: int = logging.DEBUG) -> None:
        """Close *conn* and free its slot."""
        self._drop(conn, reason, level)
        self._release_slot()

    def _drop(self, conn: GreenConnection, reason: str, level: int = logging.DEBUG) -> None:
        """Close *conn*, keeping its slot for the caller."""
        self._n_open -= 1
        conn._host.open -= 1
        self._count_discard(conn, reason, level)
        conn.close()

    def _count_discard(self, conn: GreenConnection, reason: str,
                       level: int = logging.DEBUG) -> None:
        self._discarded_total += 1
        logger.log(level, "pool %s: discarding connection to %s: %s",
                   self.name, conn.address, reason)
        if self._on_discard is not None:
            self._call_hook(self._on_discard, conn, reason)

    def _release_slot(self) -> None:
        """Free a slot, or pass it on to the oldest waiter to connect with."""
        if self._closed or not self._hand_off(None):
            self._n_slots -= 1
            if self._closed and self._drained is not None and not self._leases:
                self._drained.set()

    def _call_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("pool %s: hook %r failed", self.name, hook)

    # -- background work and fork --------------------------------------------

    def _start_maintainer(self) -> None:
        if not self._closed:
            self._maintainer = _green.spawn(self._maintain, _green.pid)

    def _maintain(self, pid: int) -> None:
        """Refill to *min_size*, close idle and expired connections, warn of leaks."""
        timeouts = [t for t in (self._idle_timeout, self._max_lifetime, self._leak_timeout)
                    if t is not None]
        interval = min([1.0] + [t / 4 for t in timeouts])
        interval = max(interval, 0.01)
        while not self._closed and pid == _green.pid == self._pid:
            try:
                self._expire_idle()
                self._refill()
                self._warn_leaks()
            except Exception:
                logger.exception("pool %s: maintenance failed", self.name)
            # ref=False: the maintainer alone does not keep the hub running.
            _green.sleep(interval, ref=False)

    def _expire_idle(self) -> None:
        """Close expired idle connections, and long-idle ones above *min_size*."""
        now = _monotonic()
        idle = []
        while self._n_idle:
            idle.append(self._pop_idle())
        keep = []
        for conn in reversed(idle):  # oldest first
            if now >= conn._expires:
                self._discard(conn, "max_lifetime")
            elif (self._idle_timeout is not None and self._n_open > self.min_size
                    and now - conn._last_used >= self._idle_timeout):
                self._discard(conn, "idle_timeout")
            else:
                keep.append(conn)
        for conn in keep:  # oldest first, so the warmest ends on top
            self._idle.put(conn)
            self._n_idle += 1

    def _refill(self) -> None:
        while not self._closed and self._n_slots < self.min_size:
            ready, _ = self._hosts.candidates(_monotonic())
            if not ready:
                return
            self._n_slots += 1
            try:
                conn = self._new_connection(None, _monotonic())
            except ConnectionFailed:
                return  # logged with its back-off; the next round tries again
            self._checkin(conn)

    def _warn_leaks(self) -> None:
        if self._leak_timeout is None:
            return
        now = _monotonic()
        for holder, conn in list(self._leases.items()):
            if not conn._leak_warned and now - conn._leased_at > self._leak_timeout:
                conn._leak_warned = True
                stack = "".join(traceback.format_stack(holder.gr_frame)) \
                    if getattr(holder, "gr_frame", None) else "(no stack)\n"
                logger.warning("pool %s: %r has held a connection to %s for %.1f s "
                               "(leak_timeout=%s); it is at:\n%s", self.name, holder,
                               conn.address, now - conn._leased_at, self._leak_timeout,
                               stack)

    def _after_fork(self) -> None:
        """In a forked child: drop the parent's connections, start afresh."""
        logger.debug("pool %s: forked; dropping %d inherited connection(s)",
                     self.name, self._n_open)
        while self._n_idle:
            self._pop_idle()._forget()
        for conn in self._leases.values():
            conn._forget()
        self._reset()


class _TableLease:
    """The context manager returned by :meth:`ConnectionPool.table`."""

    __slots__ = ("_lease", "_name")

    def __init__(self, lease: _Lease, name: Any) -> None:
        self._lease = lease
        self._name = name

    def __enter__(self) -> Any:
        return self._lease.__enter__().table(self._name)

    def __exit__(self, *exc_info: Any) -> None:
        self._lease.__exit__(*exc_info)
