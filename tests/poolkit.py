"""Shared helpers of the pool tests: pools that are closed after each test,
and a small table whose every answer can be checked against its request."""

from green_happybase import ConnectionPool

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
