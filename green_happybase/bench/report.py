"""The figures as a readable report, and the targets they meet or miss."""

from collections.abc import Iterator
from typing import Any

from .clients import OPEN_VARIANTS, VARIANTS
from .scale import CONTENDED_POINT

__all__ = ["failures", "render", "targets"]

#: The open-loop variant the open-loop targets hold the pool to.
_GREEN = "green_adaptive"
#: The green_happybase variants of the open loop, whose errors fail the run.
_GREEN_OPEN = ("green_fifo", "green_adaptive")


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _target(name: str, value: float | None, limit: float, at_most: bool,
            **extra: Any) -> dict[str, Any]:
    met = value is not None and (value <= limit if at_most else value >= limit)
    return dict(extra, name=name, value=value, limit=limit, op="<=" if at_most else ">=",
                **{"pass": met})


def _open_rows(figures: dict[str, Any]) -> dict[float | None, dict[str, Any]]:
    """The open loop's results by load (fraction of capacity)."""
    return {row["load"]: row["results"] for row in figures["open_loop"]["loads"]}


def _open_ratio(name: str, results: dict[str, Any], key: str, other: str, limit: float,
                at_most: bool) -> dict[str, Any]:
    green, them = results[_GREEN], results[other]
    missing = [variant for variant, row in ((_GREEN, green), (other, them))
               if not row["available"]]
    target = _target(name, _ratio(green.get(key), them.get(key)), limit, at_most)
    if missing:
        target["note"] = "%s unavailable" % " and ".join(missing)
    return target


def _green_results(figures: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, result)`` of every green_happybase run in *figures*."""
    if "throughput" in figures:
        for point in figures["throughput"]:
            yield ("throughput at %d greenlets, size %d" % (point["greenlets"], point["size"]),
                   {"wrong": point["wrong"]["green"], "errors": point["errors"]["green"],
                    "first_error": None})
        yield "the interruption run", figures["wrong_answers"]["details"]["green"]
    for table, label in (("costs", "what"), ("transports", "label")):
        for row in figures.get(table, {}).get("rows", {}).values():
            if row["available"]:
                yield "the %s table (%s)" % (table, row[label]), row
    if "open_loop" in figures:
        capacity = figures["open_loop"]["capacity"]
        if capacity is not None:
            yield "the capacity run", capacity
        for row in figures["open_loop"]["loads"]:
            for variant in _GREEN_OPEN:
                if row["results"][variant]["available"]:
                    yield ("the open loop (%s, %s)" % (_load_name(row["load"]), variant),
                           row["results"][variant])


def targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues' targets, each with its measured value and PASS/MISS.

    Only the targets of the workloads that ran; "green" in an open-loop
    target is the pool with the adaptive queue policy.
    """
    found = []
    if "lease_us" in figures:
        lease = figures["lease_us"]
        found.append(_target("lease green/happybase", _ratio(lease["green"], lease["happybase"]),
                             0.30, at_most=True))
        if "happybase" in figures.get("unavailable", {}):
            found[-1]["note"] = "happybase unavailable"
        for point in figures["throughput"]:
            found.append(_target(
                "ops/s %dx%d green/raw" % (point["greenlets"], point["size"]),
                _ratio(point["green"], point["raw"]), 0.95, at_most=False,
                # What the pool costs where the server is not the bottleneck.
                cpu_ratio=_ratio(point["cpu_us"]["green"], point["cpu_us"]["raw"])))
            if (point["greenlets"], point["size"]) == CONTENDED_POINT:
                found.append(_target(
                    "CPU/call %dx%d green/raw_fifo" % CONTENDED_POINT,
                    _ratio(point["cpu_us"]["green"], point["cpu_us"]["raw_fifo"]), 1.03,
                    at_most=True))
        wait = figures["wait"]
        found.append(_target("wait %dx%d p99/mean" % (wait["greenlets"], wait["size"]),
                             _ratio(wait["p99_ms"], wait["mean_ms"]), 1.5, at_most=True))
    if "open_loop" in figures:
        rows = _open_rows(figures)
        if 1.5 in rows:
            over = rows[1.5]
            found.append(_open_ratio("150%% goodput %s/happybase" % _GREEN, over, "goodput_s",
                                     "happybase", 2.0, at_most=False))
            found.append(_open_ratio("150%% goodput %s/green_fifo" % _GREEN, over, "goodput_s",
                                     "green_fifo", 1.5, at_most=False))
            found.append(_open_ratio("150%% served/s %s/green_fifo" % _GREEN, over, "served_s",
                                     "green_fifo", 1.0, at_most=False))
        for load in (0.5, 0.9):
            if load in rows:
                found.append(_open_ratio("%g%% p99 %s/semaphore" % (load * 100, _GREEN),
                                         rows[load], "p99_ms", "semaphore", 1.1, at_most=True))
    found.append(_target("wrong answers green, every workload",
                         sum(result["wrong"] for _, result in _green_results(figures)), 0,
                         at_most=True))
    return found


