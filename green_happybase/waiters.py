"""Greenlets waiting for a connection, and the order in which they are served.

A :class:`WaitQueue` knows nothing of sockets: it hands *items* (a pool hands
connections, or free slots to connect with) to queued greenlets. Its
contract, which ``tests/test_waiters.py`` checks without a server:

* a hand-off is an accepted message: :meth:`WaitQueue.hand_off` gives the
  item to one live waiter, or returns ``False`` when there is none;
* a waiter that is killed or interrupted after it was handed an item passes
  the item on (through the queue's *pass_on* callable), so nothing handed is
  ever lost;
* a waiter whose own deadline passes leaves the queue at once and gets
  :data:`TIMED_OUT`; any other timeout (the caller's own ``gevent.Timeout``)
  comes out as itself;
* the queue is FIFO; with ``policy="adaptive"``, while a standing queue
  lasts it serves the newest waiter first and sheds the waiters that can no
  longer use a connection (see :class:`WaitQueue`).
"""

import time
from collections.abc import Callable
from typing import Any

from . import _green

__all__ = ["WaitQueue", "Signal", "TIMED_OUT", "CLOSED", "FORKED", "SHED_DEADLINE",
           "SHED_STANDING", "POLICIES"]

_monotonic = time.monotonic

#: The queue policies :class:`WaitQueue` knows.
POLICIES = ("fifo", "adaptive")


class Signal:
    """What a waiter gets instead of an item; *reason* says why."""

    __slots__ = ("name", "reason")

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def __repr__(self) -> str:
        return "<%s>" % self.name


TIMED_OUT = Signal("TIMED_OUT", "its timeout expired while it waited")
CLOSED = Signal("CLOSED", "the pool was closed while it waited")
FORKED = Signal("FORKED", "the process forked while it waited")
SHED_DEADLINE = Signal("SHED_DEADLINE", "shed: too little time was left before its "
                                        "deadline to use a connection (queue_target)")
SHED_STANDING = Signal("SHED_STANDING", "shed: it waited longer than queue_interval "
                                        "while a standing queue lasted (adaptive queue)")

_NOTHING: Any = object()  # not handed anything yet


class _Waiter(_green.Waiter):  # type: ignore[type-arg]  # not subscriptable at run time
    """One queued greenlet: what it was handed, when it came, its deadline."""

    __slots__ = ("item", "since", "deadline", "epoch")
    item: Any
    since: float
    deadline: float | None
    epoch: int


