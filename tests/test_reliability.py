"""Reliability: the pool's books hold at every interruption point (issue 10).

One story per defect class of issue 10 (items 1 to 10; item 11 is covered by
``test_lifecycle.py``). Each test states its rule, drives the interleaving that
broke the rule before the pool core was rewritten (commit 61248b8 and earlier),
and ends with the books checked: ``open == idle + in_use``, no waiter left,
no lease left, ``slots == open + connecting``, and where the server runs in
another process, the process's socket descriptors equal ``stats()["open"]``.

Real sockets on loopback only, no mocks; synchronisation by events. Fork
stories use ``os.fork()`` directly against a server in a subprocess (so the
server is not forked with the test) and report the child's view through a
pipe; the child always leaves with ``os._exit``.
"""

import concurrent.futures
import contextlib
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import tracemalloc

import gevent
import gevent.select
import pytest
from gevent.event import Event
from thriftpy2.thrift import TApplicationException

from green_happybase import (
    ConnectionFailed,
    ConnectionPool,
    PoolClosed,
    PoolError,
    PoolExhausted,
    ReplyMismatch,
)
from green_happybase import pool as pool_module
from green_happybase.errors import ConnectDeadline
from green_happybase.testing import HBaseServer
from green_happybase.urls import parse_url
from poolkit import ROWS, ask, fill_table, hanging_listener, make_pool, socket_fds

HANG = 10  # seconds: a bound that only a hang reaches


# -- helpers -------------------------------------------------------------------



def books(pool, leased=0):
    """The pool's books at a quiet moment; returns ``stats()``."""
    stats = pool.stats()
    assert stats["open"] == stats["idle"] + stats["in_use"], stats
    assert stats["waiting"] == 0 and len(pool._waiters) == 0, stats
    assert stats["in_use"] == len(pool._leases) == leased, (stats, pool._leases)
    assert stats["connecting"] == 0, stats
    assert pool._n_slots == stats["open"] + stats["connecting"], (pool._n_slots, stats)
    assert all(conn._socket.sock is not None for conn in idle_stack(pool)), \
        "a closed connection is on the idle stack"
    return stats


def idle_stack(pool):
    """The connections on the idle stack (a list, or a LifoQueue's list)."""
    return list(getattr(pool._idle, "queue", pool._idle))


def fds_match(pool, base):
    """The process holds exactly the pool's open sockets beyond *base*."""
    return socket_fds() - base == pool.stats()["open"]




def pools_free_fds():
    """Socket descriptors held by no live pool (open or connecting).

    A forked child forgets every pool's connections, those of other tests'
    pools too: its own sockets are counted from this figure, taken in the
    parent just before the fork.
    """
    held = sum(p._n_open + len(p._connecting) for p in list(pool_module._live_pools))
    return socket_fds() - held


def child_books(pool, base):
    """The books as seen from a forked child, as a JSON-able dict.

    *base*: :func:`pools_free_fds` in the parent just before the fork.
    """
    stats = pool.stats()
    return {
        "balanced": stats["open"] == stats["idle"] + stats["in_use"],
        "waiting": stats["waiting"], "queued": len(pool._waiters),
        "leases": len(pool._leases), "slots": pool._n_slots,
        "open": stats["open"], "connecting": stats["connecting"],
        "fds": socket_fds() - base,
    }


def assert_child_books(seen):
    assert seen["balanced"], seen
    assert seen["waiting"] == seen["queued"] == seen["leases"] == seen["connecting"] == 0, seen
    assert seen["slots"] == seen["open"] == seen["fds"], seen


def fork_child(body):
    """Fork; the child runs ``body()`` and writes its JSON result to a pipe.

    Returns ``(pid, read_end)`` in the parent; see :func:`child_result`.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            try:
                result = body()
            except BaseException as error:
                result = {"child_error": "%r\n%s" % (error, traceback.format_exc())}
            data = json.dumps(result).encode()
            while data:
                data = data[os.write(write_end, data):]
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def child_result(pid, read_end, timeout=HANG):
    """Read the child's JSON result without blocking the hub; reap the child."""
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, 9)
                raise AssertionError("the forked child did not answer in %s s" % timeout)
            ready, _, _ = gevent.select.select([read_end], [], [], remaining)
            if ready:
                data = os.read(read_end, 65536)
                if not data:
                    break
                chunks.append(data)
    finally:
        os.close(read_end)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # reaped by gevent's SIGCHLD watcher
    result = json.loads(b"".join(chunks).decode() or "{}")
    assert "child_error" not in result, result["child_error"]
    return result


def open_connections(pool, count):
    """Lease *count* connections at once, then return them all in one turn."""
    gate, all_leased = Event(), Event()
    leased = []

    def hold():
        with pool.connection():
            leased.append(1)
            if len(leased) == count:
                all_leased.set()
            gate.wait(HANG)

    holders = [gevent.spawn(hold) for _ in range(count)]
    assert all_leased.wait(HANG)
    gate.set()
    gevent.joinall(holders, timeout=HANG, raise_error=True)


def right(table, key):
    return table.row(b"row-%d" % key)[b"f:v"] == b"value-%d" % key


def classify(calls):
    """Run *calls* (callables returning bool); count outcomes by kind."""
    outcomes = {}
    for call in calls:
        try:
            kind = "right" if call() else "wrong"
        except ReplyMismatch:
            kind = "ReplyMismatch"
        except Exception as error:
            kind = type(error).__name__
        outcomes[kind] = outcomes.get(kind, 0) + 1
    return outcomes


