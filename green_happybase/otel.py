"""OpenTelemetry metrics and spans for pools (install ``green_happybase[otel]``).

::

    from green_happybase import otel

    otel.instrument(pool)   # the global meter and tracer providers

Nothing is measured until :func:`instrument` is called: an uninstrumented
pool pays nothing, and this module is never imported by the package.

Metrics follow OpenTelemetry's semantic conventions for database clients.
The pool's figures are read from :meth:`~green_happybase.ConnectionPool.stats`
by observable instruments, so an exporter's OS thread may collect them while
the hub is busy; every one carries ``db.client.connection.pool.name`` (the
pool's :attr:`~green_happybase.ConnectionPool.name`):

* ``db.client.connection.count`` (``{connection}``), with
  ``db.client.connection.state`` ``idle`` (``stats()["idle"]``) and ``used``
  (``in_use``);
* ``db.client.connection.max`` (``{connection}``): ``size``;
* ``db.client.connection.idle.max`` (``{connection}``): ``max_idle``;
* ``db.client.connection.idle.min`` (``{connection}``): ``min_size``;
* ``db.client.connection.pending_requests`` (``{request}``): ``waiting``;

all observable up-down counters, and the observable counter
``db.client.connection.timeouts`` (``{timeout}``): ``exhausted_total``.
The histograms, in seconds (``s``), are recorded as things happen:
``db.client.connection.create_time`` (each connect),
``db.client.connection.wait_time`` (each lease that waited),
``db.client.connection.use_time`` (each lease, when it ends) and
``db.client.operation.duration`` (each Thrift call).

Each Thrift call is a ``CLIENT`` span named ``{method} {table}`` (``getRow
t``), or ``{method} {host}:{port}`` for a call on no table
(``getTableNames``), with ``db.system.name`` ``hbase``, ``db.operation.name``
(the Thrift method), ``db.collection.name`` (the table as HBase knows it,
table prefix included), ``db.namespace`` (for a ``ns:table`` name),
``server.address`` and ``server.port``. A call that raises sets
``error.type`` to the exception's qualified class name (``Hbase_thrift.IOError``,
``gevent.timeout.Timeout``) and the span's status to ``ERROR``; the exception
passes through unchanged. ``db.client.operation.duration`` carries the
same attributes as the span, and lasts as long.
"""

import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("green_happybase.otel needs the OpenTelemetry API: "
                      "pip install 'green_happybase[otel]'") from error

from ._version import __version__
from .connection import GreenConnection
from .histogram import DURATION_BUCKETS
from .pool import ConnectionPool

__all__ = ["instrument", "uninstrument"]

logger = logging.getLogger("green_happybase")

_SCOPE = "green_happybase"
POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
SYSTEM = "db.system.name"
OPERATION = "db.operation.name"
COLLECTION = "db.collection.name"
NAMESPACE = "db.namespace"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

#: Thrift calls whose first argument is bytes but not a table.
_NOT_A_TABLE = frozenset(["getRegionInfo"])
_SCANNER_OPENS = frozenset(["scannerOpen", "scannerOpenTs", "scannerOpenWithStop",
                            "scannerOpenWithStopTs", "scannerOpenWithPrefix",
                            "scannerOpenWithScan"])
_SCANNER_USES = frozenset(["scannerGet", "scannerGetList", "scannerClose"])
_BOUNDARIES = [bound for bound in DURATION_BUCKETS if bound != float("inf")]

Callback = Callable[[CallbackOptions], Iterable[Observation]]