class WaitQueue:
    """Greenlets queued for an item, served once each.

    :param pass_on: called with an item that a waiter was handed but could
        not take (it was killed, or its caller timed out); it must give the
        item to someone else or put it back
    :param policy: ``"fifo"``: first come, first served. ``"adaptive"``:
        FIFO until a standing queue forms (the queue has not emptied for
        *interval* seconds and its oldest waiter has waited more than
        *target*); then the newest waiter is served first, and waiters that
        have waited longer than *interval* are shed. In adaptive mode a
        waiter with less than *target* left before its deadline is also shed
        rather than handed a connection it could not use.
    :param target: seconds, see *policy*
    :param interval: seconds, see *policy*

    .. versionadded:: 0.2
    """

    def __init__(self, pass_on: Callable[[Any], None], policy: str = "fifo",
                 target: float = 0.005, interval: float = 0.1) -> None:
        self._pass_on = pass_on
        self._adaptive = policy == "adaptive"
        self._target = target
        self._interval = interval
        # A dict is an ordered set: oldest first, O(1) removal at once.
        # ``queued`` is the same dict, for callers to test cheaply; only the
        # queue changes it, and never replaces it.
        self._queue: dict[_Waiter, None] = {}
        self.queued: dict[Any, None] = self._queue
        self._in_flight: dict[_Waiter, Any] = {}  # handed an item, not yet running
        self._epoch = 0  # bumped in a forked child: older waiters are the parent's
        self._nonempty_since = 0.0
        self.shed_total = 0
        self.standing = False  # a standing queue is being served newest first

    def __len__(self) -> int:
        return len(self._queue)

    def in_flight(self) -> list[Any]:
        """Items handed to waiters that have not run yet."""
        return list(self._in_flight.values())

    def wait(self, deadline: float | None) -> Any:
        """Queue the current greenlet until it is handed an item or a :class:`Signal`.

        :param deadline: ``time.monotonic()`` value after which it gets
            :data:`TIMED_OUT`; ``None``: no limit
        """
        now = _monotonic()
        waiter = _Waiter()
        waiter.item = _NOTHING
        waiter.since = now
        waiter.deadline = deadline
        waiter.epoch = self._epoch
        if not self._queue:
            self._nonempty_since = now
        self._queue[waiter] = None
        timer = None
        try:
            if deadline is not None:
                timer = _green.Timeout.start_new(max(0.0, deadline - now))
            waiter.get()
        except BaseException as error:
            item = waiter.item
            if item is _NOTHING:
                self._queue.pop(waiter, None)
                self._after_removal()
                if error is timer:
                    return TIMED_OUT
                raise
            if waiter.epoch != self._epoch:
                # Handed an item before a fork: the child dropped it already.
                if error is timer:
                    return TIMED_OUT
                raise
            self._in_flight.pop(waiter, None)  # signals are never in flight
            if error is timer:
                return item  # it was handed in time
            if not isinstance(item, Signal):
                self._pass_on(item)
            raise
        finally:
            if timer is not None:
                timer.close()
        if waiter.epoch != self._epoch:
            return FORKED
        self._in_flight.pop(waiter, None)
        return waiter.item

    def hand_off(self, item: Any) -> bool:
        """Give *item* to the next live waiter; ``False`` when nobody waits."""
        queue = self._queue
        while queue:
            waiter = self._next_waiter()
            if waiter is not None:
                self._deliver(waiter, item)
                self._after_removal()
                return True
        return False

    def wake_all(self, signal: Signal) -> None:
        """Wake every queued waiter with *signal* (e.g. :data:`CLOSED`)."""
        while self._queue:
            waiter = next(iter(self._queue))
            del self._queue[waiter]
            self._deliver(waiter, signal)
        self._after_removal()

    def after_fork(self) -> list[Any]:
        """In a forked child: wake the inherited waiters, forget what was in flight.

        The waiters retry in the child (they get :data:`FORKED`); the items
        handed before the fork are returned for the caller to drop, since
        they belong to the parent.
        """
        handed = list(self._in_flight.values())
        self._in_flight.clear()
        self._epoch += 1
        queued = list(self._queue)
        self._queue.clear()
        for waiter in queued:
            waiter.item = FORKED
            waiter.hub.loop.run_callback(waiter.switch, None)
        self.standing = False
        return handed

    def _deliver(self, waiter: _Waiter, item: Any) -> None:
        waiter.item = item
        if not isinstance(item, Signal):
            self._in_flight[waiter] = item
        # Wake it on its own hub's next turn, never by switching from here:
        # the caller is in the middle of returning a connection.
        waiter.hub.loop.run_callback(waiter.switch, None)

    def _after_removal(self) -> None:
        if not self._queue:
            self.standing = False

    def _next_waiter(self) -> _Waiter | None:
        """Take the waiter to serve off the queue, or shed one and return ``None``."""
        queue = self._queue
        oldest = next(iter(queue))
        if not self._adaptive:
            del queue[oldest]
            return oldest
        now = _monotonic()
        self.standing = (now - self._nonempty_since >= self._interval
                         and now - oldest.since >= self._target)
        if self.standing and now - oldest.since > self._interval:
            del queue[oldest]
            self._shed(oldest, SHED_STANDING)
            return None
        if self.standing:
            waiter, _ = queue.popitem()  # the newest
        else:
            waiter = oldest
            del queue[waiter]
        if waiter.deadline is not None and waiter.deadline - now < self._target:
            self._shed(waiter, SHED_DEADLINE)
            return None
        return waiter

    def _shed(self, waiter: _Waiter, signal: Signal) -> None:
        self.shed_total += 1
        self._deliver(waiter, signal)
        self._after_removal()
