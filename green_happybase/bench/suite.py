"""The whole benchmark: which variant runs which workload, in what order.

:func:`run_suite` returns the figures as the JSON document the CLI writes:
``machine``, ``server`` and ``scale`` always; ``lease_us``, ``throughput``,
``wait``, ``wait_by_variant``, ``wrong_answers``, ``unavailable`` and
``costs`` from the closed-loop workloads, and ``transports`` too on the
embedded server; ``open_loop`` from the open-loop workload.
"""

import contextlib
import os
import platform
import statistics
from collections.abc import Callable
from typing import Any

import gevent
import happybase

from .._version import __version__
from .clients import OPEN_VARIANTS, SETUPS, VARIANTS, setup_unavailable, unavailable
from .runner import BenchError, run_variant
from .scale import INTERRUPT, POINTS, ROW_POINT, WAIT_POINT, OpenLoop, Scale
from .security import describe
from .target import MODES, Target, open_mode_targets, tls_unavailable
from .workloads import rotated

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
    if task.get("target", MAIN) != MAIN:
        variant += " over " + MODES[task["target"]].label
    if kind == "lease":
        text = "lease overhead %.2f us" % result["lease_us"]
    elif kind == "throughput":
        text = "%5d greenlets, %2d connections: %8.0f ops/s, %5.1f us CPU/call" % (
            task["greenlets"], task["size"], result["ops_s"], result["cpu_us"] or 0.0)
        if result["p99_ms"] is not None:
            text += ", wait p99 %.1f ms" % result["p99_ms"]
    elif kind == "costs":
        text = "costs, lease us: " + ", ".join(
            "%s %.2f" % (setup, row["lease_us"]) for setup, row in result.items())
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


#: The target of a task that names none: the one the run was asked for.
MAIN = "main"


class _Runner:
    """Runs tasks in the variants' child processes against named targets.

    A task runs against ``targets[task["target"]]``, :data:`MAIN` by default.
    """

    def __init__(self, targets: dict[str, Target], scale: Scale, progress: Progress) -> None:
        self._targets = targets
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
            batch[1].append(dict(task, step=step, target=task.get("target", MAIN)))
        results: list[dict[str, Any]] = [{} for _ in plan]
        for variant, tasks in batches.values():
            targets = {task["target"]: self._targets[task["target"]] for task in tasks}
            spec = {"targets": {name: target.spec() for name, target in targets.items()},
                    "tasks": tasks}
            env = {key: value for target in targets.values() for key, value in target.env.items()}
            # Closed at once on any error, which ends the child.
            with contextlib.closing(run_variant(variant, spec, env)) as reports:
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
    runner = _Runner({MAIN: target}, scale, progress)
    figures: dict[str, Any] = {
        "machine": _machine(),
        "server": {"address": target.address, "embedded": target.embedded,
                   "transport": target.options["transport"],
                   "protocol": target.options["protocol"],
                   "security": describe(target.security)},
        "scale": scale._asdict(),
    }
    if closed:
        figures.update(_closed_loop(runner, target, scale))
        figures["costs"] = _costs(runner, scale)
        if target.embedded:
            figures["transports"] = _transports(scale, progress)
    if open_loop is not None:
        figures["open_loop"] = _open_loop(runner, target, scale, open_loop)
    figures["machine"]["load_average_end"] = _load_average()
    return figures


def _closed_loop(runner: _Runner, target: Target, scale: Scale) -> dict[str, Any]:
    missing = {}
    for variant in VARIANTS:
        why = unavailable(variant, target.options, target.security)
        if why is not None:
            missing[variant] = why
    variants = [variant for variant in VARIANTS if variant not in missing]
    pair = [variant for variant in ("green", "happybase") if variant not in missing]
    lease = {"kind": "lease", "size": 1, "loops": scale.lease_loops,
             "repeats": scale.lease_repeats}
    plan: Plan = [(variant, lease) for variant in pair]
    # Point by point, so that the variants compared run close in time on a
    # shared machine.
    plan += [(variant, {"kind": "throughput", "greenlets": greenlets, "size": size,
                        "warmup": scale.warmup, "duration": scale.duration})
             for greenlets, size in POINTS for variant in variants]
    results: dict[str, dict[Any, dict[str, Any]]] = {variant: {} for variant in variants}

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
    run([(variant, interrupted) for variant in pair])
    if latency is not None:
        target.set_latency(0.0)
    return dict(_closed_figures(results, latency), unavailable=missing)


