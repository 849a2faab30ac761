"""HBase filter strings: parsing and evaluation for the embedded server.

:func:`parse_filter` reads the filter language of HBase's ``ParseFilter``
(``PrefixFilter('ab') AND (KeyOnlyFilter() OR PageFilter(5))``) and builds a
tree of filters that behave as HBase's do, cell by cell and row by row.

A scan drives a filter per row: :meth:`Filter.all_remaining` (end the scan?),
:meth:`Filter.filter_row_key` (skip this row?), :meth:`Filter.filter_cell` for
each candidate cell in key order, :meth:`Filter.transform` for each included
cell, :meth:`Filter.filter_row_cells` and :meth:`Filter.filter_row` once the
row is complete, then :meth:`Filter.reset`.

A return code packs two answers: whether the cell is included (even codes)
and how far to move on: to the next cell, the next column, or past the rest
of this column family in this row (HBase's ``NEXT_ROW`` acts per family, since
each family is scanned by its own store scanner). A filter list merges codes
as HBase does: AND includes when all include and takes the longest step, OR
includes when any includes and takes the shortest step.

Bounds, where HBase has none (each refusal is a :class:`FilterError` that
names the limit): a filter string of at most :data:`MAX_FILTER_STRING` bytes,
nested at most :data:`MAX_NESTING` deep (parentheses, ``SKIP``, ``WHILE``),
with at most :data:`MAX_FILTERS` filters. ``regexstring:`` comparators run
under a per-request :class:`~green_happybase.testing.regex.Budget` (see
:mod:`green_happybase.testing.regex`).
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .regex import Budget, Pattern, RegexError

if TYPE_CHECKING:
    from .store import Cell

__all__ = [
    "Filter", "FilterError", "MAX_FILTERS", "MAX_FILTER_STRING", "MAX_NESTING", "included",
    "parse_filter", "prefix_while_filter", "step",
]

#: Longest filter string accepted, in bytes.
MAX_FILTER_STRING = 64 * 1024
#: Deepest nesting of parentheses, ``SKIP`` and ``WHILE``.
MAX_NESTING = 100
#: Most filters in one filter string.
MAX_FILTERS = 1000

INCLUDE = 0
SKIP = 1
INCLUDE_AND_NEXT_COL = 2
NEXT_COL = 3
NEXT_ROW = 5

_STEP_CELL, _STEP_COLUMN, _STEP_ROW = 0, 1, 2


def included(code: int) -> bool:
    """Whether a return code includes the cell."""
    return not code & 1


def step(code: int) -> int:
    """How far a return code moves on: 0 next cell, 1 next column, 2 next family."""
    return code >> 1


class FilterError(ValueError):
    """A filter string HBase would reject, or one this server does not support."""


class Filter:
    """Base filter: includes everything and never ends the scan."""

    has_filter_row = False

    def reset(self) -> None:
        """Forget per-row state before the next row."""

    def all_remaining(self) -> bool:
        """True once no further row can pass: the scan ends."""
        return False

    def filter_row_key(self, row: bytes) -> bool:
        """True to skip this whole row before looking at its cells."""
        return False

    def filter_cell(self, cell: Cell) -> int:
        """Return code for one cell."""
        return INCLUDE

    def transform(self, cell: Cell) -> Cell:
        """The cell as returned to the client, once included."""
        return cell

    def filter_row_cells(self, cells: list[Cell]) -> None:
        """Edit the row's included cells in place."""

    def filter_row(self) -> bool:
        """True to drop the (non-empty) row once all its cells were seen."""
        return False


# Comparators, operators and argument conversion (ParseFilter's helpers).

_Comparator = Callable[[bytes], int]


class _Context:
    """What building a filter needs besides its arguments."""

    def __init__(self, reverse: bool, budget: Budget) -> None:
        self.reverse = reverse
        self.budget = budget
        self.filters = 0


def _cmp(a: bytes, b: bytes) -> int:
    return (a > b) - (a < b)


