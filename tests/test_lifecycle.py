"""Lifecycle and resilience: restarts, storms, idle cuts, failover, fork, sizes."""

import collections
import json
import logging
import random
import subprocess
import sys
import textwrap
import time

import gevent
import pytest
from gevent.event import Event

from green_happybase import ConnectionFailed, ConnectionPool, PoolClosed, PoolError
from green_happybase.testing import HBaseServer
from poolkit import ROWS, ask, balanced, fill_table, make_pool, socket_fds


class DiscardLog:
    """An ``on_discard`` hook that lets a test wait for a given reason."""

    def __init__(self):
        self.reasons = []
        self.events = {}

    def __call__(self, conn, reason):
        self.reasons.append(reason)
        self.event(reason).set()

    def event(self, reason):
        return self.events.setdefault(reason, Event())

    def wait_for(self, reason, count, timeout=5):
        """Wait until *reason* was seen *count* times; bounded in rounds and time."""
        event = self.event(reason)
        for _ in range(count + 1):
            if self.reasons.count(reason) >= count:
                return True
            event.clear()
            event.wait(timeout)
        return self.reasons.count(reason) >= count




def test_restart_storm_recovers_with_right_answers(hbase_server):
    """200 greenlets loop while the server stops and restarts."""
    pool = make_pool(hbase_server, size=10, retry_interval=0.05, retry_max=0.2)
    fill_table(pool)
    stop, restarted = Event(), Event()
    wrong, over_time, ok_after = [], [], []

    def loop():
        for _ in range(200):
            if stop.is_set():
                return
            key = random.randrange(ROWS)
            started = time.monotonic()
            try:
                right = ask(pool, key, timeout=1.0)
            except (PoolError, OSError, Exception):
                right = None
            elapsed = time.monotonic() - started
            if elapsed > 1.0 + 0.5:  # the socket and lease deadlines, with slack
                over_time.append(elapsed)
            if right is False:
                wrong.append(key)
            if right and restarted.is_set():
                ok_after.append(1)
            gevent.sleep(0.005)

    workers = [gevent.spawn(loop) for _ in range(200)]
    gevent.sleep(0.1)
    hbase_server.stop()
    gevent.sleep(0.3)
    hbase_server.start()
    restarted.set()
    gevent.joinall(workers, timeout=60)
    stop.set()
    assert wrong == [] and over_time == []
    assert len(ok_after) > 100
    # Everyone succeeds again.
    assert all(ask(pool, k, timeout=2) for k in range(ROWS))
    assert balanced(pool)
    pool.close()


def test_storm_of_interruptions_loses_nothing():
    """Thousands of leases, random timeouts and kills: no wrong answer, no leak.

    Every attempt ends in exactly one classified outcome, whatever the
    machine's speed; afterwards the books balance and the pool still serves.
    """
    with HBaseServer(subprocess=True) as server:
        server.set_latency(0.001)
        sockets_before = socket_fds()
        pool = make_pool(server, size=8)
        fill_table(pool)

        def one():
            key = random.randrange(ROWS)
            try:
                with gevent.Timeout(random.uniform(0, 0.02)):
                    return "right" if ask(pool, key) else "wrong"
            except gevent.Timeout:
                return "timed out"

        outcomes = collections.Counter()
        for _ in range(20):
            batch = [gevent.spawn(one) for _ in range(150)]
            gevent.sleep(random.uniform(0, 0.003))
            for victim in random.sample(batch, 20):
                victim.kill(block=False)
            gevent.joinall(batch, timeout=20)
            for greenlet in batch:
                assert greenlet.ready(), "a greenlet is stuck in the pool"
                value = greenlet.value
                outcomes["killed" if isinstance(value, gevent.GreenletExit) else value] += 1
        assert sum(outcomes.values()) == 3000
        assert set(outcomes) <= {"right", "timed out", "killed"}, outcomes
        assert outcomes["killed"] + outcomes["timed out"] > 0
        stats = pool.stats()
        assert balanced(pool) and not pool._leases
        assert socket_fds() - sockets_before == stats["open"]
        assert ask(pool, 3)  # still serving
        pool.close()
        assert socket_fds() == sockets_before


def test_idle_connections_cut_by_server_are_replaced_unseen(hbase_server):
    pool = make_pool(hbase_server, size=4, min_size=3)
    fill_table(pool)
    hbase_server.drop_connections()
    gevent.sleep(0)  # let the server's closes reach the wire
    for key in range(ROWS):
        assert ask(pool, key)
    assert pool.stats()["discarded_total"] >= 1
    pool.close()


