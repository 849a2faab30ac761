"""Run the embedded HBase Thrift server: ``python -m green_happybase.testing``.

Prints ``listening on HOST:PORT`` once it listens, then serves until SIGINT
or SIGTERM and exits 0 (promptly: open connections are closed, not drained).
The gateway's limits take HBase's defaults; ``--idle-timeout``,
``--max-frame-size`` and ``--scanner-timeout`` change them (``none`` turns
one off), and ``--server-type two`` pretends to be a Thrift2 gateway.

Secure modes, as HBase's gateway runs them:

- ``--transport http [--http-path /]``: Thrift over HTTP POST (binary only);
- ``--tls-cert FILE [--tls-key FILE]``: TLS on every connection (HTTPS in
  HTTP mode);
- ``--sasl plain --users alice:secret[,bob:pw]``: SASL PLAIN over TCP, or
  HTTP Basic in HTTP mode;
- ``--sasl gssapi --keytab FILE [--principal hbase/localhost] [--qop auth]``:
  Kerberos, SASL GSSAPI over TCP (with that security layer), SPNEGO in HTTP
  mode.

SASL refuses ``--transport framed``, as HBase does. Passwords never appear in
the output or the log.

With ``--control`` (used by ``HBaseServer(subprocess=True)``) it also reads
one JSON request per line on stdin (``{"method": "set_latency", "args":
[0.2]}``), answers each with one JSON line on stdout (``{"result": ...}`` or
``{"error": ..., "type": ...}``), and exits when stdin closes.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any

import gevent
from gevent.event import Event
from gevent.fileobject import FileObjectPosix

from ..auth import qop_name
from .gateways import ServerAuth, parse_users
from .server import (
    _CONTROL_METHODS,
    AUTH_ENV,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_SCANNER_TIMEOUT,
    HBaseServer,
    auth_from_json,
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
    parser.add_argument("--transport", choices=["buffered", "framed", "http"],
                        default="buffered", help="(default %(default)s)")
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
    secure = parser.add_argument_group("secure modes")
    secure.add_argument("--http-path", metavar="PATH",
                        help="with --transport http: the path to POST to (default /)")
    secure.add_argument("--tls-cert", metavar="FILE",
                        help="serve TLS with this PEM certificate (chain)")
    secure.add_argument("--tls-key", metavar="FILE",
                        help="the certificate's private key (default: in --tls-cert)")
    secure.add_argument("--sasl", choices=["plain", "gssapi"],
                        help="require authentication: SASL over TCP; over HTTP, Basic (plain) "
                        "or SPNEGO (gssapi) on every request")
    secure.add_argument("--users", metavar="USER:PASSWORD[,...]",
                        help="the accounts of --sasl plain")
    secure.add_argument("--keytab", metavar="FILE", help="the service keytab of --sasl gssapi")
    secure.add_argument("--principal", metavar="NAME",
                        help="the service principal in --keytab, e.g. hbase/localhost "
                        "(default: any key in it)")
    secure.add_argument("--qop", help="the SASL GSSAPI security layer offered: auth, auth-int "
                        "or auth-conf (default auth)")
    parser.add_argument("--log-level", default="WARNING", help="(default %(default)s)")
    parser.add_argument("--control", action="store_true", help=argparse.SUPPRESS)
    # The credentials of HBaseServer(subprocess=True, auth=...), from AUTH_ENV.
    parser.add_argument("--auth-env", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _needs(flag: str, value: Any, needed: str) -> None:
    if value is not None:
        raise ValueError("%s %s needs %s" % (flag, value, needed))


def _security(args: argparse.Namespace) -> dict[str, Any]:
    """HBaseServer's secure keywords from the flags, checked by flag name.

    :raises ValueError: naming the flag and its value (never a password)
    """
    if args.http_path is not None and args.transport != "http":
        raise ValueError("--http-path %s needs --transport http, not %s"
                         % (args.http_path, args.transport))
    if args.tls_key is not None and args.tls_cert is None:
        raise ValueError("--tls-key %s needs --tls-cert" % args.tls_key)
    auth = None
    if args.auth_env:
        auth = auth_from_json(os.environ.pop(AUTH_ENV, "null"))
    elif args.sasl is None:
        _needs("--users", "..." if args.users is not None else None, "--sasl plain")
        _needs("--keytab", args.keytab, "--sasl gssapi")
        _needs("--principal", args.principal, "--sasl gssapi")
        _needs("--qop", args.qop, "--sasl gssapi")
    elif args.sasl == "plain":
        if args.users is None:
            raise ValueError("--sasl plain needs --users user:password[,...]")
        _needs("--keytab", args.keytab, "--sasl gssapi, not --sasl plain")
        _needs("--principal", args.principal, "--sasl gssapi, not --sasl plain")
        _needs("--qop", args.qop, "--sasl gssapi, not --sasl plain")
        try:
            users = parse_users(args.users.split(","))
        except ValueError as exc:
            raise ValueError("--users: %s" % exc) from None
        auth = ServerAuth(users=users)
    else:
        if args.keytab is None:
            raise ValueError("--sasl gssapi needs --keytab FILE")
        _needs("--users", "..." if args.users is not None else None,
               "--sasl plain, not --sasl gssapi")
        qop = "auth"
        if args.qop is not None:
            try:
                qop = qop_name(args.qop)
            except ValueError:
                raise ValueError("--qop %s: must be auth, auth-int or auth-conf"
                                 % args.qop) from None
        auth = ServerAuth(keytab=args.keytab, principal=args.principal, qop=qop)
    if auth is not None and args.transport == "framed":
        raise ValueError("--sasl %s with --transport framed: HBase refuses SASL over framed "
                         "transport; use --transport buffered" % (args.sasl or "(auth)"))
    if args.transport == "http" and args.protocol != "binary":
        raise ValueError("--protocol %s with --transport http: HBase's HTTP gateway speaks "
                         "the binary protocol only" % args.protocol)
    for path, flag in ((args.tls_cert, "--tls-cert"), (args.tls_key, "--tls-key"),
                       (args.keytab, "--keytab")):
        if path is not None and not os.path.isfile(path):
            raise ValueError("%s %s: no such file" % (flag, path))
    return {"http_path": args.http_path or "/", "tls_cert": args.tls_cert,
            "tls_key": args.tls_key, "auth": auth}


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
    # Checked before anything global (logging, signal handlers) is touched.
    try:
        server = HBaseServer(args.host, args.port, args.transport, args.protocol,
                             idle_timeout=args.idle_timeout, max_frame_size=args.max_frame_size,
                             scanner_timeout=args.scanner_timeout, server_type=args.server_type,
                             **_security(args))
        if args.latency:
            server.set_latency(args.latency)
    except (TypeError, ValueError) as exc:
        print("invalid option: %s" % exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    done = Event()
    # Kept referenced: a collected signal handler stops watching.
    handlers = [gevent.signal_handler(signum, done.set)
                for signum in (signal.SIGINT, signal.SIGTERM)]
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
