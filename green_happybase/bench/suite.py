"""The whole benchmark: which variant runs which workload, in what order.

:func:`run_suite` returns the figures as the JSON document the CLI writes:
``machine``, ``server`` and ``scale`` always; ``lease_us``, ``throughput``,
``wait``, ``wait_by_variant`` and ``wrong_answers`` from the closed-loop
workloads; ``open_loop`` from the open-loop workload.
"""

import contextlib
import os
import platform
from collections.abc import Callable
from typing import Any

import gevent
import happybase

from .._version import __version__
from .clients import OPEN_VARIANTS, VARIANTS, unavailable
from .runner import BenchError, run_variant
from .scale import INTERRUPT, POINTS, WAIT_POINT, OpenLoop, Scale
from .target import Target

__all__ = ["CAPACITY_VARIANT", "run_suite"]

Progress = Callable[[str], None]
Plan = list[tuple[str, dict[str, Any]]]

#: The variant whose requests per second are the open loop's capacity: the
#: pool itself, serving waiters in order.
CAPACITY_VARIANT = "green_fifo"
#: Seconds an open-loop run may go on after its window, beyond twice the
#: window and one deadline: enough for a queue without a timeout to drain.
_DRAIN = 2.0


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def _machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "gevent": gevent.__version__,
        "happybase": happybase.__version__,
        "green_happybase": __version__,
        "platform": platform.platform(),
        # Other work on the machine skews ops/s more than CPU time per call.
        "load_average": _load_average(),
    }


def _percent(load: float | None) -> str:
    return "given rate" if load is None else "%g%% load" % (load * 100)


def _describe(variant: str, task: dict[str, Any], result: dict[str, Any]) -> str:
    kind = task["kind"]
    if kind == "lease":
        text = "lease overhead %.2f us" % result["lease_us"]
    elif kind == "throughput":
        text = "%5d greenlets, %2d connections: %8.0f ops/s, %5.1f us CPU/call" % (
            task["greenlets"], task["size"], result["ops_s"], result["cpu_us"] or 0.0)
        if result["p99_ms"] is not None:
            text += ", wait p99 %.1f ms" % result["p99_ms"]
    elif kind == "capacity":
        text = "capacity %.0f requests/s (%.0f gets/s), %d in flight" % (
            result["requests_s"], result["calls_s"], task["concurrency"])
    elif kind == "open_loop":
        text = "%s, %.0f requests/s: served %.0f/s, goodput %.0f/s, p99 %s ms, " \
               "%d shed, %d timed out" % (
                   _percent(task["load"]), task["rate"], result["served_s"],
                   result["goodput_s"], "-" if result["p99_ms"] is None
                   else "%.1f" % result["p99_ms"], result["shed"], result["timed_out"])
    else:
        text = "%d leases, %d cut by gevent.Timeout: %d wrong answers" % (
            result["calls"], result["interrupted"], result["wrong"])
    if result.get("errors"):
        text += " (%d errors, first: %s)" % (result["errors"], result["first_error"])
    if result.get("wrong") and kind != "interrupted":
        text += " (%d WRONG ANSWERS)" % result["wrong"]
    return "%-14s %s" % (variant, text)


class _Runner:
    """Runs tasks in the variants' child processes against one target."""

    def __init__(self, target: Target, scale: Scale, progress: Progress) -> None:
        self._spec = {"host": target.host, "port": target.port, "options": target.options,
                      "table": target.table}
        self._fresh = scale.fresh_children
        self._progress = progress

    def run(self, plan: Plan) -> list[dict[str, Any]]:
        """Run each ``(variant, task)`` of *plan*; return the results in its order.

        Each task gets its own child, or, when the scale does not ask for
        fresh children, each variant one child for all its tasks.
        """
        batches: dict[Any, tuple[str, list[dict[str, Any]]]] = {}
        for step, (variant, task) in enumerate(plan):
            batch = batches.setdefault(step if self._fresh else variant, (variant, []))
            batch[1].append(dict(task, step=step))
        results: list[dict[str, Any]] = [{} for _ in plan]
        for variant, tasks in batches.values():
            # Closed at once on any error, which ends the child.
            with contextlib.closing(run_variant(variant, dict(self._spec, tasks=tasks))) \
                    as reports:
                for task, result in reports:
                    self._progress(_describe(variant, task, result))
                    results[task["step"]] = result
        return results


def run_suite(target: Target, scale: Scale, progress: Progress, *, closed: bool,
              open_loop: OpenLoop | None) -> dict[str, Any]:
    """Run the workloads against *target*; report each step to *progress*.

    *closed*: the closed-loop workloads (lease overhead, throughput,
    interruption); *open_loop*: the open-loop workload, ``None`` for none.
    """
    runner = _Runner(target, scale, progress)
    figures: dict[str, Any] = {
        "machine": _machine(),
        "server": {"address": target.address, "embedded": target.embedded,
                   "transport": target.options["transport"],
                   "protocol": target.options["protocol"]},
        "scale": scale._asdict(),
    }
    if closed:
        figures.update(_closed_loop(runner, target, scale))
    if open_loop is not None:
        figures["open_loop"] = _open_loop(runner, scale, open_loop)
    figures["machine"]["load_average_end"] = _load_average()
    return figures


