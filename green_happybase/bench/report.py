"""The figures as a readable table, and the targets they meet or miss."""

from typing import Any, Dict, List, Optional

from .clients import VARIANTS

__all__ = ["failures", "render", "targets"]


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _target(name: str, value: Optional[float], limit: float, at_most: bool) -> Dict[str, Any]:
    met = value is not None and (value <= limit if at_most else value >= limit)
    return {"name": name, "value": value, "limit": limit,
            "op": "<=" if at_most else ">=", "pass": met}


def targets(figures: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The issue's targets, each with its measured value and PASS/MISS."""
    lease = figures["lease_us"]
    found = [_target("lease_us green/happybase", _ratio(lease["green"], lease["happybase"]),
                     0.4, at_most=True)]
    for point in figures["throughput"]:
        where = "%dx%d" % (point["greenlets"], point["size"])
        for other, limit in (("raw", 0.95), ("happybase", 1.2), ("per_request", 5.0)):
            found.append(dict(
                _target("throughput %s green/%s" % (where, other),
                        _ratio(point["green"], point[other]), limit, at_most=False),
                # What the pool costs where the server is not the bottleneck.
                cpu_ratio=_ratio(point["cpu_us"]["green"], point["cpu_us"][other])))
    found.append(_target("wrong_answers.green", figures["wrong_answers"]["green"], 0,
                         at_most=True))
    wait = figures["wait"]
    found.append(_target("wait %dx%d p99/mean" % (wait["greenlets"], wait["size"]),
                         _ratio(wait["p99_ms"], wait["mean_ms"]), 1.5, at_most=True))
    return found


def failures(figures: Dict[str, Any]) -> List[str]:
    """What makes the run fail: wrong answers or errors in the green pool."""
    found = []
    wrong = figures["wrong_answers"]
    if wrong["green"]:
        found.append("green_happybase gave %d wrong answers under interruption" % wrong["green"])
    if wrong["details"]["green"]["errors"]:
        found.append("green_happybase failed %d calls under interruption: %s" % (
            wrong["details"]["green"]["errors"], wrong["details"]["green"]["first_error"]))
    for point in figures["throughput"]:
        for kind in ("wrong", "errors"):
            if point[kind]["green"]:
                found.append("green_happybase had %d %s at %d greenlets, size %d" % (
                    point[kind]["green"], kind.replace("wrong", "wrong answers"),
                    point["greenlets"], point["size"]))
    return found


def _number(value: Optional[float], digits: int = 0) -> str:
    return "-" if value is None else "{:,.{}f}".format(value, digits)


def render(figures: Dict[str, Any]) -> str:
    """The figures as a plain-text report."""
    machine, server, wait = figures["machine"], figures["server"], figures["wait"]
    lines = [
        "green_happybase benchmark (%s run)" % figures["scale"]["name"],
        "machine: %s CPUs, Python %s, gevent %s, happybase %s, green_happybase %s" % (
            machine["cpu_count"], machine["python"], machine["gevent"], machine["happybase"],
            machine["green_happybase"]),
        "server:  %s (%s, %s/%s)" % (server["address"],
                                    "embedded" if server["embedded"] else "external",
                                    server["transport"], server["protocol"]),
        "",
        "Lease overhead, uncontended acquire+release, no I/O (us per lease)",
    ]
    for variant, value in figures["lease_us"].items():
        lines.append("  %-12s %8.2f" % (variant, value))
    lines += ["", "Throughput, single-row gets: ops/s and client CPU us per call",
              "  greenlets size " + "".join("%19s" % variant for variant in VARIANTS)]
    for point in figures["throughput"]:
        cells = "".join("%11s /%6s" % (_number(point[variant]),
                                      _number(point["cpu_us"][variant], 1))
                        for variant in VARIANTS)
        lines.append("  %9d %4d %s" % (point["greenlets"], point["size"], cells))
    lines += ["  raw: GreenConnection, no pool, unpatched; raw_patched: happybase.Connection, "
              "no pool, patched;",
              "  per_request: a new happybase.Connection per get, at most size at once;",
              "  raw_fifo: raw with a lock that serves waiters in order, as the pool does"]
    lines += ["", "Lease wait at %d greenlets, size %d, steady state" % (
        wait["greenlets"], wait["size"]),
        "  %-12s %8s %8s %8s %8s %8s %13s" % ("", "p50 ms", "p99 ms", "max ms", "mean ms",
                                              "starved", "bytes/waiter")]
    for variant, row in figures["wait_by_variant"].items():
        lines.append("  %-12s %8s %8s %8s %8s %8s %13s" % (
            variant, _number(row["p50_ms"], 2), _number(row["p99_ms"], 2),
            _number(row["max_ms"], 2), _number(row["mean_ms"], 2), row["starved"],
            _number(row["bytes_per_waiter"])))
    wrong = figures["wrong_answers"]
    details = wrong["details"]
    latency = details["server_latency_ms"]
    lines += ["", "Correctness under interruption: %d leases, %d%% of the calls under a short "
              "gevent.Timeout%s" % (wrong["calls"], details["fraction"] * 100,
                                     "" if latency is None else
                                     ", server latency %g ms" % latency)]
    for variant in ("green", "happybase"):
        row = details[variant]
        lines.append("  %-12s %6d wrong answers (%d calls cut, %d errors)" % (
            variant, row["wrong"], row["interrupted"], row["errors"]))
    lines += ["", "Targets (same run; a MISS does not fail the run)"]
    for target in targets(figures):
        line = "  %-4s  %-36s %8s  (%s %-4g)" % (
            "PASS" if target["pass"] else "MISS", target["name"],
            _number(target["value"], 2), target["op"], target["limit"])
        if target.get("cpu_ratio") is not None:
            line += "   client CPU per call %.2fx" % target["cpu_ratio"]
        lines.append(line)
    return "\n".join(lines)
