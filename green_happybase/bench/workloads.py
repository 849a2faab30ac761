"""The workloads, run inside a variant's child process.

Every answer is checked against its request (see :mod:`.dataset`), every loop
is bounded in count and time, and every figure is measured after a warm-up.
"""

import math
import os
import random
import statistics
from array import array
from time import perf_counter, process_time
from typing import Any

import gevent
import gevent.event
import happybase

from . import dataset

__all__ = ["capacity", "costs", "interrupted", "lease_overhead", "open_loop", "rotated",
           "throughput"]

#: A run stops early after this many failed calls.
_MAX_ERRORS = 100
#: Seconds a run may take beyond its planned duration before it is abandoned.
_GRACE = 30.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    """This process's resident memory in bytes, or ``None`` where unknown."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of the sorted sequence *ordered*."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def lease_overhead(client: Any, table: str, loops: int, repeats: int) -> dict[str, Any]:
    """Microseconds per uncontended acquire+release of an open connection.

    The best of *repeats* runs of *loops* leases each: noise only ever adds.
    """
    lease = client.leaser(0)
    with lease() as conn:  # opens the connection the loop then reuses
        conn.table(table).row(dataset.keys(1)[0])
    runs = []
    for _ in range(repeats):
        started = perf_counter()
        for _ in range(loops):
            with lease():
                pass
        runs.append((perf_counter() - started) / loops * 1e6)
    return {"lease_us": min(runs), "runs_us": runs}


class _Tally:
    """What the greenlets of one run count, bumped inline (no preemption)."""

    def __init__(self) -> None:
        self.ops = 0
        self.wrong = 0
        self.errors = 0
        self.first_error: str | None = None
        self.waiting = 0  # greenlets waiting for a lease right now
        self.measuring = False
        self.stop = False

    def failed(self, error: Exception) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = "%s: %s" % (type(error).__name__, error)
        if self.errors >= _MAX_ERRORS:
            self.stop = True
        else:
            gevent.sleep(0.01)  # a failing server must not turn this into a busy loop


def throughput(client: Any, table: str, greenlets: int, warmup: float,
               duration: float) -> dict[str, Any]:
    """Single-row gets from *greenlets* greenlets looping for *duration* s.

    Reports ops/s and client CPU microseconds per call over the measured
    window; each lease's wait in that window (and those not over at its end
    that are longer than every finished one); the greenlets that waited
    through all of it (``starved``); and how much the process grew per
    greenlet waiting for a lease.
    """
    keys, values = dataset.pairs()
    n_keys = len(keys)
    pick = random.random
    waits = array("d")
    # When each greenlet began waiting for its current lease, or None.
    asked_at: list[float | None] = [None] * greenlets
    start = gevent.event.Event()
    tally = _Tally()

    def work(i: int) -> None:
        lease = client.leaser(i)
        start.wait()
        while not tally.stop:
            j = int(pick() * n_keys)
            tally.waiting += 1
            got = None
            asked_at[i] = asked = perf_counter()
            try:
                with lease() as conn:
                    got = perf_counter()
                    asked_at[i] = None
                    tally.waiting -= 1
                    row = conn.table(table).row(keys[j])
            except Exception as error:
                if got is None:
                    asked_at[i] = None
                    tally.waiting -= 1
                tally.failed(error)
                continue
            if tally.measuring:
                waits.append(got - asked)
            tally.ops += 1
            if row.get(dataset.COLUMN) != values[j]:
                tally.wrong += 1

    rss_before = _rss()
    workers = [gevent.spawn(work, i) for i in range(greenlets)]
    start.set()
    gevent.sleep(warmup)
    rss_during = _rss()
    waiting = tally.waiting
    ops0, wall0, cpu0 = tally.ops, perf_counter(), process_time()
    tally.measuring = True
    gevent.sleep(duration)
    ops1, wall1, cpu1 = tally.ops, perf_counter(), process_time()
    tally.measuring = False
    tally.stop = True
    # A wait still going on that is already longer than every finished one
    # counts too (as a lower bound), or a pool that starves some greenlets
    # would look better for it.
    longest = max(waits, default=0.0)
    waits.extend(wall1 - asked for asked in asked_at
                 if asked is not None and wall1 - asked > longest)
    starved = sum(1 for asked in asked_at if asked is not None and asked <= wall0)
    gevent.killall(workers, timeout=_GRACE)
    stuck = sum(1 for worker in workers if not worker.dead)
    if stuck:
        tally.errors += stuck
        tally.first_error = tally.first_error or "%d greenlets did not stop" % stuck
    ops = ops1 - ops0
    result = {
        "greenlets": greenlets,
        "ops": ops,
        "seconds": wall1 - wall0,
        "ops_s": ops / (wall1 - wall0),
        "cpu_us": (cpu1 - cpu0) / ops * 1e6 if ops else None,
        "wrong": tally.wrong,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "waiting": waiting,
        "starved": starved,
        "bytes_per_waiter": (rss_during - rss_before) / waiting
        if waiting and rss_before is not None and rss_during is not None else None,
    }
    result.update(_wait_stats(waits))
    return result


def rotated(items: list[Any], n: int) -> list[Any]:
    """*items* starting at number ``n % len(items)``: round *n*'s order."""
    n %= len(items) or 1
    return items[n:] + items[:n]