def failures(figures: dict[str, Any]) -> list[str]:
    """What makes the run fail: wrong answers or errors from green_happybase."""
    found = []
    for where, result in _green_results(figures):
        if result["wrong"]:
            found.append("green_happybase gave %d wrong answers in %s" % (result["wrong"], where))
        if result["errors"]:
            found.append("green_happybase had %d errors in %s%s" % (
                result["errors"], where,
                ": %s" % result["first_error"] if result["first_error"] else ""))
    return found


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else "{:,.{}f}".format(value, digits)


def _load_name(load: float | None) -> str:
    return "the given rate" if load is None else "%g%% of capacity" % (load * 100)


def _load(figures: Any) -> str:
    return "unknown" if figures is None else " ".join("%.2f" % value for value in figures)


def _header(figures: dict[str, Any]) -> list[str]:
    machine, server = figures["machine"], figures["server"]
    return [
        "green_happybase benchmark (%s run)" % figures["scale"]["name"],
        "machine: %s cores, %s; %s" % (machine["cpu_count"], machine["cpu_model"] or "CPU unknown",
                                       machine["platform"]),
        "         Python %s, gevent %s, happybase %s, green_happybase %s" % (
            machine["python"], machine["gevent"], machine["happybase"],
            machine["green_happybase"]),
        "         load average %s at the start, %s at the end" % (
            _load(machine["load_average"]), _load(machine["load_average_end"])),
        "server:  %s (%s, %s/%s%s)" % (
            server["address"], "embedded, its own process" if server["embedded"] else "external",
            server["transport"], server["protocol"],
            "; " + server["security"] if server.get("security") else ""),
        "Figures vary with the machine, its load and the server's speed: compare the",
        "variants within one run, not with another machine's figures.",
    ]


def _unavailable(missing: dict[str, str]) -> list[str]:
    """A line per reason, naming the variants it kept from running."""
    by_reason: dict[str, list[str]] = {}
    for variant, why in missing.items():
        by_reason.setdefault(why, []).append(variant)
    return ["  not run: %s: %s" % (", ".join(variants), why)
            for why, variants in by_reason.items()]


def _closed(figures: dict[str, Any]) -> list[str]:
    wait = figures["wait"]
    lines = ["", "CLOSED LOOP: greenlets that lease, call, return, and loop at once",
             "", "Lease overhead: us per acquire+release of an idle connection, no call, "
                 "no contention"]
    for variant, value in figures["lease_us"].items():
        lines.append("  %-12s %8s" % (variant, _number(value, 2)))
    lines += ["", "Throughput, single-row gets: ops/s / client CPU us per call",
              "(the client process's CPU time over the measured window divided by its calls)",
              "  greenlets size " + "".join("%13s" % variant for variant in VARIANTS)]
    for point in figures["throughput"]:
        cells = "".join("%13s" % ("-" if point[variant] is None else "%s/%s" % (
            _number(point[variant]), _number(point["cpu_us"][variant], 1)))
            for variant in VARIANTS)
        lines.append("  %9d %4d %s" % (point["greenlets"], point["size"], cells))
    lines += [
        "  green: this pool, unpatched; happybase: happybase.ConnectionPool, monkey-patched;",
        "  raw: GreenConnection per group of greenlets, no pool, a lock that lets the",
        "  releaser take it back (the upper bound; it starves most greenlets);",
        "  raw_fifo: raw with a lock handed to waiters in order, as the pool does;",
        "  raw_patched: raw with happybase.Connection, patched (the price of the class);",
        "  per_request: a new happybase.Connection per get, at most size at once, patched",
    ]
    lines += _unavailable(figures.get("unavailable", {}))
    lines += ["", "Lease wait at %d greenlets, size %d, steady state" % (
        wait["greenlets"], wait["size"]),
        "  %-12s %8s %8s %8s %8s %8s %13s" % ("", "p50 ms", "p99 ms", "max ms", "mean ms",
                                              "starved", "bytes/waiter")]
    for variant, row in figures["wait_by_variant"].items():
        if row is None:
            lines.append("  %-12s not run" % variant)
            continue
        lines.append("  %-12s %8s %8s %8s %8s %8s %13s" % (
            variant, _number(row["p50_ms"], 2), _number(row["p99_ms"], 2),
            _number(row["max_ms"], 2), _number(row["mean_ms"], 2), row["starved"],
            _number(row["bytes_per_waiter"])))
    lines += ["  starved: greenlets that waited through the whole measured window;",
              "  bytes/waiter: growth of the process's memory per greenlet waiting for a lease"]
    wrong = figures["wrong_answers"]
    details = wrong["details"]
    latency = details["server_latency_ms"]
    lines += ["", "Correctness under interruption: %s leases of one get, %d%% of them run under "
              "a gevent.Timeout" % ("-" if wrong["calls"] is None else wrong["calls"],
                                    details["fraction"] * 100),
              "shorter than a call%s" % ("" if latency is None
                                         else " (server latency %g ms)" % latency)]
    for variant in ("green", "happybase"):
        row = details[variant]
        if row is None:
            lines.append("  %-12s not run" % variant)
            continue
        lines.append("  %-12s %6d wrong answers, %d calls cut, %d errors" % (
            variant, row["wrong"], row["interrupted"], row["errors"]))
    lines += ["  calls cut: timeouts that fired mid-call; wrong answers: gets answered with",
              "  another request's row. A cut call leaves its reply unread; happybase's pool",
              "  lends that connection again and each later lease reads the previous call's",
              "  reply, so one cut can give several wrong answers."]
    return lines