@pytest.fixture(scope="module")
def remote_server():
    """A server in another process: forks leave it alone, fds are ours only."""
    with HBaseServer(subprocess=True) as server:
        setup = ConnectionPool(1, host=server.host, port=server.port)
        fill_table(setup)
        setup.close()
        yield server


@pytest.fixture
def remote(remote_server):
    yield remote_server
    remote_server.start()
    remote_server.set_latency(0)
    remote_server.close_after(None)


# -- 1. interrupted hooks ----------------------------------------------------------

class YieldingHook:
    """A hook that, once armed, signals and then yields for a long time."""

    def __init__(self):
        self.armed = False
        self.entered = Event()
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        if self.armed:
            self.armed = False
            self.entered.set()
            gevent.sleep(HANG)


def _use_once(pool):
    with pool.connection() as conn:
        conn.tables()


@pytest.mark.parametrize("how", ["timeout", "kill"])
@pytest.mark.parametrize("hook", ["on_connect", "on_checkout", "on_checkin", "on_discard"])
def test_a_hook_cut_by_a_timeout_or_a_kill_costs_no_slot(remote, hook, how):
    """A hook that yields and is hit by a ``gevent.Timeout`` or a kill costs
    neither a slot nor a connection: the ``BaseException`` reaches the caller
    after the books are right, no socket is left behind, and a pool of size 1
    keeps serving."""
    base = socket_fds()
    yielding = YieldingHook()
    options = {hook: yielding}
    if hook == "on_discard":
        options["max_idle"] = 0  # every returned connection is discarded
    pool = make_pool(remote, size=1, autoconnect=False, **options)
    seen = []

    def caller():
        try:
            if how == "timeout":
                timer = gevent.Timeout(0.05)
                with timer:
                    _use_once(pool)
            else:
                _use_once(pool)
        except BaseException as error:
            seen.append(error)
            raise
        seen.append("returned")

    yielding.armed = True
    worker = gevent.spawn(caller)
    assert yielding.entered.wait(HANG)
    if how == "kill":
        worker.kill(block=True, timeout=HANG)
    worker.join(HANG)
    assert worker.dead
    assert len(seen) == 1
    if how == "timeout":
        assert isinstance(seen[0], gevent.Timeout)
    else:
        assert isinstance(seen[0], gevent.GreenletExit)
    books(pool)
    assert fds_match(pool, base)
    # size=1: the one slot is free again.
    for key in range(3):
        assert ask(pool, key, timeout=2)
    books(pool)
    assert fds_match(pool, base)


def test_a_hook_cut_inside_the_maintainer_does_not_stop_maintenance(hbase_server):
    """An ``on_connect`` hook whose own ``gevent.Timeout`` escapes while the
    maintainer refills *min_size* costs no slot, and maintenance goes on: the
    next round refills the pool."""
    connected = Event()
    calls = []

    def on_connect(conn):
        calls.append(gevent.getcurrent())
        connected.set()
        if len(calls) == 2:  # the maintainer's first refill
            with gevent.Timeout(0.001):
                gevent.sleep(0.1)  # the hook's own timeout escapes it

    pool = make_pool(hbase_server, size=2, min_size=1, idle_timeout=0.4,
                     retry_interval=0.05, on_connect=on_connect)
    assert len(calls) == 1
    with pool.connection() as conn:
        conn.close()  # the connection comes back closed and is discarded
    assert pool.stats()["open"] == 0
    for _ in range(50):  # bounded: the maintainer refills within rounds
        if len(calls) >= 3 and pool.stats()["open"] == 1:
            break
        connected.clear()
        connected.wait(0.1)
    assert len(calls) >= 2 and calls[1] is not gevent.getcurrent()  # the maintainer
    assert len(calls) >= 3, "the maintainer died with the hook's Timeout"
    assert not pool._maintainer.dead
    assert books(pool)["open"] == 1


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_a_lease_cut_while_closing_its_scanners_still_ends(remote, how):
    """A lease that ends with a scanner open closes it on the way out (one
    round trip). A ``gevent.Timeout`` or a kill during that round trip
    reaches the caller, and the lease still ends: the connection is
    discarded, its slot freed, a pool of size 1 keeps serving."""
    base = socket_fds()
    pool = make_pool(remote, size=1, timeout=3000)
    left_open, closing = [], Event()
    seen = []

    def scanning():
        try:
            with pool.connection() as conn:
                rows = conn.table("t").scan(batch_size=2)
                next(rows)  # a scanner is open on the server
                left_open.append(rows)  # and stays open past the lease
                remote.set_latency(0.5)
                closing.set()
                if how == "timeout":
                    gevent.Timeout.start_new(0.1)
        except BaseException as error:
            seen.append(error)
            raise

    worker = gevent.spawn(scanning)
    try:
        assert closing.wait(HANG)
        if how == "kill":
            gevent.sleep(0.1)  # the worker is closing the scanner, mid-call
            worker.kill(block=True, timeout=HANG)
        worker.join(HANG)
        remote.set_latency(0)
        assert worker.dead and len(seen) == 1
        expected = gevent.Timeout if how == "timeout" else gevent.GreenletExit
        assert isinstance(seen[0], expected), repr(seen[0])
        assert not pool._leases, "the lease outlived its greenlet"
        books(pool)
        assert fds_match(pool, base)
        assert ask(pool, 1, timeout=2)
        books(pool)
        assert fds_match(pool, base)
    finally:
        pool.close(timeout=0)  # whatever happened, no socket outlives the test
        for rows in left_open:
            with contextlib.suppress(Exception):
                rows.close()  # its own scannerClose is refused: not leased


# -- 2. fork -------------------------------------------------------------------------

