"""The pool's background work: one greenlet per pool and process.

Every round it closes expired idle connections and long-idle ones above
``min_size``, pings idle connections due a keepalive, refills to
``min_size`` (at most once per ``retry_interval``), warns of leases held too
long or idle past the gateway's cut, and calls ``reconnect_failed`` when no
server answered for too long. Each step moves connections only through the
pool's own moves, so the pool's books stay right whatever a hook does; the
pool stops the greenlet only between rounds.
"""

import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

from . import _green
from .errors import ConnectionFailed, PoolClosed, _Forked

if TYPE_CHECKING:  # the pool imports this module, never the reverse at run time
    from .pool import ConnectionPool

__all__ = ["Maintenance"]

logger = logging.getLogger("green_happybase")

_getcurrent = _green.getcurrent
_monotonic = time.monotonic


class Maintenance:
    """The background work of one pool, run by :meth:`run` in its own greenlet."""

    def __init__(self, pool: "ConnectionPool") -> None:
        self._pool = pool

    def run(self, epoch: int) -> None:
        """Refill to *min_size*, close idle and expired connections, warn of leaks."""
        pool = self._pool
        timeouts = [t for t in (pool._idle_timeout, pool._max_lifetime, pool._leak_timeout)
                    if t is not None]
        interval = max(0.01, min([1.0] + [t / 4 for t in timeouts]))
        if pool._keepalive is not None:
            interval = min(interval, max(0.01, pool._keepalive / 4))
        while not pool._closed and epoch == pool._epoch:
            pool._maintaining = True
            try:
                self.expire_idle()
                self.keep_warm()
                self.refill(epoch)
                self.warn_leaks()
                self.watch_reachability()
            except (PoolClosed, _Forked):
                return
            except (Exception, _green.Timeout):
                # A Timeout here is a hook's own (the pool arms none around
                # maintenance): it ends this round, not maintenance.
                logger.exception("pool %s: maintenance failed", pool.name)
            finally:
                if epoch == pool._epoch:
                    pool._maintaining = False
            # ref=False: the maintainer alone does not keep the hub running.
            _green.sleep(interval, ref=False)

    def expire_idle(self) -> None:
        """Close expired idle connections, and long-idle ones above *min_size*."""
        pool = self._pool
        now = _monotonic()
        stack = pool._idle  # oldest first
        expired = []
        still_open = pool._n_open
        for conn in stack:
            if now >= conn._expires:
                expired.append((conn, "max_lifetime"))
            elif (pool._idle_timeout is not None and still_open > pool.min_size
                    and now - conn._last_used >= pool._idle_timeout):
                expired.append((conn, "idle_timeout"))
            else:
                continue
            still_open -= 1
        if not expired:
            return
        # Off the stack at once, before any hook can yield: the books never
        # show a connection in two places.
        gone = {id(conn) for conn, _ in expired}
        stack[:] = [conn for conn in stack if id(conn) not in gone]
        # Every socket closed before the first hook yields: none is ever
        # neither on the stack nor closed (a fork would not find it).
        expired = [(conn, reason) for conn, reason in expired if pool._close(conn, reason)]
        if pool._on_discard is None:
            return
        for conn, reason in expired:
            interrupted = pool._run_hook(pool._on_discard, conn, reason)
            if interrupted is not None:
                logger.warning("pool %s: on_discard hook interrupted by %r",
                               pool.name, interrupted)

    def keep_warm(self) -> None:
        """Ping each idle connection unused for *keepalive* seconds, once.

        One at a time, lifted off the stack and leased to the maintainer
        while it is pinged, so that no caller is handed it meanwhile; one
        that fails is discarded (the refill replaces it).
        """
        pool = self._pool
        if pool._keepalive is None:
            return
        due = _monotonic() - pool._keepalive
        for conn in [c for c in pool._idle if c._last_used <= due]:
            if conn not in pool._idle or conn._last_used > due or pool._closed:
                continue  # leased, used or closed since
            pool._idle.remove(conn)
            me = _getcurrent()
            pool._leases[me] = conn
            conn._owner = me
            conn._depth = 1
            try:
                pool._probe(conn, pool._connect_timeout)
            except BaseException as error:
                if conn._epoch != pool._epoch:
                    raise _Forked() from None  # the child forgot it
                pool._unlease(me, conn)
                if not isinstance(error, Exception):
                    pool._discard(conn, "keepalive interrupted", defer=True)
                    raise
                pool._discard(conn, "keepalive failed: %s" % error, logging.INFO, defer=True)
                continue
            if conn._epoch != pool._epoch:
                raise _Forked()
            pool._keepalive_total += 1
            pool._end_lease(me, conn, timed=False)

    def refill(self, epoch: int) -> None:
        """Open connections up to *min_size*, at most once per *retry_interval*."""
        pool = self._pool
        now = _monotonic()
        if pool._n_slots >= pool.min_size or now < pool._next_refill:
            return
        pool._next_refill = now + pool._retry_interval
        while not pool._closed and epoch == pool._epoch and pool._n_slots < pool.min_size:
            ready, _ = pool._hosts.candidates(_monotonic())
            if not ready:
                return
            pool._n_slots += 1
            try:
                conn = pool._open(None)
            except ConnectionFailed:
                return  # logged with its back-off; a later round tries again
            pool._give_back(conn)

    def warn_leaks(self) -> None:
        """Warn once of a lease held past *leak_timeout*, and of one whose
        connection made no call for longer than the gateway's idle cut."""
        pool = self._pool
        now = _monotonic()
        cut = pool._gateway_idle_timeout
        quiet = {}
        for holder, conn in list(pool._leases.items()):
            if (pool._leak_timeout is not None and not conn._leak_warned
                    and now - conn._leased_at > pool._leak_timeout):
                conn._leak_warned = True
                logger.warning("pool %s: %r has held a connection to %s for %.1f s "
                               "(leak_timeout=%s); it is at:\n%s", pool.name, holder,
                               conn.address, now - conn._leased_at, pool._leak_timeout,
                               _stack(holder))
            if cut is None:
                continue
            # Watched from here, so that the lease's hot path pays nothing:
            # the client's sequence id moves with every call.
            seen = pool._quiet_leases.get(conn)
            seqid = conn.client._seqid
            if seen is None or seen[0] is not holder or seen[1] != seqid:
                seen = (holder, seqid, now, False)
            elif not seen[3] and now - seen[2] > cut:
                logger.warning("pool %s: %r holds a connection to %s that has made no "
                               "call for %.0f s: the gateway cuts connections idle for "
                               "%s s (gateway_idle_timeout), so its next call will fail "
                               "and reconnect; do slow work outside the lease. It is "
                               "at:\n%s", pool.name, holder, conn.address, now - seen[2],
                               cut, _stack(holder))
                seen = seen[:3] + (True,)
            quiet[conn] = seen
        pool._quiet_leases = quiet

    def watch_reachability(self) -> None:
        """Call *reconnect_failed* once when no server answered for too long."""
        pool = self._pool
        since = pool._unreachable_since
        if (since is None or pool._reconnect_failed_called
                or _monotonic() - since < pool._reconnect_timeout):
            return
        pool._reconnect_failed_called = True
        logger.error("pool %s: no server could be reached for %.0f s", pool.name,
                     _monotonic() - since)
        if pool._reconnect_failed is not None:
            interrupted = pool._run_hook(pool._reconnect_failed, pool)
            if interrupted is not None:
                raise interrupted


def _stack(holder: Any) -> str:
    frame = getattr(holder, "gr_frame", None)
    return "".join(traceback.format_stack(frame)) if frame else "(no stack)\n"
