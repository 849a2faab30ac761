"""The Prometheus exporter: stats() figures as gauges, counters and a histogram."""
# ruff: noqa: E402 (imports follow pytest.importorskip: without the extra, the module skips)

import socket
import urllib.request

import gevent
import pytest

pytest.importorskip("prometheus_client")

from gevent import monkey
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from green_happybase import ConnectionFailed, ConnectionPool
from green_happybase.prometheus import PoolCollector, register, unregister
from poolkit import ROWS, exhaust_then_queue, fill_table, hold_leases, make_pool, wait_until_waiting

GAUGES = ("size", "open", "idle", "in_use", "waiting", "connecting")
COUNTERS = ("acquired_total", "exhausted_total", "discarded_total", "connect_errors_total",
            "shed_total", "scanners_closed_total", "keepalive_total")


def samples(text):
    """``{(sample name, frozenset(labels)): value}`` from exposition text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def scrape(registry):
    return samples(generate_latest(registry).decode())


def figure(found, name, pool, **labels):
    return found["green_happybase_pool_" + name,
                 frozenset(dict(labels, pool=pool.name).items())]


def assert_matches_stats(found, pool):
    stats = pool.stats()
    for key in GAUGES + COUNTERS:
        assert figure(found, key, pool) == stats[key], key
    for address, host in stats["hosts"].items():
        assert figure(found, "host_open", pool, host=address) == host["open"]
        assert figure(found, "host_connects_total", pool, host=address) == \
            host["connects_total"]






@pytest.fixture
def registry():
    return CollectorRegistry()


def test_gauges_and_counters_follow_stats(hbase_server, registry):
    """Two leases held, one greenlet queued: every figure is the pool's own."""
    pool = make_pool(hbase_server, size=2, name="orders")
    register(pool, registry)
    release, holders, waiter = exhaust_then_queue(pool)  # the second lease connects
    found = scrape(registry)
    assert figure(found, "in_use", pool) == 2
    assert figure(found, "waiting", pool) == 1
    assert figure(found, "exhausted_total", pool) == 1
    assert_matches_stats(found, pool)
    release.set()
    gevent.joinall(holders + [waiter], timeout=5, raise_error=True)
    found = scrape(registry)
    assert figure(found, "in_use", pool) == 0 and figure(found, "waiting", pool) == 0
    assert figure(found, "acquired_total", pool) == 3
    assert_matches_stats(found, pool)


def test_wait_histogram_counts_every_lease_and_the_wait(hbase_server, registry):
    pool = make_pool(hbase_server, size=1, name="waits")
    register(pool, registry)
    release, holders = hold_leases(pool, 1)

    def queued():
        with pool.connection(timeout=10):
            pass

    waiter = gevent.spawn(queued)
    wait_until_waiting(pool, 1)
    gevent.spawn_later(0.02, release.set)
    gevent.joinall(holders + [waiter], timeout=5, raise_error=True)
    found = scrape(registry)
    waits = pool.stats()["wait_histogram"]
    assert figure(found, "wait_seconds_count", pool) == waits["count"] == 2
    assert figure(found, "wait_seconds_sum", pool) == waits["sum"] >= 0.02
    bucket = {le: figure(found, "wait_seconds_bucket", pool, le=le)
              for le in ("0.001", "0.01", "0.05", "+Inf")}
    # The first lease did not wait, the second waited about 20 ms.
    assert bucket == {"0.001": 1, "0.01": 1, "0.05": 2, "+Inf": 2}


def histogram_matches(found, name, pool, figures):
    """The exported histogram *name* is the pool's *figures*, bucket for bucket."""
    assert figure(found, name + "_count", pool) == figures["count"]
    assert figure(found, name + "_sum", pool) == figures["sum"]
    for le, count in zip(figures["le"], figures["counts"], strict=True):
        assert figure(found, name + "_bucket", pool, le=floatToGoString(le)) == count


def test_connect_use_and_call_histograms_follow_stats(hbase_server, registry):
    """register() times connects, leases and Thrift calls: the three
    histograms count each, and are the pool's own figures."""
    pool = make_pool(hbase_server, size=2, name="timed", autoconnect=False)
    register(pool, registry)
    fill_table(pool)  # one lease: a connect, then 22 calls
    with pool.connection() as conn:
        conn.tables()
    found = scrape(registry)
    stats = pool.stats()
    for name, key in (("create_seconds", "create_time_histogram"),
                      ("use_seconds", "use_time_histogram"),
                      ("operation_seconds", "operation_histogram")):
        histogram_matches(found, name, pool, stats[key])
    assert figure(found, "create_seconds_count", pool) == 1
    assert figure(found, "use_seconds_count", pool) == 2
    assert figure(found, "operation_seconds_count", pool) == 2 + 1 + ROWS
    histogram_matches(found, "wait_seconds", pool, stats["wait_histogram"])


