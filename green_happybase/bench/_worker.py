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


def main(spec_text: str) -> int:
    """Run the tasks of the JSON *spec_text*; return the exit status."""
    spec = json.loads(spec_text)
    hub = gevent.get_hub()
    hub.NOT_ERROR = hub.NOT_ERROR + (KeyboardInterrupt,)
    address = (spec["host"], spec["port"])
    _emit({"pid": os.getpid(), "variant": spec["variant"],
           "patched": monkey.is_module_patched("socket")})
    try:
        for task in spec["tasks"]:
            client = make_client(spec["variant"], task["size"], address, spec["options"])
            try:
                result = _run(task, client, spec["table"])
            finally:
                client.close()
            _emit({"task": task, "result": result})
    except KeyboardInterrupt:
        return 130  # Ctrl-C reaches the whole process group; the parent reports it
    return 0
