"""``python -m green_happybase.bench [--host H --port P] [--quick] [--open-loop] [--json FILE]``.

Progress goes to stderr, the report to stdout. The exit status is 0 even
when a target is missed; it is 1 when green_happybase gave a wrong answer or
failed a call, or when the benchmark itself could not run; 2 for bad
arguments, found before anything runs.
"""

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
from thriftpy2.thrift import TException

from .report import failures, render, targets
from .runner import BenchError
from .scale import FULL, QUICK, SMOKE, OpenLoop
from .suite import run_suite
from .target import open_target


def _positive(kind: type, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%s must be a %s, not %r"
                                             % (what, kind.__name__, text)) from None
        if not value > 0:
            raise argparse.ArgumentTypeError("%s must be above 0, not %r" % (what, text))
        return value
    return parse


def _loads(text: str) -> tuple[float, ...]:
    fraction = _positive(float, "each load")
    return tuple(fraction(part) for part in text.split(","))


def _check_writable(path: str) -> None:
    """Raise ``OSError`` now if the report could not be written to *path* later."""
    existed = os.path.lexists(path)
    with open(path, "a", encoding="utf-8"):
        pass
    if not existed:
        os.unlink(path)  # a failed run leaves nothing behind


def _parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = OpenLoop()
    parser = argparse.ArgumentParser(
        prog="python -m green_happybase.bench",
        description="Compare green_happybase's pool with happybase's and with hand-made "
                    "alternatives: speed and client CPU in a closed loop, correctness under "
                    "gevent.Timeout, and latency and goodput of requests with a deadline "
                    "arriving at random (open loop). Without --open-loop, runs both loops.")
    parser.add_argument("--host", help="an HBase Thrift gateway to use instead of the "
                                       "embedded server (a table is created and removed)")
    parser.add_argument("--port", type=int, default=9090,
                        help="its port (default %(default)s)")
    parser.add_argument("--transport", choices=["buffered", "framed"], default="buffered",
                        help="as the gateway serves (default %(default)s)")
    parser.add_argument("--protocol", choices=["binary", "compact"], default="binary",
                        help="as the gateway serves (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="short runs: a minute or two on 2 cores")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    group = parser.add_argument_group("open loop")
    group.add_argument("--open-loop", action="store_true",
                       help="run only the open-loop workload")
    group.add_argument("--rate", type=_positive(float, "--rate"), metavar="R",
                       help="offer R requests/s instead of fractions of the capacity "
                            "measured first")
    group.add_argument("--loads", type=_loads, default=defaults.loads, metavar="F,F,...",
                       help="offered rates as fractions of the measured capacity "
                            "(default %s)" % ",".join("%g" % load for load in defaults.loads))
    group.add_argument("--calls", type=_positive(int, "--calls"), default=defaults.calls,
                       metavar="K", help="gets per request (default %(default)s)")
    group.add_argument("--deadline-ms", type=_positive(float, "--deadline-ms"),
                       default=defaults.deadline * 1e3, metavar="MS",
                       help="each request's deadline from its arrival (default %(default)g)")
    # For the test suite: every code path in a few seconds; figures meaningless.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error("--port must be a TCP port number, not %d" % args.port)
    if args.json:
        try:
            _check_writable(args.json)
        except OSError as error:
            parser.error("--json: cannot write %s: %s" % (args.json, error.strerror or error))
    return args


def _progress(started: float) -> Callable[[str], None]:
    def progress(text: str) -> None:
        print("[%5.1f s] %s" % (time.monotonic() - started, text), file=sys.stderr, flush=True)
    return progress


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")
    scale = SMOKE if args.smoke else QUICK if args.quick else FULL
    open_loop = OpenLoop(calls=args.calls, deadline=args.deadline_ms / 1e3, rate=args.rate,
                         loads=args.loads)
    # Ctrl-C ends the run through the except clause below; the hub need not
    # print it as an error first.
    hub = gevent.get_hub()
    hub.NOT_ERROR = hub.NOT_ERROR + (KeyboardInterrupt,)
    progress = _progress(time.monotonic())
    where = "%s:%d" % (args.host, args.port) if args.host else "an embedded server"
    progress("%s run against %s" % (scale.name, where))
    try:
        with open_target(args.host, args.port, args.transport, args.protocol) as target:
            progress("table %s loaded on %s" % (target.table, target.address))
            figures = run_suite(target, scale, progress, closed=not args.open_loop,
                                open_loop=open_loop)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, OSError, RuntimeError, TException) as error:
        print("benchmark failed: %s" % error, file=sys.stderr)
        return 1
    figures["targets"] = targets(figures)
    problems = failures(figures)
    figures["failures"] = problems
    print(render(figures))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)
            out.write("\n")
    for problem in problems:
        print("FAIL: %s" % problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
