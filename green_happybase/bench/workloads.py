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
from typing import Any, Dict, List, Optional

import gevent
import gevent.event

from . import dataset

__all__ = ["interrupted", "lease_overhead", "throughput"]

#: A run stops early after this many failed calls.
_MAX_ERRORS = 100
#: Seconds a run may take beyond its planned duration before it is abandoned.
_GRACE = 30.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> Optional[int]:
    """This process's resident memory in bytes, or ``None`` where unknown."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _percentile(ordered: Any, fraction: float) -> float:
    """Nearest-rank percentile of the sorted sequence *ordered*."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def lease_overhead(client: Any, table: str, loops: int, repeats: int) -> Dict[str, Any]:
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
        self.first_error: Optional[str] = None
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
               duration: float) -> Dict[str, Any]:
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
    asked_at: List[Optional[float]] = [None] * greenlets
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


def _wait_stats(waits: array) -> Dict[str, Any]:
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
                fraction: float, seed: int, time_limit: float) -> Dict[str, Any]:
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