def costs(clients: dict[str, Any], table: str, loops: int, repeats: int, greenlets: int,
          warmup: float, duration: float, rounds: int) -> dict[str, dict[str, Any]]:
    """:func:`lease_overhead` and :func:`throughput` of each of *clients*,
    interleaved in this one process.

    Loop by loop, then round by round, every client in turn (each round
    starting one further on), so that a drift of the machine falls on each
    alike. Each keeps its best loop (noise only ever adds) and the figures
    of every round, in the order of the rounds.
    """
    leases: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(repeats):
        for name, client in clients.items():
            leases[name].append(lease_overhead(client, table, loops, 1)["lease_us"])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
    for n in range(rounds):
        for name in rotated(list(clients), n):
            runs[name].append(throughput(clients[name], table, greenlets, warmup, duration))
    return {name: {"lease_us": min(leases[name]), "runs_us": leases[name],
                   "rounds": runs[name]} for name in clients}


def _wait_stats(waits: "array[float]") -> dict[str, Any]:
    if not waits:
        return {"samples": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    ordered = sorted(waits)
    return {
        "samples": len(ordered),
        "p50_ms": _percentile(ordered, 0.50) * 1e3,
        "p99_ms": _percentile(ordered, 0.99) * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "mean_ms": statistics.fmean(ordered) * 1e3,
    }


def interrupted(client: Any, table: str, leases: int, greenlets: int,
                fraction: float, seed: int, time_limit: float) -> dict[str, Any]:
    """*leases* leases of one get each, a *fraction* of them cut mid-call.

    A cut call runs under a ``gevent.Timeout`` shorter than the call's usual
    duration, measured first, so that it expires while the reply is on its
    way. Counts the answers that belong to another request.
    """
    keys, values = dataset.pairs()
    rnd = random.Random(seed)
    lease = client.leaser(0)
    samples = []
    for key in keys[:20]:
        started = perf_counter()
        with lease() as conn:
            conn.table(table).row(key)
        samples.append(perf_counter() - started)
    call = statistics.median(samples)
    deadline = perf_counter() + time_limit
    tally = _Tally()
    cut = 0
    left = leases

    def work(i: int) -> None:
        nonlocal cut, left
        lease = client.leaser(i)
        while left > 0 and not tally.stop and perf_counter() < deadline:
            left -= 1
            j = rnd.randrange(len(keys))
            limit = rnd.uniform(0.2, 1.0) * call if rnd.random() < fraction else None
            try:
                with lease() as conn:
                    tally.ops += 1
                    if limit is None:
                        row = conn.table(table).row(keys[j])
                    else:
                        try:
                            with gevent.Timeout(limit) as timer:
                                row = conn.table(table).row(keys[j])
                        except gevent.Timeout as expired:
                            if expired is not timer:
                                raise
                            cut += 1
                            continue
            except Exception as error:
                tally.failed(error)
                continue
            if row.get(dataset.COLUMN) != values[j]:
                tally.wrong += 1

    workers = [gevent.spawn(work, i) for i in range(greenlets)]
    gevent.joinall(workers, timeout=time_limit + _GRACE)
    gevent.killall(workers, timeout=_GRACE)
    if left > 0:
        tally.errors += 1
        tally.first_error = tally.first_error or "%d leases not done in time" % left
    return {
        "calls": tally.ops,
        "wrong": tally.wrong,
        "interrupted": cut,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "call_ms": call * 1e3,
    }


# How a request of the open-loop workload ended.
SERVED = "served"
#: The pool refused it at once (its message says "shed").
SHED = "shed"
#: No connection before its deadline, or its deadline passed before it began.
TIMED_OUT = "timed_out"
#: An error other than a refused lease.
FAILED = "failed"
#: Still waiting when the run ended, and killed; reported within timed_out.
UNFINISHED = "unfinished"


class _Requests:
    """Requests of *calls* gets each on one lease, each in a new greenlet.

    A request counts when it arrived within :attr:`window`; it then ends up
    in exactly one of the outcomes above. Latency runs from the request's
    arrival to its last answer.
    """

    def __init__(self, client: Any, table: str, calls: int, deadline: float) -> None:
        self.keys, self.values = dataset.pairs()
        self._client = client
        self._table = table
        self._calls = calls
        self._deadline = deadline
        #: Arrivals counted: ``start <= arrival < end``.
        self.window = (math.inf, math.inf)
        self.counts = dict.fromkeys((SERVED, SHED, TIMED_OUT, FAILED, UNFINISHED), 0)
        self.offered = 0
        self.good = 0  # served within the deadline
        self.latencies = array("d")
        self.calls_done = 0  # while measuring, in any request
        self.tally = _Tally()
        self.live: set[Any] = set()
        self._n = 0
        self._pending = 0  # counted requests not over yet
        self._closed = False  # no more arrivals
        #: Set once every counted request is over.
        self.drained = gevent.event.Event()

    def spawn(self, arrival: float) -> Any:
        """Start a request that arrived at *arrival*; return its greenlet."""
        counted = self.window[0] <= arrival < self.window[1]
        if counted:
            self.offered += 1
            self._pending += 1
        self._n += 1
        worker = gevent.spawn(self._request, self._n, arrival, counted)
        self.live.add(worker)
        return worker

    def _request(self, n: int, arrival: float, counted: bool) -> None:
        outcome = UNFINISHED
        try:
            outcome = self._attempt(n, arrival)
        except Exception as error:
            outcome = FAILED
            self.tally.failed(error)
        finally:
            # Never yields: a kill at the end of the run finds this consistent.
            self.live.discard(gevent.getcurrent())
            if counted:
                self._count(outcome, perf_counter() - arrival)

    def _attempt(self, n: int, arrival: float) -> str:
        remaining = arrival + self._deadline - perf_counter()
        if remaining <= 0:
            return TIMED_OUT  # its client gave up before the hub got to it
        lease = self._client.leaser(n)
        keys, values, n_keys = self.keys, self.values, len(self.keys)
        pick = random.random
        try:
            with (lease(remaining) if self._client.lease_timeout else lease()) as conn:
                table = conn.table(self._table)
                for _ in range(self._calls):
                    j = int(pick() * n_keys)
                    row = table.row(keys[j])
                    if self.tally.measuring:
                        self.calls_done += 1
                    if row.get(dataset.COLUMN) != values[j]:
                        self.tally.wrong += 1
        except happybase.NoConnectionsAvailable as refused:
            return SHED if "shed" in str(refused).lower() else TIMED_OUT
        return SERVED

    def _count(self, outcome: str, latency: float) -> None:
        self.counts[outcome] += 1
        if outcome == SERVED:
            self.latencies.append(latency)
            if latency <= self._deadline:
                self.good += 1
        self._pending -= 1
        if self._closed and not self._pending:
            self.drained.set()

    def arrive(self, rate: float, rnd: random.Random, until: float) -> None:
        """Poisson arrivals at *rate* per second until *until*.

        Requests start at their scheduled times, not when the hub gets round
        to them: a busy hub delays a request, and the delay is in its latency.
        Failures do not stop the arrivals: their rate is bounded already, and
        every request must be offered for the counts to compare.
        """
        at = perf_counter()
        while at < until:
            now = perf_counter()
            while at <= now:
                self.spawn(at)
                at += rnd.expovariate(rate)
            gevent.sleep(at - now)
        self._closed = True
        if not self._pending:
            self.drained.set()

    def finish(self) -> None:
        """Kill the requests still running; the counted ones end up unfinished."""
        gevent.killall(list(self.live), timeout=_GRACE)
        if self.live:
            self.tally.errors += len(self.live)
            self.tally.first_error = self.tally.first_error or \
                "%d requests did not stop" % len(self.live)

    def figures(self, duration: float, cpu: float) -> dict[str, Any]:
        """The counted requests' figures; *cpu*: client CPU seconds in the window."""
        counts = self.counts
        served = counts[SERVED]
        ordered = sorted(self.latencies)
        result = {
            "offered": self.offered,
            "served": served,
            "good": self.good,
            "late": served - self.good,
            "shed": counts[SHED],
            "timed_out": counts[TIMED_OUT] + counts[UNFINISHED],
            "unfinished": counts[UNFINISHED],
            "failed": counts[FAILED],
            "wrong": self.tally.wrong,
            "errors": self.tally.errors,
            "first_error": self.tally.first_error,
            "calls": self.calls_done,
            "seconds": duration,
            "offered_s": self.offered / duration,
            "served_s": served / duration,
            "goodput_s": self.good / duration,
            "cpu_us": cpu / self.calls_done * 1e6 if self.calls_done else None,
        }
        for key, fraction in (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999)):
            result[key] = _percentile(ordered, fraction) * 1e3 if ordered else None
        return result