def test_failover_and_failback():
    with HBaseServer() as a, HBaseServer() as b:
        for server in (a, b):
            setup = make_pool(server, size=1)
            fill_table(setup)
            setup.close()
        pool = ConnectionPool(4, hosts=[a.address, b.address], retry_interval=0.05,
                              retry_max=0.1, autoconnect=False)
        holders = [gevent.spawn(_hold_briefly, pool) for _ in range(4)]
        gevent.joinall(holders, timeout=5, raise_error=True)
        per_host = pool.stats()["hosts"]
        assert per_host[a.address]["open"] == 2 and per_host[b.address]["open"] == 2

        a.stop()  # a dies: its connections are cut, new ones go to b
        gevent.sleep(0)
        askers = [gevent.spawn(ask, pool, key) for key in range(ROWS)]
        gevent.joinall(askers, timeout=5, raise_error=True)
        assert all(asker.value for asker in askers)
        per_host = pool.stats()["hosts"]
        assert per_host[a.address]["open"] == 0 and per_host[b.address]["open"] == 4

        a.start()
        gevent.sleep(0.15)  # a's back-off (retry_max) runs out
        b.drop_connections()  # new connections are needed: a takes its share again
        gevent.sleep(0)
        holders = [gevent.spawn(_hold_briefly, pool) for _ in range(4)]
        gevent.joinall(holders, timeout=5, raise_error=True)
        per_host = pool.stats()["hosts"]
        assert per_host[a.address]["open"] == 2 and per_host[b.address]["open"] == 2
        pool.close()


def _hold_briefly(pool):
    with pool.connection() as conn:
        conn.tables()
        gevent.sleep(0.01)


def test_every_host_backing_off_fails_at_once():
    probe = gevent.socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()
    pool = ConnectionPool(2, hosts=[dead], retry_interval=30, autoconnect=False)
    with pytest.raises(ConnectionFailed, match=dead):
        with pool.connection():
            pass
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="backing off"):
        with pool.connection(timeout=10):
            pass
    assert time.monotonic() - started < 5
    assert pool.stats()["hosts"][dead]["connect_errors_total"] == 1
    assert pool.stats()["connect_errors_total"] == 1


FORK_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from green_happybase import ConnectionPool
    host, port = sys.argv[1], int(sys.argv[2])
    pool = ConnectionPool(2, host=host, port=port)
    with pool.connection() as inherited:
        inherited.create_table("t", {"f": {}})
        for i in range(20):
            inherited.table("t").put(b"row-%d" % i, {b"f:v": b"value-%d" % i})

    def check(who):
        ok = 0
        for i in range(20):
            with pool.connection() as conn:
                ok += conn.table("t").row(b"row-%d" % i)[b"f:v"] == b"value-%d" % i
        return ok

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        inherited.close()  # must not shut down the parent's socket
        result = {"child": check("child"), "child_open": pool.stats()["open"]}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    parent = check("parent")
    child = json.loads(os.read(read_end, 4096).decode())
    os.waitpid(pid, 0)
    parent_after = check("parent")
    print(json.dumps(dict(child, parent=parent, parent_after=parent_after,
                          discarded=pool.stats()["discarded_total"])))
""")


def test_fork_child_and_parent_both_get_right_answers():
    with HBaseServer(subprocess=True) as server:
        done = subprocess.run([sys.executable, "-c", FORK_SCRIPT, server.host,
                               str(server.port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"child": 20, "child_open": 1, "parent": 20, "parent_after": 20,
                      "discarded": 0}


def test_idle_timeout_closes_connections_above_min_size(hbase_server):
    log = DiscardLog()
    pool = make_pool(hbase_server, size=4, min_size=1, idle_timeout=0.1, on_discard=log)
    gevent.joinall([gevent.spawn(_hold_briefly, pool) for _ in range(3)], timeout=5)
    assert pool.stats()["open"] == 3
    assert log.wait_for("idle_timeout", 2)
    assert pool.stats()["open"] == 1  # min_size is kept
    pool.close()


def test_max_idle_closes_returned_connections_beyond_it(hbase_server):
    log = DiscardLog()
    pool = make_pool(hbase_server, size=4, max_idle=1, on_discard=log)
    gevent.joinall([gevent.spawn(_hold_briefly, pool) for _ in range(3)], timeout=5)
    stats = pool.stats()
    assert stats["idle"] == 1 and stats["open"] == 1
    assert log.reasons.count("max_idle") == 2
    pool.close()


def test_max_lifetime_expires_on_return_with_jitter(hbase_server):
    log = DiscardLog()
    pool = make_pool(hbase_server, size=4, max_lifetime=0.2, idle_timeout=None,
                     on_discard=log, autoconnect=False)
    conns = []

    def lease_all():
        with pool.connection() as conn:
            conns.append(conn)
            gevent.sleep(0.25)

    gevent.joinall([gevent.spawn(lease_all) for _ in range(4)], timeout=5)
    lifetimes = [c._expires - c._created for c in conns]
    assert all(0.18 <= t <= 0.2 for t in lifetimes)
    assert len(set(lifetimes)) == 4  # jittered, not identical
    assert log.reasons.count("max_lifetime") == 4
    assert pool.stats()["open"] == 0
    pool.close()


def test_min_size_is_refilled_after_losses(hbase_server):
    connected = Event()
    pool = make_pool(hbase_server, size=4, min_size=2,
                     on_connect=lambda conn: connected.set())
    assert pool.stats()["open"] == 2
    hbase_server.drop_connections()
    gevent.sleep(0)
    with pool.connection() as conn:  # finds both dead, opens a fresh one
        conn.tables()
    connected.clear()
    deadline = time.monotonic() + 5
    while pool.stats()["open"] < 2 and time.monotonic() < deadline:
        connected.wait(0.1)
    assert pool.stats()["open"] == 2
    pool.close()


class _Warnings(logging.Handler):
    """Collects the pool's warnings and signals the first one."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages, self.first = [], Event()

    def emit(self, record):
        self.messages.append(record.getMessage())
        self.first.set()