def instrument(pool: ConnectionPool, meter_provider: MeterProvider | None = None,
               tracer_provider: TracerProvider | None = None) -> None:
    """Report *pool*'s metrics and trace its Thrift calls through OpenTelemetry.

    Call it in the thread that uses the pool, after ``os.fork()`` when the
    providers are made per process. Calling it again moves the pool to the
    new providers.

    :param pool: the pool to instrument
    :param meter_provider: default: the global one
    :param tracer_provider: default: the global one
    :raises ValueError: another open pool of the same name already reports
        to *meter_provider* (a closed one is replaced)

    .. versionadded:: 0.2
    """
    if meter_provider is None:
        meter_provider = metrics.get_meter_provider()
    if tracer_provider is None:
        tracer_provider = trace.get_tracer_provider()
    instruments = _instruments.get(meter_provider)
    if instruments is None:
        instruments = _instruments[meter_provider] = _Instruments(
            meter_provider.get_meter(_SCOPE, __version__))
    instruments.add(pool)
    old = _bindings.get(pool)
    if old is not None:
        old.active = False
        if old.instruments is not instruments:
            old.instruments.remove(pool)
    binding = _bindings[pool] = _Binding(
        pool, instruments, tracer_provider.get_tracer(_SCOPE, __version__))
    pool._instrument(binding.wrap, observe=binding.observe)
    logger.debug("pool %s: OpenTelemetry instrumentation on", pool.name)


def uninstrument(pool: ConnectionPool) -> bool:
    """Stop reporting *pool* and tracing its calls; whether it was instrumented.

    The pool keeps timing connects, leases and calls into
    :meth:`~green_happybase.ConnectionPool.stats` (a few clock reads each).

    .. versionadded:: 0.2
    """
    binding = _bindings.pop(pool, None)
    if binding is None:
        return False
    binding.active = False
    binding.instruments.remove(pool)
    logger.debug("pool %s: OpenTelemetry instrumentation off", pool.name)
    return True


class _Instruments:
    """The instruments of one meter, reporting every pool bound to it."""

    def __init__(self, meter: Meter) -> None:
        self.pools: dict[str, ConnectionPool] = {}
        meter.create_observable_up_down_counter(
            "db.client.connection.count", [self._count], "{connection}",
            "Connections open, per state (idle, used).")
        for name, key, unit, doc in (
                ("db.client.connection.max", "size", "{connection}",
                 "Most connections the pool opens at once."),
                ("db.client.connection.idle.max", "max_idle", "{connection}",
                 "Most idle connections the pool keeps."),
                ("db.client.connection.idle.min", "min_size", "{connection}",
                 "Connections the pool keeps open when idle."),
                ("db.client.connection.pending_requests", "waiting", "{request}",
                 "Leases queued for a connection.")):
            meter.create_observable_up_down_counter(name, [self._figure(key)], unit, doc)
        meter.create_observable_counter(
            "db.client.connection.timeouts", [self._figure("exhausted_total")], "{timeout}",
            "Leases that got no connection (PoolExhausted).")
        self.create_time = _histogram(meter, "db.client.connection.create_time",
                                      "Seconds to open a connection.")
        self.wait_time = _histogram(meter, "db.client.connection.wait_time",
                                    "Seconds a lease waited for a connection.")
        self.use_time = _histogram(meter, "db.client.connection.use_time",
                                   "Seconds from lease to return.")
        self.operation_duration = _histogram(meter, "db.client.operation.duration",
                                             "Seconds per Thrift call.")

    def add(self, pool: ConnectionPool) -> None:
        current = self.pools.get(pool.name)
        if current is not None and current is not pool and not current.stats()["closed"]:
            raise ValueError("a pool named %r already reports to this meter provider (%r); "
                             "give each pool its own name" % (pool.name, current))
        self.pools[pool.name] = pool

    def remove(self, pool: ConnectionPool) -> None:
        if self.pools.get(pool.name) is pool:
            del self.pools[pool.name]

    def _all_stats(self) -> Iterator[dict[str, Any]]:
        # A snapshot: instrument() may run in another thread meanwhile.
        for pool in tuple(self.pools.values()):
            yield pool.stats()

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for stats in self._all_stats():
            name = stats["name"]
            observations.append(Observation(stats["idle"], {POOL_NAME: name, STATE: "idle"}))
            observations.append(Observation(stats["in_use"], {POOL_NAME: name, STATE: "used"}))
        return observations

    def _figure(self, key: str) -> Callback:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(stats[key], {POOL_NAME: stats["name"]})
                    for stats in self._all_stats()]
        return observe