def _window(requests: _Requests, warmup: float, duration: float) -> float:
    """Count the requests arriving after *warmup* for *duration*; return its end."""
    start = perf_counter() + warmup
    requests.window = (start, start + duration)
    return start + duration


def _measure(requests: _Requests) -> float:
    """Wait out the counting window; return the client CPU seconds spent in it."""
    start, end = requests.window
    gevent.sleep(max(0.0, start - perf_counter()))
    cpu0 = process_time()
    requests.tally.measuring = True
    gevent.sleep(max(0.0, end - perf_counter()))
    requests.tally.measuring = False
    return process_time() - cpu0


def open_loop(client: Any, table: str, rate: float, calls: int, deadline: float,
              warmup: float, duration: float, seed: int, time_limit: float) -> dict[str, Any]:
    """Requests arriving at random (Poisson) at *rate* per second.

    Each request is a new greenlet that leases a connection, with its
    remaining *deadline* as the lease timeout where the client takes one,
    and makes *calls* gets. Arrivals go on for one *deadline* after the
    measured window, as long as a request that arrived within it can still
    be on time; then the run waits for those requests, at most *time_limit*
    seconds from the start, and kills the rest.
    """
    requests = _Requests(client, table, calls, deadline)
    started = perf_counter()
    end = _window(requests, warmup, duration)
    arrivals = gevent.spawn(requests.arrive, rate, random.Random(seed), end + deadline)
    cpu = _measure(requests)
    requests.drained.wait(max(0.0, started + time_limit - perf_counter()))
    arrivals.kill()
    requests.finish()
    return dict(requests.figures(duration, cpu), rate=rate)


def capacity(client: Any, table: str, concurrency: int, calls: int, deadline: float,
             warmup: float, duration: float) -> dict[str, Any]:
    """Requests served per second with *concurrency* requests always in flight.

    The requests are those of :func:`open_loop`, each a new greenlet; a new
    one starts as soon as one is over.
    """
    requests = _Requests(client, table, calls, deadline)
    end = _window(requests, warmup, duration)

    def slot() -> None:
        while not requests.tally.stop and perf_counter() < end:
            requests.spawn(perf_counter()).join()

    slots = [gevent.spawn(slot) for _ in range(concurrency)]
    cpu = _measure(requests)
    gevent.joinall(slots, timeout=_GRACE)
    gevent.killall(slots, timeout=_GRACE)
    requests.finish()
    result = requests.figures(duration, cpu)
    return dict(result, concurrency=concurrency, requests_s=result["served_s"],
                calls_s=result["calls"] / duration)
