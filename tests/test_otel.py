"""OpenTelemetry: the pool's metrics and spans, as the semantic conventions name them.

Each test makes its own MeterProvider (with the SDK's in-memory reader) and
TracerProvider (with the in-memory span exporter) and passes them to
``instrument``; nothing global is touched.
"""
# ruff: noqa: E402 (imports follow pytest.importorskip: without the extra, the module skips)

import json
import subprocess
import sys
import textwrap
import threading

import gevent
import pytest
from gevent import monkey
from gevent.event import Event

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    InMemoryMetricReader,
    Sum,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from green_happybase.histogram import DURATION_BUCKETS
from green_happybase.otel import instrument, uninstrument
from green_happybase.testing import HBaseServer
from poolkit import (
    balanced,
    exhaust_then_queue,
    fill_table,
    hold_leases,
    make_pool,
)

POOL_NAME = "db.client.connection.pool.name"
#: name: (instrument data type, monotonic, unit), from the conventions.
POOL_METRICS = {
    "db.client.connection.count": (Sum, False, "{connection}"),
    "db.client.connection.max": (Sum, False, "{connection}"),
    "db.client.connection.idle.max": (Sum, False, "{connection}"),
    "db.client.connection.idle.min": (Sum, False, "{connection}"),
    "db.client.connection.pending_requests": (Sum, False, "{request}"),
    "db.client.connection.timeouts": (Sum, True, "{timeout}"),
    "db.client.connection.create_time": (Histogram, None, "s"),
    "db.client.connection.wait_time": (Histogram, None, "s"),
    "db.client.connection.use_time": (Histogram, None, "s"),
}
OPERATION_DURATION = "db.client.operation.duration"
BOUNDS = tuple(b for b in DURATION_BUCKETS if b != float("inf"))


class Telemetry:
    """A meter provider and a tracer provider whose output a test can read."""

    def __init__(self):
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def instrument(self, pool):
        instrument(pool, meter_provider=self.meter_provider,
                   tracer_provider=self.tracer_provider)

    def metrics(self):
        """``{name: metric}`` of green_happybase's instrumentation scope."""
        found = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                if scope.scope.name == "green_happybase":
                    found.update((metric.name, metric) for metric in scope.metrics)
        return found

    def spans(self):
        return self.exporter.get_finished_spans()

    def close(self):
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


@pytest.fixture
def telemetry():
    made = Telemetry()
    yield made
    made.close()


def points(metric):
    """``{frozenset(attributes): point}``; none for a metric not reported."""
    if metric is None:
        return {}
    return {frozenset(point.attributes.items()): point for point in metric.data.data_points}


def pool_point(metric, pool, **attributes):
    return points(metric)[frozenset(dict(attributes, **{POOL_NAME: pool.name}).items())]






def test_pool_metrics_have_the_conventions_names_units_kinds_and_attributes(
        hbase_server, telemetry):
    """Two leases held, one queued, one refused: every observable figure is the
    pool's own; the histograms count the connect, the wait and the leases."""
    pool = make_pool(hbase_server, size=2, name="orders", min_size=1, max_idle=2)
    telemetry.instrument(pool)
    release, holders, waiter = exhaust_then_queue(pool)  # the second lease connects
    found = telemetry.metrics()
    stats = pool.stats()
    assert pool_point(found["db.client.connection.count"], pool, **{
        "db.client.connection.state": "used"}).value == stats["in_use"] == 2
    assert pool_point(found["db.client.connection.count"], pool, **{
        "db.client.connection.state": "idle"}).value == stats["idle"] == 0
    for name, key in (("max", "size"), ("idle.max", "max_idle"), ("idle.min", "min_size"),
                      ("pending_requests", "waiting"), ("timeouts", "exhausted_total")):
        assert pool_point(found["db.client.connection." + name], pool).value == stats[key]
    assert stats["waiting"] == stats["exhausted_total"] == 1

    release.set()
    gevent.joinall(holders + [waiter], timeout=5, raise_error=True)
    found = telemetry.metrics()
    assert set(POOL_METRICS) <= set(found), sorted(found)
    for name, (kind, monotonic, unit) in POOL_METRICS.items():
        metric = found[name]
        assert (type(metric.data), metric.unit) == (kind, unit), name
        if kind is Sum:
            assert metric.data.is_monotonic is monotonic, name
        else:
            assert [set(key) for key in points(metric)] == [{(POOL_NAME, "orders")}], name
            assert tuple(pool_point(metric, pool).explicit_bounds) == BOUNDS, name
    assert pool_point(found["db.client.connection.create_time"], pool).count == 1
    assert pool_point(found["db.client.connection.wait_time"], pool).count >= 1
    assert pool_point(found["db.client.connection.use_time"], pool).count == 3
    assert pool_point(found["db.client.connection.pending_requests"], pool).value == 0
    # The pool's own figures, for Prometheus, count the same.
    stats = pool.stats()
    assert stats["create_time_histogram"]["count"] == 1
    assert stats["use_time_histogram"]["count"] == 3
    assert balanced(pool), stats