def _histogram(meter: Meter, name: str, description: str) -> Any:
    try:
        return meter.create_histogram(name, "s", description,
                                      explicit_bucket_boundaries_advisory=_BOUNDARIES)
    except TypeError:  # opentelemetry-api < 1.30 takes no advice
        return meter.create_histogram(name, "s", description)


class _Binding:
    """One pool's instrumentation: its call wrapper and its duration feed."""

    def __init__(self, pool: ConnectionPool, instruments: _Instruments, tracer: Tracer) -> None:
        self.pool = weakref.ref(pool)
        self.instruments = instruments
        self.tracer = tracer
        self.active = True
        self.attributes = {POOL_NAME: pool.name}
        self.histograms = {"create": instruments.create_time, "wait": instruments.wait_time,
                           "use": instruments.use_time}
        # Open scanners' tables, for the spans of scannerGet* and scannerClose.
        self.scanners: weakref.WeakKeyDictionary[GreenConnection, dict[Any, str]] = \
            weakref.WeakKeyDictionary()

    def observe(self, kind: str, seconds: float) -> None:
        """Record a connect (``create``), a lease's wait or its use, in seconds."""
        if self.active:
            self.histograms[kind].record(seconds, self.attributes)

    def wrap(self, conn: GreenConnection, method: str, args: Any, call: Callable[[], Any]) -> Any:
        """Run one Thrift call in a client span, and time it."""
        if not self.active:
            return call()
        table = None
        if args:
            first = args[0]
            if method in _SCANNER_USES:
                table = self.scanners.get(conn, {}).get(first)
                if method == "scannerClose" and table is not None:
                    del self.scanners[conn][first]
            elif first.__class__ is bytes and method not in _NOT_A_TABLE:
                table = first.decode("utf-8", "replace")
            elif first.__class__ is str:
                table = first
        attributes: dict[str, Any] = {SYSTEM: "hbase", OPERATION: method,
                                      SERVER_ADDRESS: conn.host, SERVER_PORT: conn.port}
        if table is not None:
            attributes[COLLECTION] = table
            if ":" in table:
                attributes[NAMESPACE] = table.partition(":")[0]
        started = time.time_ns()
        span = self.tracer.start_span(
            "%s %s" % (method, conn.address if table is None else table), kind=SpanKind.CLIENT,
            attributes=attributes, start_time=started, record_exception=False,
            set_status_on_exception=False)
        try:
            result = call()
        except BaseException as error:
            # Every exit, gevent.Timeout and GreenletExit included: the
            # exception itself goes on unchanged.
            attributes = dict(attributes)
            attributes[ERROR_TYPE] = _error_type(error)
            span.set_attribute(ERROR_TYPE, attributes[ERROR_TYPE])
            span.set_status(Status(StatusCode.ERROR, str(error) or None))
            raise
        else:
            if table is not None and method in _SCANNER_OPENS:
                self.scanners.setdefault(conn, {})[result] = table
            return result
        finally:
            ended = time.time_ns()
            span.end(end_time=ended)
            self.instruments.operation_duration.record(max(0.0, (ended - started) / 1e9),
                                                       attributes)


def _error_type(error: BaseException) -> str:
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return "%s.%s" % (kind.__module__, kind.__qualname__)


# One set of instruments per meter provider, serving every pool bound to it.
_instruments: "weakref.WeakKeyDictionary[Any, _Instruments]" = weakref.WeakKeyDictionary()
_bindings: "weakref.WeakKeyDictionary[ConnectionPool, _Binding]" = weakref.WeakKeyDictionary()