def test_fork_while_a_greenlet_waits_never_shares_a_socket(remote):
    """A connection handed to a waiter just before ``os.fork()`` is used by
    the parent's waiter only; the child's copy of the waiter retries in the
    child's own pool. Real calls on both sides: no ``ReplyMismatch``, no wrong
    answer, each side's sockets are its own."""
    base = socket_fds()
    pool = make_pool(remote, size=1, timeout=3000)
    outcomes = {}

    def waiter():
        with pool.connection(timeout=HANG) as conn:
            table = conn.table("t")
            outcomes.update(classify(lambda k=k: right(table, k % ROWS) for k in range(60)))

    with pool.connection():
        worker = gevent.spawn(waiter)
        gevent.sleep(0)  # the worker queues (nothing idle, no slot free)
        assert pool.stats()["waiting"] == 1
    # The lease ended: the connection is handed to the worker, which has
    # not run yet. Fork now, before it runs.
    assert pool.stats()["waiting"] == 0 and not worker.dead

    def child():
        worker.join(HANG)
        return {"done": worker.dead, "outcomes": outcomes, "books": child_books(pool, free)}

    free = pools_free_fds()
    pid, read_end = fork_child(child)
    worker.join(HANG)
    seen = child_result(pid, read_end)
    assert worker.dead and outcomes == {"right": 60}
    assert seen["done"] and seen["outcomes"] == {"right": 60}, seen
    assert_child_books(seen["books"])
    books(pool)
    assert fds_match(pool, base)
    assert ask(pool, 1)


def test_a_child_running_its_hub_early_leaves_the_parents_calls_alone(remote):
    """A child whose hub runs before its first lease (a ``gevent.sleep``
    right after fork) while parent greenlets are mid-call: the child's copies
    of those greenlets never read the parent's replies; every parent call
    gets its own right answer."""
    base = socket_fds()
    pool = make_pool(remote, size=4, timeout=5000)
    open_connections(pool, 4)
    remote.set_latency(0.3)
    callers = [gevent.spawn(ask, pool, key) for key in range(4)]
    gevent.sleep(0)  # each sent its request and waits for the reply
    assert len(pool._leases) == 4 and all(c._in_call for c in pool._leases.values())

    def child():
        gevent.sleep(0.6)  # the hub runs the inherited greenlets
        early = child_books(pool, free)
        answers = classify(lambda k=k: ask(pool, k) for k in range(3))
        return {"early": early, "answers": answers, "books": child_books(pool, free)}

    free = pools_free_fds()
    pid, read_end = fork_child(child)
    # The parent is busy (its hub blocked) while the replies arrive: the
    # child, whose hub runs, would be first to read them from a shared socket.
    time.sleep(0.5)
    gevent.joinall(callers, timeout=HANG)
    remote.set_latency(0)
    seen = child_result(pid, read_end)
    # A reply read by the child would leave its caller to the 5 s socket timeout.
    assert [c.value for c in callers] == [True] * 4, [c.exception for c in callers]
    assert seen["early"]["open"] == seen["early"]["fds"] == 0, seen
    assert seen["answers"] == {"right": 3}, seen
    assert_child_books(seen["books"])
    books(pool)
    assert fds_match(pool, base)


def test_the_childs_copies_of_waiters_wake_at_once(remote):
    """Greenlets queued at fork time wake in the child at once and retry in
    the child's pool (well before their timeout); ``stats()["waiting"]``
    never goes negative in either process."""
    base = socket_fds()
    pool = make_pool(remote, size=1, timeout=3000)
    hold = Event()
    outcomes = []
    finished = {}

    def holder():
        with pool.connection():
            hold.wait(HANG)

    def waiter(key):
        started = time.monotonic()
        try:
            outcomes.append("right" if ask(pool, key, timeout=8) else "wrong")
        except Exception as error:
            outcomes.append(type(error).__name__)
        finished[key] = time.monotonic() - started

    holding = gevent.spawn(holder)
    gevent.sleep(0)
    waiters = [gevent.spawn(waiter, key) for key in range(5)]
    gevent.sleep(0)
    assert pool.stats()["waiting"] == 5

    def child():
        lowest = []
        done = Event()

        def sample():
            for _ in range(1000):
                lowest.append(pool.stats()["waiting"])
                if done.is_set():
                    return
                gevent.sleep(0.002)

        sampler = gevent.spawn(sample)
        hold.set()  # the child's copy of the holder lets go too
        gevent.joinall(waiters + [holding], timeout=3)
        done.set()
        sampler.join(1)
        return {"done": all(w.dead for w in waiters), "outcomes": outcomes,
                "slowest": max(finished.values()) if finished else None,
                "lowest": min(lowest), "books": child_books(pool, free)}

    free = pools_free_fds()
    pid, read_end = fork_child(child)
    hold.set()
    gevent.joinall(waiters + [holding], timeout=HANG)
    seen = child_result(pid, read_end)
    assert outcomes == ["right"] * 5
    assert seen["done"], seen
    assert seen["outcomes"] == ["right"] * 5, seen
    assert seen["slowest"] < 3, seen  # their timeout is 8 s
    assert seen["lowest"] >= 0, seen
    assert_child_books(seen["books"])
    books(pool)
    assert fds_match(pool, base)


