"""Operating a pool at run time: scanner cleanup, drain, resize, wait,
reconnect_failed, callable settings, and the idle-lease warning."""

import logging
import random

import gevent
import pytest
from gevent.event import Event
from Hbase_thrift import IllegalArgument

from green_happybase import ConnectionFailed, PoolExhausted
from green_happybase.testing import HBaseServer
from poolkit import (
    ROWS,
    ask,
    balanced,
    fill_table,
    hold_leases,
    make_pool,
    wait_until_waiting,
)


@pytest.fixture
def pool(hbase_server):
    pool = make_pool(hbase_server, size=3)
    fill_table(pool)
    return pool


def scanner_is_closed(pool, scanner_id):
    with pool.connection() as conn:
        try:
            conn.client.scannerGet(scanner_id)
        except IllegalArgument:
            return True
    return False


def test_scanner_abandoned_in_a_lease_is_closed_when_it_ends(pool):
    with pool.connection() as conn:
        rows = conn.table("t").scan(batch_size=2)
        next(rows)  # a generator left suspended: its scanner stays open
        (scanner_id,) = conn._scanners
    assert pool.stats()["scanners_closed_total"] == 1
    assert scanner_is_closed(pool, scanner_id)
    assert balanced(pool)
    del rows


def test_scanner_left_by_an_exception_mid_scan_is_closed(pool):
    opened = []
    with pytest.raises(ZeroDivisionError):
        with pool.connection() as conn:
            for _ in conn.table("t").scan(batch_size=2):
                opened.extend(conn._scanners)
                raise ZeroDivisionError("mid-scan")
    assert opened and all(scanner_is_closed(pool, i) for i in set(opened))
    assert balanced(pool)


def test_scanners_of_nested_leases_close_with_the_outermost(pool):
    with pool.connection() as outer:
        with pool.connection() as inner:
            rows = inner.table("t").scan(batch_size=2)
            next(rows)
        assert len(outer._scanners) == 1  # the inner lease's end keeps it
    assert pool.stats()["scanners_closed_total"] == 1
    del rows


def test_scans_run_to_the_end_leave_nothing_to_close(pool):
    with pool.connection() as conn:
        assert len(list(conn.table("t").scan())) == ROWS
        assert not conn._scanners
    assert pool.stats()["scanners_closed_total"] == 0


def test_drain_replaces_every_connection_during_an_interruption_storm(hbase_server):
    """Greenlets lease throughout, some calls cut by timeouts: drain() costs
    no wrong answer and no slot, and leases begun after it never get a
    connection from before it."""
    pool = make_pool(hbase_server, size=4)
    fill_table(pool)
    hbase_server.set_latency(0.001)
    wrong = []
    stop = Event()
    seen_after_drain = set()
    drained = Event()

    def worker():
        while not stop.is_set():
            after = drained.is_set()
            try:
                with gevent.Timeout(random.choice([None, None, 0.0005, 0.002])):
                    with pool.connection() as conn:
                        if after:
                            seen_after_drain.add(conn)
                        key = random.randrange(ROWS)
                        if conn.table("t").row(b"row-%d" % key)[b"f:v"] != b"value-%d" % key:
                            wrong.append(key)
            except gevent.Timeout:
                pass
            gevent.sleep(0)

    with pool.connection() as conn:
        before = {conn}
    workers = [gevent.spawn(worker) for _ in range(8)]
    gevent.sleep(0.05)  # some load before the drain (any amount will do)
    before |= set(pool._leases.values()) | set(pool._idle)
    pool.drain()
    drained.set()
    for _ in range(5000):  # bounded: until leases begun after the drain returned
        if len(seen_after_drain) >= 4:
            break
        gevent.sleep(0.001)
    stop.set()
    gevent.joinall(workers, timeout=10)
    assert all(w.successful() for w in workers)
    assert wrong == []
    # Leases that began after the drain never got a connection from before.
    assert seen_after_drain and not (seen_after_drain & before)
    hbase_server.set_latency(0)
    assert balanced(pool)
    assert pool._n_slots == pool.stats()["open"] and ask(pool, 1)


