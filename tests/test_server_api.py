"""The embedded server answers happybase's whole public API as HBase does.

Every test talks to a real server over 127.0.0.1 through a plain
``happybase.Connection`` (the server runs as a child process, so blocking
sockets are fine), over each transport and protocol. Each test gets its own
table prefix, so tests share a server without seeing each other's tables.
"""
from __future__ import annotations

import itertools
import struct
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import happybase
import pytest
from Hbase_thrift import (  # type: ignore[import-not-found]
    AlreadyExists,
    BatchMutation,
    ColumnDescriptor,
    IllegalArgument,
    Mutation,
    TAppend,
    TIncrement,
    TScan,
)
from Hbase_thrift import (
    IOError as HBaseIOError,
)
from thriftpy2.thrift import TApplicationException

from green_happybase.testing import HBaseServer

COMBINATIONS = [
    ("buffered", "binary"),
    ("buffered", "compact"),
    ("framed", "binary"),
    ("framed", "compact"),
]
_prefixes = itertools.count()


@pytest.fixture(scope="module", params=COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def server(request: Any) -> Iterator[HBaseServer]:
    transport, protocol = request.param
    with HBaseServer(transport=transport, protocol=protocol, subprocess=True) as srv:
        yield srv


@pytest.fixture
def conn(server: HBaseServer) -> Iterator[happybase.Connection]:
    connection = happybase.Connection(
        server.host, server.port, transport=server.transport, protocol=server.protocol,
        table_prefix="p%d" % next(_prefixes), timeout=10000,
    )
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def table(conn: happybase.Connection) -> happybase.Table:
    conn.create_table("t", {"cf": {"max_versions": 3}, "cg": {}})
    return conn.table("t")


def raw_name(conn: happybase.Connection, name: str = "t") -> bytes:
    return conn.table(name).name


def keys(rows: Any) -> list[bytes]:
    return [key for key, _ in rows]


def assert_usable(conn: happybase.Connection) -> None:
    """The connection still answers after an error reply."""
    assert isinstance(conn.tables(), list)


def now_ms() -> int:
    return int(time.time() * 1000)


# Tables


def test_create_list_disable_delete(conn: happybase.Connection) -> None:
    """Tables are created enabled, listed in byte order, and deleted once disabled."""
    conn.create_table("b", {"cf": {}})
    conn.create_table("a", {"cf": {}})
    assert conn.tables() == [b"a", b"b"]
    assert conn.is_table_enabled("a") is True
    conn.disable_table("a")
    assert conn.is_table_enabled("a") is False
    conn.enable_table("a")
    assert conn.is_table_enabled("a") is True
    conn.delete_table("a", disable=True)
    conn.disable_table("b")
    conn.delete_table("b")
    assert conn.tables() == []


def test_table_prefixes_keep_namespaces_apart(server: HBaseServer,
                                              conn: happybase.Connection) -> None:
    """Two prefixes on one server see only their own tables; the raw list has both."""
    other = happybase.Connection(server.host, server.port, transport=server.transport,
                                 protocol=server.protocol, table_prefix="other%d" % next(_prefixes))
    try:
        conn.create_table("t", {"cf": {}})
        other.create_table("t", {"cf": {}})
        conn.table("t").put(b"r", {b"cf:c": b"mine"})
        assert other.table("t").row(b"r") == {}
        assert conn.tables() == [b"t"] and other.tables() == [b"t"]
        raw = other.client.getTableNames()
        assert raw_name(conn) in raw and raw_name(other) in raw
    finally:
        other.close()


def test_families_report_descriptors(conn: happybase.Connection) -> None:
    """Descriptors come back as HBase's gateway reports them."""
    conn.create_table("t", {
        "plain": {},
        "tuned": dict(max_versions=7, compression="snappy", in_memory=True,
                      bloom_filter_type="ROWCOL", bloom_filter_vector_size=100,
                      bloom_filter_nb_hashes=3, block_cache_enabled=True, time_to_live=3600),
    })
    families = conn.table("t").families()
    assert set(families) == {b"plain", b"tuned"}
    assert families[b"plain"] == {
        "name": b"plain:", "max_versions": 3, "compression": b"NONE", "in_memory": False,
        "bloom_filter_type": b"NONE", "bloom_filter_vector_size": 0,
        "bloom_filter_nb_hashes": 0, "block_cache_enabled": False,
        "time_to_live": 2147483647,
    }
    tuned = families[b"tuned"]
    assert tuned["max_versions"] == 7
    assert tuned["compression"] == b"SNAPPY"
    assert tuned["in_memory"] is True
    assert tuned["bloom_filter_type"] == b"ROWCOL"
    assert tuned["block_cache_enabled"] is True
    assert tuned["time_to_live"] == 3600
    # HBase's gateway never reports the bloom filter sizes back.
    assert tuned["bloom_filter_vector_size"] == 0


def test_one_region_covers_the_table(conn: happybase.Connection, table: happybase.Table) -> None:
    regions = table.regions()
    assert len(regions) == 1
    region = regions[0]
    assert region["start_key"] == b"" and region["end_key"] == b""
    assert region["name"].startswith(table.name + b",,%d." % region["id"])
    assert region["version"] == 1 and region["port"] > 0
    assert conn.client.getRegionInfo(region["name"]).name == region["name"]
    assert conn.table("missing").regions() == []


def test_compaction_is_accepted(conn: happybase.Connection, table: happybase.Table) -> None:
    table.put(b"r", {b"cf:c": b"v"})
    conn.compact_table("t")
    conn.compact_table("t", major=True)
    assert table.row(b"r") == {b"cf:c": b"v"}


# Data: put, row, rows, cells


def test_put_and_row(table: happybase.Table) -> None:
    table.put(b"r", {b"cf:a": b"1", b"cf:b": b"2", b"cg:c": b"3"})
    assert table.row(b"r") == {b"cf:a": b"1", b"cf:b": b"2", b"cg:c": b"3"}
    assert table.row(b"r", columns=[b"cf:a", b"cg"]) == {b"cf:a": b"1", b"cg:c": b"3"}
    assert table.row(b"r", columns=[b"cf"]) == {b"cf:a": b"1", b"cf:b": b"2"}
    assert table.row(b"missing") == {}


def test_trailing_colon_names_the_empty_qualifier(table: happybase.Table) -> None:
    """As in HBase 0.98+: ``cf:`` is the column with an empty qualifier, ``cf`` the family."""
    table.put(b"r", {b"cf:": b"empty", b"cf:q": b"q"})
    assert table.row(b"r", columns=[b"cf:"]) == {b"cf:": b"empty"}
    assert table.row(b"r", columns=[b"cf"]) == {b"cf:": b"empty", b"cf:q": b"q"}


def test_qualifier_after_family_narrows_it(table: happybase.Table) -> None:
    """HBase's ``addColumn`` after ``addFamily`` keeps only the named qualifier."""
    table.put(b"r", {b"cf:a": b"1", b"cf:b": b"2"})
    assert table.row(b"r", columns=[b"cf", b"cf:a"]) == {b"cf:a": b"1"}
    assert table.row(b"r", columns=[b"cf:a", b"cf"]) == {b"cf:a": b"1", b"cf:b": b"2"}


def test_rows_keep_order_and_skip_missing(table: happybase.Table) -> None:
    table.put(b"b", {b"cf:c": b"B"})
    table.put(b"a", {b"cf:c": b"A", b"cg:d": b"D"})
    assert table.rows([b"b", b"missing", b"a"]) == [
        (b"b", {b"cf:c": b"B"}), (b"a", {b"cf:c": b"A", b"cg:d": b"D"})]
    assert table.rows([b"a"], columns=[b"cg"]) == [(b"a", {b"cg:d": b"D"})]
    assert table.rows([]) == {}


def test_timestamps_on_reads_are_exclusive_bounds(table: happybase.Table) -> None:
    table.put(b"r", {b"cf:c": b"old"}, timestamp=10)
    table.put(b"r", {b"cf:c": b"new"}, timestamp=20)
    assert table.row(b"r", include_timestamp=True) == {b"cf:c": (b"new", 20)}
    assert table.row(b"r", timestamp=20) == {b"cf:c": b"old"}
    assert table.row(b"r", timestamp=21) == {b"cf:c": b"new"}
    assert table.row(b"r", timestamp=10) == {}
    assert table.rows([b"r"], timestamp=20, include_timestamp=True) == [
        (b"r", {b"cf:c": (b"old", 10)})]
    assert table.cells(b"r", b"cf:c", timestamp=20) == [b"old"]


def test_cells_versions_and_pruning(table: happybase.Table) -> None:
    """Newest first, at most ``versions``, and never more than the family keeps."""
    for ts in (1, 2, 3, 4, 5):
        table.put(b"r", {b"cf:c": b"v%d" % ts}, timestamp=ts)
    assert table.cells(b"r", b"cf:c") == [b"v5", b"v4", b"v3"]  # max_versions=3
    assert table.cells(b"r", b"cf:c", versions=2, include_timestamp=True) == [
        (b"v5", 5), (b"v4", 4)]
    table.put(b"r", {b"cf:c": b"v0"}, timestamp=0)  # older than all kept: dropped
    assert table.cells(b"r", b"cf:c") == [b"v5", b"v4", b"v3"]
    table.put(b"r", {b"cf:c": b"again"}, timestamp=4)  # same timestamp: replaced
    assert table.cells(b"r", b"cf:c") == [b"v5", b"again", b"v3"]
    assert table.cells(b"r", b"cf:missing") == []
    with pytest.raises(ValueError):
        table.cells(b"r", b"cf:c", versions=0)


def test_consecutive_puts_make_distinct_versions(table: happybase.Table) -> None:
    """Server-stamped writes of a cell never collide, however fast they come."""
    for i in range(5):
        table.put(b"r", {b"cf:c": b"%d" % i})
    cells = table.cells(b"r", b"cf:c", include_timestamp=True)
    assert [v for v, _ in cells] == [b"4", b"3", b"2"]
    stamps = [ts for _, ts in cells]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == 3
    assert abs(stamps[0] - now_ms()) < 60_000


def test_row_keys_and_columns_sort_as_bytes(table: happybase.Table) -> None:
    for key in (b"\xff", b"a", b"\x00", b"B", b"a\x00"):
        table.put(key, {b"cg:z": b"1", b"cf:\xff": b"2", b"cf:A": b"3"})
    assert keys(table.scan()) == [b"\x00", b"B", b"a", b"a\x00", b"\xff"]
    _, row = next(iter(table.scan(sorted_columns=True)))
    assert list(row) == [b"cf:A", b"cf:\xff", b"cg:z"]


def test_time_to_live_hides_expired_cells(conn: happybase.Connection) -> None:
    conn.create_table("ttl", {"cf": {"time_to_live": 60}})
    t = conn.table("ttl")
    t.put(b"r", {b"cf:old": b"x"}, timestamp=now_ms() - 120_000)
    t.put(b"r", {b"cf:new": b"y"})
    assert t.row(b"r") == {b"cf:new": b"y"}
    assert keys(t.scan()) == [b"r"]


# Data: deletes


def test_delete_columns_families_rows(table: happybase.Table) -> None:
    table.put(b"r", {b"cf:a": b"1", b"cf:b": b"2", b"cg:c": b"3"})
    table.delete(b"r", columns=[b"cf:a"])
    assert table.row(b"r") == {b"cf:b": b"2", b"cg:c": b"3"}
    table.delete(b"r", columns=[b"cf"])
    assert table.row(b"r") == {b"cg:c": b"3"}
    table.delete(b"r")
    assert table.row(b"r") == {}
    assert keys(table.scan()) == []


def test_delete_with_timestamp_removes_versions_up_to_it(table: happybase.Table) -> None:
    for ts in (10, 20, 30):
        table.put(b"r", {b"cf:c": b"v%d" % ts, b"cg:d": b"d%d" % ts}, timestamp=ts)
    table.delete(b"r", columns=[b"cf:c"], timestamp=20)
    assert table.cells(b"r", b"cf:c") == [b"v30"]
    table.delete(b"r", timestamp=30)
    assert table.row(b"r") == {}


def test_delete_marker_hides_older_puts_until_major_compaction(
        conn: happybase.Connection, table: happybase.Table) -> None:
    """A put older than a delete stays invisible, as in HBase, until a major compaction."""
    table.delete(b"r", columns=[b"cf:c"], timestamp=100)
    table.put(b"r", {b"cf:c": b"hidden"}, timestamp=50)
    assert table.row(b"r") == {}
    table.put(b"r", {b"cf:c": b"newer"}, timestamp=150)
    assert table.row(b"r") == {b"cf:c": b"newer"}
    conn.compact_table("t", major=True)
    table.put(b"r", {b"cf:c": b"now visible"}, timestamp=60)
    assert table.cells(b"r", b"cf:c") == [b"newer", b"now visible"]


def test_put_right_after_delete_is_seen(table: happybase.Table) -> None:
    for i in range(20):
        table.delete(b"r")
        table.put(b"r", {b"cf:c": b"%d" % i})
        assert table.row(b"r") == {b"cf:c": b"%d" % i}


def test_thrift_delete_calls(conn: happybase.Connection, table: happybase.Table) -> None:
    name = table.name
    table.put(b"r", {b"cf:a": b"1", b"cg:b": b"2"}, timestamp=5)
    conn.client.deleteAllTs(name, b"r", b"cf:a", 4, {})
    assert table.row(b"r") == {b"cf:a": b"1", b"cg:b": b"2"}
    conn.client.deleteAll(name, b"r", b"cf:a", {})
    assert table.row(b"r") == {b"cg:b": b"2"}
    conn.client.deleteAllRowTs(name, b"r", 4, {})
    assert table.row(b"r") == {b"cg:b": b"2"}
    conn.client.deleteAllRow(name, b"r", {})
    assert table.row(b"r") == {}


# Scans


@pytest.fixture
def ten_rows(table: happybase.Table) -> happybase.Table:
    with table.batch() as batch:
        for i in range(10):
            batch.put(b"row%d" % i, {b"cf:a": b"a%d" % i, b"cg:b": b"b%d" % i})
    return table


def test_scan_ranges(ten_rows: happybase.Table) -> None:
    t = ten_rows
    assert keys(t.scan()) == [b"row%d" % i for i in range(10)]
    assert keys(t.scan(row_start=b"row3", row_stop=b"row6")) == [b"row3", b"row4", b"row5"]
    assert keys(t.scan(row_start=b"row8")) == [b"row8", b"row9"]
    assert keys(t.scan(row_stop=b"row2")) == [b"row0", b"row1"]
    assert keys(t.scan(row_prefix=b"row1")) == [b"row1"]
    assert keys(t.scan(row_prefix=b"nope")) == []


def test_scan_reverse(ten_rows: happybase.Table) -> None:
    t = ten_rows
    assert keys(t.scan(reverse=True)) == [b"row%d" % i for i in reversed(range(10))]
    assert keys(t.scan(row_start=b"row6", row_stop=b"row3", reverse=True)) == [
        b"row6", b"row5", b"row4"]
    assert keys(t.scan(row_prefix=b"row", reverse=True, limit=2)) == [b"row9", b"row8"]


def test_scan_paging_limit_and_batch_size(ten_rows: happybase.Table) -> None:
    assert keys(ten_rows.scan(batch_size=3)) == [b"row%d" % i for i in range(10)]
    assert keys(ten_rows.scan(limit=4, batch_size=3)) == [b"row0", b"row1", b"row2", b"row3"]
    assert keys(ten_rows.scan(batch_size=1, limit=1)) == [b"row0"]


def test_scan_columns_timestamp_and_values(ten_rows: happybase.Table) -> None:
    t = ten_rows
    assert list(t.scan(columns=[b"cg"], limit=1)) == [(b"row0", {b"cg:b": b"b0"})]
    assert list(t.scan(columns=[b"cf:a"], row_prefix=b"row1")) == [(b"row1", {b"cf:a": b"a1"})]
    t.put(b"row0", {b"cf:a": b"early"}, timestamp=5)
    assert list(t.scan(timestamp=6, include_timestamp=True)) == [
        (b"row0", {b"cf:a": (b"early", 5)})]
    row = dict(t.scan(row_prefix=b"row2", include_timestamp=True))[b"row2"]
    assert row[b"cf:a"][0] == b"a2" and isinstance(row[b"cf:a"][1], int)


def test_scan_sorted_columns(table: happybase.Table) -> None:
    table.put(b"r", {b"cg:z": b"1", b"cf:b": b"2", b"cf:a": b"3"})
    ((key, row),) = list(table.scan(sorted_columns=True))
    assert isinstance(row, OrderedDict)
    assert list(row.items()) == [(b"cf:a", b"3"), (b"cf:b", b"2"), (b"cg:z", b"1")]


def test_scan_batching_splits_rows(table: happybase.Table) -> None:
    table.put(b"r", {b"cf:a": b"1", b"cf:b": b"2", b"cg:c": b"3"})
    assert list(table.scan(scan_batching=2)) == [
        (b"r", {b"cf:a": b"1", b"cf:b": b"2"}), (b"r", {b"cg:c": b"3"})]


def test_scanner_calls(conn: happybase.Connection, ten_rows: happybase.Table) -> None:
    """Open, get one, get a list, run dry, close; a closed id is unknown."""
    client, name = conn.client, ten_rows.name
    sid = client.scannerOpenWithScan(name, TScan(startRow=b"row7", columns=[b"cf"]), {})
    (first,) = client.scannerGet(sid)
    assert first.row == b"row7" and set(first.columns) == {b"cf:a"}
    assert [r.row for r in client.scannerGetList(sid, 5)] == [b"row8", b"row9"]
    assert client.scannerGetList(sid, 5) == []
    assert client.scannerGet(sid) == []
    client.scannerClose(sid)
    with pytest.raises(IllegalArgument):
        client.scannerGetList(sid, 1)
    with pytest.raises(IllegalArgument):
        client.scannerClose(sid)
    with pytest.raises(IllegalArgument):
        client.scannerGet(123456)


def test_scanner_on_a_table_taken_offline(conn: happybase.Connection,
                                          ten_rows: happybase.Table) -> None:
    """Reading fails with an IOError once the table is disabled; closing still works."""
    sid = conn.client.scannerOpenWithScan(ten_rows.name, TScan(), {})
    assert len(conn.client.scannerGetList(sid, 2)) == 2
    conn.disable_table("t")
    with pytest.raises(HBaseIOError):
        conn.client.scannerGetList(sid, 2)
    conn.delete_table("t")
    conn.client.scannerClose(sid)
    with pytest.raises(IllegalArgument):
        conn.client.scannerClose(sid)


def test_legacy_scanner_opens(server: HBaseServer, ten_rows: happybase.Table,
                              conn: happybase.Connection) -> None:
    """HBase 0.90 mode uses scannerOpen, scannerOpenWithStop and their Ts variants."""
    old = happybase.Connection(server.host, server.port, transport=server.transport,
                               protocol=server.protocol, compat="0.90")
    try:
        t = old.table(ten_rows.name, use_prefix=False)
        assert keys(t.scan(row_start=b"row8")) == [b"row8", b"row9"]
        assert keys(t.scan(row_start=b"row1", row_stop=b"row3")) == [b"row1", b"row2"]
        t.put(b"row0", {b"cf:a": b"early"}, timestamp=5)
        assert keys(t.scan(timestamp=6)) == [b"row0"]
        assert keys(t.scan(row_stop=b"row1", timestamp=6)) == [b"row0"]
    finally:
        old.close()
    sid = conn.client.scannerOpenWithPrefix(ten_rows.name, b"row4", [b"cg"], {})
    rows = conn.client.scannerGetList(sid, 10)
    conn.client.scannerClose(sid)
    assert [(r.row, list(r.columns)) for r in rows] == [(b"row4", [b"cg:b"])]


def test_scan_sees_the_keys_of_its_opening(ten_rows: happybase.Table) -> None:
    """Rows added while a scan runs are not returned; deleting rows already read is fine."""
    seen = []
    for key, _ in ten_rows.scan(batch_size=2):
        seen.append(key)
        ten_rows.delete(key)
        ten_rows.put(b"zz" + key, {b"cf:a": b"new"})
    assert seen == [b"row%d" % i for i in range(10)]


# Batches


def test_batch_puts_and_deletes(table: happybase.Table) -> None:
    table.put(b"gone", {b"cf:a": b"x"})
    with table.batch() as b:
        b.put(b"r1", {b"cf:a": b"1"})
        b.put(b"r2", {b"cf:a": b"2", b"cg:b": b"2"})
        b.delete(b"r2", columns=[b"cg:b"])
        b.delete(b"gone")
    assert table.rows([b"r1", b"r2", b"gone"]) == [(b"r1", {b"cf:a": b"1"}),
                                                    (b"r2", {b"cf:a": b"2"})]


def test_batch_with_timestamp_and_size(table: happybase.Table) -> None:
    with table.batch(timestamp=42, batch_size=2) as b:
        for i in range(5):
            b.put(b"r%d" % i, {b"cf:a": b"%d" % i})
    assert [row[b"cf:a"] for _, row in table.scan(include_timestamp=True)] == [
        (b"%d" % i, 42) for i in range(5)]
    with table.batch(timestamp=42) as b:
        b.delete(b"r0")
    assert table.row(b"r0") == {}


def test_transaction_batch_sends_nothing_on_error(table: happybase.Table) -> None:
    with pytest.raises(KeyError):
        with table.batch(transaction=True) as b:
            b.put(b"r", {b"cf:a": b"1"})
            raise KeyError("abort")
    assert table.row(b"r") == {}


def test_batch_with_unknown_family_fails_only_that_row(table: happybase.Table) -> None:
    with pytest.raises(HBaseIOError) as info:
        with table.batch() as b:
            b.put(b"good", {b"cf:a": b"1"})
            b.put(b"bad", {b"nope:a": b"1"})
    assert b"NoSuchColumnFamilyException" in info.value.message
    assert table.row(b"good") == {b"cf:a": b"1"}
    assert table.row(b"bad") == {}


# Counters


def test_counters(table: happybase.Table) -> None:
    assert table.counter_get(b"r", b"cf:n") == 0
    # counter_get increments by 0, and HBase 2's region server writes the sum.
    assert table.row(b"r") == {b"cf:n": struct.pack(">q", 0)}
    assert table.counter_inc(b"r", b"cf:n") == 1
    assert table.counter_inc(b"r", b"cf:n", 10) == 11
    assert table.counter_dec(b"r", b"cf:n", 3) == 8
    assert table.row(b"r") == {b"cf:n": struct.pack(">q", 8)}
    table.counter_set(b"r", b"cf:n", -5)
    assert table.counter_get(b"r", b"cf:n") == -5
    table.counter_set(b"r", b"cf:big", 2**63 - 1)
    assert table.counter_inc(b"r", b"cf:big") == -(2**63)  # wraps as a Java long


def test_counter_timestamps_move_forward(table: happybase.Table) -> None:
    future = now_ms() + 3_600_000
    table.put(b"r", {b"cf:n": struct.pack(">q", 1)}, timestamp=future)
    assert table.counter_inc(b"r", b"cf:n") == 2
    assert table.cells(b"r", b"cf:n", include_timestamp=True)[0][1] == future + 1


def test_other_thrift_calls(conn: happybase.Connection, table: happybase.Table) -> None:
    client, name = conn.client, table.name
    table.put(b"r", {b"cf:a": b"x", b"cf:b": b"y"})
    assert [c.value for c in client.get(name, b"r", b"cf:a", {})] == [b"x"]
    assert [c.value for c in client.getVer(name, b"r", b"cf", 5, {})] == [b"x", b"y"]
    assert client.getRow(name, b"r", {})[0].columns[b"cf:b"].value == b"y"
    assert client.getRowTs(name, b"r", 1, {}) == []
    assert [r.row for r in client.getRows(name, [b"r", b"s"], {})] == [b"r"]
    assert client.getRowsTs(name, [b"r"], 1, {}) == []
    client.mutateRow(name, b"s", [Mutation(column=b"cf:a", value=b"1")], {})
    client.mutateRowTs(name, b"s", [Mutation(column=b"cf:a", value=b"0")], 7, {})
    assert table.cells(b"s", b"cf:a", include_timestamp=True)[1] == (b"0", 7)
    client.mutateRowsTs(name, [BatchMutation(row=b"s", mutations=[
        Mutation(isDelete=True, column=b"cf:a")])], 7, {})
    assert table.cells(b"s", b"cf:a") == [b"1"]
    client.increment(TIncrement(table=name, row=b"c", column=b"cf:n", ammount=4))
    client.incrementRows([TIncrement(table=name, row=b"c", column=b"cf:n", ammount=1)])
    assert table.counter_get(b"c", b"cf:n") == 5
    cells = client.append(TAppend(table=name, row=b"r", columns=[b"cf:a"], values=[b"z"]))
    assert [c.value for c in cells] == [b"xz"] and table.row(b"r")[b"cf:a"] == b"xz"
    put = Mutation(column=b"cf:b", value=b"new")
    assert client.checkAndPut(name, b"r", b"cf:a", b"wrong", put, {}) is False
    assert client.checkAndPut(name, b"r", b"cf:a", b"xz", put, {}) is True
    assert client.checkAndPut(name, b"r", b"cf:none", None, put, {}) is True
    assert table.row(b"r")[b"cf:b"] == b"new"
    with pytest.raises(TApplicationException):
        client.getRowOrBefore(name, b"r", b"cf")
    assert_usable(conn)


# Filters


FILTER_CASES = [
    ("PrefixFilter('k2')", [(b"k2", {b"cf:a": b"apple", b"cf:b": b"2", b"cg:x": b"x2"})]),
    ("KeyOnlyFilter() AND PrefixFilter('k1')",
     [(b"k1", {b"cf:a": b"", b"cf:b": b"", b"cg:x": b""})]),
    ("KeyOnlyFilter(true) AND PrefixFilter('k1')",
     [(b"k1", {b"cf:a": b"\x00\x00\x00\x06", b"cf:b": b"\x00\x00\x00\x01",
               b"cg:x": b"\x00\x00\x00\x02"})]),
    ("FirstKeyOnlyFilter()",
     [(b"k1", {b"cf:a": b"banana"}), (b"k2", {b"cf:a": b"apple"}), (b"k3", {b"cf:b": b"3"})]),
    ("ColumnPrefixFilter('b')",
     [(b"k1", {b"cf:b": b"1"}), (b"k2", {b"cf:b": b"2"}), (b"k3", {b"cf:b": b"3"})]),
    ("MultipleColumnPrefixFilter('a', 'x')",
     [(b"k1", {b"cf:a": b"banana", b"cg:x": b"x1"}), (b"k2", {b"cf:a": b"apple", b"cg:x": b"x2"})]),
    ("PageFilter(2)", None),
    ("SingleColumnValueFilter('cf', 'a', =, 'binary:apple')",  # k3 lacks cf:a: kept
     [(b"k2", {b"cf:a": b"apple", b"cf:b": b"2", b"cg:x": b"x2"}), (b"k3", {b"cf:b": b"3"})]),
    ("SingleColumnValueFilter('cf', 'a', >, 'binary:apple')",
     [(b"k1", {b"cf:a": b"banana", b"cf:b": b"1", b"cg:x": b"x1"}), (b"k3", {b"cf:b": b"3"})]),
    ("SingleColumnValueFilter('cf', 'a', >, 'binary:apple', true, true)",
     [(b"k1", {b"cf:a": b"banana", b"cf:b": b"1", b"cg:x": b"x1"})]),
    ("SingleColumnValueFilter('cf', 'a', !=, 'substring:NAN', true, true)",
     [(b"k2", {b"cf:a": b"apple", b"cf:b": b"2", b"cg:x": b"x2"})]),
    ("SingleColumnValueFilter('cf', 'a', <=, 'binaryprefix:ap', true, true)",
     [(b"k2", {b"cf:a": b"apple", b"cf:b": b"2", b"cg:x": b"x2"})]),
    ("SingleColumnValueFilter('cf', 'a', =, 'regexstring:^b.n', true, true)",
     [(b"k1", {b"cf:a": b"banana", b"cf:b": b"1", b"cg:x": b"x1"})]),
    ("SingleColumnValueExcludeFilter('cf', 'a', =, 'binary:apple', true, true)",
     [(b"k2", {b"cf:b": b"2", b"cg:x": b"x2"})]),
    ("ValueFilter(=, 'substring:an')", [(b"k1", {b"cf:a": b"banana"})]),
    ("QualifierFilter(>=, 'binary:b')",
     [(b"k1", {b"cf:b": b"1", b"cg:x": b"x1"}), (b"k2", {b"cf:b": b"2", b"cg:x": b"x2"}),
      (b"k3", {b"cf:b": b"3"})]),
    ("FamilyFilter(=, 'binary:cg')", [(b"k1", {b"cg:x": b"x1"}), (b"k2", {b"cg:x": b"x2"})]),
    ("RowFilter(!=, 'binary:k2') AND ColumnPrefixFilter('x')", [(b"k1", {b"cg:x": b"x1"})]),
    ("(PrefixFilter('k1') OR PrefixFilter('k3')) AND ColumnPrefixFilter('b')",
     [(b"k1", {b"cf:b": b"1"}), (b"k3", {b"cf:b": b"3"})]),
    ("PrefixFilter('k1') OR PrefixFilter('k3') AND ColumnPrefixFilter('b')",
     [(b"k1", {b"cf:a": b"banana", b"cf:b": b"1", b"cg:x": b"x1"}), (b"k3", {b"cf:b": b"3"})]),
    ("SKIP ValueFilter(!=, 'binary:2')",
     [(b"k1", {b"cf:a": b"banana", b"cf:b": b"1", b"cg:x": b"x1"}), (b"k3", {b"cf:b": b"3"})]),
    ("WHILE RowFilter(<, 'binary:k2')",
     [(b"k1", {b"cf:a": b"banana", b"cf:b": b"1", b"cg:x": b"x1"})]),
    ("InclusiveStopFilter('k2') AND KeyOnlyFilter()",
     [(b"k1", {b"cf:a": b"", b"cf:b": b"", b"cg:x": b""}),
      (b"k2", {b"cf:a": b"", b"cf:b": b"", b"cg:x": b""})]),
    ("ColumnRangeFilter('a', false, 'x', true)",
     [(b"k1", {b"cf:b": b"1", b"cg:x": b"x1"}), (b"k2", {b"cf:b": b"2", b"cg:x": b"x2"}),
      (b"k3", {b"cf:b": b"3"})]),
    ("ColumnPaginationFilter(1, 1)",
     [(b"k1", {b"cf:b": b"1"}), (b"k2", {b"cf:b": b"2"})]),
    ("TimestampsFilter(7)", [(b"k3", {b"cf:b": b"3"})]),
    ("PrefixFilter('k''1')", []),
]


@pytest.fixture
def filter_rows(table: happybase.Table) -> happybase.Table:
    table.put(b"k1", {b"cf:a": b"banana", b"cf:b": b"1", b"cg:x": b"x1"})
    table.put(b"k2", {b"cf:a": b"apple", b"cf:b": b"2", b"cg:x": b"x2"})
    table.put(b"k3", {b"cf:b": b"3"}, timestamp=7)
    return table


@pytest.mark.parametrize("text, expected", FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_filter_strings(filter_rows: happybase.Table, text: str, expected: Any) -> None:
    result = list(filter_rows.scan(filter=text))
    if expected is None:  # PageFilter: the first two whole rows
        expected = list(filter_rows.scan(limit=2))
    assert result == expected


def test_filters_on_reverse_scans(filter_rows: happybase.Table) -> None:
    assert keys(filter_rows.scan(reverse=True, filter="PrefixFilter('k2')")) == [b"k2"]
    assert keys(filter_rows.scan(reverse=True, filter="InclusiveStopFilter('k2')")) == [
        b"k3", b"k2"]
    assert keys(filter_rows.scan(reverse=True, filter="PageFilter(1)")) == [b"k3"]


def test_filter_sees_versions_within_the_time_range(table: happybase.Table) -> None:
    """Filters run before versions are counted, as in HBase's ScanQueryMatcher.

    A ValueFilter that skips the newest version gets to see an older one, which
    then fills the scan's single version; a cell a filter included fills it
    first, so later versions are never shown to the filter at all.
    """
    table.put(b"r", {b"cf:a": b"match"}, timestamp=1)
    table.put(b"r", {b"cf:a": b"other"}, timestamp=2)
    assert list(table.scan(filter="ValueFilter(=, 'binary:match')")) == [
        (b"r", {b"cf:a": b"match"})]
    for flags in ("", ", false, true", ", false, false"):
        text = "SingleColumnValueFilter('cf', 'a', =, 'binary:match'%s)" % flags
        assert list(table.scan(filter=text)) == []


@pytest.mark.parametrize("text, words", [
    ("NoSuchFilter('x')", b"NoSuchFilter"),
    ("DependentColumnFilter('cf', 'a')", b"DependentColumnFilter"),
    ("PrefixFilter('a'", b"Incorrect"),
    ("PrefixFilter('a') AND", b"Incorrect"),
    ("(PrefixFilter('a')", b"parenthesis"),
    ("PrefixFilter('a', 'b')", b"PrefixFilter"),
    ("ValueFilter(<, 'substring:a')", b"EQUAL"),
    ("ValueFilter(~, 'binary:a')", b"compare operator"),
    ("ValueFilter(=, 'nonsense:a')", b"comparatorType"),
    ("PageFilter(x)", b"digits"),
])
def test_bad_filter_strings_answer_io_error(filter_rows: happybase.Table,
                                            conn: happybase.Connection,
                                            text: str, words: bytes) -> None:
    with pytest.raises(HBaseIOError) as info:
        list(filter_rows.scan(filter=text))
    assert words in info.value.message
    assert_usable(conn)


def test_batching_with_row_filters(filter_rows: happybase.Table,
                                   conn: happybase.Connection) -> None:
    """HBase opens a batched scan with a row-level filter; its region scanner
    refuses only when a row must be split mid-row."""
    assert keys(filter_rows.scan(filter="SingleColumnValueFilter('cf', 'a', =, "
                                        "'binary:apple', true, true)", scan_batching=3)) == [b"k2"]
    with pytest.raises(HBaseIOError) as info:
        list(filter_rows.scan(filter="PrefixFilter('k')", scan_batching=1))
    assert b"IncompatibleFilterException" in info.value.message
    assert_usable(conn)
    assert len(list(filter_rows.scan(filter="KeyOnlyFilter()", scan_batching=1))) == 7


# Errors: each as the exception HBase's gateway replies with


def test_error_creating_an_existing_table(conn: happybase.Connection,
                                          table: happybase.Table) -> None:
    with pytest.raises(AlreadyExists):
        conn.create_table("t", {"cf": {}})
    assert_usable(conn)


def test_errors_for_unknown_tables(conn: happybase.Connection) -> None:
    missing = conn.table("missing")
    calls = [
        lambda: missing.row(b"r"),
        lambda: missing.rows([b"r"]),
        lambda: missing.cells(b"r", b"cf:a"),
        lambda: missing.put(b"r", {b"cf:a": b"1"}),
        lambda: list(missing.scan()),
        lambda: missing.counter_inc(b"r", b"cf:a"),
        lambda: missing.families(),
        lambda: conn.is_table_enabled("missing"),
        lambda: conn.enable_table("missing"),
        lambda: conn.disable_table("missing"),
        lambda: conn.delete_table("missing"),
        lambda: conn.compact_table("missing"),
    ]
    for call in calls:
        with pytest.raises(HBaseIOError):
            call()
        assert_usable(conn)


def test_errors_for_unknown_families(conn: happybase.Connection, table: happybase.Table) -> None:
    table.put(b"r", {b"cf:a": b"1"})
    calls = [
        lambda: table.put(b"r", {b"nope:a": b"1"}),
        lambda: table.row(b"r", columns=[b"nope:a"]),
        lambda: table.cells(b"r", b"nope:a"),
        lambda: list(table.scan(columns=[b"nope"])),
        lambda: table.delete(b"r", columns=[b"nope:a"]),
        lambda: table.counter_inc(b"r", b"nope:n"),
    ]
    for call in calls:
        with pytest.raises(HBaseIOError) as info:
            call()
        assert b"NoSuchColumnFamilyException" in info.value.message
        assert_usable(conn)
    assert table.row(b"r") == {b"cf:a": b"1"}


def test_errors_for_disabled_tables(conn: happybase.Connection, table: happybase.Table) -> None:
    table.put(b"r", {b"cf:a": b"1"})
    conn.disable_table("t")
    for call in (lambda: table.row(b"r"), lambda: table.put(b"r", {b"cf:a": b"2"}),
                 lambda: list(table.scan()), lambda: table.counter_inc(b"r", b"cf:n")):
        with pytest.raises(HBaseIOError) as info:
            call()
        assert b"TableNotEnabledException" in info.value.message
    with pytest.raises(HBaseIOError):
        conn.disable_table("t")
    assert table.families()  # descriptors stay readable
    conn.enable_table("t")
    with pytest.raises(HBaseIOError):
        conn.enable_table("t")
    with pytest.raises(HBaseIOError):
        conn.delete_table("t")  # still enabled
    assert table.row(b"r") == {b"cf:a": b"1"}


def test_errors_for_bad_descriptors(conn: happybase.Connection) -> None:
    bad: list[dict[str, Any]] = [
        {"cf": {"max_versions": 0}}, {"cf": {"compression": "zip"}},
        {"cf": {"bloom_filter_type": "row"}}, {".cf": {}},
    ]
    for families in bad:
        with pytest.raises(IllegalArgument):
            conn.create_table("t", families)
    with pytest.raises(HBaseIOError):
        conn.client.createTable(raw_name(conn), [])
    with pytest.raises(IllegalArgument):
        conn.client.createTable(raw_name(conn), [ColumnDescriptor(name=b"cf:"),
                                                 ColumnDescriptor(name=b"cf")])
    assert conn.tables() == []


def test_errors_for_bad_names_and_rows(conn: happybase.Connection, table: happybase.Table) -> None:
    """What the Java gateway does not catch comes back as an internal error."""
    for call in (lambda: conn.create_table("bad name", {"cf": {}}),
                 lambda: table.row(b""),
                 lambda: table.put(b"r", {b"cf": b"family, no qualifier"})):
        with pytest.raises(TApplicationException):
            call()
        assert_usable(conn)


def test_counter_on_a_value_that_is_not_a_long(conn: happybase.Connection,
                                               table: happybase.Table) -> None:
    table.put(b"r", {b"cf:n": b"12"})
    for call in (lambda: table.counter_inc(b"r", b"cf:n"),
                 lambda: table.counter_get(b"r", b"cf:n")):
        with pytest.raises(HBaseIOError) as info:
            call()
        assert b"Field is not a long, it's 2 bytes wide" in info.value.message
    assert table.row(b"r") == {b"cf:n": b"12"}
    assert_usable(conn)



# Where the server once differed from HBase 2's gateway (each checked against
# HBase's source: ThriftHBaseServiceHandler, libthrift's ProcessFunction,
# TimeRange, HRegion).


def internal_error(method: str) -> str:
    """libthrift's whole answer to an exception HBase's handler lets escape."""
    return "Internal error processing %s" % method


def assert_internal_error(call: Any, method: str) -> None:
    with pytest.raises(TApplicationException) as info:
        call()
    assert info.value.type == TApplicationException.INTERNAL_ERROR
    assert info.value.message == internal_error(method).encode()


def test_negative_timestamps_on_reads_are_internal_errors(
        conn: happybase.Connection, ten_rows: happybase.Table) -> None:
    """``TimeRange(0, ts)`` refuses a negative ts with an exception the
    gateway does not catch, on every read that takes a timestamp."""
    t, client, name = ten_rows, conn.client, ten_rows.name
    for call, method in [
        (lambda: t.cells(b"row1", b"cf:a", timestamp=-1), "getVerTs"),
        (lambda: t.row(b"row1", timestamp=-1), "getRowWithColumnsTs"),
        (lambda: t.rows([b"row1"], timestamp=-1), "getRowsWithColumnsTs"),
        (lambda: list(t.scan(timestamp=-1)), "scannerOpenWithScan"),
        (lambda: client.getRowTs(name, b"row1", -1, {}), "getRowTs"),
        (lambda: client.getRowsTs(name, [b"row1"], -1, {}), "getRowsTs"),
        (lambda: client.scannerOpenTs(name, b"", [], -1, {}), "scannerOpenTs"),
        (lambda: client.scannerOpenWithStopTs(name, b"", b"z", [], -1, {}),
         "scannerOpenWithStopTs"),
        (lambda: client.getRowWithColumnsTs(b"missing", b"r", [], -1, {}),
         "getRowWithColumnsTs"),  # checked before the table is looked up
    ]:
        assert_internal_error(call, method)
        assert_usable(conn)
    assert t.row(b"row1", timestamp=0) == {}


def test_empty_mutations_reach_no_table(conn: happybase.Connection,
                                        table: happybase.Table) -> None:
    """Nothing to send is OK, even for a missing or disabled table."""
    client = conn.client
    conn.disable_table("t")
    for name in (raw_name(conn, "missing"), table.name):
        client.mutateRow(name, b"r", [], {})
        client.mutateRowTs(name, b"r", [], 5, {})
        client.mutateRows(name, [BatchMutation(row=b"r", mutations=[])], {})
        client.mutateRowsTs(name, [], 5, {})
        # A put of a whole family is dropped (with a warning): nothing is sent.
        client.mutateRow(name, b"r", [Mutation(column=b"cf", value=b"v")], {})
        conn.table("missing").put(b"r", {})  # happybase's put: mutateRows
    with pytest.raises(HBaseIOError) as info:
        client.mutateRow(table.name, b"r", [Mutation(column=b"cf:a", value=b"v")], {})
    assert b"TableNotEnabledException" in info.value.message
    # The row and the timestamp are still checked.
    with pytest.raises(IllegalArgument):
        client.mutateRow(raw_name(conn, "missing"), b"", [], {})
    with pytest.raises(IllegalArgument):
        client.mutateRowTs(raw_name(conn, "missing"), b"r", [], -1, {})


def test_illegal_table_names_on_writes_are_illegal_argument(
        conn: happybase.Connection) -> None:
    """The gateway catches ``TableName.valueOf``'s exception on these writes."""
    client = conn.client
    put = Mutation(column=b"cf:a", value=b"v")
    for call in (
        lambda: client.mutateRow(b"bad name", b"r", [put], {}),
        lambda: client.mutateRowTs(b"bad name", b"r", [], 5, {}),
        lambda: client.mutateRows(b"bad name", [BatchMutation(row=b"r", mutations=[put])], {}),
        lambda: client.mutateRowsTs(b"bad name", [], 5, {}),
        lambda: client.checkAndPut(b"bad name", b"r", b"cf:a", None, put, {}),
        lambda: conn.table("bad name").put(b"r", {b"cf:a": b"v"}),
    ):
        with pytest.raises(IllegalArgument) as info:
            call()
        assert info.value.message.startswith(b"java.lang.IllegalArgumentException: Illegal")
        assert_usable(conn)
    # Elsewhere the exception escapes the handler.
    assert_internal_error(lambda: conn.table("bad name").row(b"r"), "getRowWithColumns")


def test_scanner_get_list_counts(conn: happybase.Connection, ten_rows: happybase.Table) -> None:
    client = conn.client
    sid = client.scannerOpenWithScan(ten_rows.name, TScan(), {})
    assert client.scannerGetList(sid, 0) == []
    assert_internal_error(lambda: client.scannerGetList(sid, -1), "scannerGetList")
    assert [r.row for r in client.scannerGetList(sid, 2)] == [b"row0", b"row1"]
    client.scannerClose(sid)


def test_check_and_put_treats_empty_and_absent_alike(conn: happybase.Connection,
                                                     table: happybase.Table) -> None:
    """As ``HRegion.checkAndMutate``: a null or empty expected value matches
    a missing cell and a cell holding an empty value."""
    client, name = conn.client, table.name
    assert client.checkAndPut(name, b"r", b"cf:a", b"", Mutation(column=b"cf:b",
                                                                  value=b"1"), {}) is True
    table.put(b"r", {b"cf:a": b""})
    assert client.checkAndPut(name, b"r", b"cf:a", b"", Mutation(column=b"cf:b",
                                                                  value=b"2"), {}) is True
    assert client.checkAndPut(name, b"r", b"cf:a", None, Mutation(column=b"cf:b",
                                                                   value=b"3"), {}) is True
    table.put(b"r", {b"cf:a": b"x"})
    for expected in (b"", None):
        assert client.checkAndPut(name, b"r", b"cf:a", expected, Mutation(
            column=b"cf:b", value=b"4"), {}) is False
    assert table.row(b"r") == {b"cf:a": b"x", b"cf:b": b"3"}


def test_zero_increment_writes_the_counter(table: happybase.Table) -> None:
    """HBase 2's region server writes every increment's sum, even of 0."""
    assert table.counter_inc(b"r", b"cf:n", 0) == 0
    assert table.row(b"r") == {b"cf:n": struct.pack(">q", 0)}
    table.counter_set(b"r", b"cf:n", 5)
    assert table.counter_inc(b"r", b"cf:n", 0) == 5
    # A new version, newest first: the 0 increment's, counter_set's, the first.
    assert table.cells(b"r", b"cf:n") == [struct.pack(">q", n) for n in (5, 5, 0)]


def test_region_info_of_the_empty_row_is_the_last_region(conn: happybase.Connection) -> None:
    """A reverse scan of hbase:meta from the empty row starts at its end."""
    conn.create_table("a", {"cf": {}})
    conn.create_table("b", {"cf": {}})
    client = conn.client  # the server is shared: other tests' tables count too
    regions = [r.name for name in client.getTableNames() for r in client.getTableRegions(name)]
    assert client.getRegionInfo(b"").name == max(regions)
    with pytest.raises(HBaseIOError):
        conn.client.getRegionInfo(b"\x00")


def test_internal_errors_name_only_the_method(conn: happybase.Connection,
                                             table: happybase.Table) -> None:
    """libthrift answers an escaped exception with its method name only."""
    assert_internal_error(lambda: table.row(b""), "getRowWithColumns")
    assert_internal_error(lambda: table.put(b"r", {b"cf": b"family only"}), "mutateRows")
    assert_internal_error(lambda: conn.create_table("bad name", {"cf": {}}), "createTable")
    assert_internal_error(
        lambda: conn.client.increment(TIncrement(table=table.name, row=b"", column=b"cf:a")),
        "increment")


@pytest.mark.parametrize("text", ["(" * 5000, "(" * 5000 + "PrefixFilter('a')" + ")" * 5000,
                                  "SKIP " * 5000 + "PrefixFilter('a')",
                                  " OR ".join(["PrefixFilter('a')"] * 2000),
                                  "PrefixFilter('%s')" % ("a" * 70000)])
def test_deep_long_or_repeated_filter_strings_are_io_errors(
        filter_rows: happybase.Table, conn: happybase.Connection, text: str) -> None:
    with pytest.raises(HBaseIOError) as info:
        list(filter_rows.scan(filter=text))
    assert b"embedded HBase server" in info.value.message
    assert_usable(conn)


def test_regex_comparators_follow_java(filter_rows: happybase.Table) -> None:
    """DOTALL, ASCII classes, bytes read as ISO-8859-1, and a pattern that
    backtracks exponentially in ``re`` answered at once."""
    t = filter_rows
    t.put(b"k4", {b"cf:a": b"a" * 27 + b"b", b"cf:b": b"line\nbreak", b"cg:x": b"\xe9t\xe9"})
    t.put(b"k5", {b"cf:a": b"a" * 28})

    def values(pattern: str) -> list[bytes]:
        # Bytes: thriftpy2's compact protocol writes a str's length in characters.
        text = ("ValueFilter(=, 'regexstring:%s')" % pattern).encode("utf-8")
        return [v for _, row in t.scan(filter=text) for v in row.values()]

    assert values("^(a+)+$") == [b"a" * 28]
    assert values("line.break") == [b"line\nbreak"]
    assert values("^\\w+$") == [b"banana", b"1", b"x1", b"apple", b"2", b"x2", b"3",
                                b"a" * 27 + b"b", b"a" * 28]
    assert values("\u00e9t") == [b"\xe9t\xe9"]
    assert values(".*an.*") == [b"banana"]
