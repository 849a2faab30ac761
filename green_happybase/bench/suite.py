"""The whole benchmark: which variant runs which workload, in what order.

:func:`run_suite` returns the figures as the JSON document the CLI writes
(top-level keys ``machine``, ``lease_us``, ``throughput``, ``wait``,
``wrong_answers``, plus details).
"""

import contextlib
import os
import platform
from typing import Any, Callable, Dict, List

import gevent
import happybase

import green_happybase

from .clients import VARIANTS
from .runner import run_variant
from .scale import INTERRUPT, POINTS, WAIT_POINT, Scale
from .target import Target

__all__ = ["run_suite"]

Progress = Callable[[str], None]


def _machine() -> Dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "gevent": gevent.__version__,
        "happybase": happybase.__version__,
        "green_happybase": green_happybase.__version__,
        "platform": platform.platform(),
        # Other work on the machine skews ops/s more than CPU time per call.
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _describe(variant: str, task: Dict[str, Any], result: Dict[str, Any]) -> str:
    kind = task["kind"]
    if kind == "lease":
        text = "lease overhead %.2f us" % result["lease_us"]
    elif kind == "throughput":
        text = "%5d greenlets, %2d connections: %8.0f ops/s, %5.1f us CPU/call" % (
            task["greenlets"], task["size"], result["ops_s"], result["cpu_us"] or 0.0)
        if result["p99_ms"] is not None:
            text += ", wait p99 %.1f ms" % result["p99_ms"]
    else:
        text = "%d leases, %d cut by gevent.Timeout: %d wrong answers" % (
            result["calls"], result["interrupted"], result["wrong"])
    if result.get("errors"):
        text += " (%d errors, first: %s)" % (result["errors"], result["first_error"])
    if result.get("wrong") and kind != "interrupted":
        text += " (%d WRONG ANSWERS)" % result["wrong"]
    return "%-12s %s" % (variant, text)


def run_suite(target: Target, scale: Scale, progress: Progress) -> Dict[str, Any]:
    """Run every workload against *target*; report each step to *progress*."""
    spec = {"host": target.host, "port": target.port, "options": target.options,
            "table": target.table}
    lease = {"kind": "lease", "size": 1, "loops": scale.lease_loops,
             "repeats": scale.lease_repeats}
    plan = [(variant, [lease]) for variant in ("green", "happybase")]
    # Point by point, every variant in a fresh process: the variants compared
    # run close in time on a shared machine, and memory grows from a clean
    # start.
    plan += [(variant, [{"kind": "throughput", "greenlets": greenlets, "size": size,
                         "warmup": scale.warmup, "duration": scale.duration}])
             for greenlets, size in POINTS for variant in VARIANTS]
    results: Dict[str, Dict[Any, Dict[str, Any]]] = {variant: {} for variant in VARIANTS}

    def run(variant: str, tasks: List[Dict[str, Any]]) -> None:
        # Closed at once on any error, which ends the child.
        with contextlib.closing(run_variant(variant, dict(spec, tasks=tasks))) as reports:
            for task, result in reports:
                progress(_describe(variant, task, result))
                key = (task["greenlets"], task["size"]) if task["kind"] == "throughput" \
                    else task["kind"]
                results[variant][key] = result

    for variant, tasks in plan:
        run(variant, tasks)

    # Only these runs get a slow server: the cuts must land mid-call. On a
    # gateway we cannot slow down, its own round trip has to do.
    latency = INTERRUPT.latency if target.set_latency(INTERRUPT.latency) else None
    interrupted = {"kind": "interrupted", "size": INTERRUPT.size,
                   "greenlets": INTERRUPT.greenlets, "leases": scale.leases,
                   "fraction": INTERRUPT.fraction, "seed": INTERRUPT.seed,
                   "time_limit": 30.0 + scale.leases * 0.01}
    for variant in ("green", "happybase"):
        run(variant, [interrupted])
    if latency is not None:
        target.set_latency(0.0)
    return _figures(target, scale, results, latency)


def _figures(target: Target, scale: Scale, results: Dict[str, Dict[Any, Dict[str, Any]]],
             latency: Any) -> Dict[str, Any]:
    throughput = []
    for point in POINTS:
        row: Dict[str, Any] = {"greenlets": point[0], "size": point[1]}
        for variant in VARIANTS:
            row[variant] = results[variant][point]["ops_s"]
        for extra in ("cpu_us", "p99_ms", "errors", "wrong"):
            row[extra] = {variant: results[variant][point][extra] for variant in VARIANTS}
        throughput.append(row)
    waits = {variant: _wait(results[variant][WAIT_POINT]) for variant in ("green", "happybase")}
    cut = {variant: results[variant]["interrupted"] for variant in ("green", "happybase")}
    return {
        "machine": _machine(),
        "server": {"address": target.address, "embedded": target.embedded,
                   "transport": target.options["transport"],
                   "protocol": target.options["protocol"]},
        "scale": scale._asdict(),
        "lease_us": {variant: results[variant]["lease"]["lease_us"]
                     for variant in ("green", "happybase")},
        "throughput": throughput,
        "wait": dict(waits["green"], greenlets=WAIT_POINT[0], size=WAIT_POINT[1]),
        "wait_by_variant": waits,
        "wrong_answers": {
            "green": cut["green"]["wrong"],
            "happybase": cut["happybase"]["wrong"],
            "calls": cut["green"]["calls"],
            "details": dict(cut, fraction=INTERRUPT.fraction,
                            server_latency_ms=None if latency is None else latency * 1e3),
        },
    }


def _wait(result: Dict[str, Any]) -> Dict[str, Any]:
    keys = ("p50_ms", "p99_ms", "max_ms", "mean_ms", "bytes_per_waiter", "samples", "waiting",
            "starved")
    return {key: result[key] for key in keys}