def test_a_connect_in_progress_at_fork_is_retried_without_blaming_the_server():
    """A greenlet connecting when the process forks retries in the child; the
    child's copy of the cut connect is no failure of the server: no back-off,
    no connect error counted, the caller's own deadline still rules
    (``ConnectDeadline`` in both processes against a host that never
    answers)."""
    with hanging_listener() as port:
        base = socket_fds()
        pool = ConnectionPool(1, host="127.0.0.1", port=port, autoconnect=False,
                              retry_interval=5)
        try:
            outcome = []

            def connecting():
                try:
                    with pool.connection(timeout=0.5):
                        outcome.append("leased")
                except Exception as error:
                    outcome.append("%s: %s" % (type(error).__name__, error))

            worker = gevent.spawn(connecting)
            gevent.sleep(0)  # the worker is connecting
            assert pool.stats()["connecting"] == 1

            def child():
                worker.join(HANG)
                stats = pool.stats()
                return {"outcome": outcome,
                        "connect_errors": stats["connect_errors_total"],
                        "failures": stats["hosts"]["127.0.0.1:%d" % port]["failures"],
                        "books": child_books(pool, free)}

            free = pools_free_fds()
            pid, read_end = fork_child(child)
            worker.join(HANG)
            seen = child_result(pid, read_end)
            assert len(outcome) == 1 and outcome[0].startswith("ConnectDeadline")
            assert seen["outcome"] and seen["outcome"][0].startswith("ConnectDeadline"), seen
            assert seen["connect_errors"] == 0 and seen["failures"] == 0, seen
            assert_child_books(seen["books"])
            assert pool.stats()["connect_errors_total"] == 0
            books(pool)
            assert fds_match(pool, base)
        finally:
            pool.close()


def test_fork_while_idle_connections_expire_leaves_the_child_none_of_them(remote):
    """Fork while the maintainer expires idle connections inside a yielding
    ``on_discard``: the child holds none of the parent's sockets at fork
    time, not even those taken off the idle stack to be closed."""
    base = socket_fds()
    in_hook, proceed, all_gone = Event(), Event(), Event()
    reasons = []

    def on_discard(conn, reason):
        reasons.append(reason)
        if len(reasons) == 3:
            all_gone.set()
        if not in_hook.is_set():
            in_hook.set()
            proceed.wait(HANG)

    pool = make_pool(remote, size=3, idle_timeout=0.05, on_discard=on_discard)
    open_connections(pool, 3)
    assert in_hook.wait(HANG)  # the maintainer is expiring them

    def child():
        return {"fds": socket_fds() - free, "books": child_books(pool, free)}

    free = pools_free_fds()
    pid, read_end = fork_child(child)
    proceed.set()
    seen = child_result(pid, read_end)
    assert seen["fds"] == 0, seen
    assert_child_books(seen["books"])
    assert all_gone.wait(HANG), reasons
    books(pool)
    assert fds_match(pool, base)


def test_a_renew_in_progress_at_fork_does_not_blame_the_server_in_the_child(remote):
    """A lease renewing its socket (after a cut call) when the process forks:
    the child's copy of that renew fails as a lease from before the fork (a
    ``PoolError``, not a ``ConnectionFailed``), and the child counts no
    connect error and puts the server into no back-off."""
    pool = make_pool(remote, size=2, retry_interval=5, timeout=5000)
    address = "%s:%d" % (remote.host, remote.port)
    renewing = Event()
    outcome = []

    def holder():
        with pool.connection(timeout=0.5) as conn:
            _interrupt_a_call(remote, conn)
            remote.stop()
            with hanging_listener(remote.port):
                renewing.set()
                try:
                    conn.tables()  # renews: the connect hangs
                    outcome.append("answered")
                except Exception as error:
                    outcome.append(error)

    worker = gevent.spawn(holder)
    assert renewing.wait(HANG)
    gevent.sleep(0)  # the worker is connecting, inside the renew

    def child():
        worker.join(HANG)
        stats = pool.stats()
        error = outcome[0] if outcome else None
        return {"done": worker.dead, "outcome": repr(error),
                "pool_error": isinstance(error, PoolError),
                "connect_failed": isinstance(error, ConnectionFailed),
                "connect_errors": stats["connect_errors_total"],
                "failures": stats["hosts"][address]["failures"]}

    pid, read_end = fork_child(child)
    worker.join(HANG)
    seen = child_result(pid, read_end)
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectDeadline), outcome
    assert seen["done"] and seen["pool_error"] and not seen["connect_failed"], seen
    assert seen["connect_errors"] == 0 and seen["failures"] == 0, seen
    remote.start()
    books(pool)
    assert ask(pool, 9, timeout=2)
    books(pool)


# -- 3. renew after an interrupted call ------------------------------------------------

def _interrupt_a_call(server, conn):
    server.set_latency(0.5)
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.05):
            conn.tables()
    server.set_latency(0)
    assert conn._in_call


@pytest.mark.parametrize("outage", ["stop", "refuse"])
def test_a_renew_that_cannot_connect_fails_cleanly(remote, outage):
    """After a call cut inside a lease, the next call renews the socket.
    Against a stopped or refusing server the renew fails cleanly
    (``ConnectionFailed``), the connection is discarded at the lease's end,
    never stacked closed, and the pool serves again once the server is
    back."""
    base = socket_fds()
    pool = make_pool(remote, size=1, retry_interval=0.05, retry_max=0.1, timeout=3000)
    with pool.connection() as conn:
        _interrupt_a_call(remote, conn)
        if outage == "stop":
            remote.stop()
        else:
            remote.refuse_connections(1.0)
        for _ in range(2):  # a failed renew leaves it to renew again, or fail again
            with pytest.raises(ConnectionFailed):
                with gevent.Timeout(HANG, AssertionError("the renew hung")):
                    conn.tables()
            assert conn._in_call
    stats = books(pool)
    assert stats["open"] == 0 and stats["idle"] == 0
    assert fds_match(pool, base)
    if outage == "stop":
        remote.start()
    for _ in range(100):  # bounded: the back-off is 0.1 s at most
        try:
            assert ask(pool, 2, timeout=2)
            break
        except ConnectionFailed:
            gevent.sleep(0.05)
    else:
        pytest.fail("the pool never served again")
    books(pool)
    assert fds_match(pool, base)


