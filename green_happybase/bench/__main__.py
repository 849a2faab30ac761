"""``python -m green_happybase.bench [--host H --port P [--tls ...] [--auth ...]] [--quick]
[--open-loop] [--json FILE]``.

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

from ..auth import check_combination
from ..errors import PoolError
from .report import failures, render, targets
from .runner import BenchError
from .scale import FULL, QUICK, SMOKE, OpenLoop
from .security import AUTH_KINDS, ENV_PASSWORD, ENV_TOKEN, pool_kwargs, settings
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
    parser.add_argument("--transport", choices=["buffered", "framed", "http"],
                        default="buffered",
                        help="as the gateway serves (default %(default)s); http: Thrift over "
                             "HTTP POST, as hbase.regionserver.thrift.http=true serves it")
    parser.add_argument("--protocol", choices=["binary", "compact"], default="binary",
                        help="as the gateway serves (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="short runs: a minute or two on 2 cores")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    secure = parser.add_argument_group(
        "secure gateway (with --host; happybase's variants cannot connect and are skipped; "
        "the embedded server's modes are compared in the transports table)")
    secure.add_argument("--tls", action="store_true",
                        help="TLS (HTTPS with --transport http), verifying the gateway's "
                             "certificate and host name against the system CAs")
    secure.add_argument("--cafile", metavar="F",
                        help="with --tls: verify against the CA certificates in PEM file F")
    secure.add_argument("--tls-insecure", action="store_true",
                        help="with --tls: do not verify the certificate or the host name (a "
                             "self-signed test gateway; never a production one)")
    secure.add_argument("--auth", choices=AUTH_KINDS,
                        help="plain: SASL PLAIN over TCP; basic, bearer: HTTP only; kerberos: "
                             "SASL GSSAPI over TCP, SPNEGO over HTTP, from the ticket cache "
                             "or KRB5_CLIENT_KTNAME. The password is read from %s, the token "
                             "from %s" % (ENV_PASSWORD, ENV_TOKEN))
    secure.add_argument("--user", metavar="U",
                        help="the user of --auth plain or basic; the client principal of "
                             "--auth kerberos (default: the ticket cache's)")
    secure.add_argument("--do-as", metavar="U", help="impersonate U (the doAs header; HTTP)")
    secure.add_argument("--http-path", metavar="P",
                        help="the path the HTTP gateway serves (default /)")
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
    _check_security(parser, args)
    if args.json:
        try:
            _check_writable(args.json)
        except OSError as error:
            parser.error("--json: cannot write %s: %s" % (args.json, error.strerror or error))
    return args


#: The flags of a secure gateway, by attribute.
_SECURE_FLAGS = {"tls": "--tls", "cafile": "--cafile", "tls_insecure": "--tls-insecure",
                 "auth": "--auth", "user": "--user", "do_as": "--do-as",
                 "http_path": "--http-path"}


def _check_security(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set ``args.security``; refuse what cannot go together, naming the flags."""
    given = [flag for name, flag in _SECURE_FLAGS.items() if getattr(args, name)]
    if given and args.host is None:
        parser.error("%s: give --host, the gateway to measure (the embedded server's "
                     "secure modes are in the transports table of every run)" % given[0])
    if args.user is not None and args.auth is None:
        parser.error("--user needs --auth")
    args.security = settings(tls=args.tls, cafile=args.cafile, tls_insecure=args.tls_insecure,
                             auth=args.auth, user=args.user, do_as=args.do_as,
                             http_path=args.http_path)
    options = {"transport": args.transport, "protocol": args.protocol}
    try:
        kwargs = pool_kwargs(options, args.security)
    except (ValueError, TypeError, ImportError) as error:
        parser.error(str(error))
    try:
        check_combination(args.transport, args.protocol, kwargs.get("tls", False),
                          kwargs.get("auth"), kwargs.get("do_as"))
    except (ValueError, TypeError) as error:
        flags = ["--transport %s" % args.transport, "--protocol %s" % args.protocol] + [
            "%s %s" % (flag, getattr(args, name)) if isinstance(getattr(args, name), str)
            else flag for name, flag in _SECURE_FLAGS.items() if getattr(args, name)]
        parser.error("%s do not go together: %s" % (" ".join(flags), error))


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
        with open_target(args.host, args.port, args.transport, args.protocol,
                         args.security) as target:
            progress("table %s loaded on %s" % (target.table, target.address))
            figures = run_suite(target, scale, progress, closed=not args.open_loop,
                                open_loop=open_loop)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, OSError, PoolError, RuntimeError, TException) as error:
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