def _comparator(arg: bytes, ctx: _Context) -> tuple[bytes, _Comparator]:
    """Parse ``type:value``; return the type and ``value.compareTo(cell)``."""
    kind, sep, value = _unquote(arg).partition(b":")
    if not sep:
        raise FilterError("Incorrect comparator")
    if kind == b"binary":
        return kind, lambda data: _cmp(value, data)
    if kind == b"binaryprefix":
        return kind, lambda data: _cmp(value, data[: len(value)])
    if kind == b"substring":
        needle = value.decode("utf-8", "replace").lower()
        return kind, lambda data: 0 if needle in data.decode("utf-8", "replace").lower() else 1
    if kind == b"regexstring":
        try:
            pattern = Pattern(value.decode("utf-8", "replace"))
        except RegexError as exc:
            raise FilterError(str(exc)) from None
        budget = ctx.budget

        def search(data: bytes) -> int:
            try:
                return 0 if pattern.search(data, budget) else 1
            except RegexError as exc:
                raise FilterError(str(exc)) from None

        return kind, search
    raise FilterError("Incorrect comparatorType")


# Whether a compare result (comparator vs. cell) filters the cell out.
_OPERATORS: dict[bytes, Callable[[int], bool]] = {
    b"<": lambda r: r <= 0,
    b"<=": lambda r: r < 0,
    b"=": lambda r: r != 0,
    b"!=": lambda r: r == 0,
    b">=": lambda r: r > 0,
    b">": lambda r: r >= 0,
}


def _operator(arg: bytes) -> Callable[[int], bool]:
    try:
        return _OPERATORS[arg]
    except KeyError:
        raise FilterError("Invalid compare operator") from None


def _compare_args(op_arg: bytes, comparator_arg: bytes,
                  ctx: _Context) -> Callable[[bytes], bool]:
    """A predicate that is True when a value is filtered out."""
    op = _operator(op_arg)
    kind, compare = _comparator(comparator_arg, ctx)
    if kind in (b"substring", b"regexstring") and op_arg not in (b"=", b"!="):
        raise FilterError(
            "A regexstring comparator and substring comparator can only be used "
            "with EQUAL and NOT_EQUAL"
        )
    return lambda data: op(compare(data))


def _unquote(arg: bytes) -> bytes:
    if len(arg) < 2 or arg[:1] != b"'" or arg[-1:] != b"'":
        raise FilterError("removeQuotesFromByteArray needs a quoted byte array")
    return arg[1:-1]


def _long(arg: bytes) -> int:
    digits = arg[1:] if arg[:1] == b"-" else arg
    if not digits or not digits.isdigit():
        raise FilterError("Byte Array should only contain digits")
    value = int(arg)
    if value >= 1 << 63:
        raise FilterError("Long Argument too large")
    return value


def _int(arg: bytes) -> int:
    value = _long(arg)
    if value > 2**31 - 1:
        raise FilterError("Integer Argument too large")
    if value < -(2**31):
        raise FilterError("Integer Argument too small")
    return value


def _bool(arg: bytes) -> bool:
    lowered = arg.lower()
    if lowered == b"true":
        return True
    if lowered == b"false":
        return False
    raise FilterError("Incorrect Boolean Expression")


def _expect(name: str, args: Sequence[bytes], *counts: int) -> None:
    if len(args) not in counts:
        raise FilterError(
            "%s expects %s argument(s), got %d"
            % (name, " or ".join(str(c) for c in counts), len(args))
        )


# Row filters.


class _PrefixFilter(Filter):
    has_filter_row = True

    def __init__(self, prefix: bytes, reverse: bool) -> None:
        self.prefix = prefix
        self.reverse = reverse
        self._out = False
        self._passed = False

    def reset(self) -> None:
        self._out = False

    def all_remaining(self) -> bool:
        return self._passed

    def filter_row_key(self, row: bytes) -> bool:
        head = row[: len(self.prefix)]
        if (head > self.prefix and not self.reverse) or (head < self.prefix and self.reverse):
            self._passed = True
        self._out = head != self.prefix
        return self._out

    def filter_cell(self, cell: Cell) -> int:
        return NEXT_ROW if self._out else INCLUDE

    def filter_row(self) -> bool:
        return self._out


class _InclusiveStopFilter(Filter):
    has_filter_row = True

    def __init__(self, stop: bytes, reverse: bool) -> None:
        self.stop = stop
        self.reverse = reverse
        self._done = False

    def all_remaining(self) -> bool:
        return self._done

    def filter_row_key(self, row: bytes) -> bool:
        cmp = _cmp(row, self.stop)
        self._done = cmp < 0 if self.reverse else cmp > 0
        return self._done

    def filter_cell(self, cell: Cell) -> int:
        return NEXT_ROW if self._done else INCLUDE

    def filter_row(self) -> bool:
        return self._done