def test_a_renew_obeys_the_leases_timeout(hbase_server):
    """A renew against a host that accepts no connection gives up at the
    lease's timeout with ``ConnectDeadline``, not after the OS's SYN retries;
    the pool serves again once the server is back."""
    pool = make_pool(hbase_server, size=1)
    fill_table(pool)
    with pool.connection(timeout=0.3) as conn:
        _interrupt_a_call(hbase_server, conn)
        hbase_server.stop()
        with hanging_listener(hbase_server.port):
            started = time.monotonic()
            with pytest.raises(ConnectDeadline):
                with gevent.Timeout(HANG, AssertionError("the renew hung")):
                    conn.tables()
            assert time.monotonic() - started < 3
            assert conn._in_call and conn._socket.sock is None
    stats = books(pool)
    assert stats["open"] == 0
    hbase_server.start()
    assert ask(pool, 3, timeout=2)
    books(pool)


# -- 4. close() races -------------------------------------------------------------------

def test_a_force_closed_leases_holder_gets_pool_closed_and_no_new_socket(remote):
    """After ``close(timeout)`` force-closes a lease, every later call of its
    holder raises ``PoolClosed``; none opens a socket."""
    base = socket_fds()
    pool = make_pool(remote, size=2)
    entered, go = Event(), Event()
    outcomes = []

    def holder():
        with pool.connection() as conn:
            conn.tables()
            entered.set()
            go.wait(HANG)
            for _ in range(2):
                try:
                    conn.tables()
                    outcomes.append("answered")
                except PoolClosed:
                    outcomes.append("PoolClosed")
                except BaseException as error:
                    outcomes.append(repr(error))

    worker = gevent.spawn(holder)
    assert entered.wait(HANG)
    pool.close(timeout=0.05)
    assert socket_fds() == base
    go.set()
    worker.join(HANG)
    assert worker.successful()
    assert outcomes == ["PoolClosed", "PoolClosed"]
    assert socket_fds() == base
    stats = books(pool)
    assert stats["open"] == 0 and stats["closed"]


def test_a_connect_in_progress_at_close_is_not_handed_out(remote):
    """A connection whose ``on_connect`` hook is running when the pool is
    closed is closed, not leased: its caller gets ``PoolClosed`` and no
    socket remains."""
    base = socket_fds()
    in_hook, go = Event(), Event()

    def on_connect(conn):
        in_hook.set()
        go.wait(HANG)

    pool = make_pool(remote, size=2, autoconnect=False, on_connect=on_connect)
    outcome = []

    def caller():
        try:
            with pool.connection() as conn:
                outcome.append(conn.tables())
        except Exception as error:
            outcome.append(error)

    worker = gevent.spawn(caller)
    assert in_hook.wait(HANG)
    closer = gevent.spawn(pool.close, 1.0)
    gevent.sleep(0)  # close() ran: the connect in progress is closed
    go.set()
    gevent.joinall([worker, closer], timeout=HANG)
    assert closer.successful()
    assert len(outcome) == 1 and isinstance(outcome[0], PoolClosed), outcome
    assert socket_fds() == base
    assert books(pool)["open"] == 0


def test_a_connect_hanging_at_close_ends_with_pool_closed():
    """A TCP connect still in progress when the pool is closed is cut at
    once; its caller gets ``PoolClosed`` (the server did not fail: no
    back-off, no connect error counted) and no socket remains."""
    with hanging_listener() as port:
        base = socket_fds()
        pool = ConnectionPool(2, host="127.0.0.1", port=port, autoconnect=False)
        outcome = []

        def caller():
            try:
                with pool.connection():
                    outcome.append("leased")
            except Exception as error:
                outcome.append(error)

        worker = gevent.spawn(caller)
        gevent.sleep(0)
        assert pool.stats()["connecting"] == 1
        pool.close()
        worker.join(HANG)
        assert worker.dead and len(outcome) == 1
        assert isinstance(outcome[0], PoolClosed), repr(outcome[0])
        assert pool.stats()["connect_errors_total"] == 0
        assert socket_fds() == base
        assert books(pool)["open"] == 0


def test_a_slot_handed_just_before_close_opens_nothing_after_it(remote):
    """A waiter handed a free slot (its holder's connection was discarded)
    just before ``close()`` gets ``PoolClosed`` without connecting: nothing
    is opened on a closed pool."""
    base = socket_fds()
    connects = []
    pool = make_pool(remote, size=1, on_connect=connects.append)
    accepted = remote.stats()["accepted"]
    outcome = []

    def waiter():
        try:
            with pool.connection(timeout=HANG):
                outcome.append("leased")
        except Exception as error:
            outcome.append(error)

    with pool.connection() as conn:
        worker = gevent.spawn(waiter)
        gevent.sleep(0)
        assert pool.stats()["waiting"] == 1
        conn.close()  # returned closed: discarded, its slot goes to the waiter
    pool.close()
    worker.join(HANG)
    assert len(outcome) == 1 and isinstance(outcome[0], PoolClosed), outcome
    assert len(connects) == 1, "a connection was opened after close()"
    assert remote.stats()["accepted"] == accepted
    assert socket_fds() == base
    stats = books(pool)
    assert stats["open"] == 0 and pool._n_slots == 0