def _ratio_cell(value: float | None) -> str:
    return "-" if value is None else "%.2fx" % value


def _rounds(rounds: int, what: str) -> list[str]:
    """How the rounds of a table were run and read."""
    if rounds == 1:
        return ["  ops/s, CPU/call: one round"]
    return ["  ops/s, CPU/call: medians of %d rounds, every %s in turn in each round (each"
            % (rounds, what),
            "  round starting one further on); their ratios: medians of the ratios within a round"]


def _costs(figures: dict[str, Any]) -> list[str]:
    costs = figures["costs"]
    lines = ["", "Costs on the hot path: each setup of this pool, side by side in one process;",
             "lease overhead (us, best of %d loops of %s leases) and client CPU us per call of"
             % (costs["lease_repeats"], _number(costs["lease_loops"])),
             "the throughput run at %d greenlets, %d connections; ratios against the plain pool"
             % (costs["greenlets"], costs["size"]),
             "  %-22s %9s %6s %9s %6s %8s %8s" % ("", "lease us", "ratio", "CPU/call", "ratio",
                                                   "ops/s", "spans")]
    for setup, row in costs["rows"].items():
        if not row["available"]:
            lines.append("  %-22s unavailable: %s" % (setup, row["reason"]))
            continue
        lines.append("  %-22s %9s %6s %9s %6s %8s %8s" % (
            setup, _number(row["lease_us"], 2), _ratio_cell(row["lease_ratio"]),
            _number(row["cpu_us"], 1), _ratio_cell(row["cpu_ratio"]), _number(row["ops_s"]),
            _number(row["spans"])))
    lines += ["  %s: %s" % (setup, row["what"]) for setup, row in costs["rows"].items()]
    lines += _rounds(costs["rounds"], "setup")
    lines += ["  spans: spans the SDK's exporter received. Keepalive pings run in the pool's",
              "  maintainer, only on connections idle for 30 s, so none runs under load: the",
              "  second row shows what checking for them and for open scanners costs"]
    return lines


def _transports(figures: dict[str, Any]) -> list[str]:
    transports = figures["transports"]
    lines = ["", "Transports: the throughput run at %d greenlets, %d connections through each "
                 "mode of" % (transports["greenlets"], transports["size"]),
             "the embedded server, %s protocol, each mode its own server process and each run"
             % transports["protocol"],
             "its own child; ratios against TCP buffered",
             "  %-14s %9s %6s %9s %6s %9s" % ("", "ops/s", "ratio", "CPU/call", "ratio",
                                              "p99 wait")]
    for row in transports["rows"].values():
        if not row["available"]:
            lines.append("  %-14s unavailable: %s" % (row["label"], row["reason"]))
            continue
        lines.append("  %-14s %9s %6s %9s %6s %9s" % (
            row["label"], _number(row["ops_s"]), _ratio_cell(row["ops_ratio"]),
            _number(row["cpu_us"], 1), _ratio_cell(row["cpu_ratio"]),
            _number(row["p99_ms"], 1)))
    lines += _rounds(transports["rounds"], "mode")
    lines += ["  CPU/call: client CPU us per call; p99 wait: lease wait, ms. TLS and HTTPS",
              "  verify a certificate made for the run; SASL PLAIN logs in once per connection.",
              "  Kerberos needs a KDC: measure it on your gateway with --auth kerberos"]
    return lines


