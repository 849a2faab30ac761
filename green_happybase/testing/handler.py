"""In-memory implementation of HBase's Thrift1 ``Hbase`` service.

:class:`HBaseHandler` answers every call of the ``Hbase.thrift`` IDL that
happybase ships the way HBase 2's own Thrift1 gateway
(``ThriftHBaseServiceHandler``) does: the same column parsing (``cf`` is a
whole family, ``cf:`` the empty qualifier), time ranges (``timestamp``
arguments of reads are exclusive upper bounds, of deletes inclusive), delete
markers that hide later writes with older timestamps until a major
compaction, version pruning, TTLs, counters as 8-byte big-endian integers,
one region per table, and errors raised as the exception HBase's gateway
replies with (an ``IOError``, ``IllegalArgument`` or ``AlreadyExists``, or a
``TApplicationException`` where the Java handler lets an exception escape).

Where this server knowingly differs from HBase:

- Server-stamped writes of one cell never share a millisecond (see
  :meth:`HBaseHandler._put_ts`), so fast consecutive puts keep distinct
  versions and a put right after a delete is seen.
- A bad filter string is an ``IOError`` naming the problem; HBase's gateway
  lets ``ParseFilter``'s exception escape as an internal error.
- A scanner sees the row keys that existed when it was opened, but reads
  each row's cells when it reaches them, not as of the opening.

All state lives in plain Python objects and no method ever yields, so the
greenlets serving many clients at once need no locks.
"""
from __future__ import annotations

import hashlib
import logging
import struct
import time
from bisect import bisect_left, bisect_right
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import happybase  # noqa: F401  (loads the Hbase_thrift module)
from Hbase_thrift import (  # type: ignore[import-not-found]
    AlreadyExists,
    ColumnDescriptor,
    IllegalArgument,
    IOError as HBaseIOError,
    TCell,
    TColumn,
    TRegionInfo,
    TRowResult,
)
from thriftpy2.thrift import TApplicationException

from . import filters as _filters
from .filters import Cell, Filter, FilterError

__all__ = ["HBaseHandler"]

log = logging.getLogger("green_happybase.testing.handler")

#: HBase's ``HConstants.LATEST_TIMESTAMP``: "now", for writes; "no bound", for reads.
LATEST_TIMESTAMP = 2**63 - 1
_FOREVER = 2**31 - 1  # HConstants.FOREVER, a TTL in seconds
_MAX_ROW_LENGTH = 2**15 - 1
_REGION_SERVER = (b"localhost", 16020)
_COMPRESSIONS = {
    name.lower(): name
    for name in ("NONE", "GZ", "LZO", "SNAPPY", "LZ4", "BZIP2", "ZSTD", "BROTLI")
}
_BLOOM_TYPES = frozenset(["NONE", "ROW", "ROWCOL", "ROWPREFIX_FIXED_LENGTH"])
_MAX_LONG = 2**63

_Versions = List[Tuple[int, bytes]]  # (timestamp, value), newest first
_Family = Dict[bytes, _Versions]  # qualifier -> versions
_Row = Dict[bytes, _Family]  # family -> qualifiers
_Spec = Optional[Dict[bytes, Optional[Set[bytes]]]]  # family -> qualifiers (None: all)


# Errors, worded as HBase's gateway words them.


def _binary(data: bytes) -> str:
    """``Bytes.toStringBinary``: printable ASCII as is, the rest as ``\\xHH``."""
    return "".join(
        chr(b) if 32 <= b < 127 and b != 92 else "\\x%02X" % b for b in bytes(data)
    )


def _io_error(java_class: str, message: str) -> HBaseIOError:
    return HBaseIOError(message="%s: %s" % (java_class, message))


def _internal_error(message: str) -> TApplicationException:
    # What the Java gateway replies when its handler throws an unchecked exception.
    return TApplicationException(TApplicationException.INTERNAL_ERROR, message)


def _illegal_argument(message: str) -> IllegalArgument:
    return IllegalArgument(message="java.lang.IllegalArgumentException: " + message)


def _table_not_found(name: bytes) -> HBaseIOError:
    return _io_error("org.apache.hadoop.hbase.TableNotFoundException", _binary(name))


# Column and row arguments.


def _parse_column(column: Optional[bytes]) -> Tuple[bytes, Optional[bytes]]:
    """``CellUtil.parseColumn``: ``b'cf'`` -> (cf, None); ``b'cf:q'`` -> (cf, q)."""
    if column is None:
        raise _internal_error("java.lang.NullPointerException: column")
    family, sep, qualifier = column.partition(b":")
    return (family, qualifier) if sep else (family, None)


def _check_row(row: Optional[bytes], reply: type = TApplicationException) -> bytes:
    """Reject what HBase's ``Mutation.checkRow`` rejects, as ``reply``."""
    if not row:
        message = "Row length is 0" if row is not None else "Row buffer is null"
    elif len(row) > _MAX_ROW_LENGTH:
        message = "Row length %d is > %d" % (len(row), _MAX_ROW_LENGTH)
    else:
        return row
    if reply is IllegalArgument:
        raise _illegal_argument(message)
    raise _internal_error("java.lang.IllegalArgumentException: " + message)