def test_timings_off_leaves_those_histograms_empty(hbase_server, registry):
    pool = make_pool(hbase_server, size=1, name="untimed")
    register(pool, registry, timings=False)
    with pool.connection() as conn:
        conn.tables()
    found = scrape(registry)
    assert pool._call_wrapper is None
    for name in ("create_seconds", "use_seconds", "operation_seconds"):
        assert figure(found, name + "_count", pool) == 0
        assert figure(found, name + "_bucket", pool, le="+Inf") == 0
    assert figure(found, "wait_seconds_count", pool) == 1


def test_register_keeps_a_call_wrapper_already_installed(hbase_server, registry):
    """A pool instrumented first (OpenTelemetry's spans) keeps its wrapper."""
    pool = make_pool(hbase_server, size=1, name="wrapped")
    seen = []

    def wrap(conn, method, args, call):
        seen.append(method)
        return call()

    pool._instrument(wrap)
    register(pool, registry)
    with pool.connection() as conn:
        conn.tables()
    assert seen == ["getTableNames"]
    assert figure(scrape(registry), "operation_seconds_count", pool) == 1


def test_discards_and_connect_errors_are_counted(hbase_server, registry):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connects are refused
    # With max_idle=0 every returned connection is closed: the one the
    # constructor opened, then the one leased here.
    pool = make_pool(hbase_server, size=2, name="faults", max_idle=0)
    register(pool, registry)
    with pool.connection() as conn:
        conn.tables()
    with ConnectionPool(1, host="127.0.0.1", port=dead_port, autoconnect=False,
                        name="dead") as dead:
        register(dead, registry)
        with pytest.raises(ConnectionFailed):
            with dead.connection():
                pass
    found = scrape(registry)
    assert figure(found, "discarded_total", pool) == 2
    assert figure(found, "connect_errors_total", dead) == 1
    assert_matches_stats(found, pool)
    assert_matches_stats(found, dead)


def test_one_collector_serves_several_pools(hbase_server, registry):
    first = make_pool(hbase_server, size=1, name="first")
    second = make_pool(hbase_server, size=3, name="second")
    collector = register(first, registry)
    assert register(second, registry) is collector
    assert register(second, registry) is collector  # again: no change
    found = scrape(registry)
    assert figure(found, "size", first) == 1 and figure(found, "size", second) == 3
    assert unregister(first, registry) is collector
    found = scrape(registry)
    assert figure(found, "size", second) == 3
    assert not any(dict(labels).get("pool") == "first" for _, labels in found)
    assert unregister(second, registry) is None
    assert not any(name.startswith("green_happybase") for name, _ in scrape(registry))
    assert unregister(second, registry) is None  # nothing left: no error


def test_pool_names_must_differ_unless_the_old_pool_is_closed(hbase_server):
    old = make_pool(hbase_server, size=1, name="same")
    collector = PoolCollector([old])
    twin = make_pool(hbase_server, size=1, name="same")
    with pytest.raises(ValueError, match="'same'"):
        collector.add(twin)
    old.close()
    collector.add(twin)  # how a pool replaced by configure() is re-registered
    assert len(collector) == 1
    assert not collector.remove(old)
    assert collector.remove(twin) and len(collector) == 0


@pytest.mark.skipif(monkey.is_module_patched("threading"),
                    reason="needs a real OS thread for the exporter")
def test_http_exporter_thread_scrapes_while_the_hub_is_blocked(hbase_server, registry):
    """The exporter's OS thread reads stats() while every greenlet is stuck.

    The main greenlet makes a blocking, unpatched HTTP call: the hub cannot
    run, so a collector that needed gevent would hang or fail here.
    """
    pool = make_pool(hbase_server, size=2, name="web")
    register(pool, registry)
    release, holders = hold_leases(pool, 2)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = "http://127.0.0.1:%d/metrics" % server.server_port
        with urllib.request.urlopen(url, timeout=10) as response:
            found = samples(response.read().decode())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert figure(found, "in_use", pool) == 2
    assert_matches_stats(found, pool)
    release.set()
    gevent.joinall(holders, timeout=5, raise_error=True)
