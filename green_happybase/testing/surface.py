"""The embedded server's Thrift surface: HBase's Thrift1 ``Hbase`` service.

:class:`HBaseHandler` answers every call of the ``Hbase.thrift`` IDL that
happybase ships as HBase 2's gateway (``ThriftHBaseServiceHandler``) does: it
checks arguments in the gateway's order and with its outcome (a caught
``IllegalArgumentException`` becomes ``IllegalArgument``, an uncaught one
"Internal error processing <method>"), then asks the :class:`~.store.Store`.
:class:`Processor` turns one decoded request into one encoded reply, the way
libthrift's processor does, and also answers ``getThriftServerType()``
(HBase 2's IDL has it, happybase's does not).

.. versionadded:: 0.2
"""
from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import happybase  # noqa: F401  (loads the Hbase_thrift module)
import thriftpy2
from Hbase_thrift import (
    AlreadyExists,
    ColumnDescriptor,
    Hbase,
    IllegalArgument,
    TCell,
    TColumn,
    TRegionInfo,
    TRowResult,
)
from Hbase_thrift import IOError as HBaseIOError
from thriftpy2.thrift import TApplicationException, TMessageType, TType

from . import errors
from . import filters as _filters
from .errors import Unchecked
from .regex import Budget, BudgetExceeded
from .store import FOREVER, LATEST_TIMESTAMP, Cell, Family, Spec, Store, Table

__all__ = ["HBaseHandler", "Processor", "REGEX_BUDGET", "SERVER_TYPES"]

log = logging.getLogger("green_happybase.testing.surface")

#: Seconds of ``regexstring:`` matching one scanner call may spend.
REGEX_BUDGET = 1.0

#: ``TThriftServerType`` values, as ``getThriftServerType()`` answers them.
SERVER_TYPES = {"one": 1, "two": 2}

# The part of HBase 2's IDL that happybase's lacks and the server answers.
_GATEWAY = thriftpy2.load_fp(io.StringIO("""
enum TThriftServerType { ONE = 1, TWO = 2 }
service Gateway { TThriftServerType getThriftServerType() }
"""), module_name="green_happybase_gateway_thrift")

_MAX_ROW_LENGTH = 2**15 - 1
_COMPRESSIONS = {
    name.lower(): name
    for name in ("NONE", "GZ", "LZO", "SNAPPY", "LZ4", "BZIP2", "ZSTD", "BROTLI")
}
_BLOOM_TYPES = frozenset(["NONE", "ROW", "ROWCOL", "ROWPREFIX_FIXED_LENGTH"])
_NAME_CACHE_SIZE = 4096


# Arguments, checked as the Java objects the gateway builds check them.


def _column(column: bytes | None) -> tuple[bytes, bytes | None]:
    """``CellUtil.parseColumn``: ``b'cf'`` -> (cf, None); ``b'cf:q'`` -> (cf, q)."""
    if column is None:
        raise Unchecked("column", "java.lang.NullPointerException")
    family, sep, qualifier = column.partition(b":")
    return (family, qualifier) if sep else (family, None)


def _qualified(column: bytes | None) -> tuple[bytes, bytes]:
    """A column that must name a qualifier (``famAndQf[1]`` in the gateway)."""
    family, qualifier = _column(column)
    if qualifier is None:
        raise Unchecked("1", "java.lang.ArrayIndexOutOfBoundsException")
    return family, qualifier


def _row(row: bytes | None, caught: bool = False) -> bytes:
    """``Mutation.checkRow``; ``caught``: the gateway catches the exception."""
    if not row:
        problem = "Row length is 0" if row is not None else "Row buffer is null"
    elif len(row) > _MAX_ROW_LENGTH:
        problem = "Row length %d is > %d" % (len(row), _MAX_ROW_LENGTH)
    else:
        return row
    if caught:
        raise errors.illegal_argument(problem)
    raise Unchecked(problem)


