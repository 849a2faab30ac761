"""The core pool: greenlet leases, LIFO reuse, FIFO waiters, clean connections."""

import random
import time

import gevent
import happybase
import pytest
from gevent.event import Event
from Hbase_thrift import IOError as HBaseIOError
from thriftpy2.transport import TTransportException

from green_happybase import (
    ConnectionFailed,
    ConnectionPool,
    LeaseError,
    PoolClosed,
    PoolError,
    PoolExhausted,
    ReplyMismatch,
)
from poolkit import ROWS, balanced, fill_table, hanging_listener, make_pool


@pytest.fixture
def pool(hbase_server):
    pool = make_pool(hbase_server)
    fill_table(pool)
    return pool


def test_drop_in_for_happybase_pool(hbase_server):
    """The same positional size and happybase's keyword arguments."""
    with ConnectionPool(3, host=hbase_server.host, port=hbase_server.port, timeout=5000,
                        table_prefix="app", table_prefix_separator=b"-",
                        transport="buffered", protocol="binary", compat="0.98") as pool:
        with pool.connection() as conn:
            assert isinstance(conn, happybase.Connection)
            assert conn.table_prefix == b"app" and conn.timeout == 5000
            conn.create_table("t", {"f": {}})
            assert conn.tables() == [b"t"]
        assert pool.stats()["size"] == 3


def test_autoconnect_opens_min_size_at_once(hbase_server):
    with make_pool(hbase_server, size=5, min_size=3) as pool:
        assert pool.stats()["open"] == 3 and pool.stats()["idle"] == 3
    with make_pool(hbase_server, size=5) as pool:
        assert pool.stats()["open"] == 1


def test_wrong_port_fails_at_construction_naming_it():
    probe = gevent.socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ConnectionFailed) as info:
        ConnectionPool(2, host="127.0.0.1", port=port)
    assert "127.0.0.1:%d" % port in str(info.value)
    assert info.value.__cause__ is not None


def test_autoconnect_false_touches_no_network(hbase_server):
    pool = make_pool(hbase_server, autoconnect=False)
    assert pool.stats()["open"] == 0
    assert hbase_server.stats()["accepted"] == 0
    with pool.connection() as conn:
        conn.tables()
    assert hbase_server.stats()["accepted"] == 1
    pool.close()


def test_nested_leases_share_one_connection(pool):
    """Only the outermost exit returns the connection."""
    with pool.connection() as outer:
        with pool.connection() as inner:
            assert inner is outer
        assert pool.stats()["in_use"] == 1
        outer.tables()
    assert pool.stats()["in_use"] == 0
    assert balanced(pool), pool.stats()


def test_greenlets_hold_distinct_connections(pool):
    """N greenlets leasing at once hold N different connections."""
    held, all_in, release = [], Event(), Event()

    def lease():
        with pool.connection() as conn:
            held.append(conn)
            if len(held) == 4:
                all_in.set()
            release.wait(5)

    workers = [gevent.spawn(lease) for _ in range(4)]
    assert all_in.wait(5)
    assert len(set(map(id, held))) == 4
    release.set()
    gevent.joinall(workers, timeout=5, raise_error=True)
    assert balanced(pool), pool.stats()


def test_greenlet_spawned_inside_lease_gets_its_own(pool):
    with pool.connection() as conn:
        child = gevent.spawn(lambda: _lease_and_return(pool))
        assert child.get(timeout=5) is not conn


def _lease_and_return(pool, **kwargs):
    with pool.connection(**kwargs) as conn:
        conn.tables()
        return conn


def lease_elsewhere(pool, **kwargs):
    """Lease from another greenlet (in this one a lease would nest)."""
    return gevent.spawn(_lease_and_return, pool, **kwargs).get(timeout=5)


def test_lifo_hands_out_the_most_recently_returned(pool):
    first_in, second_in, done = Event(), Event(), Event()
    got = {}

    def hold(key, entered, leave):
        with pool.connection() as conn:
            got[key] = conn
            entered.set()
            leave.wait(5)

    leave_a, leave_b = Event(), Event()
    a = gevent.spawn(hold, "a", first_in, leave_a)
    first_in.wait(5)
    b = gevent.spawn(hold, "b", second_in, leave_b)
    second_in.wait(5)
    leave_a.set()
    a.join(5)
    leave_b.set()
    b.join(5)
    with pool.connection() as conn:
        assert conn is got["b"]
    done.set()