def test_resize_down_then_up_serves_waiters(hbase_server):
    pool = make_pool(hbase_server, size=4)
    fill_table(pool)
    release, holders = hold_leases(pool, 4)
    assert pool.stats()["in_use"] == 4
    pool.resize(2)
    release.set()
    gevent.joinall(holders, timeout=10)
    assert pool.stats()["open"] <= 2 and pool.size == 2
    # Up again: greenlets queued at size 2 are served by the new slots.
    release, holders = hold_leases(pool, 2)
    waiting = [gevent.spawn(ask, pool, 1) for _ in range(3)]
    wait_until_waiting(pool, 3)
    assert pool.stats()["waiting"] == 3
    pool.resize(5)
    assert all(w.get(timeout=10) for w in waiting)
    release.set()
    gevent.joinall(holders, timeout=10)
    assert balanced(pool) and pool.stats()["open"] <= 5


def test_resize_rejects_bad_sizes(pool):
    with pytest.raises(ValueError, match="size"):
        pool.resize(0)
    with pytest.raises(ValueError, match="min_size"):
        pool.resize(2, min_size=3)


def test_wait_blocks_until_min_size_is_open(hbase_server):
    pool = make_pool(hbase_server, size=4, min_size=3, autoconnect=False)
    assert pool.stats()["open"] == 0
    pool.wait(timeout=10)
    assert pool.stats()["open"] >= 3


def test_wait_against_a_refusing_server_names_what_is_missing(hbase_server):
    pool = make_pool(hbase_server, size=4, min_size=2, autoconnect=False,
                     retry_interval=0.01, retry_max=0.05)
    hbase_server.stop()
    with pytest.raises(ConnectionFailed, match="0 of min_size=2"):
        pool.wait(timeout=0.3)
    hbase_server.start()
    pool.wait(timeout=10)
    assert pool.stats()["open"] >= 2


def test_reconnect_failed_is_called_once(hbase_server):
    calls = []
    called = Event()

    def reconnect_failed(failed_pool):
        calls.append(failed_pool)
        called.set()

    pool = make_pool(hbase_server, size=2, autoconnect=False, reconnect_timeout=0.2,
                     retry_interval=0.01, retry_max=0.02, reconnect_failed=reconnect_failed)
    hbase_server.stop()
    with pytest.raises(ConnectionFailed):
        with pool.connection():
            pass
    assert called.wait(timeout=10)
    # More failures and maintenance rounds: still once.
    for _ in range(3):
        with pytest.raises((ConnectionFailed, PoolExhausted)):
            with pool.connection(timeout=0.05):
                pass
        gevent.sleep(0.1)
    assert calls == [pool]
    hbase_server.start()
    with pool.connection() as conn:
        conn.tables()


def test_hosts_callable_is_asked_at_each_new_connection(hbase_server):
    """Service discovery: the list the callable returns now is where new
    connections go."""
    from green_happybase import ConnectionPool

    with HBaseServer() as other:
        current = [hbase_server.address]
        pool = ConnectionPool(1, hosts=lambda: list(current), max_idle=0)
        try:
            with pool.connection() as conn:
                assert conn.address == hbase_server.address
            current[:] = [other.address]
            with pool.connection() as conn:  # max_idle=0: a new connection
                assert conn.address == other.address
                conn.tables()
            assert other.stats()["accepted"] == 1
        finally:
            pool.close()


def test_hosts_callable_that_fails_is_a_connection_failure(hbase_server):
    from green_happybase import ConnectionPool

    answers = [[hbase_server.address]]
    pool = ConnectionPool(1, hosts=lambda: answers[-1], max_idle=0)
    try:
        answers.append(None)
        with pytest.raises(ConnectionFailed, match="hosts callable"):
            with pool.connection():
                pass
        assert balanced(pool)
    finally:
        pool.close()


def test_table_prefix_callable_is_asked_at_each_new_connection(hbase_server):
    from green_happybase import ConnectionPool

    prefixes = iter([b"one", b"two"])
    pool = ConnectionPool(1, host=hbase_server.host, port=hbase_server.port, max_idle=0,
                          autoconnect=False, table_prefix=lambda: next(prefixes))
    try:
        with pool.connection() as conn:
            assert conn.table_prefix == b"one"
        with pool.connection() as conn:  # max_idle=0: a new connection
            assert conn.table_prefix == b"two"
    finally:
        pool.close()


