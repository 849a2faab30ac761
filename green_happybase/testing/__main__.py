"""Run the embedded HBase Thrift server: ``python -m green_happybase.testing``.

Prints ``listening on HOST:PORT`` once it listens, then serves until SIGINT
or SIGTERM and exits 0 (promptly: open connections are closed, not drained).
The gateway's limits take HBase's defaults; ``--idle-timeout``,
``--max-frame-size`` and ``--scanner-timeout`` change them (``none`` turns
one off), and ``--server-type two`` pretends to be a Thrift2 gateway.

With ``--control`` (used by ``HBaseServer(subprocess=True)``) it also reads
one JSON request per line on stdin (``{"method": "set_latency", "args":
[0.2]}``), answers each with one JSON line on stdout (``{"result": ...}`` or
``{"error": ..., "type": ...}``), and exits when stdin closes.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

import gevent
from gevent.event import Event
from gevent.fileobject import FileObjectPosix

from .server import (
    _CONTROL_METHODS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_SCANNER_TIMEOUT,
    HBaseServer,
)

log = logging.getLogger("green_happybase.testing")


def _optional(kind: Any) -> Any:
    """An argparse type: ``kind`` of the text, or ``None`` for ``none``."""
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    convert.__name__ = kind.__name__
    return convert


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m green_happybase.testing",
        description="Serve an in-memory HBase over Thrift1 (as `hbase thrift start` does).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=9090,
                        help="TCP port; 0 picks a free one (default %(default)s)")
    parser.add_argument("--transport", choices=["buffered", "framed"], default="buffered")
    parser.add_argument("--protocol", choices=["binary", "compact"], default="binary")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                        help="delay every reply (default %(default)s)")
    parser.add_argument("--idle-timeout", type=_optional(float), default=DEFAULT_IDLE_TIMEOUT,
                        metavar="SECONDS", help="close a connection that sends nothing for "
                        "this long, or 'none' (default %(default)s)")
    parser.add_argument("--max-frame-size", type=_optional(int), default=DEFAULT_MAX_FRAME_SIZE,
                        metavar="BYTES", help="largest frame of the framed transport, or "
                        "'none' (default %(default)s)")
    parser.add_argument("--scanner-timeout", type=_optional(float),
                        default=DEFAULT_SCANNER_TIMEOUT, metavar="SECONDS",
                        help="scanner lease, or 'none' (default %(default)s)")
    parser.add_argument("--server-type", choices=["one", "two"], default="one",
                        help="what getThriftServerType() answers; 'two' also refuses every "
                        "Thrift1 call (default %(default)s)")
    parser.add_argument("--log-level", default="WARNING", help="(default %(default)s)")
    parser.add_argument("--control", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _answer(server: HBaseServer, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        method = request["method"]
        if method not in _CONTROL_METHODS:
            raise ValueError("unknown control method %r" % (method,))
        return {"result": getattr(server, method)(*request.get("args", []))}
    except Exception as exc:
        return {"error": str(exc), "type": type(exc).__name__}


def _control(server: HBaseServer, done: Event) -> None:
    stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    try:
        for line in stdin:
            sys.stdout.write(json.dumps(_answer(server, line)) + "\n")
            sys.stdout.flush()
    finally:
        # The parent went away or closed the channel: nobody drives us.
        done.set()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    done = Event()
    # Kept referenced: a collected signal handler stops watching.
    handlers = [gevent.signal_handler(signum, done.set)
                for signum in (signal.SIGINT, signal.SIGTERM)]
    try:
        server = HBaseServer(args.host, args.port, args.transport, args.protocol,
                             idle_timeout=args.idle_timeout, max_frame_size=args.max_frame_size,
                             scanner_timeout=args.scanner_timeout, server_type=args.server_type)
        if args.latency:
            server.set_latency(args.latency)
    except (TypeError, ValueError) as exc:
        print("invalid option: %s" % exc, file=sys.stderr)
        return 2
    try:
        server.start()
    except OSError as exc:
        print("cannot listen on %s:%s: %s" % (args.host, args.port, exc), file=sys.stderr)
        return 1
    print("listening on %s" % server.address, flush=True)
    if args.control:
        gevent.spawn(_control, server, done)
    try:
        done.wait()
    finally:
        server.close()
        for handler in handlers:
            handler.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