class _RowFilter(Filter):
    has_filter_row = True

    def __init__(self, out: Callable[[bytes], bool]) -> None:
        self._test = out
        self._out = False

    def reset(self) -> None:
        self._out = False

    def filter_row_key(self, row: bytes) -> bool:
        self._out = self._test(row)
        return self._out

    def filter_cell(self, cell: Cell) -> int:
        return NEXT_ROW if self._out else INCLUDE

    def filter_row(self) -> bool:
        return self._out


class _PageFilter(Filter):
    has_filter_row = True

    def __init__(self, size: int) -> None:
        self.size = size
        self._accepted = 0

    def all_remaining(self) -> bool:
        return self._accepted >= self.size

    def filter_row_key(self, row: bytes) -> bool:
        return self.all_remaining()

    def filter_row(self) -> bool:
        self._accepted += 1
        return self._accepted > self.size


# Cell filters.


class _KeyOnlyFilter(Filter):
    def __init__(self, length_as_value: bool) -> None:
        self.length_as_value = length_as_value

    def transform(self, cell: Cell) -> Cell:
        value = struct.pack(">i", len(cell.value)) if self.length_as_value else b""
        return cell._replace(value=value)


class _FirstKeyOnlyFilter(Filter):
    def __init__(self) -> None:
        self._found = False

    def reset(self) -> None:
        self._found = False

    def filter_cell(self, cell: Cell) -> int:
        if self._found:
            return NEXT_ROW
        self._found = True
        return INCLUDE


class _CellPredicateFilter(Filter):
    """Includes a cell when ``keep(cell)``, else answers ``miss``."""

    def __init__(self, keep: Callable[[Cell], bool], miss: int = SKIP) -> None:
        self._keep = keep
        self._miss = miss

    def filter_cell(self, cell: Cell) -> int:
        return INCLUDE if self._keep(cell) else self._miss


class _ColumnRangeFilter(Filter):
    def __init__(self, low: bytes | None, low_incl: bool,
                 high: bytes | None, high_incl: bool) -> None:
        self.low, self.low_incl = low, low_incl
        self.high, self.high_incl = high, high_incl

    def filter_cell(self, cell: Cell) -> int:
        qual = cell[1]
        if self.low is not None:
            c = _cmp(qual, self.low)
            if c < 0 or (c == 0 and not self.low_incl):
                return SKIP
        if self.high is not None:
            c = _cmp(qual, self.high)
            if c > 0 or (c == 0 and not self.high_incl):
                return NEXT_ROW
        return INCLUDE


class _ColumnPaginationFilter(Filter):
    def __init__(self, limit: int, offset: int) -> None:
        self.limit = limit
        self.offset = offset
        self._count = 0

    def reset(self) -> None:
        self._count = 0

    def filter_cell(self, cell: Cell) -> int:
        if self._count >= self.offset + self.limit:
            return NEXT_ROW
        code = NEXT_COL if self._count < self.offset else INCLUDE_AND_NEXT_COL
        self._count += 1
        return code


class _SingleColumnValueFilter(Filter):
    has_filter_row = True

    def __init__(self, family: bytes, qualifier: bytes, out: Callable[[bytes], bool],
                 if_missing: bool, latest_only: bool, exclude: bool) -> None:
        self.family = family
        self.qualifier = qualifier
        self._test = out
        self.if_missing = if_missing
        self.latest_only = latest_only
        self.exclude = exclude
        self._found = False
        self._matched = False

    def reset(self) -> None:
        self._found = False
        self._matched = False

    def filter_cell(self, cell: Cell) -> int:
        if self._matched:
            return INCLUDE
        if self.latest_only and self._found:
            return NEXT_ROW
        if cell[0] != self.family or cell[1] != self.qualifier:
            return INCLUDE
        self._found = True
        if self._test(cell[3]):
            return NEXT_ROW if self.latest_only else INCLUDE
        self._matched = True
        return INCLUDE

    def filter_row_cells(self, cells: list[Cell]) -> None:
        if self.exclude:
            cells[:] = [c for c in cells if c[0] != self.family or c[1] != self.qualifier]

    def filter_row(self) -> bool:
        return not self._matched if self._found else self.if_missing