def test_close_racing_a_killed_waiter_lets_the_kill_through(hbase_server):
    """A waiter that ``close()`` woke with ``PoolClosed`` and that is killed
    before it runs dies of its kill (``GreenletExit``), not of an error
    inside the wait queue; nothing is left queued."""
    pool = make_pool(hbase_server, size=1)
    with pool.connection():
        waiter = gevent.spawn(_use_once, pool)
        gevent.sleep(0)
        assert pool.stats()["waiting"] == 1
        # In one turn of the hub: a greenlet closes the pool (waking the
        # waiter), then the waiter is killed before its wake-up runs.
        closer = gevent.spawn(pool.close)
        waiter.kill(block=False)
        gevent.joinall([closer, waiter], timeout=HANG)
    assert closer.successful()
    assert waiter.dead
    assert isinstance(waiter.value, gevent.GreenletExit), repr(waiter.exception)
    assert books(pool)["open"] == 0


def test_two_closers_both_return_as_soon_as_the_leases_come_back(remote):
    """Several greenlets in ``close(timeout)`` wait on one drain: all return
    when the last lease comes back, none sits out its timeout."""
    pool = make_pool(remote, size=2)
    entered, release = Event(), Event()

    def holder():
        with pool.connection():
            entered.set()
            release.wait(HANG)

    worker = gevent.spawn(holder)
    assert entered.wait(HANG)
    returned = {}

    def closer(name):
        pool.close(timeout=HANG)
        returned[name] = time.monotonic()

    closers = [gevent.spawn(closer, name) for name in ("first", "second")]
    gevent.sleep(0)  # both wait for the lease
    assert not returned
    released = time.monotonic()
    release.set()
    gevent.joinall(closers + [worker], timeout=HANG - 2)
    assert sorted(returned) == ["first", "second"], returned
    assert all(at - released < 5 for at in returned.values()), returned
    assert books(pool)["open"] == 0


def test_close_while_the_maintainer_expires_inside_a_yielding_hook_leaves_nothing_open(remote):
    """``close()`` while the maintainer is inside a yielding ``on_discard``
    (expiring idle connections): every expiring connection is still closed
    and uncounted, nothing stays open."""
    base = socket_fds()
    in_hook, proceed = Event(), Event()
    reasons = []

    def on_discard(conn, reason):
        reasons.append(reason)
        if not in_hook.is_set():
            in_hook.set()
            proceed.wait(HANG)

    pool = make_pool(remote, size=3, idle_timeout=0.05, on_discard=on_discard)
    open_connections(pool, 3)
    assert in_hook.wait(HANG)  # the maintainer is expiring them
    maintainer = pool._maintainer
    pool.close()
    proceed.set()
    maintainer.join(HANG)
    assert maintainer.dead
    # Expired by the maintainer, or closed by close() if still idle then.
    assert len(reasons) == 3 and reasons[0] == "idle_timeout", reasons
    stats = books(pool)
    assert stats["open"] == 0 and pool._n_slots == 0
    assert socket_fds() == base


# -- 5. lost wake-ups and pile-ups -------------------------------------------------------

def test_a_caller_is_served_while_idle_expiry_yields(remote):
    """While the maintainer expires an idle connection (inside a yielding
    ``on_discard``), the connections it keeps stay available: callers, and
    those that must queue behind them, are served at once."""
    base = socket_fds()
    in_hook, proceed = Event(), Event()

    def on_discard(conn, reason):
        if reason == "idle_timeout" and not in_hook.is_set():
            in_hook.set()
            proceed.wait(HANG)

    pool = make_pool(remote, size=2, min_size=1, idle_timeout=0.05, on_discard=on_discard)
    open_connections(pool, 2)
    assert in_hook.wait(HANG)  # one expires, one is kept (min_size=1)
    callers = [gevent.spawn(ask, pool, key, timeout=2) for key in range(3)]
    gevent.joinall(callers, timeout=HANG)
    assert not proceed.is_set()  # all served while the hook still yields
    assert [c.value for c in callers] == [True] * 3, [c.exception for c in callers]
    proceed.set()
    gevent.sleep(0)
    books(pool)
    assert fds_match(pool, base)


def test_timed_out_acquires_leave_no_waiter_behind(hbase_server):
    """20,000 acquires timing out behind one stuck lease: each waiter leaves
    the queue at once; the queue ends empty and memory stays flat."""
    pool = make_pool(hbase_server, size=1)
    outcomes = {}

    def acquire():
        try:
            with pool.connection(timeout=1e-6):
                kind = "leased"
        except PoolExhausted:
            kind = "exhausted"
        outcomes[kind] = outcomes.get(kind, 0) + 1

    def acquire_many(count):
        for _ in range(count):
            acquire()
        return len(pool._waiters)

    with pool.connection():  # stuck for the whole test
        queued = gevent.spawn(acquire_many, 15000).get(timeout=60)
        assert queued == 0
        # The last 5,000 traced (tracing all would triple the test's time).
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            queued = gevent.spawn(acquire_many, 5000).get(timeout=60)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert outcomes == {"exhausted": 20000}
        assert queued == 0 and len(pool._waiters) == 0 and pool.stats()["waiting"] == 0
        assert grown < 1_000_000, grown  # 5,000 dead waiters took ~6 MB
        books(pool, leased=1)
    books(pool)


# -- 6. refill never spins -----------------------------------------------------------------

