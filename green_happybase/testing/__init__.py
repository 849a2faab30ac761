"""An embedded HBase Thrift server for tests: ``HBaseServer``.

Run it from Python (``with HBaseServer() as server: ...``), from the shell
(``python -m green_happybase.testing --port 9090``), or through the pytest
fixtures ``hbase_server`` and ``hbase_pool`` (see
:mod:`green_happybase.testing.plugin`).

It answers happybase's whole ``Hbase.thrift`` as HBase 2's Thrift1 gateway
does, with the gateway's limits on by default: connections idle for 60 s are
closed, frames over 2 MiB refused, scanners unused for 60 s lose their lease.
Its parts: :mod:`.store` (tables, cells, regions, scanners), :mod:`.surface`
(the Thrift service: argument checks, replies), :mod:`.errors` (HBase's error
texts), :mod:`.filters` and :mod:`.regex` (the filter language),
:mod:`.faults` (misbehaviour on demand), :mod:`.wire` (reading requests
within bounds), :mod:`.watchdog` and :mod:`.server` (sockets and processes).

Where it knowingly differs from HBase 2:

- Server-stamped writes of one cell never share a millisecond, so fast
  consecutive puts keep distinct versions and a put right after a delete is
  seen (HBase may merge them; checkAndPut's put included).
- ``IOError`` and ``IllegalArgument`` messages carry the first line of the
  Java stack trace HBase sends, not its frames.
- A bad filter string is an ``IOError`` naming the problem (also past the
  bounds below); HBase's gateway lets ``ParseFilter``'s exception escape as
  ``Internal error processing scannerOpenWithScan``. The message says so.
- Filter strings are bounded (64 KiB, 100 levels of nesting, 1000 filters);
  ``ColumnCountGetFilter``, ``DependentColumnFilter`` and ``ColumnValueFilter``
  are not implemented. Both are refused with an ``IOError`` naming them.
- ``regexstring:`` patterns are parsed by Python's ``re`` (Java-only syntax
  is refused), may use at most 1 s of matching per scanner call, and
  patterns with backreferences or lookaround are refused on values too long
  to run them safely; each with an ``IOError`` saying so
  (:mod:`.regex`).
- A scanner sees the row keys that existed when it was opened (or when its
  lease expired and it was reopened), but reads each row's cells when it
  reaches them; one scanner serves one call at a time.
- With ``batchSize`` and a filter that filters whole rows, a row with more
  cells than the batch fails the call with HBase's
  ``IncompatibleFilterException`` (HBase fails only when the row really has
  cells left after the batch, included or not).
- There is one region per table, on one region server, and no system tables:
  ``getRegionInfo`` before every table's region answers an ``IOError``
  (HBase would find ``hbase:namespace``).
- Of HBase 2's newer IDL, only ``getThriftServerType()`` is answered;
  ``getTableNamesWithIsTableEnabled``, ``getClusterId``, ``grant`` and
  ``revoke`` are unknown methods. With ``server_type="two"`` it is no real
  Thrift2 gateway: every call but ``getThriftServerType()`` is unknown.
- Requests are bounded (:mod:`.wire`): at most 16 MiB, nesting 64 deep,
  container sizes that fit, and decoded objects of at most 32 times the
  request's size plus 1 MiB; a request past a bound closes its connection
  (HBase accepts up to 100 MB buffered). The idle cut applies to framed
  connections too (HBase's applies to its default thread-pool server).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import HBaseServer

__all__ = ["HBaseServer"]


def __getattr__(name: str) -> Any:
    # Lazily: the pytest plugin imports this package, and must not pay for
    # gevent, happybase and thriftpy2 in projects that never use a fixture.
    if name == "HBaseServer":
        from .server import HBaseServer

        return HBaseServer
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
