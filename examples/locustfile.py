"""Load-test HBase with locust, through one green_happybase pool per process.

From the repository root::

    .venv/bin/locust -f examples/locustfile.py --headless -u 50 -r 10 -t 1m \\
        --host 'hbase://localhost:9090/?size=20'

The host is an ``hbase://`` URL (see ``green_happybase.config.parse_url``);
without ``--host``, ``GREEN_HAPPYBASE_URL`` is used. Every HBase call is
reported through locust's ``request`` event, so its statistics, percentiles
and failure counts cover HBase like HTTP: a connection that cannot be made
(``ConnectionFailed``), a pool with no connection to spare
(``PoolExhausted``), a socket or Thrift error, and a read that returns
another row's value all count as failures.

If HBase cannot be used when the run starts (unreachable, wrong transport or
protocol, malformed URL), the setup is reported as one failed ``setup``
request and the run stops at once with the reason in the log, instead of
running its whole time without a request.

Locust's users are greenlets: they share the pool, each holding a connection
only for the length of one call. When the run ends, locust kills users
mid-call; the pool discards those half-used connections.
"""
import os
import time
from collections.abc import Callable
from typing import Any

from locust import User, between, events, task
from locust.exception import StopTest, StopUser
from locust.runners import MasterRunner

import green_happybase
from green_happybase.config import ENV_URL

TABLE = "locust"
COLUMN = b"d:v"


class WrongAnswer(Exception):
    """HBase returned something other than what the request asked for."""


class HBaseClient:
    """Runs HBase calls through the pool and reports each one to locust."""

    def __init__(self, pool: green_happybase.ConnectionPool, request_event: Any) -> None:
        self._pool = pool
        self._request = request_event

    def _call(self, name: str, func: Callable[[Any], Any]) -> Any:
        start = time.perf_counter()
        result, exception, length = None, None, 0
        try:
            with self._pool.table(TABLE) as table:
                result = func(table)
            length = _size(result)
        except Exception as error:  # a failed request; kills pass through
            exception = error
        _report(self._request, name, start, length, exception)
        return result

    def put(self, key: bytes, value: bytes) -> None:
        self._call("put", lambda table: table.put(key, {COLUMN: value}))

    def get(self, key: bytes, expected: bytes) -> None:
        def get(table: Any) -> Any:
            row = table.row(key)
            if row.get(COLUMN) != expected:
                raise WrongAnswer("row %r: expected %r, got %r" % (key, expected, row))
            return row
        self._call("get", get)

    def scan(self, prefix: bytes, limit: int) -> None:
        self._call("scan", lambda table: list(table.scan(row_prefix=prefix, limit=limit)))


def _report(request_event: Any, name: str, start: float, length: int,
            exception: Exception | None) -> None:
    """Tell locust about one HBase request begun at *start* (``perf_counter``)."""
    request_event.fire(
        request_type="hbase", name=name,
        response_time=(time.perf_counter() - start) * 1000.0,
        response_length=length, exception=exception, context={})


def _size(result: Any) -> int:
    """Bytes in a row (dict) or a list of ``(key, row)`` pairs."""
    if isinstance(result, dict):
        return sum(len(k) + len(v) for k, v in result.items())
    if isinstance(result, list):
        return sum(len(key) + _size(row) for key, row in result)
    return 0


@events.test_start.add_listener
def _build_pool(environment: Any, **kwargs: Any) -> None:
    # Once per process, before any user starts: users must share one pool.
    if isinstance(environment.runner, MasterRunner):
        return  # a distributed run's master runs no users
    url = environment.host or os.environ.get(ENV_URL)
    if not url:
        raise SystemExit("give --host hbase://HOST:PORT/?size=N or set %s"
                         % ENV_URL)
    start = time.perf_counter()
    try:
        pool = green_happybase.configure(url, name="locust")
        with pool.connection() as conn:
            if TABLE.encode() not in conn.tables():
                conn.create_table(TABLE, {"d": {"max_versions": 1}})
    except Exception as error:
        _report(environment.events.request, "setup", start, 0, error)
        # StopTest ends the whole run; locust logs this message as an error.
        raise StopTest("cannot use HBase, stopping the run: %s: %s"
                       % (type(error).__name__, error)) from None


@events.test_stop.add_listener
def _close_pool(environment: Any, **kwargs: Any) -> None:
    green_happybase.close_all(timeout=5)


class HBaseUser(User):
    """Writes its own rows, reads them back, and scans them."""

    wait_time = between(0.001, 0.01)

    def on_start(self) -> None:
        try:
            pool = green_happybase.get_pool("locust")
        except green_happybase.PoolNotConfigured:
            raise StopUser() from None
        self.client = HBaseClient(pool, self.environment.events.request)
        self.prefix = b"user-%d-%x-" % (os.getpid(), id(self))
        self.written = 0

    @task(3)
    def write_then_read(self) -> None:
        key = self.prefix + b"%06d" % self.written
        value = b"value of " + key
        self.client.put(key, value)
        self.written += 1
        self.client.get(key, value)

    @task(1)
    def scan_own_rows(self) -> None:
        self.client.scan(self.prefix, limit=10)