def _closed_loop(runner: _Runner, target: Target, scale: Scale) -> dict[str, Any]:
    lease = {"kind": "lease", "size": 1, "loops": scale.lease_loops,
             "repeats": scale.lease_repeats}
    plan: Plan = [(variant, lease) for variant in ("green", "happybase")]
    # Point by point, so that the variants compared run close in time on a
    # shared machine.
    plan += [(variant, {"kind": "throughput", "greenlets": greenlets, "size": size,
                        "warmup": scale.warmup, "duration": scale.duration})
             for greenlets, size in POINTS for variant in VARIANTS]
    results: dict[str, dict[Any, dict[str, Any]]] = {variant: {} for variant in VARIANTS}

    def run(plan: Plan) -> None:
        for (variant, task), result in zip(plan, runner.run(plan), strict=True):
            key = (task["greenlets"], task["size"]) if task["kind"] == "throughput" \
                else task["kind"]
            results[variant][key] = result

    run(plan)
    # Only these runs get a slow server: the cuts must land mid-call. On a
    # gateway we cannot slow down, its own round trip has to do.
    latency = INTERRUPT.latency if target.set_latency(INTERRUPT.latency) else None
    interrupted = {"kind": "interrupted", "size": INTERRUPT.size,
                   "greenlets": INTERRUPT.greenlets, "leases": scale.leases,
                   "fraction": INTERRUPT.fraction, "seed": INTERRUPT.seed,
                   "time_limit": 30.0 + scale.leases * 0.01}
    run([(variant, interrupted) for variant in ("green", "happybase")])
    if latency is not None:
        target.set_latency(0.0)
    return _closed_figures(results, latency)


def _closed_figures(results: dict[str, dict[Any, dict[str, Any]]],
                    latency: Any) -> dict[str, Any]:
    throughput = []
    for point in POINTS:
        row: dict[str, Any] = {"greenlets": point[0], "size": point[1]}
        for variant in VARIANTS:
            row[variant] = results[variant][point]["ops_s"]
        for extra in ("cpu_us", "p99_ms", "errors", "wrong"):
            row[extra] = {variant: results[variant][point][extra] for variant in VARIANTS}
        throughput.append(row)
    waits = {variant: _wait(results[variant][WAIT_POINT]) for variant in ("green", "happybase")}
    cut = {variant: results[variant]["interrupted"] for variant in ("green", "happybase")}
    return {
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


def _wait(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("p50_ms", "p99_ms", "max_ms", "mean_ms", "bytes_per_waiter", "samples", "waiting",
            "starved")
    return {key: result[key] for key in keys}


def _open_loop(runner: _Runner, scale: Scale, settings: OpenLoop) -> dict[str, Any]:
    request = {"size": settings.size, "calls": settings.calls, "deadline": settings.deadline,
               "warmup": scale.warmup, "duration": scale.duration}
    capacity = None
    loads: list[tuple[float | None, float]]
    if settings.rate is None:
        task = dict(request, kind="capacity", concurrency=settings.concurrency)
        capacity = dict(runner.run([(CAPACITY_VARIANT, task)])[0], variant=CAPACITY_VARIANT)
        if not capacity["served"]:
            raise BenchError("no request was served while measuring capacity (first error: "
                             "%s)" % capacity["first_error"])
        loads = [(load, load * capacity["requests_s"]) for load in settings.loads]
    else:
        loads = [(None, settings.rate)]
    missing = {}
    for variant in OPEN_VARIANTS:
        why = unavailable(variant)
        if why is not None:
            missing[variant] = why
    run = dict(request, kind="open_loop", seed=settings.seed,
               time_limit=2 * (scale.warmup + scale.duration) + settings.deadline + _DRAIN)
    # Load by load, every variant close in time.
    plan: Plan = [(variant, dict(run, load=load, rate=rate)) for load, rate in loads
                  for variant in OPEN_VARIANTS if variant not in missing]
    done = iter(runner.run(plan))
    rows = []
    for load, rate in loads:
        row = {}
        for variant in OPEN_VARIANTS:
            row[variant] = {"available": False, "reason": missing[variant]} \
                if variant in missing else dict(next(done), available=True)
        rows.append({"load": load, "rate": rate, "results": row})
    return {
        "calls": settings.calls,
        "deadline_ms": settings.deadline * 1e3,
        "size": settings.size,
        "variants": list(OPEN_VARIANTS),
        "capacity": capacity,
        "loads": rows,
    }
