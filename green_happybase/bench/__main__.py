"""``python -m green_happybase.bench [--host H --port P] [--quick] [--json FILE]``.

Progress goes to stderr, the table to stdout. The exit status is 0 even when
a target is missed; it is 1 when green_happybase gave a wrong answer or
failed a call, or when the benchmark itself could not run.
"""

import argparse
import json
import logging
import sys
import time
from typing import List, Optional

import gevent
from thriftpy2.thrift import TException

from .report import failures, render, targets
from .runner import BenchError
from .scale import FULL, QUICK, SMOKE
from .suite import run_suite
from .target import open_target


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m green_happybase.bench",
        description="Compare green_happybase's pool with happybase's, a raw connection and "
                    "a connection per request, for speed and for correctness under "
                    "gevent.Timeout.")
    parser.add_argument("--host", help="an HBase Thrift gateway to use instead of the "
                                       "embedded server (a table is created and removed)")
    parser.add_argument("--port", type=int, default=9090,
                        help="its port (default %(default)s)")
    parser.add_argument("--transport", choices=["buffered", "framed"], default="buffered",
                        help="as the gateway serves (default %(default)s)")
    parser.add_argument("--protocol", choices=["binary", "compact"], default="binary",
                        help="as the gateway serves (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="short runs: under a minute on 2 cores")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    # For the test suite: every code path in a few seconds; figures meaningless.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error("--port must be a TCP port number, not %d" % args.port)
    return args


def _progress(started: float):
    def progress(text: str) -> None:
        print("[%5.1f s] %s" % (time.monotonic() - started, text), file=sys.stderr, flush=True)
    return progress


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")
    scale = SMOKE if args.smoke else QUICK if args.quick else FULL
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
            figures = run_suite(target, scale, progress)
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