def test_each_call_is_a_client_span_with_its_table_and_method(hbase_server, telemetry):
    pool = make_pool(hbase_server, size=2, name="spans")
    telemetry.instrument(pool)
    fill_table(pool)
    telemetry.exporter.clear()
    with pool.connection() as conn:
        conn.tables()
        table = conn.table("t")
        assert table.row(b"row-1") == {b"f:v": b"value-1"}
        assert len(list(table.scan(batch_size=5))) == 20
    spans = telemetry.spans()
    address = "%s:%d" % (hbase_server.host, hbase_server.port)
    assert [span.name for span in spans] == (
        ["getTableNames " + address, "getRowWithColumns t", "scannerOpenWithScan t"]
        + ["scannerGetList t"] * 5 + ["scannerClose t"])
    for span in spans:
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        expected = {"db.system.name": "hbase", "db.operation.name": span.name.split()[0],
                    "server.address": hbase_server.host, "server.port": hbase_server.port}
        if span.name.split()[1] == "t":
            expected["db.collection.name"] = "t"
        assert dict(span.attributes) == expected
    durations = points(telemetry.metrics()[OPERATION_DURATION])
    assert telemetry.metrics()[OPERATION_DURATION].unit == "s"
    get = frozenset({"db.system.name": "hbase", "db.operation.name": "getRowWithColumns",
                     "db.collection.name": "t", "server.address": hbase_server.host,
                     "server.port": hbase_server.port}.items())
    assert durations[get].count == 1
    assert pool.stats()["operation_histogram"]["count"] == sum(
        point.count for point in durations.values())


def test_the_table_is_the_one_hbase_knows_prefix_included(hbase_server, telemetry):
    pool = make_pool(hbase_server, size=1, table_prefix="app")
    telemetry.instrument(pool)
    with pool.connection() as conn:
        conn.create_table("t", {"f": {}})
        conn.table("t").put(b"k", {b"f:v": b"v"})
    assert [(span.name, span.attributes["db.collection.name"])
            for span in telemetry.spans()] == [("createTable app_t", "app_t"),
                                              ("mutateRows app_t", "app_t")]


