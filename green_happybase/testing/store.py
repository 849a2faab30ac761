"""The embedded server's storage model: one HBase cluster in memory.

:class:`Store` holds tables (:class:`Table`: column families, versioned
:class:`Cell`\\ s, delete markers, the one region covering the table) and open
scanners (:class:`Scanner`), and does what HBase's region servers do with
them: time ranges (a read's ``timestamp`` is an exclusive upper bound, a
delete's an inclusive one), delete markers that hide later writes with older
timestamps until a major compaction, version pruning, TTLs, counters as
8-byte big-endian integers, scanner leases.

It takes arguments the Thrift surface (:mod:`.surface`) has already checked
and raises HBase's own errors (:mod:`.errors`) for what a region server
refuses: unknown families, values that are not counters, offline regions.

Nothing here yields except where a :class:`Budget`'s ``pause`` is called:
between rows of a long batch or scan, and inside ``regexstring:`` matching
(on a snapshot of the row's cells). So greenlets share a store without locks.

.. versionadded:: 0.2
"""
from __future__ import annotations

import hashlib
import struct
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from . import errors
from . import filters as _filters
from .regex import Budget

__all__ = ["Cell", "Family", "LATEST_TIMESTAMP", "Scanner", "Store", "Table"]

#: HBase's ``HConstants.LATEST_TIMESTAMP``: "now", for writes; "no bound", for reads.
LATEST_TIMESTAMP = 2**63 - 1
#: ``HConstants.FOREVER``, a TTL in seconds.
FOREVER = 2**31 - 1
_MAX_LONG = 2**63
_REGION_SERVER = (b"localhost", 16020)
#: Rows handled between two pauses in a long batch or scan.
_ROWS_PER_PAUSE = 1024

Spec = dict[bytes, "set[bytes] | None"] | None  # family -> qualifiers (None: all)


class Cell(NamedTuple):
    """One version of one column of a row."""

    family: bytes
    qualifier: bytes
    timestamp: int
    value: bytes


class Family(NamedTuple):
    """A column family's settings, as ``getColumnDescriptors`` reports them."""

    name: bytes
    max_versions: int
    compression: str
    in_memory: bool
    bloom_filter_type: str
    block_cache_enabled: bool
    time_to_live: int


_Versions = list[tuple[int, bytes]]  # (timestamp, value), newest first
_Row = dict[bytes, dict[bytes, _Versions]]  # family -> qualifier -> versions


def wrap_long(value: int) -> int:
    """Java ``long`` overflow: wrap into the signed 64-bit range."""
    return (value + _MAX_LONG) % (2 * _MAX_LONG) - _MAX_LONG


def to_long(value: bytes) -> int:
    if len(value) != 8:
        raise errors.io_error("org.apache.hadoop.hbase.DoNotRetryIOException",
                              "Field is not a long, it's %d bytes wide" % len(value))
    result: int = struct.unpack(">q", value)[0]
    return result


class Table:
    """One table: its families, its state, its rows and its delete markers,
    all in one region."""

    def __init__(self, name: bytes, families: dict[bytes, Family], created: int) -> None:
        self.name = name
        self.families = families
        self.enabled = True
        self.created = created
        self.rows: dict[bytes, _Row] = {}
        # row -> {(family, qualifier or None): newest deleted timestamp}
        self.markers: dict[bytes, dict[tuple[bytes, bytes | None], int]] = {}
        self._keys: list[bytes] = []
        self._added: list[bytes] = []
        self._removed = False

    @property
    def region_name(self) -> bytes:
        head = b"%s,,%d" % (self.name, self.created)
        return head + b"." + hashlib.md5(head).hexdigest().encode("ascii") + b"."

    @property
    def region_server(self) -> tuple[bytes, int]:
        return _REGION_SERVER

    def sorted_keys(self) -> list[bytes]:
        """Row keys in byte order. The list returned is never changed later."""
        if self._added or self._removed:
            # Timsort merges the sorted old keys with the few new ones in O(n).
            merged = sorted(self._keys + self._added) if self._added else self._keys
            keys: list[bytes] = []
            for key in merged:
                if key in self.rows and (not keys or keys[-1] != key):
                    keys.append(key)
            self._keys, self._added, self._removed = keys, [], False
        return self._keys

    def _new_row(self, key: bytes) -> _Row:
        row: _Row = {}
        self.rows[key] = row
        self._added.append(key)
        return row

    def _drop_row(self, key: bytes) -> None:
        del self.rows[key]
        self._removed = True

    def ttl_floor(self, family: bytes, now: int) -> int:
        """Oldest timestamp still alive in ``family``."""
        ttl = self.families[family].time_to_live
        return now - ttl * 1000 if ttl < FOREVER else -1

    def check_families(self, families: Iterable[bytes]) -> None:
        for family in families:
            if family not in self.families:
                raise errors.no_such_family(family, self.region_name, self.name)


