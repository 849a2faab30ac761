"""A variant's child process.

Started by :mod:`.runner` as ``python -c BOOT {patched|plain} SPEC``: the
bootstrap monkey-patches first when asked, before anything else is imported,
then calls :func:`main`. It writes one JSON line per finished task to stdout
and nothing else there.
"""

import json
import os
import sys
from typing import Any

import gevent
from gevent import monkey

from . import workloads
from .clients import make_client

__all__ = ["main"]


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _run(task: dict[str, Any], client: Any, table: str) -> dict[str, Any]:
    kind = task["kind"]
    if kind == "lease":
        return workloads.lease_overhead(client, table, task["loops"], task["repeats"])
    if kind == "throughput":
        return workloads.throughput(client, table, task["greenlets"], task["warmup"],
                                    task["duration"])
    if kind == "interrupted":
        return workloads.interrupted(client, table, task["leases"], task["greenlets"],
                                     task["fraction"], task["seed"], task["time_limit"])
    if kind == "capacity":
        return workloads.capacity(client, table, task["concurrency"], task["calls"],
                                  task["deadline"], task["warmup"], task["duration"])
    if kind == "open_loop":
        return workloads.open_loop(client, table, task["rate"], task["calls"], task["deadline"],
                                   task["warmup"], task["duration"], task["seed"],
                                   task["time_limit"])
    raise ValueError("unknown task kind %r" % (kind,))


def _report(client: Any) -> dict[str, Any]:
    """What an OpenTelemetry SDK behind *client* received, if any."""
    report = getattr(client, "report", None)
    return {} if report is None else dict(report())


def _costs(variant: str, task: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The costs task: a client per setup, measured side by side."""
    clients: dict[str, Any] = {}
    try:
        for setup in task["setups"]:
            clients[setup] = make_client(variant, task["size"], (target["host"], target["port"]),
                                         target["options"], target["security"], setup)
        result = workloads.costs(clients, target["table"], task["loops"], task["repeats"],
                                 task["greenlets"], task["warmup"], task["duration"],
                                 task["rounds"])
        for setup, client in clients.items():
            result[setup].update(_report(client))
        return dict(result)
    finally:
        for client in clients.values():
            client.close()


def _task(variant: str, task: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    if task["kind"] == "costs":
        return _costs(variant, task, target)
    client = make_client(variant, task["size"], (target["host"], target["port"]),
                         target["options"], target["security"])
    try:
        return dict(_run(task, client, target["table"]), **_report(client))
    finally:
        client.close()


def main(spec_text: str) -> int:
    """Run the tasks of the JSON *spec_text*; return the exit status."""
    spec = json.loads(spec_text)
    hub = gevent.get_hub()
    hub.NOT_ERROR = hub.NOT_ERROR + (KeyboardInterrupt,)
    _emit({"pid": os.getpid(), "variant": spec["variant"],
           "patched": monkey.is_module_patched("socket")})
    try:
        for task in spec["tasks"]:
            result = _task(spec["variant"], task, spec["targets"][task["target"]])
            _emit({"task": task, "result": result})
    except KeyboardInterrupt:
        return 130  # Ctrl-C reaches the whole process group; the parent reports it
    return 0
