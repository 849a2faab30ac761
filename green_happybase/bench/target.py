"""The server the benchmark talks to, and its table, set up and torn down."""

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import happybase

from green_happybase.testing import HBaseServer

from . import dataset

__all__ = ["Target", "open_target"]

logger = logging.getLogger("green_happybase.bench")


class Target:
    """Where the workloads connect, and the table they read."""

    def __init__(self, host: str, port: int, options: dict[str, Any], table: str,
                 server: HBaseServer | None) -> None:
        self.host = host
        self.port = port
        #: ``happybase.Connection`` keyword arguments every variant uses.
        self.options = options
        self.table = table
        self._server = server

    @property
    def embedded(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def set_latency(self, seconds: float) -> bool:
        """Delay every reply by *seconds*; ``False`` if the server cannot."""
        if self._server is None:
            return False
        self._server.set_latency(seconds)
        return True


@contextlib.contextmanager
def open_target(host: str | None, port: int, transport: str,
                protocol: str) -> Iterator[Target]:
    """Yield a :class:`Target` with a freshly loaded table.

    Without *host*, an embedded server is started in a child process (so
    that client and server do not share a hub). The table, and the embedded
    server, are removed on the way out, whatever happened.
    """
    options = {"transport": transport, "protocol": protocol}
    with contextlib.ExitStack() as stack:
        server = None
        if host is None:
            server = stack.enter_context(HBaseServer(
                host="127.0.0.1", port=0, transport=transport, protocol=protocol,
                subprocess=True))
            host, port = server.host, server.port
        table = dataset.table_name()
        conn = happybase.Connection(host, port, **options)
        try:
            dataset.create(conn, table)
        except BaseException:
            conn.close()
            _drop(host, port, options, table, server is None)  # it may exist, half loaded
            raise
        conn.close()
        stack.callback(_drop, host, port, options, table, server is None)
        yield Target(host, port, options, table, server)


def _drop(host: str, port: int, options: dict[str, Any], table: str, warn: bool) -> None:
    """Remove *table*; on failure log a warning if *warn*, else quietly.

    An embedded server that has gone (Ctrl-C reaches it too) took the table
    with it.
    """
    # A fresh connection: the one that created the table may have gone stale.
    try:
        conn = happybase.Connection(host, port, **options)
        try:
            dataset.drop(conn, table)
        finally:
            conn.close()
    except Exception as error:
        # Reported, not raised: it must not hide the error that ended the run.
        logger.log(logging.WARNING if warn else logging.DEBUG,
                   "could not remove table %s from %s:%s: %s", table, host, port, error)