class Scanner:
    """An open scanner: a snapshot of row keys, a position in it, and a lease."""

    def __init__(self, table: Table, start: bytes, stop: bytes, reverse: bool, spec: Spec,
                 max_ts: int, flt: _filters.Filter | None, budget: Budget,
                 sort_columns: bool, batch: int | None) -> None:
        self.table = table
        self.stop = stop
        self.reverse = reverse
        self.spec = spec
        self.max_ts = max_ts
        self.filter = flt
        self.budget = budget
        self.sort_columns = sort_columns
        self.batch = batch
        self.pending: list[tuple[bytes, list[Cell]]] = []
        self.done = False
        self.busy = False
        self.used = time.monotonic()
        self.keys: list[bytes] = []
        self.index = 0
        self.seek(start, inclusive=True)

    def seek(self, start: bytes, inclusive: bool) -> None:
        """(Re)open at ``start`` over the table's keys as they are now."""
        keys = self.keys = self.table.sorted_keys()
        if self.reverse:
            if not start:
                self.index = len(keys) - 1
            else:
                self.index = (bisect_right(keys, start) if inclusive
                              else bisect_left(keys, start)) - 1
        else:
            self.index = bisect_left(keys, start) if inclusive else bisect_right(keys, start)

    def last_row(self) -> bytes | None:
        """The row the scan passed last, if any."""
        index = self.index + (1 if self.reverse else -1)
        return self.keys[index] if 0 <= index < len(self.keys) else None