# Wrappers and lists.


class _SkipFilter(Filter):
    has_filter_row = True

    def __init__(self, inner: Filter) -> None:
        self.inner = inner
        self._out = False

    def reset(self) -> None:
        self.inner.reset()
        self._out = False

    def all_remaining(self) -> bool:
        return self.inner.all_remaining()

    def filter_cell(self, cell: Cell) -> int:
        code = self.inner.filter_cell(cell)
        if code != INCLUDE:
            self._out = True
        return code

    def transform(self, cell: Cell) -> Cell:
        return self.inner.transform(cell)

    def filter_row(self) -> bool:
        return self._out


class _WhileMatchFilter(Filter):
    has_filter_row = True

    def __init__(self, inner: Filter) -> None:
        self.inner = inner
        self._done = False

    def reset(self) -> None:
        self.inner.reset()

    def all_remaining(self) -> bool:
        return self._done or self.inner.all_remaining()

    def filter_row_key(self, row: bytes) -> bool:
        out = self.inner.filter_row_key(row)
        self._done = self._done or out
        return out

    def filter_cell(self, cell: Cell) -> int:
        code = self.inner.filter_cell(cell)
        self._done = self._done or code != INCLUDE
        return code

    def transform(self, cell: Cell) -> Cell:
        return self.inner.transform(cell)

    def filter_row_cells(self, cells: list[Cell]) -> None:
        self.inner.filter_row_cells(cells)

    def filter_row(self) -> bool:
        out = self.inner.filter_row()
        self._done = self._done or out
        return out


class _AndFilter(Filter):
    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters
        self.has_filter_row = any(f.has_filter_row for f in filters)
        self._transformed: Cell | None = None

    def reset(self) -> None:
        for f in self.filters:
            f.reset()

    def all_remaining(self) -> bool:
        return any(f.all_remaining() for f in self.filters)

    def filter_row_key(self, row: bytes) -> bool:
        out = False
        for f in self.filters:  # every filter sees the row: some keep per-row state
            if f.all_remaining() or f.filter_row_key(row):
                out = True
        return out

    def filter_cell(self, cell: Cell) -> int:
        keep, far = True, _STEP_CELL
        transformed = cell
        for f in self.filters:
            if f.all_remaining():
                return NEXT_ROW
            code = f.filter_cell(cell)
            if included(code):
                transformed = f.transform(transformed)
            else:
                keep = False
            far = max(far, step(code))
        self._transformed = transformed
        return far * 2 + (0 if keep else 1)

    def transform(self, cell: Cell) -> Cell:
        return self._transformed if self._transformed is not None else cell

    def filter_row_cells(self, cells: list[Cell]) -> None:
        for f in self.filters:
            f.filter_row_cells(cells)

    def filter_row(self) -> bool:
        return any(f.filter_row() for f in self.filters)


class _OrFilter(Filter):
    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters
        self.has_filter_row = any(f.has_filter_row for f in filters)
        # Per sub-filter: the last code it gave and the cell it gave it for,
        # so a filter that asked to move past a column or family is not asked
        # again about that column or family (HBase's HBASE-17678 rule).
        self._prev: list[tuple[int, Cell] | None] = [None] * len(filters)
        self._included: list[bool] = [False] * len(filters)

    def reset(self) -> None:
        for f in self.filters:
            f.reset()
        self._prev = [None] * len(self.filters)
        self._included = [False] * len(self.filters)

    def all_remaining(self) -> bool:
        return all(f.all_remaining() for f in self.filters)

    def filter_row_key(self, row: bytes) -> bool:
        out = True
        for f in self.filters:
            if not f.all_remaining() and not f.filter_row_key(row):
                out = False
        return out

    def filter_cell(self, cell: Cell) -> int:
        keep, far = False, None
        for i, f in enumerate(self.filters):
            self._included[i] = False
            if f.all_remaining():
                continue
            code = self._remembered(i, cell)
            if code is None:
                code = f.filter_cell(cell)
            self._prev[i] = (code, cell)
            if included(code):
                keep = True
                self._included[i] = True
            far = step(code) if far is None else min(far, step(code))
        if far is None:
            return SKIP
        return far * 2 + (0 if keep else 1)

    def _remembered(self, i: int, cell: Cell) -> int | None:
        prev = self._prev[i]
        if prev is None:
            return None
        code, last = prev
        if step(code) == _STEP_COLUMN and last[:2] == cell[:2]:
            return NEXT_COL
        if step(code) == _STEP_ROW and last[0] == cell[0]:
            return NEXT_ROW
        return None

    def transform(self, cell: Cell) -> Cell:
        for f, inc in zip(self.filters, self._included, strict=True):
            if inc:
                cell = f.transform(cell)
        return cell

    def filter_row_cells(self, cells: list[Cell]) -> None:
        for f in self.filters:
            f.filter_row_cells(cells)

    def filter_row(self) -> bool:
        return all(f.filter_row() for f in self.filters)


