"""The table the benchmark reads: its rows, and how an answer is checked.

Every value encodes its row key, so each answer can be matched to the request
that asked for it.
"""

import os
from typing import Any

__all__ = ["COLUMN", "FAMILY", "ROWS", "create", "drop", "expected", "keys", "pairs", "table_name"]

FAMILY = "cf"
COLUMN = b"cf:v"
#: Rows loaded into the table and read by the workloads.
ROWS = 1000


def table_name() -> str:
    """A table name no other run uses."""
    return "green_happybase_bench_%d_%s" % (os.getpid(), os.urandom(4).hex())


def keys(rows: int = ROWS) -> list[bytes]:
    return [b"row-%05d" % i for i in range(rows)]


def expected(key: bytes) -> bytes:
    """The value stored under *key*."""
    return b"value-of-" + key


def create(conn: Any, name: str, rows: int = ROWS) -> None:
    """Create table *name* on happybase connection *conn* and load *rows* rows."""
    conn.create_table(name, {FAMILY: {}})
    with conn.table(name).batch(batch_size=500) as batch:
        for key in keys(rows):
            batch.put(key, {COLUMN: expected(key)})


def drop(conn: Any, name: str) -> None:
    """Disable and delete table *name*."""
    conn.delete_table(name, disable=True)


def pairs(rows: int = ROWS) -> tuple[list[bytes], list[bytes]]:
    """Keys and their values, index for index, for cheap checks in hot loops."""
    all_keys = keys(rows)
    return all_keys, [expected(key) for key in all_keys]