def test_refill_never_spins(hbase_server):
    """Settings that would make the refill open what the return path closes
    are refused, naming both options; a short ``max_lifetime`` with
    *min_size* refills at most at the back-off pace."""
    with pytest.raises(ValueError, match="max_idle") as info:
        ConnectionPool(4, host=hbase_server.host, port=hbase_server.port,
                       min_size=3, max_idle=1)
    assert "min_size" in str(info.value)
    with pytest.raises(ValueError, match="max_lifetime") as info:
        ConnectionPool(4, host=hbase_server.host, port=hbase_server.port,
                       min_size=1, max_lifetime=0)
    assert "min_size" in str(info.value)
    accepted = hbase_server.stats()["accepted"]
    pool = make_pool(hbase_server, size=4, min_size=1, max_lifetime=1)
    gevent.sleep(2)  # the window measured, not a synchronisation
    opened = hbase_server.stats()["accepted"] - accepted
    assert 1 <= opened < 20, opened
    assert books(pool)["open"] == 1


# -- 7. zero and tiny timeouts -------------------------------------------------------------

def test_zero_timeout_connects_when_a_slot_is_free_and_never_waits(remote):
    """``timeout=0``, ``block=False`` and ``acquire_timeout=0`` open a
    connection when a slot is free; at *size* with nothing idle they raise
    ``PoolExhausted`` at once."""
    base = socket_fds()
    pool = make_pool(remote, size=1, autoconnect=False)
    with pool.connection(timeout=0) as conn:
        assert b"t" in conn.tables()
    assert books(pool)["open"] == 1
    zero = make_pool(remote, size=1, acquire_timeout=0, autoconnect=False)
    with zero.connection() as conn:
        assert b"t" in conn.tables()
    unblocked = make_pool(remote, size=1, autoconnect=False)
    with unblocked.connection(block=False) as conn:
        assert b"t" in conn.tables()

    def other(target, **lease):
        started = time.monotonic()
        with pytest.raises(PoolExhausted):
            with target.connection(**lease):
                pass
        return time.monotonic() - started

    for target, lease in ((pool, {"timeout": 0}), (zero, {}), (unblocked, {"block": False})):
        with target.connection():
            elapsed = gevent.spawn(other, target, **lease).get(timeout=HANG)
            assert elapsed < 1
        books(target)
    assert socket_fds() - base == sum(p.stats()["open"] for p in (pool, zero, unblocked))


def test_a_tiny_timeout_under_contention_is_pool_exhausted(remote):
    """A 1 ms timeout under contention ends in a right answer or in
    ``PoolExhausted`` (``ConnectDeadline`` when it expired while
    connecting), never in a plain ``ConnectionFailed``. Connections expire
    as they come back, so waiters are handed free slots to connect with
    when their deadline is all but gone."""
    base = socket_fds()
    outcomes = {}
    for _ in range(5):
        pool = make_pool(remote, size=2, autoconnect=False, max_lifetime=0.001)

        def one(key, pool=pool):
            try:
                return "right" if ask(pool, key % ROWS, timeout=0.001) else "wrong"
            except PoolExhausted as error:
                return type(error).__name__
            except Exception as error:
                return "%s: %s" % (type(error).__name__, error)

        askers = [gevent.spawn(one, key) for key in range(50)]
        gevent.joinall(askers, timeout=HANG)
        for asker in askers:
            outcomes[asker.value] = outcomes.get(asker.value, 0) + 1
        books(pool)
        pool.close()
    assert sum(outcomes.values()) == 250
    assert set(outcomes) <= {"right", "PoolExhausted", "ConnectDeadline"}, outcomes
    assert socket_fds() == base


# -- 8. table() with a name happybase rejects ------------------------------------------------

@pytest.mark.parametrize("name", [None, 123, 4.5])
def test_a_table_name_happybase_rejects_releases_the_lease(remote, name):
    """``pool.table(name)`` for a name happybase refuses raises its error
    and ends the lease; a pool of size 1 keeps serving."""
    pool = make_pool(remote, size=1)
    with pytest.raises(TypeError):
        with pool.table(name):
            pass
    assert not pool._leases
    books(pool)
    with pool.table("t", timeout=2) as table:
        assert right(table, 4)
    books(pool)


# -- 9. OS threads ----------------------------------------------------------------------------

def test_another_os_thread_gets_a_clear_pool_error_at_once(remote):
    """A pool belongs to the thread that first used it. From a
    ``ThreadPoolExecutor`` (no monkey-patching) a lease, a table lease or
    ``close()`` raises ``PoolError`` at once naming both threads, never a
    gevent internal error or a hang; ``stats()`` works from any thread; the
    owning thread keeps working."""
    pool = make_pool(remote, size=2)
    owner = threading.get_ident()
    attempts = {
        "lease": lambda: pool.connection().__enter__(),
        "lease with timeout": lambda: pool.connection(timeout=0.5).__enter__(),
        "table": lambda: pool.table("t").__enter__(),
        "close": lambda: pool.close(timeout=0.5),
    }

    def from_thread():
        me = threading.get_ident()
        seen = {}
        for name, attempt in attempts.items():
            started = time.monotonic()
            try:
                attempt()
                seen[name] = "no error"
            except PoolError as error:
                seen[name] = ("PoolError", str(error), time.monotonic() - started)
            except BaseException as error:
                seen[name] = repr(error)
        return me, seen, pool.stats()

    executor = concurrent.futures.ThreadPoolExecutor(4)
    try:
        futures = [executor.submit(from_thread) for _ in range(8)]
        results = [future.result(timeout=HANG) for future in futures]
    finally:
        executor.shutdown(wait=False)
    for me, seen, stats in results:
        assert me != owner
        for name, outcome in seen.items():
            assert outcome[0] == "PoolError", (name, outcome)
            message, elapsed = outcome[1], outcome[2]
            assert "%#x" % owner in message and "%#x" % me in message, message
            assert elapsed < 1
        assert stats["open"] == 1 and not stats["closed"]
    assert ask(pool, 5)
    books(pool)