def test_waiters_are_served_first_come_first_served(hbase_server):
    """A returned connection goes to the oldest waiter; a newcomer cannot barge."""
    pool = make_pool(hbase_server, size=1)
    order, queued = [], []

    def wait_turn(i):
        with pool.connection():
            order.append(i)

    with pool.connection():
        for i in range(5):
            queued.append(gevent.spawn(wait_turn, i))
            gevent.sleep(0)  # let it queue, in order
        assert pool.stats()["waiting"] == 5
    # The lease just ended: the connection belongs to waiter 0 already.
    with pytest.raises(PoolExhausted):
        with pool.connection(block=False):
            pass
    gevent.joinall(queued, timeout=5, raise_error=True)
    assert order == [0, 1, 2, 3, 4]
    assert balanced(pool), pool.stats()
    pool.close()


def test_exhausted_after_timeout_names_the_figures(hbase_server):
    pool = make_pool(hbase_server, size=1)
    with pool.connection():
        with pytest.raises(PoolExhausted) as info:
            lease_elsewhere(pool, timeout=0.05)
    message = str(info.value)
    for part in ("size 1", "1 leased", "0 waiting", "waited 0.0"):
        assert part in message
    assert isinstance(info.value, happybase.NoConnectionsAvailable)
    assert isinstance(info.value, PoolError)
    assert pool.stats()["exhausted_total"] == 1
    assert balanced(pool), pool.stats()


@pytest.mark.parametrize("kwargs", [{"block": False}, {"timeout": 0}])
def test_exhausted_at_once_without_blocking(hbase_server, kwargs):
    pool = make_pool(hbase_server, size=1)
    with pool.connection():
        with pytest.raises(PoolExhausted):
            lease_elsewhere(pool, **kwargs)
    assert pool.stats()["waiting"] == 0


def test_acquire_timeout_is_the_default_wait(hbase_server):
    pool = make_pool(hbase_server, size=1, acquire_timeout=0.01)
    with pool.connection():
        with pytest.raises(PoolExhausted):
            lease_elsewhere(pool)


def test_max_waiting_turns_the_next_caller_away(hbase_server):
    pool = make_pool(hbase_server, size=1, max_waiting=2)
    with pool.connection():
        waiters = [gevent.spawn(_lease_and_return, pool) for _ in range(2)]
        gevent.sleep(0)
        assert pool.stats()["waiting"] == 2
        with pytest.raises(PoolExhausted) as info:
            lease_elsewhere(pool)
        assert "2 waiting" in str(info.value)
    gevent.joinall(waiters, timeout=5, raise_error=True)
    assert balanced(pool), pool.stats()


def test_waiter_killed_or_timed_out_leaves_no_ghost(hbase_server):
    pool = make_pool(hbase_server, size=1)
    with pool.connection():
        killed = gevent.spawn(_lease_and_return, pool)
        timed_out = gevent.spawn(lambda: pool.connection(timeout=0.01).__enter__())
        gevent.sleep(0)
        killed.kill()
        with pytest.raises(PoolExhausted):
            timed_out.get(timeout=5)
        assert pool.stats()["waiting"] == 0
    # The slot was not lost: the next lease gets the connection.
    assert _lease_and_return(pool) is not None
    assert balanced(pool), pool.stats()


def test_waiter_killed_after_hand_off_passes_it_on(hbase_server):
    """Handed a connection but killed before running: the next waiter gets it."""
    pool = make_pool(hbase_server, size=1)
    lease = pool.connection()
    lease.__enter__()
    first = gevent.spawn(_lease_and_return, pool)
    second = gevent.spawn(_lease_and_return, pool)
    gevent.sleep(0)
    lease.__exit__(None, None, None)  # hands the connection to `first`
    first.kill(block=False)
    assert second.get(timeout=5) is not None
    first.join(5)
    assert balanced(pool), pool.stats()


@pytest.mark.parametrize("interrupt", ["timeout", "kill"])
def test_interrupted_call_never_leaks_its_reply(pool, hbase_server, interrupt):
    """The next lease of the same connection reads its own reply, every time."""
    hbase_server.set_latency(0.002)
    wrong = []

    def ask(i):
        key = random.randrange(ROWS)
        with pool.connection() as conn:
            row = conn.table("t").row(b"row-%d" % key)
            if row[b"f:v"] != b"value-%d" % key:
                wrong.append((key, row))

    def run(i):
        if interrupt == "timeout":
            try:
                with gevent.Timeout(random.uniform(0, 0.006)):
                    ask(i)
            except gevent.Timeout:
                pass
        else:
            ask(i)

    for _ in range(10):
        workers = [gevent.spawn(run, i) for i in range(30)]
        if interrupt == "kill":
            gevent.sleep(random.uniform(0, 0.006))
            for worker in random.sample(workers, 10):
                worker.kill(block=False)
        gevent.joinall(workers, timeout=10)
    assert wrong == []
    assert pool.stats()["discarded_total"] > 0
    assert balanced(pool), pool.stats()


