"""Shared helpers of the pool tests: pools that are closed after each test,
and a small table whose every answer can be checked against its request."""

import contextlib
import os
import socket

import gevent
from gevent.event import Event

from green_happybase import ConnectionPool, PoolExhausted

ROWS = 20
_made = []


def make_pool(server, size=4, **options):
    """A pool on *server*, closed when the test ends (see conftest.py)."""
    # The server's own transport and protocol: a real gateway may be framed/compact.
    options.setdefault("transport", getattr(server, "transport", "buffered"))
    options.setdefault("protocol", getattr(server, "protocol", "binary"))
    pool = ConnectionPool(size, host=server.host, port=server.port, **options)
    _made.append(pool)
    return pool


def close_made_pools():
    while _made:
        _made.pop().close()


def fill_table(pool, name="t"):
    """Create table *name* (if missing) with ROWS rows ``row-i -> value-i``."""
    with pool.connection() as conn:
        if name.encode() not in conn.tables():
            conn.create_table(name, {"f": {}})
        table = conn.table(name)
        for i in range(ROWS):
            table.put(b"row-%d" % i, {b"f:v": b"value-%d" % i})


def ask(pool, key, **lease):
    """One get; True when the answer belongs to the request."""
    with pool.connection(**lease) as conn:
        return conn.table("t").row(b"row-%d" % key)[b"f:v"] == b"value-%d" % key


def balanced(pool):
    """No connection lost or still leased: ``open == idle + in_use``, none in use."""
    stats = pool.stats()
    return (stats["open"] == stats["idle"] + stats["in_use"]
            and stats["in_use"] == 0 and stats["waiting"] == 0 and not pool._leases)


def socket_fds():
    """The sockets this process has open, as the kernel counts them."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink("/proc/self/fd/" + fd).startswith("socket:")
        except OSError:
            pass
    return count


def hold_leases(pool, count):
    """*count* greenlets holding a lease each until the returned Event is set."""
    release = Event()
    holding = []

    def holder(started):
        with pool.connection():
            started.set()
            release.wait(10)

    greenlets = []
    for _ in range(count):
        started = Event()
        holding.append(started)
        greenlets.append(gevent.spawn(holder, started))
    for started in holding:
        assert started.wait(5)
    return release, greenlets


def wait_until_waiting(pool, count):
    """Let greenlets run until *count* of them are queued (bounded)."""
    for _ in range(1000):
        if pool.stats()["waiting"] == count:
            return
        gevent.sleep(0)
    raise AssertionError("never %d waiting: %r" % (count, pool.stats()))


@contextlib.contextmanager
def hanging_listener(port=0):
    """A port that accepts no connection: a connect to it hangs."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(0)
    port = listener.getsockname()[1]
    backlog = []
    for _ in range(4):  # fill the accept queue: later connects hang
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        backlog.append(filler)
    try:
        yield port
    finally:
        for sock in backlog + [listener]:
            sock.close()


def exhaust_then_queue(pool):
    """Both leases of a pool of 2 held, one ``block=False`` lease refused
    (``PoolExhausted``), one greenlet queued: ``(release, holders, waiter)``."""
    release, holders = hold_leases(pool, 2)
    try:
        with pool.connection(block=False):
            raise AssertionError("a pool at size leased without waiting")
    except PoolExhausted:
        pass

    def queued():
        with pool.connection(timeout=10):
            pass

    waiter = gevent.spawn(queued)
    wait_until_waiting(pool, 1)
    return release, holders, waiter