def _write_stamp(timestamp: int | None, caught: bool = False) -> int | None:
    """A write's timestamp (``None``: stamp it now), as ``Mutation`` checks it."""
    if timestamp is None or timestamp == LATEST_TIMESTAMP:
        return None
    if timestamp < 0:
        problem = "Timestamp cannot be negative. ts=%d" % timestamp
        if caught:
            raise errors.illegal_argument(problem)
        raise Unchecked(problem)
    return timestamp


def _read_bound(timestamp: int | None) -> int:
    """A read's exclusive upper bound, as ``TimeRange(0, timestamp)`` checks it."""
    if timestamp is None:
        return LATEST_TIMESTAMP
    if timestamp < 0:
        raise Unchecked("Timestamp cannot be negative. minStamp:0, maxStamp:%d" % timestamp)
    return timestamp


_name_cache: dict[Any, tuple[bytes, str | None]] = {}


def _table_name(raw: Any, caught: bool = False) -> tuple[bytes, str | None]:
    """Normalise a table name as ``TableName.valueOf`` does.

    :return: the name (without the ``default:`` namespace) and the namespace
        when it is another one
    """
    cached = _name_cache.get(raw)
    if cached is not None:
        return cached
    name = raw.encode("utf-8") if isinstance(raw, str) else raw
    if name is None:
        raise Unchecked("tableName", "java.lang.NullPointerException")
    namespace, sep, qualifier = name.rpartition(b":")
    problem = _table_name_problem(namespace if sep else None, qualifier)
    if problem:
        if caught:
            raise errors.illegal_argument(problem)
        raise Unchecked(problem)
    result = (name, namespace.decode("ascii")) if sep and namespace != b"default" else (
        qualifier, None)
    if len(_name_cache) < _NAME_CACHE_SIZE:
        _name_cache[raw] = result
    return result


def _table_name_problem(namespace: bytes | None, qualifier: bytes) -> str | None:
    if not qualifier:
        return "Table qualifier must not be empty"
    try:
        text = qualifier.decode("utf-8")
    except UnicodeDecodeError:
        return "Illegal character in table qualifier %s" % errors.binary(qualifier)
    if text[0] in ".-":
        return (
            "Illegal first character <%s> at 0. User-space table qualifiers can only "
            "start with 'alphanumeric characters' from any language: %s" % (text[0], text)
        )
    for i, ch in enumerate(text):
        if not (ch.isalnum() or ch in "_-."):
            return (
                "Illegal character code:%d, <%s> at %d. User-space table qualifiers may "
                "only contain 'alphanumeric characters' and digits: %s" % (ord(ch), ch, i, text)
            )
    if namespace is not None:
        ns = namespace.decode("utf-8", "replace")
        if not ns or not all(ch.isalnum() or ch == "_" for ch in ns):
            return "Illegal character in namespace %s" % ns
    return None


def _family(desc: ColumnDescriptor) -> Family:
    """Validate a family as ``ThriftUtilities.colDescFromThrift`` does."""
    compression = _COMPRESSIONS.get((desc.compression or "NONE").lower())
    if compression is None:
        raise errors.illegal_argument(
            "Unsupported compression algorithm name: %s" % desc.compression)
    bloom = desc.bloomFilterType if desc.bloomFilterType is not None else "NONE"
    if bloom not in _BLOOM_TYPES:
        raise errors.illegal_argument(
            "No enum constant org.apache.hadoop.hbase.regionserver.BloomType.%s" % bloom)
    raw = desc.name.encode("utf-8") if isinstance(desc.name, str) else desc.name
    if not raw:
        raise IllegalArgument(message="column name is empty")
    name = raw.partition(b":")[0]
    if not name:
        raise errors.illegal_argument("Column Family name can not be empty")
    if name[:1] == b".":
        raise errors.illegal_argument(
            "Column Family names cannot start with a period: %s" % errors.binary(name))
    if any(b < 32 or b == 127 or b in b"\\/" for b in name) or name == b"recovered.edits":
        raise errors.illegal_argument(
            "Column Family %s contains an illegal character" % errors.binary(name))
    max_versions = desc.maxVersions if desc.maxVersions is not None else 3
    if max_versions <= 0:
        raise errors.illegal_argument("Maximum versions must be positive")
    ttl = desc.timeToLive if desc.timeToLive is not None else -1
    return Family(name=name, max_versions=max_versions, compression=compression,
                  in_memory=bool(desc.inMemory), bloom_filter_type=bloom,
                  block_cache_enabled=bool(desc.blockCacheEnabled),
                  time_to_live=ttl if 0 < ttl <= FOREVER else FOREVER)


