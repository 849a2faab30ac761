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


def throughput(client: Any, table: str, greenlets: int, warmup: float,
               duration: float) -> Dict[str, Any]:
    """Single-row gets from *greenlets* greenlets looping for *duration* s.

    Reports ops/s and client CPU microseconds per call over the measured
    window; each lease's wait in that window (and those not over at its end
    that are longer than every finished one); the greenlets that waited through all of it (``starved``);
    and how much the process grew per greenlet waiting for a lease.
    """
    keys, values = dataset.pairs()
    n_keys = len(keys)
    pick = random.random
    waits = array("d")
    # When each greenlet began waiting for its current lease, or None.
    asked_at: List[Optional[float]] = [None] * greenlets
    start = gevent.event.Event()
    state = {"ops": 0, "wrong": 0, "errors": 0, "first_error": None,
             "waiting": 0, "measuring": False, "stop": False}

    def work(i: int) -> None:
        lease = client.leaser(i)
        start.wait()
        while not state["stop"]:
            j = int(pick() * n_keys)
            state["waiting"] += 1
            got = None
            asked_at[i] = asked = perf_counter()
            try:
                with lease() as conn:
                    got = perf_counter()
                    asked_at[i] = None
                    state["waiting"] -= 1
                    row = conn.table(table).row(keys[j])
            except Exception as error:
                if got is None:
                    asked_at[i] = None
                    state["waiting"] -= 1
                _failed(state, error)
                continue
            if state["measuring"]:
                waits.append(got - asked)
            state["ops"] += 1
            if row.get(dataset.COLUMN) != values[j]:
                state["wrong"] += 1

    rss_before = _rss()
    workers = [gevent.spawn(work, i) for i in range(greenlets)]
    start.set()
    gevent.sleep(warmup)
    rss_during = _rss()
    waiting = state["waiting"]
    ops0, wall0, cpu0 = state["ops"], perf_counter(), process_time()
    state["measuring"] = True
    gevent.sleep(duration)
    ops1, wall1, cpu1 = state["ops"], perf_counter(), process_time()
    state["measuring"] = False
    # A wait still going on that is already longer than every finished one
    # counts too (as a lower bound), or a pool that starves some greenlets
    # would look better for it.
    longest = max(waits, default=0.0)
    waits.extend(wall1 - asked for asked in asked_at
                 if asked is not None and wall1 - asked > longest)
    starved = sum(1 for asked in asked_at if asked is not None and asked <= wall0)
    state["stop"] = True
    gevent.killall(workers, timeout=_GRACE)
    stuck = sum(1 for worker in workers if not worker.dead)
    ops = ops1 - ops0
    result = {
        "greenlets": greenlets,
        "ops": ops,
        "seconds": wall1 - wall0,
        "ops_s": ops / (wall1 - wall0),
        "cpu_us": (cpu1 - cpu0) / ops * 1e6 if ops else None,
        "wrong": state["wrong"],
        "errors": state["errors"] + stuck,
        "first_error": state["first_error"] or ("%d greenlets did not stop" % stuck
                                                if stuck else None),
        "waiting": waiting,
        "starved": starved,
        "bytes_per_waiter": (rss_during - rss_before) / waiting
        if waiting and rss_before is not None and rss_during is not None else None,
    }
    result.update(_wait_stats(waits))
    return result


def _failed(state: Dict[str, Any], error: Exception) -> None:
    state["errors"] += 1
    if state["first_error"] is None:
        state["first_error"] = "%s: %s" % (type(error).__name__, error)
    if state["errors"] >= _MAX_ERRORS:
        state["stop"] = True
    else:
        gevent.sleep(0.01)  # a failing server must not turn this into a busy loop


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
    state = {"left": leases, "calls": 0, "wrong": 0, "cut": 0, "errors": 0,
             "first_error": None, "stop": False}

    def work(i: int) -> None:
        lease = client.leaser(i)
        while state["left"] > 0 and not state["stop"] and perf_counter() < deadline:
            state["left"] -= 1
            j = rnd.randrange(len(keys))
            cut = rnd.uniform(0.2, 1.0) * call if rnd.random() < fraction else None
            row = None
            try:
                with lease() as conn:
                    state["calls"] += 1
                    if cut is None:
                        row = conn.table(table).row(keys[j])
                    else:
                        with gevent.Timeout(cut, False):
                            row = conn.table(table).row(keys[j])
            except Exception as error:
                _failed(state, error)
                continue
            if row is None:
                state["cut"] += 1
            elif row.get(dataset.COLUMN) != values[j]:
                state["wrong"] += 1

    workers = [gevent.spawn(work, i) for i in range(greenlets)]
    gevent.joinall(workers, timeout=time_limit + _GRACE)
    gevent.killall(workers, timeout=_GRACE)
    return {
        "calls": state["calls"],
        "wrong": state["wrong"],
        "interrupted": state["cut"],
        "errors": state["errors"] + (1 if state["left"] > 0 else 0),
        "first_error": state["first_error"] or (
            "%d leases not done in time" % state["left"] if state["left"] > 0 else None),
        "call_ms": call * 1e3,
    }
