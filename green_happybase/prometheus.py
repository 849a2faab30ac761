"""Prometheus metrics for pools (install ``green_happybase[prometheus]``).

::

    from prometheus_client import start_http_server
    from green_happybase import prometheus

    prometheus.register(pool)
    start_http_server(9100)

Every metric is named ``green_happybase_pool_*`` and labelled with the pool's
name (``pool``); per-server metrics also carry ``host`` (``host:port``):

==================================================  =========  ====================================
metric                                              type       from ``pool.stats()``
==================================================  =========  ====================================
``green_happybase_pool_size``                       gauge      ``size``
``green_happybase_pool_open``                       gauge      ``open``
``green_happybase_pool_idle``                       gauge      ``idle``
``green_happybase_pool_in_use``                     gauge      ``in_use``
``green_happybase_pool_waiting``                    gauge      ``waiting``
``green_happybase_pool_connecting``                 gauge      ``connecting``
``green_happybase_pool_acquired_total``             counter    ``acquired_total``
``green_happybase_pool_exhausted_total``            counter    ``exhausted_total``
``green_happybase_pool_discarded_total``            counter    ``discarded_total``
``green_happybase_pool_connect_errors_total``       counter    ``connect_errors_total``
``green_happybase_pool_shed_total``                 counter    ``shed_total``
``green_happybase_pool_scanners_closed_total``      counter    ``scanners_closed_total``
``green_happybase_pool_keepalive_total``            counter    ``keepalive_total``
``green_happybase_pool_wait_seconds``               histogram  ``wait_histogram``
``green_happybase_pool_create_seconds``             histogram  ``create_time_histogram``
``green_happybase_pool_use_seconds``                histogram  ``use_time_histogram``
``green_happybase_pool_operation_seconds``          histogram  ``operation_histogram``
``green_happybase_pool_host_open``                  gauge      ``hosts[*]["open"]``
``green_happybase_pool_host_connects_total``        counter    ``hosts[*]["connects_total"]``
``green_happybase_pool_host_connect_errors_total``  counter    ``hosts[*]["connect_errors_total"]``
==================================================  =========  ====================================

prometheus_client's HTTP server runs in an OS thread. The collector
therefore only calls :meth:`~green_happybase.ConnectionPool.stats`, which
reads plain numbers and never touches gevent. Custom collectors are not
supported by prometheus_client's multiprocess mode: under gunicorn, serve
each worker's metrics on its own port, or scrape one worker per process.
"""

import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["PoolCollector", "register", "unregister"]

_PREFIX = "green_happybase_pool_"

_GAUGES = (
    ("size", "Most connections the pool opens at once."),
    ("open", "Connections open (idle + in use)."),
    ("idle", "Open connections waiting to be leased."),
    ("in_use", "Connections leased by a greenlet."),
    ("waiting", "Greenlets queued for a connection."),
    ("connecting", "Connections being opened."),
)
_COUNTERS = (
    ("acquired_total", "Leases handed out."),
    ("exhausted_total", "PoolExhausted errors raised."),
    ("discarded_total", "Connections closed by the pool."),
    ("connect_errors_total", "Failed connection attempts."),
    ("shed_total", "Waiters shed by the adaptive queue."),
    ("scanners_closed_total", "Scanners a lease left open, closed when it ended."),
    ("keepalive_total", "Keepalive round trips on idle connections."),
)
# Filled always (waits), or while the pool is timed (see register()).
_HISTOGRAMS = (
    ("wait_seconds", "wait_histogram", "Seconds a lease waited for a connection."),
    ("create_seconds", "create_time_histogram", "Seconds to open a connection."),
    ("use_seconds", "use_time_histogram", "Seconds from lease to return."),
    ("operation_seconds", "operation_histogram", "Seconds per Thrift call."),
)
_HOST_GAUGES = (("open", "Connections open to this server."),)
_HOST_COUNTERS = (
    ("connects_total", "Connections opened to this server."),
    ("connect_errors_total", "Failed connection attempts to this server."),
)