# Building filters from their names and arguments.


def _build_prefix(args: list[bytes], ctx: _Context) -> Filter:
    _expect("PrefixFilter", args, 1)
    return _PrefixFilter(_unquote(args[0]), ctx.reverse)


def _build_key_only(args: list[bytes], ctx: _Context) -> Filter:
    _expect("KeyOnlyFilter", args, 0, 1)
    return _KeyOnlyFilter(_bool(args[0]) if args else False)


def _build_first_key_only(args: list[bytes], ctx: _Context) -> Filter:
    _expect("FirstKeyOnlyFilter", args, 0)
    return _FirstKeyOnlyFilter()


def _build_column_prefix(args: list[bytes], ctx: _Context) -> Filter:
    _expect("ColumnPrefixFilter", args, 1)
    prefix = _unquote(args[0])
    return _CellPredicateFilter(lambda c: c[1].startswith(prefix))


def _build_multiple_column_prefix(args: list[bytes], ctx: _Context) -> Filter:
    prefixes = tuple(_unquote(a) for a in args)
    return _CellPredicateFilter(lambda c: c[1].startswith(prefixes))


def _build_page(args: list[bytes], ctx: _Context) -> Filter:
    _expect("PageFilter", args, 1)
    size = _long(args[0])
    if size < 0:
        raise FilterError("must be positive %d" % size)
    return _PageFilter(size)


def _build_column_pagination(args: list[bytes], ctx: _Context) -> Filter:
    _expect("ColumnPaginationFilter", args, 2)
    limit, offset = _int(args[0]), _int(args[1])
    if limit < 0 or offset < 0:
        raise FilterError("limit and offset must be positive")
    return _ColumnPaginationFilter(limit, offset)


def _build_inclusive_stop(args: list[bytes], ctx: _Context) -> Filter:
    _expect("InclusiveStopFilter", args, 1)
    return _InclusiveStopFilter(_unquote(args[0]), ctx.reverse)


def _build_timestamps(args: list[bytes], ctx: _Context) -> Filter:
    stamps = frozenset(_long(a) for a in args)
    if any(ts < 0 for ts in stamps):
        raise FilterError("Timestamps must not be negative")
    return _CellPredicateFilter(lambda c: c[2] in stamps)


def _build_row(args: list[bytes], ctx: _Context) -> Filter:
    _expect("RowFilter", args, 2)
    return _RowFilter(_compare_args(args[0], args[1], ctx))


def _build_family(args: list[bytes], ctx: _Context) -> Filter:
    _expect("FamilyFilter", args, 2)
    out = _compare_args(args[0], args[1], ctx)
    return _CellPredicateFilter(lambda c: not out(c[0]), NEXT_ROW)


def _build_qualifier(args: list[bytes], ctx: _Context) -> Filter:
    _expect("QualifierFilter", args, 2)
    out = _compare_args(args[0], args[1], ctx)
    return _CellPredicateFilter(lambda c: not out(c[1]))


def _build_value(args: list[bytes], ctx: _Context) -> Filter:
    _expect("ValueFilter", args, 2)
    out = _compare_args(args[0], args[1], ctx)
    return _CellPredicateFilter(lambda c: not out(c[3]))


def _build_column_range(args: list[bytes], ctx: _Context) -> Filter:
    _expect("ColumnRangeFilter", args, 4)
    low, high = _unquote(args[0]) or None, _unquote(args[2]) or None
    return _ColumnRangeFilter(low, _bool(args[1]), high, _bool(args[3]))