def test_a_pool_first_used_by_a_worker_thread_belongs_to_it(remote):
    """Without autoconnect the first lease binds the pool: a worker thread
    that leases first owns it, and the constructing thread then gets
    ``PoolError``."""
    pool = ConnectionPool(1, host=remote.host, port=remote.port, autoconnect=False)
    executor = concurrent.futures.ThreadPoolExecutor(1)  # one thread, reused
    try:
        worker = executor.submit(threading.get_ident).result(timeout=HANG)

        def use():
            with pool.connection() as conn:
                return right(conn.table("t"), 6)

        assert executor.submit(use).result(timeout=HANG)
        with pytest.raises(PoolError) as info:
            with pool.connection():
                pass
        assert "%#x" % worker in str(info.value)
        assert "%#x" % threading.get_ident() in str(info.value)
        assert pool.stats()["open"] == 1  # stats() from any thread
        executor.submit(pool.close).result(timeout=HANG)
        assert pool.stats()["closed"] and pool.stats()["open"] == 0
    finally:
        executor.shutdown(wait=False)


THREADS_SCRIPT = textwrap.dedent("""
    import concurrent.futures, json, sys
    from green_happybase import ConnectionPool, PoolError
    pool = ConnectionPool(2, host=sys.argv[1], port=int(sys.argv[2]), timeout=3000)

    def work(_):
        refused = 0
        for _ in range(50):
            try:
                with pool.connection(timeout=1) as conn:
                    conn.tables()
            except PoolError:
                refused += 1  # caught, and the caller carries on
        return refused

    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        refused = list(executor.map(work, range(8)))
    with pool.connection() as conn:
        owner_ok = conn.tables() == [b"t"]
    pool.close()
    print(json.dumps({"refused": refused, "owner_ok": owner_ok}))
""")


def test_threads_that_catch_the_error_and_carry_on_do_not_hang_the_process(remote):
    """A program whose threads catch the ``PoolError`` and carry on runs to
    its end and exits (run in a subprocess, bounded)."""
    done = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, remote.host,
                           str(remote.port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"refused": [50] * 8, "owner_ok": True}


# -- 10. server errors stringify --------------------------------------------------------------

def test_server_application_errors_stringify(remote):
    """A ``TApplicationException`` from the server (an unknown method, a
    handler error) has a text message: ``str()`` works and says what
    happened; the connection stays usable."""
    pool = make_pool(remote, size=1)
    with pool.connection() as conn:
        with pytest.raises(TApplicationException) as info:
            conn.client.getRowOrBefore(b"t", b"row-1", b"f")  # unknown to HBase 2
        assert isinstance(info.value.message, str)
        assert "getRowOrBefore" in str(info.value)
        with pytest.raises(TApplicationException) as info:
            conn.table("bad name!").row(b"row-1")  # a handler error
        assert isinstance(info.value.message, str)
        assert "getRowWithColumns" in str(info.value) or "Illegal" in str(info.value)
        assert right(conn.table("t"), 7)
    assert books(pool)["open"] == 1


# -- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("keyword", ["max_size", "pool_size"])
def test_a_misspelt_size_is_a_type_error_suggesting_size(keyword):
    """Unknown keywords are a ``TypeError`` naming them and the right one."""
    with pytest.raises(TypeError) as info:
        ConnectionPool(10, autoconnect=False, **{keyword: 10})
    assert repr(keyword) in str(info.value) and "'size'" in str(info.value)


def test_a_timeout_in_seconds_warns_that_it_is_milliseconds(caplog):
    """``timeout=5`` is 5 ms for happybase: the pool says so."""
    with caplog.at_level(logging.WARNING, logger="green_happybase"):
        pool = ConnectionPool(1, timeout=5, autoconnect=False)
    pool.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("millisecond" in message and "5" in message for message in warnings), warnings


def test_ipv6_hosts_parse_the_same_in_hosts_and_urls():
    """``"[::1]:9090"`` and ``"::1"`` mean the same server in ``hosts=`` and
    in URLs."""
    pools = [
        ConnectionPool(1, hosts=["[::1]:9090"], autoconnect=False),
        ConnectionPool(1, hosts=["::1"], autoconnect=False),
        ConnectionPool(1, hosts=[("::1", 9090)], autoconnect=False),
        ConnectionPool.from_url("hbase://[::1]:9090/?size=1&autoconnect=false"),
        ConnectionPool.from_url("hbase://[::1]/?size=1&autoconnect=false"),
    ]
    for pool in pools:
        assert list(pool.stats()["hosts"]) == ["[::1]:9090"]
        pool.close()
    for url in ("hbase://[::1]:9090/", "hbase://[::1]/", "hbase://::1/"):
        size, kwargs = parse_url(url)
        assert (kwargs["host"], kwargs["port"]) == ("::1", 9090), url
    size, kwargs = parse_url("hbase://[::1]:9091,[::1]/")
    assert kwargs["hosts"] == [("::1", 9091), ("::1", 9090)]


def _ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_a_pool_on_ipv6_loopback_serves():
    """A pool on ``::1`` talks to a server on ``::1``, however the address
    is written."""
    try:
        server = HBaseServer(host="::1")
        server.start()
    except (OSError, ValueError, TypeError) as error:
        pytest.skip("the embedded server cannot listen on ::1: %s" % error)
    with server:
        for options in ({"host": "::1", "port": server.port},
                        {"hosts": ["[::1]:%d" % server.port]}):
            pool = ConnectionPool(2, **options)
            try:
                fill_table(pool)
                assert ask(pool, 8)
                assert list(pool.stats()["hosts"]) == ["[::1]:%d" % server.port]
                books(pool)
            finally:
                pool.close()