def test_a_server_error_sets_error_type_and_passes_through(hbase_server, telemetry):
    """HBase's IOError (a missing table) ends the span with ERROR and
    ``error.type``; the caller gets the very same exception, and the
    connection, whose reply was read in full, stays in the pool."""
    pool = make_pool(hbase_server, size=1, name="errors")
    telemetry.instrument(pool)
    with pool.connection() as conn:
        with pytest.raises(Exception) as raised:
            conn.table("missing").row(b"x")
        assert conn.tables() == []
    error = raised.value
    assert (type(error).__module__, type(error).__name__) == ("Hbase_thrift", "IOError")
    failed, after = telemetry.spans()
    assert failed.name == "getRowWithColumns missing"
    assert failed.attributes["error.type"] == "Hbase_thrift.IOError"
    assert failed.attributes["db.collection.name"] == "missing"
    assert failed.status.status_code is StatusCode.ERROR
    assert "TableNotFoundException" in failed.status.description
    assert "error.type" not in after.attributes
    assert after.status.status_code is StatusCode.UNSET
    durations = points(telemetry.metrics()[OPERATION_DURATION])
    assert [dict(key).get("error.type") for key in durations] == ["Hbase_thrift.IOError", None]
    assert pool.stats()["discarded_total"] == 0
    assert balanced(pool), pool.stats()


def test_a_call_cut_by_gevent_timeout_ends_its_span_and_keeps_the_books(
        hbase_server, telemetry):
    """The caller's own Timeout passes through unchanged; the span ends with
    ``error.type`` ``gevent.timeout.Timeout``; the cut connection is discarded
    and no connection is lost."""
    pool = make_pool(hbase_server, size=1, name="cut")
    telemetry.instrument(pool)
    hbase_server.set_latency(5)
    timeout = gevent.Timeout(0.05)
    try:
        with pytest.raises(gevent.Timeout) as raised:
            with timeout:
                with pool.connection() as conn:
                    conn.tables()
    finally:
        hbase_server.set_latency(0)
    assert raised.value is timeout
    (span,) = telemetry.spans()
    assert span.name.startswith("getTableNames ")
    assert span.attributes["error.type"] == "gevent.timeout.Timeout"
    assert span.status.status_code is StatusCode.ERROR
    assert span.end_time is not None
    stats = pool.stats()
    assert stats["discarded_total"] == 1
    assert balanced(pool), stats
    found = telemetry.metrics()
    assert pool_point(found["db.client.connection.use_time"], pool).count == 1
    (key,) = points(found[OPERATION_DURATION])
    assert dict(key)["error.type"] == "gevent.timeout.Timeout"
    with pool.connection() as conn:
        assert conn.tables() == []
    assert balanced(pool), pool.stats()


def test_a_killed_greenlet_ends_its_span(hbase_server, telemetry):
    pool = make_pool(hbase_server, size=1, name="killed")
    telemetry.instrument(pool)
    hbase_server.set_latency(5)
    calling = Event()

    def call():
        with pool.connection() as conn:
            calling.set()
            conn.tables()

    try:
        greenlet = gevent.spawn(call)
        assert calling.wait(5)  # the greenlet is now waiting for the reply
        greenlet.kill(timeout=5)
    finally:
        hbase_server.set_latency(0)
    assert greenlet.dead
    (span,) = telemetry.spans()
    assert span.attributes["error.type"] == "greenlet.GreenletExit"
    assert balanced(pool), pool.stats()


@pytest.mark.skipif(monkey.is_module_patched("threading"),
                    reason="needs a real OS thread for the exporter")
def test_metrics_are_read_from_another_os_thread_while_the_hub_is_blocked(
        hbase_server, telemetry):
    """An exporter's thread collects while every greenlet is stuck: the
    callbacks only read ``stats()``, never gevent."""
    pool = make_pool(hbase_server, size=2, name="threaded")
    telemetry.instrument(pool)
    release, holders = hold_leases(pool, 2)
    results = []
    thread = threading.Thread(target=lambda: results.append(telemetry.metrics()))
    thread.start()
    thread.join(10)  # blocks this thread's hub: no greenlet runs meanwhile
    assert not thread.is_alive()
    (found,) = results
    assert pool_point(found["db.client.connection.count"], pool, **{
        "db.client.connection.state": "used"}).value == 2
    assert pool_point(found["db.client.connection.max"], pool).value == 2
    release.set()
    gevent.joinall(holders, timeout=5, raise_error=True)