def _build_scvf(name: str, exclude: bool) -> Callable[[list[bytes], _Context], Filter]:
    def build(args: list[bytes], ctx: _Context) -> Filter:
        _expect(name, args, 4, 6)
        family, qualifier = _unquote(args[0]), _unquote(args[1])
        out = _compare_args(args[2], args[3], ctx)
        if_missing = _bool(args[4]) if len(args) == 6 else False
        latest_only = _bool(args[5]) if len(args) == 6 else True
        return _SingleColumnValueFilter(family, qualifier, out, if_missing, latest_only, exclude)

    return build


_BUILDERS: dict[str, Callable[[list[bytes], _Context], Filter]] = {
    "PrefixFilter": _build_prefix,
    "KeyOnlyFilter": _build_key_only,
    "FirstKeyOnlyFilter": _build_first_key_only,
    "ColumnPrefixFilter": _build_column_prefix,
    "MultipleColumnPrefixFilter": _build_multiple_column_prefix,
    "PageFilter": _build_page,
    "ColumnPaginationFilter": _build_column_pagination,
    "InclusiveStopFilter": _build_inclusive_stop,
    "TimestampsFilter": _build_timestamps,
    "RowFilter": _build_row,
    "FamilyFilter": _build_family,
    "QualifierFilter": _build_qualifier,
    "ValueFilter": _build_value,
    "ColumnRangeFilter": _build_column_range,
    "SingleColumnValueFilter": _build_scvf("SingleColumnValueFilter", False),
    "SingleColumnValueExcludeFilter": _build_scvf("SingleColumnValueExcludeFilter", True),
}

# Known to HBase's filter language, not implemented here: named in the error.
_UNSUPPORTED = frozenset(["ColumnCountGetFilter", "DependentColumnFilter", "ColumnValueFilter"])


# The filter language: tokens, then a recursive descent over them.

_KEYWORDS = (b"AND", b"OR", b"SKIP", b"WHILE")


def _keyword_at(text: bytes, i: int) -> bytes | None:
    """The operator keyword starting at ``i``, with ParseFilter's boundary rules."""
    for word in _KEYWORDS:
        end = i + len(word)
        if text[i:end] != word or end >= len(text):
            continue
        if text[end:end + 1] not in (b" ", b"("):
            continue
        before = text[i - 1:i] if i > 0 else b""
        if word in (b"AND", b"OR"):
            if before in (b" ", b")"):
                return word
        elif before in (b"", b" ", b")", b"("):
            return word
    return None


def _simple_expression_end(text: bytes, start: int) -> int:
    """Index of the ``)`` closing the simple expression at ``start``."""
    quotes = 0
    i = start
    while i < len(text):
        ch = text[i:i + 1]
        if ch == b"'":
            if i + 1 < len(text) and text[i + 1:i + 2] == b"'":
                i += 2  # an escaped quote inside an argument
                continue
            quotes += 1
        elif ch == b")" and quotes % 2 == 0:
            return i
        i += 1
    raise FilterError("Incorrect Filter String")


def _arguments(expr: bytes) -> list[bytes]:
    """Arguments of ``Name(arg, 'quoted''arg', ...)``; quoted ones keep their quotes."""
    open_at = expr.find(b"(")
    if open_at < 0:
        raise FilterError("Incorrect argument list")
    args: list[bytes] = []
    i, n = open_at + 1, len(expr)
    while i < n:
        ch = expr[i:i + 1]
        if ch in (b" ", b",", b")"):
            i += 1
            continue
        if ch == b"'":
            out = bytearray(b"'")
            j = i + 1
            while True:
                if j >= n:
                    raise FilterError("Incorrect argument list")
                if expr[j:j + 1] == b"'":
                    if expr[j + 1:j + 2] == b"'":
                        out += b"'"
                        j += 2
                        continue
                    break
                out += expr[j:j + 1]
                j += 1
            out += b"'"
            args.append(bytes(out))
            i = j + 1
        else:
            j = i
            while j < n and expr[j:j + 1] not in (b" ", b",", b")"):
                j += 1
            if j >= n:
                raise FilterError("Incorrect argument list")
            args.append(expr[i:j])
            i = j
    return args