# Results.


def _descriptor(family: Family) -> ColumnDescriptor:
    # HBase's gateway never reports the bloom filter sizes back.
    return ColumnDescriptor(
        name=family.name + b":", maxVersions=family.max_versions,
        compression=family.compression, inMemory=family.in_memory,
        bloomFilterType=family.bloom_filter_type, bloomFilterVectorSize=0,
        bloomFilterNbHashes=0, blockCacheEnabled=family.block_cache_enabled,
        timeToLive=family.time_to_live)


def _region(table: Table) -> TRegionInfo:
    server, port = table.region_server
    return TRegionInfo(startKey=b"", endKey=b"", id=table.created, name=table.region_name,
                       version=1, serverName=server, port=port)


def _row_result(key: bytes, cells: Sequence[Cell], sort_columns: bool = False) -> TRowResult:
    if sort_columns:
        return TRowResult(row=key, sortedColumns=[
            TColumn(columnName=c.family + b":" + c.qualifier,
                    cell=TCell(value=c.value, timestamp=c.timestamp))
            for c in cells
        ])
    return TRowResult(row=key, columns={
        c.family + b":" + c.qualifier: TCell(value=c.value, timestamp=c.timestamp)
        for c in cells
    })


class HBaseHandler:
    """The ``Hbase`` Thrift1 service over a :class:`~.store.Store`.

    Method names and arguments follow ``Hbase.thrift``; binary arguments
    arrive as ``bytes``.

    :param store: the cluster it serves (a new, empty one by default)
    :param pause: what a long ``regexstring:`` match calls to let other
        greenlets run (``gevent.sleep``)
    """

    def __init__(self, store: Store | None = None,
                 pause: Callable[[], Any] | None = None) -> None:
        self.store = store if store is not None else Store()
        self._pause = pause

    # Tables and regions.

    def _admin_table(self, raw: Any) -> Table:
        return self.store.table(_table_name(raw)[0])

    def _spec(self, table: Table, columns: Sequence[bytes] | None) -> Spec:
        """Columns asked for, as HBase's ``Get``/``Scan`` family map builds them.

        A qualifier asked for after its whole family narrows the family to
        the qualifiers named (HBase's ``addColumn`` replaces ``addFamily``).
        """
        if not columns:
            return None
        spec: dict[bytes, set[bytes] | None] = {}
        for column in columns:
            family, qualifier = _column(column)
            if qualifier is None:
                spec[family] = None
            else:
                quals = spec.get(family)
                if quals is None:
                    quals = spec[family] = set()
                quals.add(qualifier)
        table.check_families(spec)
        return spec

    def getTableNames(self) -> list[bytes]:
        return sorted(self.store.tables)

    def createTable(self, tableName: Any, columnFamilies: Sequence[ColumnDescriptor]) -> None:
        """Create an enabled table; the descriptors are checked as HBase checks them."""
        name, namespace = _table_name(tableName)
        if namespace is not None:
            raise errors.io_error("org.apache.hadoop.hbase.NamespaceNotFoundException", namespace)
        if name in self.store.tables:
            raise AlreadyExists(message="table name already in use")
        families: dict[bytes, Family] = {}
        for desc in columnFamilies or ():
            family = _family(desc)
            if family.name in families:
                raise errors.illegal_argument(
                    "Family '%s' already exists so cannot be added" % errors.binary(family.name))
            families[family.name] = family
        if not families:
            raise errors.io_error("org.apache.hadoop.hbase.DoNotRetryIOException",
                                  "Table should have at least one column family.")
        self.store.create_table(name, families)

    def deleteTable(self, tableName: Any) -> None:
        """Delete a table, which must be disabled first."""
        name, _ = _table_name(tableName)
        table = self.store.tables.get(name)
        if table is None:
            raise HBaseIOError(message="java.io.IOException: table does not exist")
        if table.enabled:
            raise errors.table_not_disabled(name)
        del self.store.tables[name]

    def enableTable(self, tableName: Any) -> None:
        table = self._admin_table(tableName)
        if table.enabled:
            raise errors.table_not_disabled(table.name)
        table.enabled = True

    def disableTable(self, tableName: Any) -> None:
        table = self._admin_table(tableName)
        if not table.enabled:
            raise errors.table_not_enabled(table.name)
        table.enabled = False

    def isTableEnabled(self, tableName: Any) -> bool:
        return self._admin_table(tableName).enabled

    def compact(self, tableNameOrRegionName: Any) -> None:
        self._compaction_target(tableNameOrRegionName)

    def majorCompact(self, tableNameOrRegionName: Any) -> None:
        # A major compaction drops delete markers: writes older than a delete
        # become visible again from then on.
        self._compaction_target(tableNameOrRegionName).markers.clear()

    def _compaction_target(self, raw: Any) -> Table:
        """The table named, or whose region is named (``compactRegion`` first)."""
        name = raw.encode("utf-8") if isinstance(raw, str) else raw
        for table in self.store.tables.values():
            if table.region_name == name:
                return table
        return self._admin_table(raw)

    def getColumnDescriptors(self, tableName: Any) -> dict[bytes, ColumnDescriptor]:
        table = self._admin_table(tableName)
        return {f.name + b":": _descriptor(f) for _, f in sorted(table.families.items())}

    def getTableRegions(self, tableName: Any) -> list[TRegionInfo]:
        """The one region covering the table; an empty list for an unknown table."""
        table = self.store.tables.get(_table_name(tableName)[0])
        return [_region(table)] if table is not None else []

    def getRegionInfo(self, row: bytes) -> TRegionInfo:
        return _region(self.store.region_at(row or b""))

    # Reads.

    def get(self, tableName: Any, row: bytes, column: bytes, attributes: Any) -> list[TCell]:
        return self.getVerTs(tableName, row, column, LATEST_TIMESTAMP, 1, attributes)

    def getVer(self, tableName: Any, row: bytes, column: bytes, numVersions: int,
               attributes: Any) -> list[TCell]:
        return self.getVerTs(tableName, row, column, LATEST_TIMESTAMP, numVersions, attributes)

    def getVerTs(self, tableName: Any, row: bytes, column: bytes, timestamp: int,
                 numVersions: int, attributes: Any) -> list[TCell]:
        _column(column)
        name = _table_name(tableName)[0]
        row = _row(row)
        bound = _read_bound(timestamp)
        if numVersions is None or numVersions < 1:
            raise HBaseIOError(message="java.io.IOException: versions must be positive")
        table = self.store.enabled_table(name)
        cells = self.store.cells(table, row, self._spec(table, [column]), bound, numVersions)
        return [TCell(value=c.value, timestamp=c.timestamp) for c in cells]

    def getRow(self, tableName: Any, row: bytes, attributes: Any) -> list[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, [row], None, LATEST_TIMESTAMP, attributes)

    def getRowTs(self, tableName: Any, row: bytes, timestamp: int,
                 attributes: Any) -> list[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, [row], None, timestamp, attributes)

    def getRowWithColumns(self, tableName: Any, row: bytes, columns: list[bytes] | None,
                          attributes: Any) -> list[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, [row], columns, LATEST_TIMESTAMP,
                                         attributes)

    def getRowWithColumnsTs(self, tableName: Any, row: bytes, columns: list[bytes] | None,
                            timestamp: int, attributes: Any) -> list[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, [row], columns, timestamp, attributes)

    def getRows(self, tableName: Any, rows: list[bytes], attributes: Any) -> list[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, rows, None, LATEST_TIMESTAMP, attributes)

    def getRowsTs(self, tableName: Any, rows: list[bytes], timestamp: int,
                  attributes: Any) -> list[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, rows, None, timestamp, attributes)

    def getRowsWithColumns(self, tableName: Any, rows: list[bytes],
                           columns: list[bytes] | None, attributes: Any) -> list[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, rows, columns, LATEST_TIMESTAMP, attributes)

    def getRowsWithColumnsTs(self, tableName: Any, rows: list[bytes],
                             columns: list[bytes] | None, timestamp: int,
                             attributes: Any) -> list[TRowResult]:
        name = _table_name(tableName)[0]
        keys = [_row(row) for row in rows or ()]
        for column in columns or ():
            _column(column)
        bound = _read_bound(timestamp)
        table = self.store.enabled_table(name)
        spec = self._spec(table, columns)
        results = []
        for key in keys:
            cells = self.store.cells(table, key, spec, bound, 1)
            if cells:
                results.append(_row_result(key, cells))
        return results

    # Writes.

    def mutateRow(self, tableName: Any, row: bytes, mutations: list[Any],
                  attributes: Any) -> None:
        self.mutateRowTs(tableName, row, mutations, LATEST_TIMESTAMP, attributes)

    def mutateRowTs(self, tableName: Any, row: bytes, mutations: list[Any], timestamp: int,
                    attributes: Any) -> None:
        name = _table_name(tableName, caught=True)[0]
        row = _row(row, caught=True)
        stamp = _write_stamp(timestamp, caught=True)
        puts, deletes = [], []
        for m in mutations or ():
            family, qualifier = _column(m.column)
            if m.isDelete:
                deletes.append((family, qualifier))
            elif qualifier is not None:
                puts.append((family, qualifier, m.value or b""))
            else:
                log.warning("put of a whole column family %r ignored, as HBase does", m.column)
        # Nothing to send reaches no table: HBase answers OK even for a
        # missing or disabled one. The row's Delete goes first, then its Put.
        if deletes:
            table = self.store.enabled_table(name)
            self.store.delete_row(table, row, deletes, self.store.delete_stamp(stamp))
        if puts:
            table = self.store.enabled_table(name)
            self.store.put_row(table, row, puts, stamp)

    def mutateRows(self, tableName: Any, rowBatches: list[Any], attributes: Any) -> None:
        self.mutateRowsTs(tableName, rowBatches, LATEST_TIMESTAMP, attributes)

    def mutateRowsTs(self, tableName: Any, rowBatches: list[Any], timestamp: int,
                     attributes: Any) -> None:
        # The gateway builds every Put and Delete before touching the table,
        # and what fails there is not caught: the reply is an internal error.
        puts: list[tuple[bytes, list[tuple[bytes, bytes, bytes]]]] = []
        deletes: list[tuple[bytes, list[tuple[bytes, bytes | None]]]] = []
        stamp = None
        for batch in rowBatches or ():
            row = _row(batch.row)
            stamp = _write_stamp(timestamp)
            row_puts, row_deletes = [], []
            for m in batch.mutations or ():
                family, qualifier = _column(m.column)
                if m.isDelete:
                    row_deletes.append((family, qualifier))
                elif qualifier is None:
                    raise Unchecked("Invalid famAndQf provided.")
                else:
                    row_puts.append((family, qualifier, m.value or b""))
            if row_puts:
                puts.append((row, row_puts))
            if row_deletes:
                deletes.append((row, row_deletes))
        name = _table_name(tableName, caught=True)[0]
        if not puts and not deletes:
            return
        table = self.store.enabled_table(name)
        # All Puts, then all Deletes; a failing row fails alone, and a failure
        # among the Puts means the Deletes are never sent.
        if puts:
            self.store.batch(table, puts, lambda t, row, items: self.store.put_row(
                t, row, items, stamp))
        if deletes:
            ts = self.store.delete_stamp(stamp)
            self.store.batch(table, deletes, lambda t, row, items: self.store.delete_row(
                t, row, items, ts))

    def deleteAll(self, tableName: Any, row: bytes, column: bytes, attributes: Any) -> None:
        self.deleteAllTs(tableName, row, column, LATEST_TIMESTAMP, attributes)

    def deleteAllTs(self, tableName: Any, row: bytes, column: bytes, timestamp: int,
                    attributes: Any) -> None:
        name = _table_name(tableName)[0]
        row = _row(row)
        family, qualifier = _column(column)
        stamp = _write_stamp(timestamp)
        table = self.store.enabled_table(name)
        self.store.delete_row(table, row, [(family, qualifier)], self.store.delete_stamp(stamp))

    def deleteAllRow(self, tableName: Any, row: bytes, attributes: Any) -> None:
        self.deleteAllRowTs(tableName, row, LATEST_TIMESTAMP, attributes)

    def deleteAllRowTs(self, tableName: Any, row: bytes, timestamp: int,
                       attributes: Any) -> None:
        name = _table_name(tableName)[0]
        row = _row(row)
        stamp = _write_stamp(timestamp)
        table = self.store.enabled_table(name)
        self.store.delete_row(table, row, [(f, None) for f in table.families],
                              self.store.delete_stamp(stamp))

    def atomicIncrement(self, tableName: Any, row: bytes, column: bytes, value: int) -> int:
        """Add ``value`` to an 8-byte big-endian counter (a missing cell counts as 0)."""
        family, qualifier = _column(column)
        name = _table_name(tableName)[0]
        row = _row(row)
        table = self.store.enabled_table(name)
        return self.store.increment(table, row, family, qualifier or b"", value)

    def increment(self, increment: Any) -> None:
        if not increment.table or not increment.row:
            raise Unchecked("Must supply a table and a row key; can't increment",
                            "org.apache.thrift.TException")
        name = _table_name(increment.table)[0]
        row = _row(increment.row)
        family, qualifier = _qualified(increment.column)
        table = self.store.enabled_table(name)
        self.store.increment(table, row, family, qualifier, increment.ammount or 0)

    def incrementRows(self, increments: list[Any]) -> None:
        for inc in increments or ():
            self.increment(inc)

    def append(self, append: Any) -> list[TCell]:
        if not append.table or not append.row:
            raise Unchecked("Must supply a table and a row key; can't append",
                            "org.apache.thrift.TException")
        columns, values = append.columns or [], append.values or []
        if len(columns) != len(values):
            raise Unchecked("Sizes of columns and values in tappend object are not matching")
        name = _table_name(append.table)[0]
        row = _row(append.row)
        items = [_qualified(c) + (v or b"",) for c, v in zip(columns, values, strict=True)]
        table = self.store.enabled_table(name)
        return [TCell(value=c.value, timestamp=c.timestamp)
                for c in self.store.append(table, row, items)]

    def checkAndPut(self, tableName: Any, row: bytes, column: bytes, value: bytes | None,
                    mput: Any, attributes: Any) -> bool:
        row = _row(row, caught=True)
        put_family, put_qualifier = _qualified(mput.column)
        name = _table_name(tableName, caught=True)[0]
        family, qualifier = _qualified(column)
        table = self.store.enabled_table(name)
        return self.store.check_and_put(table, row, family, qualifier, value,
                                        (put_family, put_qualifier, mput.value or b""))

    def getRowOrBefore(self, tableName: Any, row: bytes, family: bytes) -> list[TCell]:
        # Gone from HBase 2's gateway: its processor answers an unknown method.
        raise errors.unknown_method("getRowOrBefore")

    # Scanners.

    def _open(self, tableName: Any, start: bytes | None, stop: bytes | None,
              columns: Sequence[bytes] | None, timestamp: int | None, reverse: bool = False,
              filter_string: bytes | None = None, prefix: bytes | None = None,
              sort_columns: bool = False, batch: int | None = None) -> int:
        name = _table_name(tableName)[0]
        bound = _read_bound(timestamp)
        for column in columns or ():
            _column(column)
        budget = Budget(REGEX_BUDGET, self._pause)
        flt = None
        if filter_string is not None:
            try:
                flt = _filters.parse_filter(filter_string, budget, reverse)
            except _filters.FilterError as exc:
                raise errors.deviation(
                    "java.lang.IllegalArgumentException: %s" % exc,
                    "answers 'Internal error processing scannerOpenWithScan'") from None
        elif prefix is not None:
            flt = _filters.prefix_while_filter(prefix)
        table = self.store.enabled_table(name)
        spec = self._spec(table, columns)
        return self.store.open_scanner(table, start or b"", stop or b"", reverse, spec, bound,
                                       flt, budget, sort_columns, batch)

    def scannerOpenWithScan(self, tableName: Any, tscan: Any, attributes: Any) -> int:
        """Open a scanner; a bad or unsupported filter string is an ``IOError``."""
        batch = tscan.batchSize if tscan.batchSize and tscan.batchSize > 0 else None
        return self._open(tableName, tscan.startRow, tscan.stopRow, tscan.columns,
                          tscan.timestamp, reverse=bool(tscan.reversed),
                          filter_string=tscan.filterString,
                          sort_columns=bool(tscan.sortColumns), batch=batch)

    def scannerOpen(self, tableName: Any, startRow: bytes, columns: list[bytes] | None,
                    attributes: Any) -> int:
        return self._open(tableName, startRow, None, columns, None)

    def scannerOpenTs(self, tableName: Any, startRow: bytes, columns: list[bytes] | None,
                      timestamp: int, attributes: Any) -> int:
        return self._open(tableName, startRow, None, columns, timestamp)

    def scannerOpenWithStop(self, tableName: Any, startRow: bytes, stopRow: bytes,
                            columns: list[bytes] | None, attributes: Any) -> int:
        return self._open(tableName, startRow, stopRow, columns, None)

    def scannerOpenWithStopTs(self, tableName: Any, startRow: bytes, stopRow: bytes,
                              columns: list[bytes] | None, timestamp: int,
                              attributes: Any) -> int:
        return self._open(tableName, startRow, stopRow, columns, timestamp)

    def scannerOpenWithPrefix(self, tableName: Any, startAndPrefix: bytes,
                              columns: list[bytes] | None, attributes: Any) -> int:
        return self._open(tableName, startAndPrefix, None, columns, None,
                          prefix=startAndPrefix or b"")

    def scannerGet(self, id: int) -> list[TRowResult]:
        return self.scannerGetList(id, 1)

    def scannerGetList(self, id: int, nbRows: int) -> list[TRowResult]:
        """Up to ``nbRows`` results; an empty list once the scan is over."""
        scanner = self.store.scanner(id)
        if nbRows is None or nbRows < 0:
            raise Unchecked("Illegal Capacity: %s" % nbRows)
        try:
            results = self.store.scan(scanner, nbRows)
        except BudgetExceeded as exc:
            raise errors.deviation(str(exc), "has no such budget") from None
        except _filters.FilterError as exc:
            raise errors.deviation(str(exc), "runs any java.util.regex pattern") from None
        return [_row_result(key, cells, scanner.sort_columns) for key, cells in results]

    def scannerClose(self, id: int) -> None:
        self.store.close_scanner(id)


