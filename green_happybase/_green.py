"""The one seam through which the pool uses gevent.

Everything here belongs to the hub of the thread that uses it: a pool serves
the greenlets of one hub, and :func:`thread_id` tells which OS thread that
is. The pool imports gevent's primitives directly, never the stdlib's, so a
pool built before ``gevent.monkey.patch_all()`` behaves exactly like one
built after.
"""

import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

from gevent import get_hub, getcurrent, sleep, spawn
from gevent import socket as green_socket
from gevent.event import Event
from gevent.hub import Waiter
from gevent.monkey import get_original
from gevent.queue import LifoQueue
from gevent.timeout import Timeout

__all__ = [
    "addresses",
    "connect",
    "Event",
    "LifoQueue",
    "Timeout",
    "Waiter",
    "get_hub",
    "getcurrent",
    "green_socket",
    "poll",
    "sleep",
    "spawn",
    "thread_id",
]

# The health check must never yield: it asks the kernel directly, even when
# gevent has patched the select module.
poll = get_original("select", "poll")

#: The OS thread's id, even when gevent has patched ``threading`` (where the
#: patched ``get_ident`` names the greenlet instead).
thread_id = get_original("_thread", "get_ident")

def addresses(host: Any, port: Any) -> list[tuple[int, int, int, Any]]:
    """``(family, type, proto, sockaddr)`` to try for *host*:*port*.

    An IP address needs no resolver: that keeps gevent's resolver (a thread)
    off the connect path, and a child forked without ``gevent.reinit()``
    (whose resolver thread is gone) still connects by address.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return [(family, kind, proto, sockaddr) for family, kind, proto, _, sockaddr
                in green_socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)]
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, 0, (host, port))]


def connect(host: Any, port: Any, timeout: float | None,
            hold: Callable[[Any], None] | None = None) -> Any:
    """A connected gevent TCP socket (no Nagle, keepalive) to *host*:*port*.

    Every address of the host is tried in turn within *timeout* seconds
    each. *hold*, if given, is called with each socket before its connect
    starts (so that another greenlet can close it and cut the connect) and
    with ``None`` once a failed one is closed.

    :raises OSError: the last address's failure, or the resolver's
    """
    error: OSError = OSError("%s has no address" % (host,))
    for family, kind, proto, address in addresses(host, port):
        sock = green_socket.socket(family, kind, proto)
        if hold is not None:
            hold(sock)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException as failure:
            sock.close()
            if hold is not None:
                hold(None)
            if not isinstance(failure, OSError):
                raise
            error = failure
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock
    raise error


#: This process's id, kept current across ``os.fork()`` so that the hot path
#: compares a number instead of making a system call.
pid = os.getpid()


def _after_fork_in_child() -> None:
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)
