"""The pool's books, checked after every step of random interleavings.

A Hypothesis state machine mixes leases, nested leases, calls cut mid-way,
killed waiters, hooks that raise or yield, server drops and restarts, closes
and forks. After every step, once every greenlet it started has finished,
the pool must agree with itself, with the lease table and with the kernel:

* no wrong answer, ever;
* ``open == idle + in_use``, ``in_use`` counted from the lease table, and
  equal to the leases the test holds;
* slots == open + connecting, nobody queued;
* the process's sockets == the pool's open connections (+ what it had
  before).

Seeded (derandomized) and bounded in examples and steps, so it runs the same
way in every ``make test``. Each interleaving it once found is kept as a
plain test in ``tests/test_reliability.py``.
"""

import os
import pickle

import gevent
import pytest
from gevent.event import Event
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from green_happybase import ConnectionPool, PoolClosed, PoolError, PoolExhausted
from green_happybase.testing import HBaseServer
from poolkit import ROWS, fill_table, socket_fds

SIZE = 3
SLOW = 0.02  # server latency while a rule cuts calls




@pytest.fixture(scope="module")
def server():
    with HBaseServer(subprocess=True) as server:
        with ConnectionPool(1, host=server.host, port=server.port) as pool:
            fill_table(pool)
        yield server


class Hooks:
    """Hooks whose behaviour the machine switches: quiet, raise or yield."""

    def __init__(self):
        self.mode = "quiet"

    def __call__(self, *args):
        if self.mode == "raise":
            raise RuntimeError("hook failed on purpose")
        if self.mode == "yield":
            gevent.sleep(0.002)