def test_several_pools_one_provider_names_must_differ(hbase_server, telemetry):
    first = make_pool(hbase_server, size=1, name="first")
    second = make_pool(hbase_server, size=3, name="second")
    telemetry.instrument(first)
    telemetry.instrument(second)
    telemetry.instrument(second)  # again: no change
    found = telemetry.metrics()
    assert pool_point(found["db.client.connection.max"], first).value == 1
    assert pool_point(found["db.client.connection.max"], second).value == 3
    twin = make_pool(hbase_server, size=1, name="first")
    with pytest.raises(ValueError, match="'first'"):
        telemetry.instrument(twin)
    first.close()
    telemetry.instrument(twin)  # a closed pool is replaced
    assert len(points(telemetry.metrics()["db.client.connection.max"])) == 2


def test_uninstrument_stops_reporting_and_tracing(hbase_server, telemetry):
    pool = make_pool(hbase_server, size=1, name="off")
    telemetry.instrument(pool)
    with pool.connection() as conn:
        conn.tables()
    assert uninstrument(pool) is True
    assert uninstrument(pool) is False
    telemetry.exporter.clear()
    with pool.connection() as conn:
        conn.tables()
    assert telemetry.spans() == ()
    found = telemetry.metrics()
    assert not points(found.get("db.client.connection.max"))
    # Recorded before: still there; nothing was added since.
    assert pool_point(found["db.client.connection.use_time"], pool).count == 1
    assert pool.stats()["use_time_histogram"]["count"] == 2  # the pool still times


def test_instrument_again_moves_the_pool_to_the_new_providers(hbase_server, telemetry):
    pool = make_pool(hbase_server, size=1, name="moved")
    telemetry.instrument(pool)
    other = Telemetry()
    try:
        other.instrument(pool)
        with pool.connection() as conn:
            conn.tables()
        assert telemetry.spans() == () and len(other.spans()) == 1
        assert not points(telemetry.metrics().get("db.client.connection.max"))
        assert pool_point(other.metrics()["db.client.connection.use_time"], pool).count == 1
    finally:
        other.close()


def _run(code, *args):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_off_by_default_the_package_never_imports_opentelemetry():
    out = _run("""
        import sys
        import green_happybase, green_happybase.prometheus
        print(sorted(name for name in sys.modules
                     if name.startswith(("opentelemetry", "green_happybase.otel"))))
    """)
    assert out.strip() == "[]"


def test_without_the_api_the_import_error_names_the_extra():
    out = _run("""
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed
        try:
            import green_happybase.otel
        except ImportError as error:
            print(error)
    """)
    assert "pip install 'green_happybase[otel]'" in out


FORK_SCRIPT = """
    import json, os, sys
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from green_happybase import ConnectionPool
    from green_happybase.otel import instrument

    reader = InMemoryMetricReader()
    pool = ConnectionPool(2, host=sys.argv[1], port=int(sys.argv[2]), name="forked")
    instrument(pool, meter_provider=MeterProvider(metric_readers=[reader]))

    def counts():
        found = {}
        for resource in reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name.endswith(("create_time", "use_time")):
                        found[metric.name] = sum(p.count for p in metric.data.data_points)
        return found

    with pool.connection() as conn:
        conn.tables()
    before = counts()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        with pool.connection() as conn:  # the child's first: a connect
            conn.tables()
        os.write(write_end, json.dumps(counts()).encode())
        os._exit(0)
    os.close(write_end)
    child = json.loads(os.read(read_end, 4096).decode())
    os.waitpid(pid, 0)
    print(json.dumps({"before": before, "child": child}))
"""


def test_a_forked_child_keeps_recording_connects_and_leases():
    """The child's pool starts with fresh figures; its connects and leases
    still reach OpenTelemetry."""
    with HBaseServer(subprocess=True) as server:
        out = _run(FORK_SCRIPT, server.host, str(server.port))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["before"] == {"db.client.connection.use_time": 1}
    assert result["child"] == {"db.client.connection.create_time": 1,
                               "db.client.connection.use_time": 2}