def test_leak_timeout_warns_once_with_the_holders_stack(hbase_server):
    pool = make_pool(hbase_server, size=2, leak_timeout=0.05)
    release = Event()

    def forgetful_holder():
        with pool.connection():
            release.wait(5)

    warnings = _Warnings()
    logger = logging.getLogger("green_happybase")
    logger.addHandler(warnings)
    try:
        holder = gevent.spawn(forgetful_holder)
        assert warnings.first.wait(5)
        gevent.sleep(0.2)  # several more maintenance rounds: still one warning
    finally:
        logger.removeHandler(warnings)
    release.set()
    holder.join(5)
    leaks = [m for m in warnings.messages if "leak_timeout" in m]
    assert len(leaks) == 1
    assert "forgetful_holder" in leaks[0]


def test_close_with_timeout_drains_leases(hbase_server):
    pool = make_pool(hbase_server, size=2)
    entered, finish = Event(), Event()
    answers = []

    def busy():
        with pool.connection() as conn:
            entered.set()
            finish.wait(5)
            answers.append(conn.tables())

    worker = gevent.spawn(busy)
    entered.wait(5)
    gevent.spawn_later(0.05, finish.set)
    pool.close(timeout=5)  # waits for the lease to come back
    assert answers == [[]]
    assert pool.stats()["open"] == 0
    worker.join(5)
    with pytest.raises(PoolClosed):
        with pool.connection():
            pass


def test_close_timeout_then_closes_leased_connections(hbase_server):
    pool = make_pool(hbase_server, size=2)
    entered = Event()

    def stuck():
        with pool.connection():
            entered.set()
            Event().wait(5)

    worker = gevent.spawn(stuck)
    entered.wait(5)
    pool.close(timeout=0.05)
    assert pool.stats()["open"] == 0
    worker.kill()
    assert pool.stats()["open"] == 0


def test_check_callable_runs_only_for_long_idle_connections(hbase_server):
    calls = []

    def check(conn):
        calls.append(conn)
        if len(calls) == 2:
            raise RuntimeError("gateway says no")
        conn.tables()

    log = DiscardLog()
    pool = make_pool(hbase_server, size=2, check=check, check_after=0.05, on_discard=log)
    for _ in range(3):
        with pool.connection() as conn:
            conn.tables()
    assert calls == []  # used moments ago: no round trip
    gevent.sleep(0.06)
    with pool.connection():
        pass
    assert len(calls) == 1
    gevent.sleep(0.06)
    with pool.connection() as conn:
        conn.tables()  # the failed check's connection was replaced unseen
    assert len(calls) == 2
    assert any(r.startswith("check failed") for r in log.reasons)
    pool.close()


def test_connections_closed_by_server_after_replies_are_replaced_unseen(hbase_server):
    """The server closes each connection after 3 calls: no call fails."""
    pool = make_pool(hbase_server, size=4)
    fill_table(pool)
    hbase_server.close_after(3)
    askers = [gevent.spawn(lambda: [ask(pool, k % ROWS) for k in range(10)])
              for _ in range(30)]
    gevent.joinall(askers, timeout=30, raise_error=True)
    assert all(all(asker.value) for asker in askers)
    assert pool.stats()["discarded_total"] >= 300 // 3 - 4
    assert balanced(pool)


def test_refused_connects_back_off_then_recover(hbase_server):
    fill_table(make_pool(hbase_server, size=1))
    pool = make_pool(hbase_server, size=2, retry_interval=0.05, retry_max=0.1,
                     autoconnect=False)
    hbase_server.refuse_connections(0.3)
    with pytest.raises(ConnectionFailed, match=hbase_server.address):
        ask(pool, 1)
    with pytest.raises(ConnectionFailed, match="backing off"):
        ask(pool, 1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            assert ask(pool, 1)
            break
        except ConnectionFailed:
            gevent.sleep(0.05)
    assert pool.stats()["hosts"][hbase_server.address]["failures"] == 0
    assert pool.stats()["connect_errors_total"] >= 1


def test_interrupted_connect_frees_its_slot(hbase_server):
    """A greenlet killed while connecting leaves the slot free."""
    pool = make_pool(hbase_server, size=1, autoconnect=False)
    connecting = gevent.spawn(ask, pool, 1)
    gevent.sleep(0)  # it reserved the slot and is connecting
    connecting.kill()
    assert pool.stats()["open"] == 0 and pool._n_slots == 0
    fill_table(pool)
    assert ask(pool, 2)
