"""The waiting-greenlet queue's contract, without sockets.

Items here are plain objects; what the pool hands (connections, free slots)
follows the same rules.
"""

import time

import gevent
import pytest

from green_happybase.waiters import CLOSED, SHED_DEADLINE, SHED_STANDING, TIMED_OUT, WaitQueue


class Returns:
    """The *pass_on* callable: records what waiters could not take."""

    def __init__(self):
        self.items = []

    def __call__(self, item):
        self.items.append(item)


def waiters(queue, count, deadline=None):
    """*count* greenlets queued in order; each returns what it got."""
    greenlets = []
    for _ in range(count):
        greenlets.append(gevent.spawn(queue.wait, deadline))
        gevent.sleep(0)  # let it queue before the next one comes
    return greenlets


def test_fifo_hands_items_in_arrival_order():
    queue = WaitQueue(Returns())
    greenlets = waiters(queue, 5)
    for item in range(5):
        assert queue.hand_off(item)
    assert [g.get(timeout=5) for g in greenlets] == [0, 1, 2, 3, 4]
    assert len(queue) == 0 and queue.in_flight() == []


def test_hand_off_to_nobody_returns_false():
    queue = WaitQueue(Returns())
    assert not queue.hand_off("conn")


def test_own_timeout_leaves_the_queue_at_once():
    """A waiter whose deadline passes gets TIMED_OUT and is gone from the queue."""
    queue = WaitQueue(Returns())
    greenlet = gevent.spawn(queue.wait, time.monotonic() + 0.01)
    assert greenlet.get(timeout=5) is TIMED_OUT
    assert len(queue) == 0
    assert not queue.hand_off("conn")


def test_no_pile_up_of_timed_out_waiters():
    """Thousands of timed-out waiters leave nothing queued behind them."""
    queue = WaitQueue(Returns())
    greenlets = [gevent.spawn(queue.wait, time.monotonic()) for _ in range(2000)]
    gevent.joinall(greenlets, timeout=10)
    assert all(g.value is TIMED_OUT for g in greenlets)
    assert len(queue) == 0 and queue._queue == {}


def test_killed_waiter_leaves_the_queue_at_once():
    queue = WaitQueue(Returns())
    first, second = waiters(queue, 2)
    first.kill()
    assert len(queue) == 1
    assert queue.hand_off("conn")
    assert second.get(timeout=5) == "conn"


def test_waiter_killed_after_the_hand_off_passes_the_item_on():
    """Handed an item, then killed before it ran: the item is not lost."""
    returns = Returns()
    queue = WaitQueue(returns)
    (greenlet,) = waiters(queue, 1)
    greenlet.kill(block=False)  # delivered before the hand-off's wake-up
    assert queue.hand_off("conn")
    assert queue.in_flight() == ["conn"]
    greenlet.join(timeout=5)
    assert returns.items == ["conn"]
    assert queue.in_flight() == [] and len(queue) == 0


def test_outer_timeout_after_the_hand_off_passes_the_item_on():
    """The caller's own Timeout comes out as itself, and the item goes back."""
    returns = Returns()
    queue = WaitQueue(returns)
    outer = gevent.Timeout(60)
    caught = []

    def wait_under_outer_timeout():
        try:
            queue.wait(None)
        except gevent.Timeout as error:
            caught.append(error)

    (greenlet,) = [gevent.spawn(wait_under_outer_timeout)]
    gevent.sleep(0)
    greenlet.kill(outer, block=False)  # the caller's timer fires first
    assert queue.hand_off("conn")
    greenlet.join(timeout=5)
    assert caught == [outer]
    assert returns.items == ["conn"]


def test_outer_timeout_while_queued_comes_out_as_itself():
    queue = WaitQueue(Returns())

    def wait():
        with gevent.Timeout(0.01):
            return queue.wait(time.monotonic() + 60)

    with pytest.raises(gevent.Timeout):
        gevent.spawn(wait).get(timeout=5)
    assert len(queue) == 0