def _check_timestamp(ts: int) -> int:
    if ts < 0:
        raise _illegal_argument("Timestamp cannot be negative. ts=%d" % ts)
    return ts


def _to_long(value: bytes) -> int:
    if len(value) != 8:
        raise _io_error(
            "org.apache.hadoop.hbase.DoNotRetryIOException",
            "Field is not a long, it's %d bytes wide" % len(value),
        )
    return struct.unpack(">q", value)[0]


def _wrap_long(value: int) -> int:
    """Java ``long`` overflow: wrap into the signed 64-bit range."""
    return (value + _MAX_LONG) % (2 * _MAX_LONG) - _MAX_LONG


# Table names.

_name_cache: Dict[Any, Tuple[bytes, Optional[str]]] = {}


def _table_name(raw: Any) -> Tuple[bytes, Optional[str]]:
    """Normalise a table name as ``TableName.valueOf`` does.

    :return: the name (without the ``default:`` namespace) and the namespace
        when it is another one
    :raises TApplicationException: for an illegal name, as the gateway does
    """
    cached = _name_cache.get(raw)
    if cached is not None:
        return cached
    name = raw.encode("utf-8") if isinstance(raw, str) else raw
    if name is None:
        raise _internal_error("java.lang.NullPointerException: tableName")
    namespace, sep, qualifier = name.rpartition(b":")
    problem = _table_name_problem(namespace if sep else None, qualifier)
    if problem:
        raise _internal_error("java.lang.IllegalArgumentException: " + problem)
    if sep and namespace != b"default":
        result = (name, namespace.decode("ascii"))
    else:
        result = (qualifier, None)
    if len(_name_cache) < 4096:
        _name_cache[raw] = result
    return result


def _table_name_problem(namespace: Optional[bytes], qualifier: bytes) -> Optional[str]:
    if not qualifier:
        return "Table qualifier must not be empty"
    try:
        text = qualifier.decode("utf-8")
    except UnicodeDecodeError:
        return "Illegal character in table qualifier %s" % _binary(qualifier)
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


class _Table:
    """One table: its descriptors, its state, its rows and its delete markers."""

    def __init__(self, name: bytes, families: Dict[bytes, ColumnDescriptor], created: int):
        self.name = name
        self.families = families
        self.enabled = True
        self.created = created
        self.rows: Dict[bytes, _Row] = {}
        # row -> {(family, qualifier or None): newest deleted timestamp}
        self.markers: Dict[bytes, Dict[Tuple[bytes, Optional[bytes]], int]] = {}
        self._keys: List[bytes] = []
        self._added: List[bytes] = []
        self._removed = False

    def region_name(self) -> bytes:
        head = b"%s,,%d" % (self.name, self.created)
        return head + b"." + hashlib.md5(head).hexdigest().encode("ascii") + b"."

    def region(self) -> TRegionInfo:
        return TRegionInfo(
            startKey=b"", endKey=b"", id=self.created, name=self.region_name(),
            version=1, serverName=_REGION_SERVER[0], port=_REGION_SERVER[1],
        )

    def sorted_keys(self) -> List[bytes]:
        """Row keys in byte order. The list returned is never changed later."""
        if self._added or self._removed:
            # Timsort merges the sorted old keys with the few new ones in O(n).
            merged = sorted(self._keys + self._added) if self._added else self._keys
            rows = self.rows
            keys: List[bytes] = []
            for key in merged:
                if key in rows and (not keys or keys[-1] != key):
                    keys.append(key)
            self._keys, self._added, self._removed = keys, [], False
        return self._keys

    def new_row(self, key: bytes) -> _Row:
        row: _Row = {}
        self.rows[key] = row
        self._added.append(key)
        return row

    def drop_row(self, key: bytes) -> None:
        del self.rows[key]
        self._removed = True

    def ttl_floor(self, family: bytes, now: int) -> int:
        """Oldest timestamp still alive in ``family``."""
        ttl = self.families[family].timeToLive
        return now - ttl * 1000 if ttl < _FOREVER else -1

    def check_families(self, families: Any) -> None:
        for family in families:
            if family not in self.families:
                raise _io_error(
                    "org.apache.hadoop.hbase.regionserver.NoSuchColumnFamilyException",
                    "Column family %s does not exist in region %s in table '%s'"
                    % (_binary(family), _binary(self.region_name()), _binary(self.name)),
                )


class _Scanner:
    """An open scanner: a snapshot of row keys and a position in it."""

    def __init__(self, table: _Table, keys: List[bytes], index: int, stop: bytes,
                 reverse: bool, spec: _Spec, max_ts: int, flt: Optional[Filter],
                 sort_columns: bool, batch: Optional[int]) -> None:
        self.table = table
        self.keys = keys
        self.index = index
        self.stop = stop
        self.reverse = reverse
        self.spec = spec
        self.max_ts = max_ts
        self.filter = flt
        self.sort_columns = sort_columns
        self.batch = batch
        self.pending: List[TRowResult] = []
        self.done = False