class PoolCollector(Collector):
    """A Prometheus collector reporting the figures of several pools.

    Pools are told apart by their :attr:`~green_happybase.ConnectionPool.name`.

    :param pools: pools to report from the start
    """

    def __init__(self, pools: Iterable["ConnectionPool"] = ()) -> None:
        self._pools: dict[str, ConnectionPool] = {}
        for pool in pools:
            self.add(pool)

    def add(self, pool: "ConnectionPool") -> None:
        """Report *pool* too.

        :raises ValueError: another open pool of the same name is reported
            (a closed one is replaced)
        """
        current = self._pools.get(pool.name)
        if current is not None and current is not pool and not current.stats()["closed"]:
            raise ValueError("a pool named %r is already reported (%r); give "
                             "each pool its own name" % (pool.name, current))
        self._pools[pool.name] = pool

    def remove(self, pool: "ConnectionPool") -> bool:
        """Stop reporting *pool*; return whether it was reported."""
        if self._pools.get(pool.name) is pool:
            del self._pools[pool.name]
            return True
        return False

    def __len__(self) -> int:
        return len(self._pools)

    def describe(self) -> list[Metric]:
        """The metric families, without samples (used at registration)."""
        return list(self._families([]))

    def collect(self) -> Iterator[Metric]:
        """One sample set per pool, from :meth:`ConnectionPool.stats`."""
        # A snapshot: register() may run in another thread meanwhile.
        return self._families([pool.stats() for pool in tuple(self._pools.values())])

    def _families(self, all_stats: list[dict[str, Any]]) -> Iterator[Metric]:
        for key, doc in _GAUGES:
            gauge = GaugeMetricFamily(_PREFIX + key, doc, labels=["pool"])
            for stats in all_stats:
                gauge.add_metric([stats["name"]], stats[key])
            yield gauge
        for key, doc in _COUNTERS:
            counter = CounterMetricFamily(_PREFIX + key, doc, labels=["pool"])
            for stats in all_stats:
                counter.add_metric([stats["name"]], stats[key])
            yield counter
        for name, key, doc in _HISTOGRAMS:
            histogram = HistogramMetricFamily(_PREFIX + name, doc, labels=["pool"])
            for stats in all_stats:
                figures = stats[key]
                buckets = [(floatToGoString(le), count)
                           for le, count in zip(figures["le"], figures["counts"], strict=False)]
                if not buckets or buckets[-1][0] != "+Inf":
                    buckets.append(("+Inf", figures["count"]))
                histogram.add_metric([stats["name"]], buckets, figures["sum"])
            yield histogram
        for key, doc in _HOST_GAUGES:
            gauge = GaugeMetricFamily(_PREFIX + "host_" + key, doc, labels=["pool", "host"])
            for stats in all_stats:
                for address, host in stats["hosts"].items():
                    gauge.add_metric([stats["name"], address], host[key])
            yield gauge
        for key, doc in _HOST_COUNTERS:
            counter = CounterMetricFamily(_PREFIX + "host_" + key, doc,
                                          labels=["pool", "host"])
            for stats in all_stats:
                for address, host in stats["hosts"].items():
                    counter.add_metric([stats["name"], address], host[key])
            yield counter


# One collector per registry, serving every pool registered there.
_collectors: "weakref.WeakKeyDictionary[CollectorRegistry, PoolCollector]" = \
    weakref.WeakKeyDictionary()


def register(pool: "ConnectionPool", registry: CollectorRegistry = REGISTRY, *,
             timings: bool = True) -> PoolCollector:
    """Export *pool*'s figures through *registry* (default: the global one).

    Registering a second pool adds it to the same collector; registering the
    same pool again changes nothing.

    :param timings: also time each connect, lease and Thrift call, for the
        ``create``, ``use`` and ``operation`` histograms (a few clock reads
        each; they stay on once started, and
        :func:`green_happybase.otel.instrument` starts them too)
    :returns: the registry's collector
    :raises ValueError: another open pool of the same name is registered

    .. versionadded:: 0.2
       *timings*
    """
    if timings and not pool._instrumented:
        pool._instrument()
    collector = _collectors.get(registry)
    if collector is None:
        collector = PoolCollector()
        collector.add(pool)
        registry.register(collector)
        _collectors[registry] = collector
    else:
        collector.add(pool)
    return collector


def unregister(pool: "ConnectionPool",
               registry: CollectorRegistry = REGISTRY) -> PoolCollector | None:
    """Stop exporting *pool*; the collector leaves *registry* with its last pool.

    :returns: the collector still serving other pools, or ``None``
    """
    collector = _collectors.get(registry)
    if collector is None:
        return None
    collector.remove(pool)
    if len(collector):
        return collector
    registry.unregister(collector)
    del _collectors[registry]
    return None