def _tokens(text: bytes) -> list[tuple[str, bytes]]:
    tokens: list[tuple[str, bytes]] = []
    i = 0
    while i < len(text):
        ch = text[i:i + 1]
        if ch in (b" ", b"\t"):
            i += 1
        elif ch == b"(":
            tokens.append(("(", ch))
            i += 1
        elif ch == b")":
            tokens.append((")", ch))
            i += 1
        else:
            word = _keyword_at(text, i)
            if word is not None:
                tokens.append(("op", word))
                i += len(word)
            else:
                end = _simple_expression_end(text, i)
                tokens.append(("filter", text[i:end + 1]))
                i = end + 1
    return tokens


class _Parser:
    """``or := and ('OR' and)*; and := unary ('AND' unary)*;
    unary := ('SKIP' | 'WHILE') unary | '(' or ')' | Name(args)``."""

    def __init__(self, tokens: list[tuple[str, bytes]], ctx: _Context) -> None:
        self.tokens = tokens
        self.pos = 0
        self.ctx = ctx
        self.depth = 0

    def _peek(self) -> tuple[str, bytes]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", b"")

    def parse(self) -> Filter:
        if not self.tokens:
            raise FilterError("Incorrect Filter String")
        result = self._or()
        if self.pos != len(self.tokens):
            closing = self._peek()[0] == ")"
            raise FilterError("Mismatched parenthesis" if closing else "Incorrect Filter String")
        return result

    def _or(self) -> Filter:
        items = [self._and()]
        while self._peek() == ("op", b"OR"):
            self.pos += 1
            items.append(self._and())
        return items[0] if len(items) == 1 else _OrFilter(items)

    def _and(self) -> Filter:
        items = [self._unary()]
        while self._peek() == ("op", b"AND"):
            self.pos += 1
            items.append(self._unary())
        return items[0] if len(items) == 1 else _AndFilter(items)

    def _unary(self) -> Filter:
        kind, value = self._peek()
        self.pos += 1
        if kind == "filter":
            return self._simple(value)
        if kind == "op" and value in (b"SKIP", b"WHILE") or kind == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise FilterError("filter string nests deeper than %d levels" % MAX_NESTING)
            try:
                return self._nested(kind, value)
            finally:
                self.depth -= 1
        if kind == "op":
            raise FilterError("Incorrect input string - %s needs a filter" % value.decode())
        raise FilterError("Mismatched parenthesis" if kind == ")" else "Incorrect Filter String")

    def _nested(self, kind: str, value: bytes) -> Filter:
        if value == b"SKIP":
            return _SkipFilter(self._unary())
        if value == b"WHILE":
            return _WhileMatchFilter(self._unary())
        inner = self._or()
        if self._peek()[0] != ")":
            raise FilterError("Mismatched parenthesis")
        self.pos += 1
        return inner

    def _simple(self, expr: bytes) -> Filter:
        self.ctx.filters += 1
        if self.ctx.filters > MAX_FILTERS:
            raise FilterError("filter string has more than %d filters" % MAX_FILTERS)
        end = len(expr)
        for i, byte in enumerate(expr):
            if byte in b"( ":
                end = i
                break
        if end == 0:
            raise FilterError("Incorrect Filter Name")
        name = expr[:end].decode("utf-8", "replace")
        args = _arguments(expr)
        builder = _BUILDERS.get(name)
        if builder is None:
            if name in _UNSUPPORTED:
                raise FilterError("Filter Name %s is not supported by the embedded HBase server"
                                  % name)
            raise FilterError("Filter Name %s not supported" % name)
        return builder(args, self.ctx)


def parse_filter(text: bytes | str, budget: Budget, reverse: bool = False) -> Filter:
    """Build the filter a filter string describes, as HBase's ``ParseFilter`` does.

    :param text: the filter string (UTF-8 bytes or text)
    :param budget: what ``regexstring:`` comparators may spend per request
    :param reverse: whether the scan runs backwards (row-ordered filters care)
    :raises FilterError: for a malformed string, one over this module's
        bounds, or a filter not supported here
    """
    if isinstance(text, str):
        text = text.encode("utf-8")
    if len(text) > MAX_FILTER_STRING:
        raise FilterError("filter string is longer than %d bytes" % MAX_FILTER_STRING)
    return _Parser(_tokens(text), _Context(reverse, budget)).parse()


def prefix_while_filter(prefix: bytes) -> Filter:
    """``WHILE PrefixFilter(prefix)``, as ``scannerOpenWithPrefix`` uses."""
    return _WhileMatchFilter(_PrefixFilter(prefix, False))