class HBaseHandler:
    """The ``Hbase`` Thrift1 service, served from memory.

    One instance is one HBase cluster: tables, rows and open scanners are
    shared by every connection that reaches it. Method names and arguments
    follow ``Hbase.thrift``; binary arguments arrive as ``bytes``.
    """

    def __init__(self) -> None:
        self._tables: Dict[bytes, _Table] = {}
        self._scanners: Dict[int, _Scanner] = {}
        self._next_scanner = 0
        self._last_ts = 0

    # Clock. HBase stamps a write with the current millisecond, so two writes
    # of a cell within one millisecond keep one version, and a put right after
    # a delete hides behind the delete's marker. Across a network that is
    # rare; against this server it would be the rule. So a server-stamped
    # write moves past any server stamp on the same cell that is not in the
    # past yet: consecutive writes always make distinct versions and a put
    # after a delete is always seen. Explicit timestamps are taken as given.

    def _put_ts(self, table: _Table, key: bytes, columns: Sequence[Tuple[bytes, bytes]]) -> int:
        now = int(time.time() * 1000)
        ts = now
        if self._last_ts >= now:
            row = table.rows.get(key) or {}
            marks = table.markers.get(key) or {}
            for family, qualifier in columns:
                stamps = [v[0] for v in row.get(family, {}).get(qualifier, ())]
                stamps += [marks.get((family, None), -1), marks.get((family, qualifier), -1)]
                for stamp in stamps:
                    if now <= stamp <= self._last_ts and stamp >= ts:
                        ts = stamp + 1
        if ts > self._last_ts:
            self._last_ts = ts
        return ts

    def _delete_ts(self) -> int:
        # Covers every server stamp handed out so far.
        ts = max(int(time.time() * 1000), self._last_ts)
        self._last_ts = ts
        return ts

    # Table administration.

    def getTableNames(self) -> List[bytes]:
        return sorted(self._tables)

    def createTable(self, tableName: Any, columnFamilies: Sequence[ColumnDescriptor]) -> None:
        """Create an enabled table; the descriptors are checked as HBase checks them."""
        name, namespace = _table_name(tableName)
        if namespace is not None:
            raise _io_error("org.apache.hadoop.hbase.NamespaceNotFoundException", namespace)
        if name in self._tables:
            raise AlreadyExists(message="table name already in use")
        families: Dict[bytes, ColumnDescriptor] = {}
        for desc in columnFamilies or ():
            family, stored = _family_descriptor(desc)
            if family in families:
                raise _illegal_argument(
                    "Family '%s' already exists so cannot be added" % _binary(family)
                )
            families[family] = stored
        if not families:
            raise _io_error(
                "org.apache.hadoop.hbase.DoNotRetryIOException",
                "Table should have at least one column family.",
            )
        created = max(int(time.time() * 1000), max(
            (t.created + 1 for t in self._tables.values()), default=0))
        self._tables[name] = _Table(name, families, created)

    def deleteTable(self, tableName: Any) -> None:
        """Delete a table, which must be disabled first."""
        name, _ = _table_name(tableName)
        table = self._tables.get(name)
        if table is None:
            raise HBaseIOError(message="java.io.IOException: table does not exist")
        if table.enabled:
            raise _io_error("org.apache.hadoop.hbase.TableNotDisabledException", _binary(name))
        del self._tables[name]

    def enableTable(self, tableName: Any) -> None:
        table = self._admin_table(tableName)
        if table.enabled:
            raise _io_error("org.apache.hadoop.hbase.TableNotDisabledException", _binary(table.name))
        table.enabled = True

    def disableTable(self, tableName: Any) -> None:
        table = self._admin_table(tableName)
        if not table.enabled:
            raise _io_error("org.apache.hadoop.hbase.TableNotEnabledException", _binary(table.name))
        table.enabled = False

    def isTableEnabled(self, tableName: Any) -> bool:
        return self._admin_table(tableName).enabled

    def compact(self, tableNameOrRegionName: Any) -> None:
        self._compaction_target(tableNameOrRegionName)

    def majorCompact(self, tableNameOrRegionName: Any) -> None:
        # A major compaction drops delete markers: writes older than a delete
        # become visible again from then on.
        self._compaction_target(tableNameOrRegionName).markers.clear()

    def getColumnDescriptors(self, tableName: Any) -> Dict[bytes, ColumnDescriptor]:
        table = self._admin_table(tableName)
        return {d.name: d for _, d in sorted(table.families.items())}

    def getTableRegions(self, tableName: Any) -> List[TRegionInfo]:
        """The one region covering the table; an empty list for an unknown table."""
        name, _ = _table_name(tableName)
        table = self._tables.get(name)
        return [table.region()] if table is not None else []

    def getRegionInfo(self, row: bytes) -> TRegionInfo:
        # A reverse scan of hbase:meta from ``row``: the region whose name
        # sorts last at or before it.
        regions = sorted((t.region_name(), t) for t in self._tables.values())
        i = bisect_right([r[0] for r in regions], row or b"") - 1
        if i < 0:
            raise HBaseIOError(
                message="java.io.IOException: Cannot find row in hbase:meta, row=%s"
                % _binary(row or b"")
            )
        return regions[i][1].region()

    # Reads.

    def get(self, tableName: Any, row: bytes, column: bytes, attributes: Any) -> List[TCell]:
        return self.getVerTs(tableName, row, column, LATEST_TIMESTAMP, 1, attributes)

    def getVer(self, tableName: Any, row: bytes, column: bytes, numVersions: int,
               attributes: Any) -> List[TCell]:
        return self.getVerTs(tableName, row, column, LATEST_TIMESTAMP, numVersions, attributes)

    def getVerTs(self, tableName: Any, row: bytes, column: bytes, timestamp: int,
                 numVersions: int, attributes: Any) -> List[TCell]:
        table = self._data_table(tableName)
        row = _check_row(row)
        spec = self._spec(table, [column])
        if numVersions is None or numVersions < 1:
            raise HBaseIOError(message="java.io.IOException: versions must be positive")
        cells = self._cells(table, row, spec, timestamp, numVersions)
        return [TCell(value=c[3], timestamp=c[2]) for c in cells]

    def getRow(self, tableName: Any, row: bytes, attributes: Any) -> List[TRowResult]:
        return self.getRowWithColumnsTs(tableName, row, None, LATEST_TIMESTAMP, attributes)

    def getRowTs(self, tableName: Any, row: bytes, timestamp: int,
                 attributes: Any) -> List[TRowResult]:
        return self.getRowWithColumnsTs(tableName, row, None, timestamp, attributes)

    def getRowWithColumns(self, tableName: Any, row: bytes, columns: Optional[List[bytes]],
                          attributes: Any) -> List[TRowResult]:
        return self.getRowWithColumnsTs(tableName, row, columns, LATEST_TIMESTAMP, attributes)

    def getRowWithColumnsTs(self, tableName: Any, row: bytes, columns: Optional[List[bytes]],
                            timestamp: int, attributes: Any) -> List[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, [row], columns, timestamp, attributes)

    def getRows(self, tableName: Any, rows: List[bytes], attributes: Any) -> List[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, rows, None, LATEST_TIMESTAMP, attributes)

    def getRowsTs(self, tableName: Any, rows: List[bytes], timestamp: int,
                  attributes: Any) -> List[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, rows, None, timestamp, attributes)

    def getRowsWithColumns(self, tableName: Any, rows: List[bytes],
                           columns: Optional[List[bytes]], attributes: Any) -> List[TRowResult]:
        return self.getRowsWithColumnsTs(tableName, rows, columns, LATEST_TIMESTAMP, attributes)

    def getRowsWithColumnsTs(self, tableName: Any, rows: List[bytes],
                             columns: Optional[List[bytes]], timestamp: int,
                             attributes: Any) -> List[TRowResult]:
        table = self._data_table(tableName)
        spec = self._spec(table, columns or ())
        results = []
        for row in rows or ():
            cells = self._cells(table, _check_row(row), spec, timestamp, 1)
            if cells:
                results.append(_row_result(row, cells, False))
        return results

    # Writes.

    def mutateRow(self, tableName: Any, row: bytes, mutations: List[Any],
                  attributes: Any) -> None:
        self._mutate_row(tableName, row, mutations, None)

    def mutateRowTs(self, tableName: Any, row: bytes, mutations: List[Any], timestamp: int,
                    attributes: Any) -> None:
        self._mutate_row(tableName, row, mutations, timestamp)

    def mutateRows(self, tableName: Any, rowBatches: List[Any], attributes: Any) -> None:
        self._mutate_rows(tableName, rowBatches, None)

    def mutateRowsTs(self, tableName: Any, rowBatches: List[Any], timestamp: int,
                     attributes: Any) -> None:
        self._mutate_rows(tableName, rowBatches, timestamp)

    def deleteAll(self, tableName: Any, row: bytes, column: bytes, attributes: Any) -> None:
        self.deleteAllTs(tableName, row, column, LATEST_TIMESTAMP, attributes)

    def deleteAllTs(self, tableName: Any, row: bytes, column: bytes, timestamp: int,
                    attributes: Any) -> None:
        table = self._data_table(tableName)
        row = _check_row(row)
        family, qualifier = _parse_column(column)
        table.check_families([family])
        self._delete(table, row, family, qualifier, self._stamp_delete(timestamp))

    def deleteAllRow(self, tableName: Any, row: bytes, attributes: Any) -> None:
        self.deleteAllRowTs(tableName, row, LATEST_TIMESTAMP, attributes)

    def deleteAllRowTs(self, tableName: Any, row: bytes, timestamp: int,
                       attributes: Any) -> None:
        table = self._data_table(tableName)
        row = _check_row(row)
        ts = self._stamp_delete(timestamp)
        for family in list(table.families):
            self._delete(table, row, family, None, ts)

    def atomicIncrement(self, tableName: Any, row: bytes, column: bytes, value: int) -> int:
        """Add ``value`` to an 8-byte big-endian counter (a missing cell counts as 0)."""
        table = self._data_table(tableName)
        family, qualifier = _parse_column(column)
        return self._increment(table, _check_row(row), family, qualifier or b"", value)

    def increment(self, increment: Any) -> None:
        if not increment.table or not increment.row:
            raise _internal_error("Must supply a table and a row key; can't increment")
        table = self._data_table(increment.table)
        family, qualifier = _parse_column(increment.column)
        if qualifier is None:
            raise _internal_error("java.lang.NullPointerException: increment")
        self._increment(table, _check_row(increment.row), family, qualifier,
                        increment.ammount or 0)

    def incrementRows(self, increments: List[Any]) -> None:
        for inc in increments or ():
            self.increment(inc)

    def append(self, append: Any) -> List[TCell]:
        if not append.table or not append.row:
            raise _internal_error("Must supply a table and a row key; can't append")
        columns, values = append.columns or [], append.values or []
        if len(columns) != len(values):
            raise _internal_error(
                "java.lang.IllegalArgumentException: "
                "Sizes of columns and values in tappend object are not matching"
            )
        table = self._data_table(append.table)
        row = _check_row(append.row)
        parsed: List[Tuple[bytes, bytes]] = []
        for column in columns:
            family, qualifier = _parse_column(column)
            if qualifier is None:
                raise _internal_error("java.lang.ArrayIndexOutOfBoundsException: 1")
            parsed.append((family, qualifier))
        table.check_families(f for f, _ in parsed)
        now = self._put_ts(table, row, parsed)
        written: Dict[Tuple[bytes, bytes], Tuple[int, bytes]] = {}
        for (family, qualifier), value in zip(parsed, values):
            latest = written.get((family, qualifier)) or self._latest(table, row, family, qualifier)
            old_ts, old = latest if latest else (0, b"")
            ts = max(now, old_ts + 1)
            self._put(table, row, family, qualifier, ts, old + (value or b""))
            written[(family, qualifier)] = (ts, old + (value or b""))
        return [TCell(value=v, timestamp=ts) for _, (ts, v) in sorted(written.items())]

    def checkAndPut(self, tableName: Any, row: bytes, column: bytes, value: Optional[bytes],
                    mput: Any, attributes: Any) -> bool:
        put_family, put_qualifier = _parse_column(mput.column)
        if put_qualifier is None:
            raise _internal_error("java.lang.ArrayIndexOutOfBoundsException: 1")
        row = _check_row(row, IllegalArgument)
        table = self._data_table(tableName)
        family, qualifier = _parse_column(column)
        if qualifier is None:
            raise _internal_error("java.lang.ArrayIndexOutOfBoundsException: 1")
        table.check_families([family, put_family])
        latest = self._latest(table, row, family, qualifier)
        if value is None:
            passed = latest is None
        else:
            passed = latest is not None and latest[1] == value
        if not passed:
            return False
        ts = self._put_ts(table, row, [(put_family, put_qualifier)])
        self._put(table, row, put_family, put_qualifier, ts, mput.value or b"")
        return True

    def getRowOrBefore(self, tableName: Any, row: bytes, family: bytes) -> List[TCell]:
        # Gone from HBase 2's gateway: its processor answers an unknown method.
        raise TApplicationException(
            TApplicationException.UNKNOWN_METHOD, "Invalid method name: 'getRowOrBefore'"
        )

    # Scanners.

    def scannerOpenWithScan(self, tableName: Any, tscan: Any, attributes: Any) -> int:
        """Open a scanner; a bad or unsupported filter string is an ``IOError``."""
        table = self._data_table(tableName)
        spec = self._spec(table, tscan.columns or ())
        reverse = bool(tscan.reversed)
        flt = None
        if tscan.filterString is not None:
            try:
                flt = _filters.parse_filter(tscan.filterString, reverse)
            except FilterError as exc:
                raise HBaseIOError(
                    message="java.lang.IllegalArgumentException: %s" % exc
                ) from None
        batch = tscan.batchSize if tscan.batchSize and tscan.batchSize > 0 else None
        if batch and flt is not None and flt.has_filter_row:
            raise _io_error(
                "org.apache.hadoop.hbase.filter.IncompatibleFilterException",
                "Cannot set batch on a scan using a filter that returns true for "
                "filter.hasFilterRow",
            )
        max_ts = LATEST_TIMESTAMP if tscan.timestamp is None else tscan.timestamp
        return self._open(table, tscan.startRow or b"", tscan.stopRow or b"", reverse, spec,
                          max_ts, flt, bool(tscan.sortColumns), batch)

    def scannerOpen(self, tableName: Any, startRow: bytes, columns: Optional[List[bytes]],
                    attributes: Any) -> int:
        return self.scannerOpenWithStopTs(tableName, startRow, b"", columns,
                                          LATEST_TIMESTAMP, attributes)

    def scannerOpenTs(self, tableName: Any, startRow: bytes, columns: Optional[List[bytes]],
                      timestamp: int, attributes: Any) -> int:
        return self.scannerOpenWithStopTs(tableName, startRow, b"", columns, timestamp,
                                          attributes)

    def scannerOpenWithStop(self, tableName: Any, startRow: bytes, stopRow: bytes,
                            columns: Optional[List[bytes]], attributes: Any) -> int:
        return self.scannerOpenWithStopTs(tableName, startRow, stopRow, columns,
                                          LATEST_TIMESTAMP, attributes)

    def scannerOpenWithStopTs(self, tableName: Any, startRow: bytes, stopRow: bytes,
                              columns: Optional[List[bytes]], timestamp: int,
                              attributes: Any) -> int:
        table = self._data_table(tableName)
        spec = self._spec(table, columns or ())
        return self._open(table, startRow or b"", stopRow or b"", False, spec, timestamp,
                          None, False, None)

    def scannerOpenWithPrefix(self, tableName: Any, startAndPrefix: bytes,
                              columns: Optional[List[bytes]], attributes: Any) -> int:
        table = self._data_table(tableName)
        spec = self._spec(table, columns or ())
        prefix = startAndPrefix or b""
        return self._open(table, prefix, b"", False, spec, LATEST_TIMESTAMP,
                          _filters.prefix_while_filter(prefix), False, None)

    def scannerGet(self, id: int) -> List[TRowResult]:
        return self.scannerGetList(id, 1)

    def scannerGetList(self, id: int, nbRows: int) -> List[TRowResult]:
        """Up to ``nbRows`` results; an empty list once the scan is over."""
        scanner = self._scanners.get(id)
        if scanner is None:
            raise IllegalArgument(message="scanner ID is invalid")
        table = scanner.table
        if self._tables.get(table.name) is not table or not table.enabled:
            # Its region went offline; the id stays valid until closed.
            raise _io_error(
                "org.apache.hadoop.hbase.NotServingRegionException",
                "%s is not online" % _binary(table.region_name()),
            )
        results: List[TRowResult] = []
        wanted = nbRows or 0
        while len(results) < wanted:
            if not scanner.pending:
                if scanner.done or not self._advance(scanner):
                    break
            take = wanted - len(results)
            results.extend(scanner.pending[:take])
            del scanner.pending[:take]
        return results

    def scannerClose(self, id: int) -> None:
        if self._scanners.pop(id, None) is None:
            raise IllegalArgument(message="scanner ID is invalid")

    # Internals: looking tables up.

    def _admin_table(self, raw: Any) -> _Table:
        name, _ = _table_name(raw)
        table = self._tables.get(name)
        if table is None:
            raise _table_not_found(name)
        return table

    def _data_table(self, raw: Any) -> _Table:
        table = self._admin_table(raw)
        if not table.enabled:
            raise _io_error(
                "org.apache.hadoop.hbase.TableNotEnabledException",
                "%s is disabled." % _binary(table.name),
            )
        return table

    def _compaction_target(self, raw: Any) -> _Table:
        name = raw.encode("utf-8") if isinstance(raw, str) else raw
        for table in self._tables.values():
            if table.region_name() == name:
                return table
        return self._admin_table(raw)

    @staticmethod
    def _spec(table: _Table, columns: Sequence[bytes]) -> _Spec:
        """Columns asked for, as HBase's ``Get``/``Scan`` family map builds them.

        A qualifier asked for after its whole family narrows the family to
        the qualifiers named (HBase's ``addColumn`` replaces ``addFamily``).
        """
        if not columns:
            return None
        spec: Dict[bytes, Optional[Set[bytes]]] = {}
        for column in columns:
            family, qualifier = _parse_column(column)
            if qualifier is None:
                spec[family] = None
            else:
                quals = spec.get(family)
                if quals is None:
                    quals = spec[family] = set()
                quals.add(qualifier)
        table.check_families(spec)
        return spec

    # Internals: reading cells.

    def _cells(self, table: _Table, key: bytes, spec: _Spec, max_ts: int, versions: int,
               flt: Optional[Filter] = None) -> List[Cell]:
        """The cells of one row, in key order, as a Get or a Scan returns them.

        Time range, TTL and explicit columns decide what a filter sees; the
        filter decides what is counted against ``versions``, as in HBase's
        ``ScanQueryMatcher``.
        """
        row = table.rows.get(key)
        if not row:
            return []
        now = int(time.time() * 1000)
        out: List[Cell] = []
        families = sorted(row) if spec is None else sorted(f for f in spec if f in row)
        for family in families:
            quals = row[family]
            wanted = None if spec is None else spec[family]
            names = sorted(quals) if wanted is None else sorted(q for q in wanted if q in quals)
            floor = table.ttl_floor(family, now)
            for qualifier in names:
                count = 0
                next_family = False
                for ts, value in quals[qualifier]:
                    if ts >= max_ts:
                        continue
                    if ts < floor:
                        break
                    cell = (family, qualifier, ts, value)
                    if flt is None:
                        out.append(cell)
                        count += 1
                        if count >= versions:
                            break
                        continue
                    code = flt.filter_cell(cell)
                    if _filters.included(code):
                        out.append(flt.transform(cell))
                        count += 1
                    move = _filters.step(code)
                    if move == 2:
                        next_family = True
                        break
                    if move == 1 or count >= versions:
                        break
                if next_family:
                    break
        return out

    def _latest(self, table: _Table, key: bytes, family: bytes,
                qualifier: bytes) -> Optional[Tuple[int, bytes]]:
        cells = self._cells(table, key, {family: {qualifier}}, LATEST_TIMESTAMP, 1)
        return (cells[0][2], cells[0][3]) if cells else None

    # Internals: writing cells.

    def _stamp_delete(self, timestamp: Optional[int]) -> int:
        if timestamp is None or timestamp == LATEST_TIMESTAMP:
            return self._delete_ts()
        if timestamp < 0:
            raise _internal_error(
                "java.lang.IllegalArgumentException: Timestamp cannot be negative. "
                "ts=%d" % timestamp
            )
        return timestamp

    def _put(self, table: _Table, key: bytes, family: bytes, qualifier: bytes, ts: int,
             value: bytes) -> None:
        marks = table.markers.get(key)
        if marks and (marks.get((family, None), -1) >= ts or marks.get((family, qualifier), -1) >= ts):
            return  # hidden behind a delete marker until a major compaction
        row = table.rows.get(key)
        if row is None:
            row = table.new_row(key)
        versions = row.setdefault(family, {}).setdefault(qualifier, [])
        i = 0
        while i < len(versions) and versions[i][0] > ts:
            i += 1
        if i < len(versions) and versions[i][0] == ts:
            versions[i] = (ts, value)
        else:
            versions.insert(i, (ts, value))
            del versions[table.families[family].maxVersions:]

    def _delete(self, table: _Table, key: bytes, family: bytes, qualifier: Optional[bytes],
                ts: int) -> None:
        """Delete every version at or before ``ts`` and remember the marker."""
        marks = table.markers.setdefault(key, {})
        if marks.get((family, qualifier), -1) < ts:
            marks[(family, qualifier)] = ts
        row = table.rows.get(key)
        if row is None:
            return
        quals = row.get(family)
        if not quals:
            return
        names = list(quals) if qualifier is None else [qualifier] if qualifier in quals else []
        for name in names:
            kept = [v for v in quals[name] if v[0] > ts]
            if kept:
                quals[name] = kept
            else:
                del quals[name]
        if not quals:
            del row[family]
            if not row:
                table.drop_row(key)

    def _mutate_row(self, raw: Any, row: bytes, mutations: List[Any],
                    timestamp: Optional[int]) -> None:
        table = self._data_table(raw)
        row = _check_row(row, IllegalArgument)
        if timestamp is not None and timestamp != LATEST_TIMESTAMP:
            _check_timestamp(timestamp)
        deletes, puts = [], []
        for m in mutations or ():
            family, qualifier = _parse_column(m.column)
            if m.isDelete:
                deletes.append((family, qualifier))
            elif qualifier is not None:
                puts.append((family, qualifier, m.value or b""))
            else:
                log.warning("put of a whole column family %r ignored, as HBase does", m.column)
        # The gateway sends the row's Delete first, then its Put.
        if deletes:
            table.check_families(f for f, _ in deletes)
            ts = self._stamp_delete(timestamp)
            for family, qualifier in deletes:
                self._delete(table, row, family, qualifier, ts)
        if puts:
            table.check_families(f for f, _, _ in puts)
            if timestamp in (None, LATEST_TIMESTAMP):
                ts = self._put_ts(table, row, [(f, q) for f, q, _ in puts])
            else:
                ts = timestamp
            for family, qualifier, value in puts:
                self._put(table, row, family, qualifier, ts, value)

    def _mutate_rows(self, raw: Any, batches: List[Any], timestamp: Optional[int]) -> None:
        given = None if timestamp in (None, LATEST_TIMESTAMP) else timestamp
        puts: List[Tuple[bytes, List[Tuple[bytes, bytes, bytes]]]] = []
        deletes: List[Tuple[bytes, List[Tuple[bytes, Optional[bytes]]]]] = []
        # The gateway builds every Put and Delete before touching the table,
        # and what fails there is not caught: the reply is an internal error.
        for batch in batches or ():
            row = _check_row(batch.row)
            if given is not None and given < 0:
                raise _internal_error(
                    "java.lang.IllegalArgumentException: Timestamp cannot be negative. "
                    "ts=%d" % given
                )
            row_puts, row_deletes = [], []
            for m in batch.mutations or ():
                family, qualifier = _parse_column(m.column)
                if m.isDelete:
                    row_deletes.append((family, qualifier))
                elif qualifier is None:
                    raise _internal_error(
                        "java.lang.IllegalArgumentException: Invalid famAndQf provided."
                    )
                else:
                    row_puts.append((family, qualifier, m.value or b""))
            if row_puts:
                puts.append((row, row_puts))
            if row_deletes:
                deletes.append((row, row_deletes))
        if not puts and not deletes:
            return
        table = self._data_table(raw)
        # All Puts, then all Deletes; a failing row fails alone, and a failure
        # among the Puts means the Deletes are never sent.
        if puts:
            def put_row(row: bytes, items: List[Tuple[bytes, bytes, bytes]]) -> None:
                ts = given if given is not None else self._put_ts(
                    table, row, [(f, q) for f, q, _ in items])
                for family, qualifier, value in items:
                    self._put(table, row, family, qualifier, ts, value)

            self._apply_batch(table, puts, put_row)
        if deletes:
            ts = self._stamp_delete(timestamp)

            def delete_row(row: bytes, items: List[Tuple[bytes, Optional[bytes]]]) -> None:
                for family, qualifier in items:
                    self._delete(table, row, family, qualifier, ts)

            self._apply_batch(table, deletes, delete_row)

    @staticmethod
    def _apply_batch(table: _Table, work: List[Tuple[bytes, List[Any]]], apply: Any) -> None:
        failures = []
        for row, items in work:
            try:
                table.check_families(item[0] for item in items)
            except HBaseIOError as exc:
                failures.append(exc.message)
                continue
            apply(row, items)
        if failures:
            raise _io_error(
                "org.apache.hadoop.hbase.client.RetriesExhaustedWithDetailsException",
                "Failed %d action%s: %s" % (
                    len(failures), "" if len(failures) == 1 else "s", failures[0]),
            )

    def _increment(self, table: _Table, row: bytes, family: bytes, qualifier: bytes,
                   amount: int) -> int:
        table.check_families([family])
        latest = self._latest(table, row, family, qualifier)
        current = _to_long(latest[1]) if latest else 0
        if amount == 0:
            return current  # HBase writes nothing for a zero increment
        value = _wrap_long(current + amount)
        ts = self._put_ts(table, row, [(family, qualifier)])
        if latest and latest[0] >= ts:
            ts = latest[0] + 1
        self._put(table, row, family, qualifier, ts, struct.pack(">q", value))
        return value

    # Internals: scanning.

    def _open(self, table: _Table, start: bytes, stop: bytes, reverse: bool, spec: _Spec,
              max_ts: int, flt: Optional[Filter], sort_columns: bool,
              batch: Optional[int]) -> int:
        keys = table.sorted_keys()
        if reverse:
            index = len(keys) - 1 if not start else bisect_right(keys, start) - 1
        else:
            index = bisect_left(keys, start)
        sid = self._next_scanner
        self._next_scanner = (sid + 1) % 2**31
        self._scanners[sid] = _Scanner(table, keys, index, stop, reverse, spec, max_ts, flt,
                                       sort_columns, batch)
        return sid

    def _advance(self, scanner: _Scanner) -> bool:
        """Fill ``scanner.pending`` with the next row's results; False when done."""
        for key in self._remaining_keys(scanner):
            flt = scanner.filter
            if flt is not None:
                if flt.all_remaining():
                    break
                if flt.filter_row_key(key):
                    flt.reset()
                    continue
            cells = self._cells(scanner.table, key, scanner.spec, scanner.max_ts, 1, flt)
            if flt is not None:
                flt.filter_row_cells(cells)
                if cells and flt.filter_row():
                    cells = []
                flt.reset()
            if not cells:
                continue
            size = scanner.batch or len(cells)
            scanner.pending = [
                _row_result(key, cells[i:i + size], scanner.sort_columns)
                for i in range(0, len(cells), size)
            ]
            return True
        scanner.done = True
        return False

    @staticmethod
    def _remaining_keys(scanner: _Scanner) -> Iterator[bytes]:
        keys, stop = scanner.keys, scanner.stop
        step = -1 if scanner.reverse else 1
        while 0 <= scanner.index < len(keys):
            key = keys[scanner.index]
            if stop and (key <= stop if scanner.reverse else key >= stop):
                return
            scanner.index += step
            yield key


