"""In-memory implementation of HBase's Thrift1 ``Hbase`` service.

:class:`HBaseHandler` answers every call of happybase's ``Hbase.thrift`` the
way HBase's own Thrift1 gateway does. It holds all state in plain Python
objects and never yields, so greenlets serving many clients at once need no
locks.
"""
from __future__ import annotations

import time
from bisect import bisect_left, insort
from typing import Any, Dict, List, Optional

import happybase  # noqa: F401  (loads the Hbase_thrift module)
from Hbase_thrift import (  # type: ignore[import-not-found]
    AlreadyExists,
    ColumnDescriptor,
    IllegalArgument,
    IOError as HBaseIOError,
    TCell,
    TRowResult,
)

_Versions = List[List[Any]]  # [[timestamp, value], ...], newest first


def _now_ms() -> int:
    return int(time.time() * 1000)


def _name(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


class _Table:
    """One table: its families, its state and its rows."""

    def __init__(self, name: bytes, families: Dict[bytes, ColumnDescriptor]):
        self.name = name
        self.families = families
        self.enabled = True
        self.rows: Dict[bytes, Dict[bytes, _Versions]] = {}
        self.keys: List[bytes] = []


class HBaseHandler:
    """The ``Hbase`` service, served from memory."""

    def __init__(self) -> None:
        self._tables: Dict[bytes, _Table] = {}

    # Tables

    def getTableNames(self) -> List[bytes]:
        return sorted(self._tables)

    def createTable(self, tableName: Any, columnFamilies: List[ColumnDescriptor]) -> None:
        name = _name(tableName)
        if name in self._tables:
            raise AlreadyExists(message="table name already in use")
        families = {}
        for desc in columnFamilies or ():
            fam = _name(desc.name).split(b":", 1)[0]
            families[fam] = desc
        self._tables[name] = _Table(name, families)

    def deleteTable(self, tableName: Any) -> None:
        table = self._table(tableName)
        if table.enabled:
            raise HBaseIOError(message=table.name.decode("utf-8", "replace") + " is enabled")
        del self._tables[table.name]

    def enableTable(self, tableName: Any) -> None:
        self._table(tableName).enabled = True

    def disableTable(self, tableName: Any) -> None:
        self._table(tableName).enabled = False

    def isTableEnabled(self, tableName: Any) -> bool:
        return self._table(tableName).enabled

    # Data

    def mutateRow(self, tableName, row, mutations, attributes):
        self.mutateRowTs(tableName, row, mutations, None, attributes)

    def mutateRowTs(self, tableName, row, mutations, timestamp, attributes):
        table = self._table(tableName)
        ts = _now_ms() if timestamp is None else timestamp
        cols = table.rows.get(row)
        for m in mutations:
            if m.isDelete:
                if cols is not None:
                    cols.pop(m.column, None)
            else:
                if cols is None:
                    cols = table.rows[row] = {}
                    insort(table.keys, row)
                cols.setdefault(m.column, []).insert(0, [ts, m.value])
        if cols is not None and not cols:
            del table.rows[row]
            table.keys.pop(bisect_left(table.keys, row))

    def mutateRows(self, tableName, rowBatches, attributes):
        for b in rowBatches:
            self.mutateRowTs(tableName, b.row, b.mutations, None, attributes)

    def getRow(self, tableName, row, attributes):
        return self.getRowWithColumns(tableName, row, None, attributes)

    def getRowWithColumns(self, tableName, row, columns, attributes):
        table = self._table(tableName)
        cols = table.rows.get(row)
        if not cols:
            return []
        cells = {c: TCell(value=v[0][1], timestamp=v[0][0]) for c, v in cols.items()
                 if not columns or c in columns or c.split(b":")[0] in columns}
        return [TRowResult(row=row, columns=cells)] if cells else []

    def _table(self, tableName: Any) -> _Table:
        try:
            return self._tables[_name(tableName)]
        except KeyError:
            raise HBaseIOError(message="table does not exist") from None