def _open(figures: dict[str, Any]) -> list[str]:
    open_loop = figures["open_loop"]
    capacity = open_loop["capacity"]
    lines = ["", "OPEN LOOP: requests arrive at random (Poisson), each a new greenlet making "
                 "%d gets" % open_loop["calls"],
             "on one lease, pool size %d, deadline %g ms from arrival (passed as the lease "
             "timeout)" % (open_loop["size"], open_loop["deadline_ms"])]
    if capacity is not None:
        lines.append("capacity: %s requests/s (%s gets/s), served by %s with %d requests in "
                     "flight" % (_number(capacity["requests_s"]), _number(capacity["calls_s"]),
                                 capacity["variant"], capacity["concurrency"]))
    row_format = "  %-14s %7s %7s %7s %7s %7s %7s %5s %9s %6s %5s %8s"
    for row in open_loop["loads"]:
        lines += ["", "At %s: %s requests/s offered; rates per second, latencies in ms" % (
                      _load_name(row["load"]), _number(row["rate"])),
                  row_format % ("", "offered", "served", "goodput", "p50", "p99", "p99.9", "shed",
                                "timed_out", "failed", "wrong", "CPU/call")]
        for variant in OPEN_VARIANTS:
            result = row["results"][variant]
            if not result["available"]:
                lines.append("  %-14s unavailable: %s" % (variant, result["reason"]))
                continue
            lines.append(row_format % (
                variant, _number(result["offered_s"]), _number(result["served_s"]),
                _number(result["goodput_s"]), _number(result["p50_ms"], 1),
                _number(result["p99_ms"], 1), _number(result["p999_ms"], 1), result["shed"],
                result["timed_out"], result["failed"], result["wrong"],
                _number(result["cpu_us"], 1)))
    lines += [
        "  offered: requests that arrived; served: got every answer, in time or late;",
        "  goodput: served within the deadline; p50/p99/p99.9: latency of served requests,",
        "  arrival to last answer; shed: refused at once by the pool's policy; timed_out:",
        "  no connection before the deadline (or still waiting at the end); failed: any",
        "  other error; wrong: answers meant for another request; CPU/call: client CPU us",
        "  per call;",
        "  green_fifo, green_adaptive: this pool, queue='fifo' / 'adaptive', unpatched;",
        "  happybase: its pool, patched; semaphore: a gevent BoundedSemaphore over a list of",
        "  happybase connections, patched; raw_fifo: as above, no lease timeout",
    ]
    return lines


def render(figures: dict[str, Any]) -> str:
    """The figures as a plain-text report."""
    lines = _header(figures)
    if "lease_us" in figures:
        lines += _closed(figures)
    if "costs" in figures:
        lines += _costs(figures)
    if "transports" in figures:
        lines += _transports(figures)
    if "open_loop" in figures:
        lines += _open(figures)
    lines += ["", "TARGETS: ratios of this run's figures (a MISS does not fail the run; a wrong",
              "answer or an error from green_happybase does)"]
    for target in targets(figures):
        value = target["value"]
        line = "  %-4s  %-40s %8s  (%s %-4g)" % (
            "PASS" if target["pass"] else "MISS", target["name"],
            _number(value, 0 if isinstance(value, int) else 3), target["op"], target["limit"])
        if target.get("cpu_ratio") is not None:
            line += "   client CPU per call %.2fx" % target["cpu_ratio"]
        if target.get("note"):
            line += "   " + target["note"]
        lines.append(line)
    if "lease_us" in figures:
        lines += ["  Retired: ops/s green/happybase >= 1.2 and green/per_request >= 5. Both ask",
                  "  a pool to beat raw, the bound of any pool: happybase's pool runs within",
                  "  a few % of raw, and on loopback raw is under 5x per_request (see README)"]
    return "\n".join(lines)