def _family_descriptor(desc: ColumnDescriptor) -> Tuple[bytes, ColumnDescriptor]:
    """Validate a family as ``ThriftUtilities.colDescFromThrift`` does; return
    its name and the descriptor ``getColumnDescriptors`` will report."""
    compression = _COMPRESSIONS.get((desc.compression or "NONE").lower())
    if compression is None:
        raise _illegal_argument("Unsupported compression algorithm name: %s" % desc.compression)
    bloom = desc.bloomFilterType if desc.bloomFilterType is not None else "NONE"
    if bloom not in _BLOOM_TYPES:
        raise _illegal_argument(
            "No enum constant org.apache.hadoop.hbase.regionserver.BloomType.%s" % bloom
        )
    raw = desc.name.encode("utf-8") if isinstance(desc.name, str) else desc.name
    if not raw:
        raise IllegalArgument(message="column name is empty")
    family = raw.partition(b":")[0]
    if not family:
        raise _illegal_argument("Column Family name can not be empty")
    if family[:1] == b".":
        raise _illegal_argument(
            "Column Family names cannot start with a period: %s" % _binary(family)
        )
    if any(b < 32 or b == 127 or b in b"\\/" for b in family) or family == b"recovered.edits":
        raise _illegal_argument("Column Family %s contains an illegal character" % _binary(family))
    max_versions = desc.maxVersions if desc.maxVersions is not None else 3
    if max_versions <= 0:
        raise _illegal_argument("Maximum versions must be positive")
    ttl = desc.timeToLive if desc.timeToLive is not None else -1
    stored = ColumnDescriptor(
        name=family + b":",
        maxVersions=max_versions,
        compression=compression,
        inMemory=bool(desc.inMemory),
        bloomFilterType=bloom,
        bloomFilterVectorSize=0,
        bloomFilterNbHashes=0,
        blockCacheEnabled=bool(desc.blockCacheEnabled),
        timeToLive=ttl if 0 < ttl <= _FOREVER else _FOREVER,
    )
    return family, stored


def _row_result(key: bytes, cells: List[Cell], sort_columns: bool) -> TRowResult:
    if sort_columns:
        return TRowResult(row=key, sortedColumns=[
            TColumn(columnName=c[0] + b":" + c[1], cell=TCell(value=c[3], timestamp=c[2]))
            for c in cells
        ])
    return TRowResult(row=key, columns={
        c[0] + b":" + c[1]: TCell(value=c[3], timestamp=c[2]) for c in cells
    })