class PoolMachine(RuleBasedStateMachine):
    server: HBaseServer = None  # set by the test below

    def __init__(self):
        super().__init__()
        self.hooks = Hooks()
        self.holders = []  # (greenlet, release event) holding a lease
        self.wrong = 0
        self.pool = None
        self.fds_before = socket_fds()

    @initialize()
    def new_pool(self):
        self.server.start()
        self.server.set_latency(0)
        self.pool = self._make_pool()

    def _make_pool(self):
        hooks = self.hooks
        return ConnectionPool(SIZE, host=self.server.host, port=self.server.port,
                              acquire_timeout=5, retry_interval=0.01, retry_max=0.05,
                              on_connect=hooks, on_checkout=hooks, on_checkin=hooks,
                              on_discard=hooks)

    def teardown(self):
        for _, release in self.holders:
            release.set()
        gevent.joinall([g for g, _ in self.holders], timeout=10)
        if self.pool is not None:
            self.pool.close()
        self.server.set_latency(0)
        self.server.start()

    # -- helpers -------------------------------------------------------------

    def _ask(self, key, nested=False):
        with self.pool.connection() as conn:
            if nested:
                with self.pool.connection() as inner:
                    assert inner is conn
            row = conn.table("t").row(b"row-%d" % key)
        if row.get(b"f:v") != b"value-%d" % key:
            self.wrong += 1
        return True

    def _run(self, func, *args, timeout=None):
        """Run *func* in a greenlet under an optional Timeout; classify the end."""
        def body():
            try:
                with gevent.Timeout(timeout):
                    return func(*args)
            except (gevent.Timeout, PoolExhausted, PoolClosed):
                return "cut"
            except (OSError, PoolError) as error:
                return "failed: %s" % type(error).__name__
            except Exception as error:  # a server error reply, a transport error
                return "error: %s" % type(error).__name__
        greenlet = gevent.spawn(body)
        greenlet.join(timeout=30)
        assert greenlet.ready(), "a greenlet is stuck in the pool"
        return greenlet.value

    # -- rules ---------------------------------------------------------------

    @rule(key=st.integers(0, ROWS - 1), nested=st.booleans())
    def lease_and_call(self, key, nested):
        self._run(self._ask, key, nested)

    @rule(key=st.integers(0, ROWS - 1), cut=st.floats(0, SLOW * 1.5))
    def call_cut_mid_way(self, key, cut):
        self.server.set_latency(SLOW)
        try:
            self._run(self._ask, key, timeout=cut)
        finally:
            self.server.set_latency(0)

    @precondition(lambda self: len(self.holders) < SIZE)
    @rule()
    def hold_a_lease(self):
        release = Event()
        entered = Event()

        def holder():
            with self.pool.connection():
                entered.set()
                release.wait()

        greenlet = gevent.spawn(holder)
        self.holders.append((greenlet, release))
        entered.wait(timeout=10)

    @precondition(lambda self: self.holders)
    @rule(data=st.data())
    def release_a_lease(self, data):
        greenlet, release = self.holders.pop(data.draw(st.integers(0, len(self.holders) - 1)))
        release.set()
        greenlet.join(timeout=10)
        assert greenlet.ready()

    @precondition(lambda self: self.holders)
    @rule(data=st.data())
    def kill_a_holder(self, data):
        greenlet, _ = self.holders.pop(data.draw(st.integers(0, len(self.holders) - 1)))
        greenlet.kill(timeout=10)

    @rule(kill_after_hand_off=st.booleans())
    def kill_a_waiter(self, kill_after_hand_off):
        """A greenlet queued for a connection is killed, before or after a hand-off."""
        waiter = gevent.spawn(self._ask, 0)
        gevent.sleep(0)
        released = []
        if kill_after_hand_off and self.holders:
            greenlet, release = self.holders.pop()
            release.set()
            gevent.sleep(0)  # the holder returns its connection: handed to the waiter
            released.append(greenlet)
        waiter.kill(timeout=10)
        gevent.joinall(released, timeout=10)  # its on_checkin hook may yield
        assert waiter.ready() and all(g.ready() for g in released)

    @rule(mode=st.sampled_from(["quiet", "raise", "yield"]))
    def set_hook_mode(self, mode):
        self.hooks.mode = mode

    @rule(key=st.integers(0, ROWS - 1), cut=st.floats(0, 0.004))
    def cut_while_hooks_yield(self, key, cut):
        self.hooks.mode = "yield"
        self._run(self._ask, key, timeout=cut)

    @rule()
    def server_drops_connections(self):
        self.server.drop_connections()

    @rule()
    def server_restarts(self):
        self.server.stop()
        self.server.start()

    @rule(wait=st.booleans())
    def close_and_reopen(self, wait):
        holders, self.holders = self.holders, []
        if wait:
            for _, release in holders:
                release.set()
        self.pool.close(timeout=1 if wait else None)
        for _, release in holders:
            release.set()
        gevent.joinall([g for g, _ in holders], timeout=10)
        stats = self.pool.stats()
        assert stats["open"] == 0 and stats["in_use"] == 0 and stats["waiting"] == 0
        assert self.pool._n_slots == 0
        self.pool = self._make_pool()

    @rule(key=st.integers(0, ROWS - 1))
    def fork_and_use_in_child(self, key):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its own connections, the right answer
            os.close(read_end)
            outcome = "exception"
            try:
                with gevent.Timeout(10):
                    with self.pool.connection() as conn:
                        row = conn.table("t").row(b"row-%d" % key)
                outcome = row.get(b"f:v") == b"value-%d" % key
            finally:
                os.write(write_end, pickle.dumps(outcome))
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            outcome = pickle.loads(gevent.get_hub().threadpool.apply(pipe.read))
        try:
            os.waitpid(pid, os.WNOHANG)  # the pipe's end: the child is exiting
        except ChildProcessError:
            pass  # reaped already by gevent's SIGCHLD watcher
        assert outcome is True, outcome

    # -- invariants ----------------------------------------------------------

    @invariant()
    def no_wrong_answer(self):
        assert self.wrong == 0

    @invariant()
    def books_balance(self):
        if self.pool is None:
            return
        gevent.sleep(0)  # let wake-ups scheduled by the last step run
        pool = self.pool
        stats = pool.stats()
        live_holders = [g for g, _ in self.holders if not g.dead]
        assert stats["in_use"] == len(pool._leases) == len(live_holders)
        assert stats["open"] == stats["idle"] + stats["in_use"], stats
        assert pool._n_slots == stats["open"] + stats["connecting"], stats
        assert stats["waiting"] == len(pool._waiters) == 0
        assert pool._waiters.in_flight() == []
        assert socket_fds() - self.fds_before == stats["open"], stats


def test_pool_books_hold_in_random_interleavings(server):
    PoolMachine.server = server
    run_state_machine_as_test(PoolMachine, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))