def _closed_figures(results: dict[str, dict[Any, dict[str, Any]]],
                    latency: Any) -> dict[str, Any]:
    """The figures of the variants in *results*; ``None`` for the others."""

    def get(variant: str, key: Any) -> dict[str, Any]:
        return results[variant][key] if variant in results else {}

    throughput = []
    for point in POINTS:
        row: dict[str, Any] = {"greenlets": point[0], "size": point[1]}
        for variant in VARIANTS:
            row[variant] = get(variant, point).get("ops_s")
        for extra in ("cpu_us", "p99_ms", "errors", "wrong"):
            row[extra] = {variant: get(variant, point).get(extra) for variant in VARIANTS}
        throughput.append(row)
    pair = ("green", "happybase")
    waits = {variant: _wait(results[variant][WAIT_POINT]) if variant in results else None
             for variant in pair}
    cut = {variant: results[variant]["interrupted"] if variant in results else None
           for variant in pair}
    return {
        "lease_us": {variant: get(variant, "lease").get("lease_us") for variant in pair},
        "throughput": throughput,
        "wait": dict(waits["green"] or {}, greenlets=WAIT_POINT[0], size=WAIT_POINT[1]),
        "wait_by_variant": waits,
        "wrong_answers": {
            "green": cut["green"]["wrong"] if cut["green"] else None,
            "happybase": cut["happybase"]["wrong"] if cut["happybase"] else None,
            "calls": cut["green"]["calls"] if cut["green"] else None,
            "details": dict(cut, fraction=INTERRUPT.fraction,
                            server_latency_ms=None if latency is None else latency * 1e3),
        },
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _by_round(runs: dict[str, list[dict[str, Any]]], base: str) -> dict[str, dict[str, Any]]:
    """Each row's throughput runs, one a round: the medians of its ops/s,
    CPU per call and p99 wait, and of its ratios to *base*'s run of the same
    round; wrong answers and errors of every round."""
    figures = {}
    for name, rounds in runs.items():
        paired = list(zip(rounds, runs[base], strict=True))
        figures[name] = {
            "ops_s": _median([run["ops_s"] for run in rounds]),
            "cpu_us": _median([run["cpu_us"] for run in rounds]),
            "p99_ms": _median([run["p99_ms"] for run in rounds]),
            "ops_ratio": _median([_ratio(run["ops_s"], other["ops_s"])
                                  for run, other in paired]),
            "cpu_ratio": _median([_ratio(run["cpu_us"], other["cpu_us"])
                                  for run, other in paired]),
            "ops_s_rounds": [run["ops_s"] for run in rounds],
            "cpu_us_rounds": [run["cpu_us"] for run in rounds],
            "wrong": sum(run["wrong"] for run in rounds),
            "errors": sum(run["errors"] for run in rounds),
            "first_error": next((run["first_error"] for run in rounds if run["first_error"]),
                                None),
        }
    return figures


def _row_run(scale: Scale) -> dict[str, Any]:
    """The throughput task of a row of the costs and transports tables, one round."""
    return {"kind": "throughput", "greenlets": ROW_POINT[0], "size": ROW_POINT[1],
            "warmup": scale.row_warmup, "duration": scale.row_duration}


#: Seconds a lease may take with the slowest setup: an upper bound for planning.
_SLOWEST_LEASE = 200e-6


def _costs(runner: _Runner, scale: Scale) -> dict[str, Any]:
    """Lease overhead and client CPU per call of the pool in each setup,
    measured side by side in one child (see :func:`.workloads.costs`)."""
    missing = {}
    for setup in SETUPS:
        why = setup_unavailable(setup)
        if why is not None:
            missing[setup] = why
    setups = [setup for setup in SETUPS if setup not in missing]
    # Many short loops rather than the lease overhead's few long ones: on a
    # shared machine the best of many finds what a setup really costs, and
    # with the SDK a lease costs ten times as much.
    loops, repeats = max(1, scale.lease_loops // 20), scale.lease_repeats * 5
    task = dict(_row_run(scale), kind="costs", setups=setups, loops=loops, repeats=repeats,
                rounds=scale.row_rounds)
    task["planned"] = len(setups) * (scale.row_rounds * (scale.row_warmup + scale.row_duration)
                                     + loops * repeats * _SLOWEST_LEASE)
    results = runner.run([("green", task)])[0]
    measured = _by_round({setup: results[setup]["rounds"] for setup in setups}, "plain")
    rows: dict[str, dict[str, Any]] = {}
    for setup, what in SETUPS.items():
        if setup in missing:
            rows[setup] = {"what": what, "available": False, "reason": missing[setup]}
            continue
        result = results[setup]
        rows[setup] = dict(measured[setup], what=what, available=True,
                           lease_us=result["lease_us"],
                           lease_ratio=_ratio(result["lease_us"], results["plain"]["lease_us"]),
                           spans=result.get("spans"), data_points=result.get("data_points"))
    return {"greenlets": ROW_POINT[0], "size": ROW_POINT[1], "lease_loops": loops,
            "lease_repeats": repeats, "rounds": scale.row_rounds, "rows": rows}


def _transports(scale: Scale, progress: Progress) -> dict[str, Any]:
    """The same throughput run through each mode of the embedded server,
    round by round, every mode in turn in each (each round starting one
    further on).

    Each mode has a server of its own, started before the first row runs,
    and each run a child of its own.
    """
    why_not_tls = tls_unavailable()
    modes = [mode for mode in MODES if not (MODES[mode].tls and why_not_tls)]
    with open_mode_targets(modes) as targets:
        progress("servers for %s started" % ", ".join(MODES[mode].label for mode in modes))
        plan: Plan = [("green", dict(_row_run(scale), target=mode, round=n))
                      for n in range(scale.row_rounds) for mode in rotated(modes, n)]
        results = _Runner(targets, scale, progress).run(plan)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for (_, task), result in zip(plan, results, strict=True):
        runs[task["target"]].append(result)
    measured = _by_round(runs, "tcp")
    rows: dict[str, dict[str, Any]] = {}
    for mode, spec in MODES.items():
        if mode in measured:
            rows[mode] = dict(measured[mode], label=spec.label, available=True)
        else:
            rows[mode] = {"label": spec.label, "available": False, "reason": why_not_tls}
    return {"greenlets": ROW_POINT[0], "size": ROW_POINT[1], "protocol": "binary",
            "rounds": scale.row_rounds, "rows": rows}


def _wait(result: dict[str, Any]) -> dict[str, Any]:
    """The lease wait figures of a throughput run."""
    keys = ("p50_ms", "p99_ms", "max_ms", "mean_ms", "bytes_per_waiter", "samples", "waiting",
            "starved")
    return {key: result[key] for key in keys}


def _open_loop(runner: _Runner, target: Target, scale: Scale,
               settings: OpenLoop) -> dict[str, Any]:
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
        why = unavailable(variant, target.options, target.security)
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