def test_error_reply_and_user_errors_keep_the_connection(pool):
    with pool.connection() as conn:
        with pytest.raises(HBaseIOError):
            conn.table("no-such-table").row(b"x")
        assert conn.table("t").row(b"row-1")[b"f:v"] == b"value-1"
    with pytest.raises(ZeroDivisionError):
        with pool.connection() as conn:
            conn.tables()
            raise ZeroDivisionError("between calls")
    assert pool.stats()["discarded_total"] == 0
    with pool.connection() as again:
        assert again is conn


def test_socket_timeout_discards_the_connection(hbase_server):
    pool = make_pool(hbase_server, size=1, timeout=50)
    fill_table(pool)
    hbase_server.set_latency(0.3)
    with pytest.raises((TTransportException, OSError)):
        with pool.connection() as conn:
            conn.table("t").row(b"row-1")
    hbase_server.set_latency(0)
    assert pool.stats()["discarded_total"] == 1
    with pool.connection() as conn:
        assert conn.table("t").row(b"row-2")[b"f:v"] == b"value-2"
    assert balanced(pool), pool.stats()


def test_call_after_interruption_in_same_lease_gets_fresh_socket(pool, hbase_server):
    hbase_server.set_latency(0.05)
    with pool.connection() as conn:
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.01):
                conn.table("t").row(b"row-1")
        hbase_server.set_latency(0)
        assert conn.table("t").row(b"row-2")[b"f:v"] == b"value-2"
    assert pool.stats()["discarded_total"] == 1
    assert balanced(pool), pool.stats()


def test_stale_reply_is_detected_by_sequence_id(pool):
    with pool.connection() as conn:
        # Simulate a reply left on the wire: a request whose reply is never read.
        conn.client._send("getTableNames")
        conn._in_call = False
        with pytest.raises(ReplyMismatch):
            conn.table("t").row(b"row-1")
    assert pool.stats()["discarded_total"] == 1
    with pool.connection() as conn:
        assert conn.table("t").row(b"row-1")[b"f:v"] == b"value-1"


def test_scan_generator_outliving_its_lease_fails_clearly(pool):
    with pool.connection() as conn:
        rows = conn.table("t").scan(batch_size=2)
        next(rows)
    with pytest.raises(LeaseError, match="outside its lease"):
        list(rows)
    rows.close()
    assert balanced(pool), pool.stats()


def test_connection_used_by_another_greenlet_fails_clearly(pool):
    with pool.connection() as conn:
        other = gevent.spawn(conn.tables)
        with pytest.raises(LeaseError):
            other.get(timeout=5)
        assert conn.tables() == [b"t"]


def test_slow_call_does_not_stall_other_greenlets(pool, hbase_server):
    """Unpatched: a ticker keeps ticking while calls wait on the server."""
    hbase_server.set_latency(0.1)
    ticks = []
    stop = Event()

    def ticker():
        while not stop.is_set() and len(ticks) < 1000:
            ticks.append(1)
            stop.wait(0.005)

    tick = gevent.spawn(ticker)
    workers = [gevent.spawn(_lease_and_return, pool) for _ in range(4)]
    gevent.joinall(workers, timeout=5, raise_error=True)
    stop.set()
    tick.join(5)
    assert len(ticks) >= 5
    assert len({id(w.value) for w in workers}) == 4


def test_stats_are_plain_and_consistent(pool):
    stats = pool.stats()
    for key in ("size", "open", "idle", "in_use", "waiting", "acquired_total",
                "exhausted_total", "discarded_total", "connect_errors_total"):
        assert isinstance(stats[key], int), key
    with pool.connection():
        stats = pool.stats()
        assert stats["in_use"] == 1 and stats["open"] == stats["idle"] + 1
    assert pool.stats()["acquired_total"] >= 2


def test_close_closes_idle_now_and_leased_on_return(hbase_server):
    pool = make_pool(hbase_server, size=2)
    with pool.connection() as conn:
        with _held(pool):
            waiter = gevent.spawn(_lease_and_return, pool)
            gevent.sleep(0)
            pool.close()
            with pytest.raises(PoolClosed):
                waiter.get(timeout=5)
            assert pool.stats()["open"] == 2
            assert conn.tables() == []
        with pytest.raises(PoolClosed):
            lease_elsewhere(pool)
    assert pool.stats()["open"] == 0


class _held:
    """Hold a second lease from another greenlet while the block runs."""

    def __init__(self, pool):
        self.pool, self.entered, self.leave = pool, Event(), Event()

    def _hold(self):
        with self.pool.connection():
            self.entered.set()
            self.leave.wait(5)

    def __enter__(self):
        self.greenlet = gevent.spawn(self._hold)
        self.entered.wait(5)

    def __exit__(self, *exc):
        self.leave.set()
        self.greenlet.join(5)