def test_own_timeout_racing_the_hand_off_takes_the_item():
    """Handed an item as its deadline passed: it keeps what it was handed.

    The hub is blocked past the deadline, so the waiter's timer and the
    hand-off's wake-up are both due when it runs; either order gives it the
    item, and nothing is passed on.
    """
    returns = Returns()
    queue = WaitQueue(returns)
    greenlet = gevent.spawn(queue.wait, time.monotonic() + 0.01)
    gevent.sleep(0)
    time.sleep(0.02)  # blocks the hub: the deadline passes with nobody running
    assert queue.hand_off("conn")
    assert greenlet.get(timeout=5) == "conn"
    assert returns.items == [] and queue.in_flight() == []


def test_two_waiters_one_dies():
    """The live waiter is served; the dead one swallows nothing."""
    returns = Returns()
    queue = WaitQueue(returns)
    dead, live = waiters(queue, 2)
    dead.kill()
    assert queue.hand_off("conn")
    assert live.get(timeout=5) == "conn"
    assert returns.items == [] and len(queue) == 0


def test_wake_all_signals_every_waiter():
    queue = WaitQueue(Returns())
    greenlets = waiters(queue, 3)
    queue.wake_all(CLOSED)
    assert [g.get(timeout=5) for g in greenlets] == [CLOSED] * 3
    assert len(queue) == 0


def test_adaptive_is_fifo_without_a_standing_queue():
    queue = WaitQueue(Returns(), "adaptive", target=0.005, interval=60)
    greenlets = waiters(queue, 3)
    for item in range(3):
        assert queue.hand_off(item)
    assert [g.get(timeout=5) for g in greenlets] == [0, 1, 2]
    assert not queue.standing


def test_adaptive_serves_newest_first_under_a_standing_queue():
    """A queue that has not emptied for an interval: the oldest waiter, past
    the interval, is shed; the others are served newest first."""
    queue = WaitQueue(Returns(), "adaptive", target=1e-9, interval=0.05)
    (oldest,) = waiters(queue, 1)
    time.sleep(0.06)  # the queue stands: nobody runs, nobody leaves
    middle, newest = waiters(queue, 2)
    assert queue.hand_off("a")
    assert queue.standing
    assert queue.hand_off("b")
    assert oldest.get(timeout=5) is SHED_STANDING
    assert newest.get(timeout=5) == "a"
    assert middle.get(timeout=5) == "b"
    assert queue.shed_total == 1 and len(queue) == 0
    assert not queue.standing  # an empty queue stands no more


def test_adaptive_sheds_a_waiter_that_cannot_use_the_item():
    """Too little time left before its deadline: shed, and the item goes on."""
    queue = WaitQueue(Returns(), "adaptive", target=0.05, interval=60)
    short = gevent.spawn(queue.wait, time.monotonic() + 0.02)
    gevent.sleep(0)
    patient = gevent.spawn(queue.wait, None)
    gevent.sleep(0)
    assert queue.hand_off("conn")
    assert short.get(timeout=5) is SHED_DEADLINE
    assert patient.get(timeout=5) == "conn"


def test_shed_waiter_killed_loses_nothing():
    """A waiter shed (or skipped by LIFO) and then killed loses no item."""
    returns = Returns()
    queue = WaitQueue(returns, "adaptive", target=0.05, interval=60)
    short = gevent.spawn(queue.wait, time.monotonic() + 0.02)
    gevent.sleep(0)
    patient = gevent.spawn(queue.wait, None)
    gevent.sleep(0)
    short.kill(block=False)
    patient.kill(block=False)  # handed the item, killed before it ran
    assert queue.hand_off("conn")
    gevent.joinall([short, patient], timeout=5)
    assert returns.items == ["conn"]
    assert len(queue) == 0 and queue.in_flight() == []