def test_a_lease_idle_past_the_gateway_cut_is_warned_of(pool, caplog):
    from green_happybase import ConnectionPool

    quiet = ConnectionPool(1, host=pool._hosts.hosts[0].host, port=pool._hosts.hosts[0].port,
                           gateway_idle_timeout=0.05, idle_timeout=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="green_happybase"):
            with quiet.connection():
                for _ in range(100):  # bounded: the maintainer runs every 50 ms
                    gevent.sleep(0.02)
                    if "has made no call" in caplog.text:
                        break
        assert "has made no call" in caplog.text
        assert caplog.text.count("has made no call") == 1
    finally:
        quiet.close()


def test_a_misconfigured_transport_fails_in_the_constructor_naming_the_fix():
    from green_happybase import ConnectionPool

    with HBaseServer(transport="framed", protocol="compact") as server:
        with pytest.raises(ConnectionFailed) as info:
            ConnectionPool(2, host=server.host, port=server.port, connect_timeout=2)
    message = str(info.value)
    assert "TSocket read 0 bytes" in message or "framed" in message
    assert "transport='framed'" in message and "protocol='compact'" in message
    assert server.address in message


def test_a_thrift2_gateway_is_named():
    from green_happybase import ConnectionPool

    with HBaseServer(server_type="two") as server:
        with pytest.raises(ConnectionFailed, match="Thrift2"):
            ConnectionPool(1, host=server.host, port=server.port, connect_timeout=2)


def test_a_correct_configuration_makes_one_probe_per_host(hbase_server):
    pool = make_pool(hbase_server, size=3)
    assert hbase_server.stats()["calls"] == 1  # the constructor's probe
    release = Event()

    def hold():
        with pool.connection() as conn:
            conn.tables()
            release.wait()

    holders = [gevent.spawn(hold) for _ in range(3)]  # three connections
    for _ in range(1000):  # bounded: until all three hold their lease
        if pool.stats()["in_use"] == 3:
            break
        gevent.sleep(0.001)
    release.set()
    gevent.joinall(holders, timeout=10)
    assert all(h.successful() for h in holders)
    assert pool.stats()["open"] == 3
    assert hbase_server.stats()["calls"] == 1 + 3


@pytest.mark.hbase_server(idle_timeout=1.0)
def test_keepalive_keeps_min_size_connections_past_the_idle_cut(hbase_server):
    """The gateway cuts connections idle for 1 s; pings every 0.2 s keep the
    pool's two connections alive through several cut periods."""
    pool = make_pool(hbase_server, size=2, min_size=2, keepalive=0.2)
    fill_table(pool)
    accepted = hbase_server.stats()["accepted"]
    for _ in range(6):  # about three cut periods, a caller now and then
        gevent.sleep(0.5)
        assert ask(pool, 3)
    stats = pool.stats()
    assert stats["keepalive_total"] > 0
    assert stats["discarded_total"] == 0  # no caller ever met a cut connection
    assert hbase_server.stats()["accepted"] == accepted  # nothing reconnected
    assert balanced(pool)


def test_keepalive_never_pings_a_leased_connection(hbase_server):
    pool = make_pool(hbase_server, size=1, keepalive=0.05)
    fill_table(pool)
    with pool.connection() as conn:
        before = pool.stats()["keepalive_total"]
        gevent.sleep(0.3)  # several maintainer rounds while leased
        assert pool.stats()["keepalive_total"] == before
        assert conn.table("t").row(b"row-1")[b"f:v"] == b"value-1"
    assert balanced(pool)


def test_wait_histogram_counts_only_leases_even_when_waiters_give_up(hbase_server):
    """Timed-out and shed waiters add no wait: every bucket stays >= 0 and
    the histogram's count is the number of leases."""
    pool = make_pool(hbase_server, size=1, queue="adaptive", queue_target=0.001,
                     queue_interval=0.01)
    fill_table(pool)
    release = Event()

    def hold():
        with pool.connection():
            release.wait(10)

    holder = gevent.spawn(hold)
    gevent.sleep(0)
    quitters = [gevent.spawn(ask, pool, 1, timeout=0.02) for _ in range(20)]
    gevent.joinall(quitters, timeout=10)
    release.set()
    holder.join(10)
    assert ask(pool, 1)
    histogram = pool.stats()["wait_histogram"]
    assert min(histogram["counts"]) >= 0
    assert histogram["count"] == pool.stats()["acquired_total"]