def test_pool_is_a_context_manager(hbase_server):
    with make_pool(hbase_server) as pool:
        _lease_and_return(pool)
    with pytest.raises(PoolClosed):
        _lease_and_return(pool)
    assert pool.stats()["open"] == 0


@pytest.mark.parametrize("args, kwargs, error, words", [
    (("4",), {}, TypeError, "'size'"),
    ((0,), {}, ValueError, "'size'"),
    ((2,), {"min_size": -1}, ValueError, "'min_size'"),
    ((2,), {"min_size": 3}, ValueError, "'min_size'"),
    ((2,), {"acquire_timeout": -1}, ValueError, "'acquire_timeout'"),
    ((2,), {"idle_timeout": -1.5}, ValueError, "-1.5"),
    ((2,), {"transport": "thrift"}, ValueError, "'thrift'"),
    ((2,), {"protocol": "json"}, ValueError, "'json'"),
    ((2,), {"compat": "0.80"}, ValueError, "'0.80'"),
    ((2,), {"autoconect": True}, TypeError, "autoconect"),
    ((2,), {"max_waiting": -2}, ValueError, "'max_waiting'"),
    ((2,), {"timeout": -5}, ValueError, "'timeout'"),
])
def test_bad_input_fails_before_any_socket(args, kwargs, error, words):
    with pytest.raises(error) as info:
        ConnectionPool(*args, host="127.0.0.1", port=1, **kwargs)
    assert words in str(info.value)


def test_bad_lease_timeout(pool):
    with pytest.raises(ValueError, match="'timeout'"):
        pool.connection(timeout=-1)


def test_hooks_see_connect_checkout_checkin_and_discard(hbase_server):
    events = []
    pool = make_pool(
        hbase_server, size=2, autoconnect=False,
        on_connect=lambda conn: events.append(("connect", conn)),
        on_checkout=lambda conn: events.append(("checkout", conn)),
        on_checkin=lambda conn: events.append(("checkin", conn)),
        on_discard=lambda conn, reason: events.append(("discard", reason)))
    with pool.connection() as conn:
        pass
    pool.close()
    assert events == [("connect", conn), ("checkout", conn), ("checkin", conn),
                      ("discard", "pool closed")]


def test_failing_hook_is_logged_not_raised(hbase_server, caplog):
    def broken(conn):
        raise RuntimeError("metrics backend down")

    pool = make_pool(hbase_server, on_checkout=broken)
    with pool.connection() as conn:
        assert conn.tables() == []
    assert "metrics backend down" in caplog.text


def test_table_lease_and_per_lease_prefix(hbase_server):
    pool = make_pool(hbase_server, table_prefix="app")
    with pool.connection() as conn:
        conn.create_table("t", {"f": {}})
    with pool.connection(table_prefix="other") as conn:
        conn.create_table("t", {"f": {}})
        with pool.connection() as nested:
            assert nested.table_prefix == b"other"
        with pool.connection(table_prefix=None) as bare:
            assert sorted(bare.tables()) == [b"app_t", b"other_t"]
        assert conn.table_prefix == b"other"
    with pool.table("t") as table:
        table.put(b"k", {b"f:c": b"v"})
        assert table.name == b"app_t"
    with pool.connection() as conn:
        assert conn.table_prefix == b"app"
        assert conn.table("t").row(b"k") == {b"f:c": b"v"}


def test_keyboard_interrupt_mid_call_discards_the_connection(pool, hbase_server):
    hbase_server.set_latency(0.05)
    with pytest.raises(KeyboardInterrupt):
        with pool.connection() as conn:
            with gevent.Timeout(0.01, KeyboardInterrupt):
                conn.table("t").row(b"row-1")
    hbase_server.set_latency(0)
    assert pool.stats()["discarded_total"] == 1
    with pool.connection() as again:
        assert again is not conn
        assert again.table("t").row(b"row-3")[b"f:v"] == b"value-3"
    assert balanced(pool)


def test_one_deadline_covers_the_connect():
    """A server that never completes the handshake: the lease gives up in time."""
    with hanging_listener() as port:
        pool = ConnectionPool(2, host="127.0.0.1", port=port, autoconnect=False)
        started = time.monotonic()
        try:
            with pytest.raises(ConnectionFailed, match="127.0.0.1:%d" % port):
                with pool.connection(timeout=0.2):
                    pass
            assert time.monotonic() - started < 5  # not the OS's minutes-long SYN retries
            assert pool.stats()["open"] == 0 and pool._n_slots == 0
        finally:
            pool.close()
