"""Runs one variant's tasks in a child process and reads back its figures."""

import json
import os
import sys
import time
from collections.abc import Generator, Mapping
from typing import Any

import gevent
import gevent.subprocess

from .clients import PATCHED

__all__ = ["BenchError", "planned_seconds", "run_variant"]

# Patching must come first in the child, before anything imports socket.
_BOOT = (
    "import sys\n"
    "if sys.argv[1] == 'patched':\n"
    "    from gevent import monkey\n"
    "    monkey.patch_all()\n"
    "from green_happybase.bench._worker import main\n"
    "sys.exit(main(sys.argv[2]))\n"
)
#: Seconds a child may take beyond the sum of its tasks' planned durations.
_SLACK = 60.0


class BenchError(Exception):
    """The benchmark could not run: a child failed, hung or misreported."""


def planned_seconds(tasks: list[dict[str, Any]]) -> float:
    """Roughly how long *tasks* should take: a task's ``planned`` seconds, or
    its warm-up, duration and time limit."""
    return float(sum(task.get("planned", task.get("warmup", 0.0) + task.get("duration", 0.0)
                                          + task.get("time_limit", 0.0)) for task in tasks))


def run_variant(variant: str, spec: dict[str, Any], env: Mapping[str, str] | None = None
                ) -> Generator[tuple[dict[str, Any], dict[str, Any]], None, None]:
    """Run *spec*'s tasks for *variant* in a child; yield ``(task, result)``.

    *env*: variables to set in the child's environment (secrets go there,
    never on its command line). The child is killed if it overruns its
    tasks' planned time by more than a minute, and whenever the caller
    stops iterating.
    """
    patched = variant in PATCHED
    spec = dict(spec, variant=variant)
    deadline = time.monotonic() + planned_seconds(spec["tasks"]) + _SLACK
    cmd = [sys.executable, "-c", _BOOT, "patched" if patched else "plain", json.dumps(spec)]
    proc = gevent.subprocess.Popen(cmd, stdout=gevent.subprocess.PIPE,
                                   env=dict(os.environ, **env) if env else None)
    assert proc.stdout is not None
    try:
        hello = _read(proc, variant, deadline)
        if hello.get("patched") is not patched:
            raise BenchError("the %s child should %sbe monkey-patched"
                             % (variant, "" if patched else "not "))
        for _ in spec["tasks"]:
            message = _read(proc, variant, deadline)
            yield message["task"], message["result"]
        try:
            status = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except gevent.subprocess.TimeoutExpired:
            raise BenchError("the %s child did not exit" % variant) from None
        if status != 0:
            raise BenchError("the %s child exited with status %s" % (variant, status))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _read(proc: Any, variant: str, deadline: float) -> dict[str, Any]:
    try:
        with gevent.Timeout(max(0.0, deadline - time.monotonic())) as timer:
            line = proc.stdout.readline()
    except gevent.Timeout as expired:
        if expired is not timer:
            raise
        raise BenchError("the %s child overran its time; killed" % variant) from None
    if not line:
        raise BenchError("the %s child exited with status %s before reporting (its "
                         "error is above)" % (variant, proc.wait()))
    message: dict[str, Any] = json.loads(line)
    return message