class Store:
    """All tables and scanners of one embedded HBase cluster.

    :param scanner_timeout: seconds a scanner may go unused before its region
        lease expires (``hbase.client.scanner.timeout.period``); ``None``:
        never
    :param pause: called between rows of long batches and scans and during
        long regex matches, to let other greenlets run
    """

    def __init__(self, scanner_timeout: float | None = 60.0,
                 pause: Callable[[], Any] | None = None) -> None:
        self.tables: dict[bytes, Table] = {}
        self.scanners: dict[int, Scanner] = {}
        self.scanner_timeout = scanner_timeout
        self.pause = pause
        self._next_scanner = 0
        self._last_ts = 0

    # Clock. HBase stamps a write with the current millisecond, so two writes
    # of a cell within one millisecond keep one version, and a put right after
    # a delete hides behind the delete's marker. Across a network that is
    # rare; against this server it would be the rule. So a server-stamped
    # write moves past any server stamp on the same cell that is not in the
    # past yet: consecutive writes always make distinct versions and a put
    # after a delete is always seen. Explicit timestamps are taken as given.

    def put_stamp(self, table: Table, key: bytes, columns: Sequence[tuple[bytes, bytes]]) -> int:
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
        self._last_ts = max(self._last_ts, ts)
        return ts

    def delete_stamp(self, timestamp: int | None = None) -> int:
        """``timestamp``, or "now" covering every server stamp handed out so far."""
        if timestamp is not None and timestamp != LATEST_TIMESTAMP:
            return timestamp
        ts = max(int(time.time() * 1000), self._last_ts)
        self._last_ts = ts
        return ts

    # Tables.

    def create_table(self, name: bytes, families: dict[bytes, Family]) -> Table:
        created = max(int(time.time() * 1000), max(
            (t.created + 1 for t in self.tables.values()), default=0))
        table = self.tables[name] = Table(name, families, created)
        return table

    def table(self, name: bytes) -> Table:
        table = self.tables.get(name)
        if table is None:
            raise errors.table_not_found(name)
        return table

    def enabled_table(self, name: bytes) -> Table:
        table = self.table(name)
        if not table.enabled:
            raise errors.table_not_enabled(table.name, disabled_text=True)
        return table

    def region_at(self, row: bytes) -> Table:
        """The table whose region ``hbase:meta`` lists last at or before
        ``row`` (a reverse scan from ``row``; from the end for ``b""``)."""
        regions = sorted((t.region_name, t) for t in self.tables.values())
        index = len(regions) - 1 if not row else bisect_right([r[0] for r in regions], row) - 1
        if index < 0:
            raise errors.io_error("java.io.IOException",
                                  "Cannot find row in hbase:meta, row=%s" % errors.binary(row))
        return regions[index][1]

    # Reading.

    def cells(self, table: Table, key: bytes, spec: Spec, max_ts: int, versions: int,
              flt: _filters.Filter | None = None) -> list[Cell]:
        """The cells of one row, in key order, as a Get or a Scan returns them.

        Time range, TTL and explicit columns decide what a filter sees; the
        filter decides what is counted against ``versions``, as in HBase's
        ``ScanQueryMatcher``.
        """
        row = table.rows.get(key)
        if not row:
            return []
        now = int(time.time() * 1000)
        out: list[Cell] = []
        for family in (sorted(row) if spec is None else sorted(f for f in spec if f in row)):
            quals = row[family]
            wanted = None if spec is None else spec[family]
            names = sorted(quals) if wanted is None else sorted(q for q in wanted if q in quals)
            floor = table.ttl_floor(family, now)
            for qualifier in names:
                kept = 0
                for ts, value in quals[qualifier]:
                    if ts >= max_ts:
                        continue
                    if ts < floor or (flt is None and kept >= versions):
                        break
                    out.append(Cell(family, qualifier, ts, value))
                    kept += 1
        return out if flt is None else self._filtered(out, flt, versions)

    @staticmethod
    def _filtered(candidates: list[Cell], flt: _filters.Filter, versions: int) -> list[Cell]:
        """Run a filter over a snapshot of a row's candidate cells.

        A snapshot, because a ``regexstring:`` comparator may pause: the row
        may change meanwhile, this row's answer does not.
        """
        out: list[Cell] = []
        index, count = 0, len(candidates)
        kept = 0
        while index < count:
            cell = candidates[index]
            if index and candidates[index - 1][:2] != cell[:2]:
                kept = 0
            code = flt.filter_cell(cell)
            if _filters.included(code):
                out.append(flt.transform(cell))
                kept += 1
            move = _filters.step(code)
            if move == 0 and kept < versions:
                index += 1
                continue
            # Past this column (or, for move 2, this family).
            width = 2 if move < 2 else 1
            index += 1
            while index < count and candidates[index][:width] == cell[:width]:
                index += 1
        return out

    def latest(self, table: Table, key: bytes, family: bytes, qualifier: bytes) -> Cell | None:
        cells = self.cells(table, key, {family: {qualifier}}, LATEST_TIMESTAMP, 1)
        return cells[0] if cells else None

    # Writing.

    def put(self, table: Table, key: bytes, family: bytes, qualifier: bytes, ts: int,
            value: bytes) -> None:
        marks = table.markers.get(key)
        if marks and (marks.get((family, None), -1) >= ts
                      or marks.get((family, qualifier), -1) >= ts):
            return  # hidden behind a delete marker until a major compaction
        row = table.rows.get(key)
        if row is None:
            row = table._new_row(key)
        versions = row.setdefault(family, {}).setdefault(qualifier, [])
        i = 0
        while i < len(versions) and versions[i][0] > ts:
            i += 1
        if i < len(versions) and versions[i][0] == ts:
            versions[i] = (ts, value)
        else:
            versions.insert(i, (ts, value))
            del versions[table.families[family].max_versions:]

    def put_row(self, table: Table, key: bytes, items: Sequence[tuple[bytes, bytes, bytes]],
                timestamp: int | None) -> None:
        """Write ``(family, qualifier, value)`` items as one Put."""
        table.check_families(f for f, _, _ in items)
        ts = timestamp if timestamp is not None else self.put_stamp(
            table, key, [(f, q) for f, q, _ in items])
        for family, qualifier, value in items:
            self.put(table, key, family, qualifier, ts, value)

    def delete(self, table: Table, key: bytes, family: bytes, qualifier: bytes | None,
               ts: int) -> None:
        """Delete every version at or before ``ts`` and remember the marker."""
        marks = table.markers.setdefault(key, {})
        if marks.get((family, qualifier), -1) < ts:
            marks[(family, qualifier)] = ts
        row = table.rows.get(key)
        quals = row.get(family) if row else None
        if not quals or row is None:
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
                table._drop_row(key)

    def delete_row(self, table: Table, key: bytes, items: Sequence[tuple[bytes, bytes | None]],
                   ts: int) -> None:
        """Delete ``(family, qualifier or None)`` items as one Delete."""
        table.check_families(f for f, _ in items)
        for family, qualifier in items:
            self.delete(table, key, family, qualifier, ts)

    def batch(self, table: Table, work: Sequence[tuple[bytes, Any]],
              apply: Callable[[Table, bytes, Any], None]) -> None:
        """Apply ``apply(table, row, items)`` row by row, as a client's batch:
        a row that fails fails alone, and the failures end in one error."""
        failures = []
        for done, (row, items) in enumerate(work, 1):
            try:
                apply(table, row, items)
            except errors.HBaseIOError as exc:
                failures.append(exc.message)
            if done % _ROWS_PER_PAUSE == 0 and self.pause is not None:
                self.pause()
        if failures:
            raise errors.io_error(
                "org.apache.hadoop.hbase.client.RetriesExhaustedWithDetailsException",
                "Failed %d action%s: %s" % (
                    len(failures), "" if len(failures) == 1 else "s", failures[0]),
            )

    def increment(self, table: Table, key: bytes, family: bytes, qualifier: bytes,
                  amount: int) -> int:
        """Add ``amount`` to a counter (a missing cell counts as 0) and write
        the sum, even for an amount of 0, as HBase 2's region server does."""
        table.check_families([family])
        latest = self.latest(table, key, family, qualifier)
        value = wrap_long((to_long(latest.value) if latest else 0) + amount)
        ts = self.put_stamp(table, key, [(family, qualifier)])
        if latest and latest.timestamp >= ts:
            ts = latest.timestamp + 1
        self.put(table, key, family, qualifier, ts, struct.pack(">q", value))
        return value

    def append(self, table: Table, key: bytes, items: Sequence[tuple[bytes, bytes, bytes]]
               ) -> list[Cell]:
        """Append ``(family, qualifier, value)`` items; return the new cells."""
        table.check_families(f for f, _, _ in items)
        now = self.put_stamp(table, key, [(f, q) for f, q, _ in items])
        written: dict[tuple[bytes, bytes], Cell] = {}
        for family, qualifier, value in items:
            latest = written.get((family, qualifier)) or self.latest(table, key, family,
                                                                      qualifier)
            cell = Cell(family, qualifier, max(now, latest.timestamp + 1) if latest else now,
                        (latest.value if latest else b"") + value)
            self.put(table, key, family, qualifier, cell.timestamp, cell.value)
            written[(family, qualifier)] = cell
        return [cell for _, cell in sorted(written.items())]

    def check_and_put(self, table: Table, key: bytes, family: bytes, qualifier: bytes,
                      expected: bytes | None, put: tuple[bytes, bytes, bytes]) -> bool:
        """Put when the latest ``family:qualifier`` equals ``expected``.

        ``None`` and ``b""`` alike mean "absent or empty", as in
        ``HRegion.checkAndMutate``.
        """
        table.check_families([family, put[0]])
        latest = self.latest(table, key, family, qualifier)
        if not expected:
            passed = latest is None or latest.value == b""
        else:
            passed = latest is not None and latest.value == expected
        if passed:
            self.put_row(table, key, [put], None)
        return passed

    # Scanners.

    def open_scanner(self, table: Table, start: bytes, stop: bytes, reverse: bool, spec: Spec,
                     max_ts: int, flt: _filters.Filter | None, budget: Budget,
                     sort_columns: bool = False, batch: int | None = None) -> int:
        self._forget_expired()
        sid = self._next_scanner
        self._next_scanner = (sid + 1) % 2**31
        self.scanners[sid] = Scanner(table, start, stop, reverse, spec, max_ts, flt, budget,
                                     sort_columns, batch)
        return sid

    def _forget_expired(self) -> None:
        """Drop scanners the gateway's cache has let go (unused for twice the
        scanner timeout), so leaked scanners do not live forever."""
        if self.scanner_timeout is None:
            return
        horizon = time.monotonic() - 2 * self.scanner_timeout
        for sid in [sid for sid, s in self.scanners.items() if s.used < horizon and not s.busy]:
            del self.scanners[sid]

    def scanner(self, sid: int) -> Scanner:
        """The scanner ``sid``, renewing its lease.

        Unused for longer than the scanner timeout, its region lease has
        expired: HBase 2's client scanner reopens it after the last row it
        returned, over the rows as they are now. Unused for twice as long,
        the gateway has forgotten it: ``scanner ID is invalid``.
        """
        scanner = self.scanners.get(sid)
        now = time.monotonic()
        timeout = self.scanner_timeout
        if scanner is not None and timeout is not None and now - scanner.used > 2 * timeout:
            del self.scanners[sid]
            scanner = None
        if scanner is None:
            raise errors.scanner_invalid()
        if timeout is not None and now - scanner.used > timeout and not scanner.done:
            last = scanner.last_row()
            if last is not None:
                scanner.seek(last, inclusive=False)
        scanner.used = now
        return scanner

    def close_scanner(self, sid: int) -> None:
        self.scanner(sid)
        del self.scanners[sid]

    def scan(self, scanner: Scanner, count: int) -> list[tuple[bytes, list[Cell]]]:
        """Up to ``count`` results (a row, or part of one when batching)."""
        table = scanner.table
        if self.tables.get(table.name) is not table or not table.enabled:
            # Its region went offline; the id stays valid until closed.
            raise errors.not_serving_region(table.region_name)
        if scanner.busy:
            raise errors.deviation("scanner is in use by another call",
                                   "would serve both calls on the same scanner")
        scanner.busy = True
        scanner.budget.reset()
        try:
            results: list[tuple[bytes, list[Cell]]] = []
            rows = 0
            while len(results) < count:
                if not scanner.pending and (scanner.done or not self._advance(scanner)):
                    break
                take = count - len(results)
                results.extend(scanner.pending[:take])
                del scanner.pending[:take]
                rows += 1
                if rows % _ROWS_PER_PAUSE == 0 and self.pause is not None:
                    self.pause()
            return results
        finally:
            scanner.busy = False

    def _advance(self, scanner: Scanner) -> bool:
        """Fill ``scanner.pending`` with the next row's results; False when done.

        The position moves past a row only once the row is done, so a call
        cut short (an error, a killed greenlet) leaves the scan where it was.
        """
        keys, step = scanner.keys, -1 if scanner.reverse else 1
        flt = scanner.filter
        while 0 <= scanner.index < len(keys):
            key = keys[scanner.index]
            if scanner.stop and (key <= scanner.stop if scanner.reverse else key >= scanner.stop):
                break
            if flt is not None and flt.all_remaining():
                break
            cells = self._row(scanner, key)
            scanner.index += step
            if not cells:
                continue
            size = scanner.batch or len(cells)
            scanner.pending = [(key, cells[i:i + size]) for i in range(0, len(cells), size)]
            return True
        scanner.done = True
        return False

    def _row(self, scanner: Scanner, key: bytes) -> list[Cell]:
        flt = scanner.filter
        if flt is None:
            return self.cells(scanner.table, key, scanner.spec, scanner.max_ts, 1)
        if flt.filter_row_key(key):
            flt.reset()
            return []
        cells = self.cells(scanner.table, key, scanner.spec, scanner.max_ts, 1, flt)
        flt.filter_row_cells(cells)
        if cells and flt.filter_row():
            cells = []
        flt.reset()
        if scanner.batch and flt.has_filter_row and len(cells) > scanner.batch:
            # HBase opens such a scan; its region scanner refuses to stop mid-row.
            raise errors.io_error(
                "org.apache.hadoop.hbase.filter.IncompatibleFilterException",
                "Filter whose hasFilterRow() returns true is incompatible with scans that "
                "must  stop mid-row because of a limit. ScannerContext:{batch=%d}"
                % scanner.batch,
            )
        return cells