class _Method:
    """One callable method: its argument and result structs and its code."""

    def __init__(self, name: str, args: Any, result: Any, call: Callable[..., Any]) -> None:
        self.name = name
        self.args = args
        self.result = result
        self.call = call
        self.fields = [spec[1] for _, spec in sorted(args.thrift_spec.items())]
        self.returns = 0 in result.thrift_spec  # not void
        self.declared = [(spec[1], spec[2]) for fid, spec in result.thrift_spec.items()
                         if fid != 0 and spec[0] == TType.STRUCT]


class Call:
    """A decoded request: what :meth:`Processor.answer` needs."""

    def __init__(self, name: str, seqid: int, method: _Method | None, args: Any,
                 problem: TApplicationException | None = None) -> None:
        self.name = name
        self.seqid = seqid
        self.method = method
        self.args = args
        self.problem = problem


class Processor:
    """Decode one request and encode its reply, as libthrift's processor does.

    :param handler: the service
    :param protocol: a thriftpy2 protocol class, binary or compact
    :param server_type: ``"one"`` (a Thrift1 gateway, the service) or ``"two"``
        (pretend to be a Thrift2 gateway: only ``getThriftServerType()``
        answers, every other method is unknown)
    """

    def __init__(self, handler: HBaseHandler, protocol: Callable[..., Any],
                 server_type: str = "one") -> None:
        self._protocol = protocol
        kind = SERVER_TYPES[server_type]
        self._methods: dict[str, _Method] = {}
        if kind == 1:
            for name in Hbase.thrift_services:
                self._methods[name] = _Method(name, getattr(Hbase, name + "_args"),
                                              getattr(Hbase, name + "_result"),
                                              getattr(handler, name))
        gateway = _GATEWAY.Gateway
        self._methods["getThriftServerType"] = _Method(
            "getThriftServerType", gateway.getThriftServerType_args,
            gateway.getThriftServerType_result, lambda: kind)

    def decode(self, transport: Any) -> Call:
        """Read one request from ``transport`` (a memory buffer holding it)."""
        iprot = self._protocol(transport)
        name, _type, seqid = iprot.read_message_begin()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        method = self._methods.get(name)
        if method is None:
            return Call(name, seqid, None, None, errors.unknown_method(name))
        args = method.args()
        try:
            iprot.read_struct(args)
        except Exception as exc:  # what the walker let through but does not fit
            return Call(name, seqid, method, None, TApplicationException(
                TApplicationException.PROTOCOL_ERROR, str(exc)))
        return Call(name, seqid, method, args)

    def answer(self, call: Call) -> tuple[Any, bool]:
        """Run a call; return the reply payload and whether it is an exception."""
        if call.problem is not None or call.method is None:
            return call.problem, True
        method = call.method
        try:
            value = method.call(*[getattr(call.args, field) for field in method.fields])
            return (method.result(success=value) if method.returns else method.result()), False
        except TApplicationException as exc:
            return exc, True
        except Unchecked as exc:
            log.info("%s: %s (answered as HBase's gateway does: 'Internal error processing "
                     "%s')", method.name, exc, method.name)
            return errors.internal_error(method.name), True
        except Exception as exc:
            for field, kind in method.declared:
                if isinstance(exc, kind):
                    result = method.result()
                    setattr(result, field, exc)
                    return result, False
            log.exception("the embedded server failed in %s", method.name)
            return TApplicationException(
                TApplicationException.INTERNAL_ERROR,
                "Internal error processing %s (embedded HBase server bug: %s: %s)"
                % (method.name, type(exc).__name__, exc)), True

    def encode(self, name: str, seqid: int, payload: Any, exception: bool,
                buffer: Any) -> None:
        """Write a reply message to ``buffer`` (strict, as HBase writes)."""
        oprot = self._protocol(buffer)
        oprot.write_message_begin(name, TMessageType.EXCEPTION if exception
                                  else TMessageType.REPLY, seqid)
        payload.write(oprot)
        oprot.write_message_end()
