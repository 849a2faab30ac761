"""``regexstring:`` comparators in bounded time, without stalling the hub.

HBase's ``RegexStringComparator`` runs ``java.util.regex`` with ``DOTALL`` and
``find()`` on the value read as ISO-8859-1. Python's ``re`` is a backtracking
engine too: ``(a+)+$`` against ``'a' * 27 + 'b'`` takes tens of seconds, and
all that time it holds the GIL, so no other client of the server is served.

:meth:`Pattern.search` therefore takes one of two roads per value:

- Python's ``re``, when a bound on its backtracking for this pattern and
  this value's length is at most :data:`MAX_BACKTRACK` steps (a few
  milliseconds); leading and trailing ``.*`` are dropped first, as they change
  nothing for a yes/no search;
- otherwise a Thompson-NFA simulation over the value's bytes: at most
  ``len(value) + 1`` steps of at most :data:`MAX_PROGRAM` states each, which
  reports to a :class:`Budget` as it goes, so that other greenlets run in
  between and a request that uses up its budget stops with
  :class:`BudgetExceeded`.

Both follow Java's defaults: ``.`` matches any byte, ``\\d``, ``\\w``,
``\\s`` and ``(?i)`` are ASCII-only. Patterns are parsed by Python's ``re``:
Java-only syntax (``\\p{Alpha}``, ``\\z``, ``\\Q...\\E``) is refused with a
:class:`RegexError`. Backreferences, lookaround, atomic groups and possessive
quantifiers need ``re``; when the bound is too large for them, the search is
refused with :class:`RegexError` rather than risk the hub.

.. versionadded:: 0.2
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

try:  # Python 3.11+
    from re import _compiler as _sre_compile  # type: ignore[attr-defined]
    from re import _constants as _C  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_compile as _sre_compile
    import sre_constants as _C
    import sre_parse as _sre_parse

__all__ = ["Budget", "BudgetExceeded", "MAX_BACKTRACK", "MAX_PROGRAM", "Pattern", "RegexError"]

#: Largest backtracking bound (pattern size times the choices of its
#: quantifiers and alternatives, for one value) left to Python's ``re``.
MAX_BACKTRACK = 1_000_000

#: Largest NFA, in states, after counted repetitions are expanded.
MAX_PROGRAM = 5_000

#: How much matching (seconds of CPU, between pauses) before other greenlets run.
_SLICE = 0.005
_CHECK_EVERY = 256  # NFA steps between two looks at the clock

_FLAGS = re.DOTALL | re.ASCII
_MAXREPEAT = _C.MAXREPEAT

# NFA instructions.
_CHAR, _SPLIT, _JMP, _ASSERT, _MATCH = range(5)

_ALL = frozenset(range(256))
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_CATEGORIES = {
    _C.CATEGORY_DIGIT: frozenset(b"0123456789"),
    _C.CATEGORY_SPACE: frozenset(b" \t\n\r\f\v"),
    _C.CATEGORY_WORD: _WORD,
    _C.CATEGORY_LINEBREAK: frozenset(b"\n"),
}
_NEGATED = {
    _C.CATEGORY_NOT_DIGIT: _C.CATEGORY_DIGIT,
    _C.CATEGORY_NOT_SPACE: _C.CATEGORY_SPACE,
    _C.CATEGORY_NOT_WORD: _C.CATEGORY_WORD,
    _C.CATEGORY_NOT_LINEBREAK: _C.CATEGORY_LINEBREAK,
}
_REPEATS = (_C.MAX_REPEAT, _C.MIN_REPEAT)
# Constructs only a backtracking engine can run.
_NEEDS_RE = frozenset(
    op for op in (getattr(_C, name, None) for name in (
        "GROUPREF", "GROUPREF_EXISTS", "ASSERT", "ASSERT_NOT", "ATOMIC_GROUP",
        "POSSESSIVE_REPEAT")) if op is not None
)


class RegexError(ValueError):
    """A pattern that cannot be parsed, or cannot be run within bounds here."""


class BudgetExceeded(Exception):
    """A request spent its whole regex budget."""


class Budget:
    """The regex time one request may spend, and how matching lets others run.

    :param seconds: CPU seconds of matching per request (between :meth:`reset`
        calls); time spent paused does not count
    :param pause: called about every 5 ms of matching, to let other greenlets
        run (``gevent.sleep``); ``None`` never pauses
    """

    def __init__(self, seconds: float, pause: Callable[[], Any] | None = None) -> None:
        self.seconds = seconds
        self.pause = pause
        self.used = 0.0
        self._slice = 0.0
        self._mark = 0.0

    def reset(self) -> None:
        """Start a new request's allowance."""
        self.used = 0.0

    def begin(self) -> None:
        self._mark = time.perf_counter()

    def checkpoint(self) -> None:
        """Account for the work since the last call; pause or stop as due."""
        now = time.perf_counter()
        spent = now - self._mark
        self.used += spent
        self._slice += spent
        self._mark = now
        if self.used > self.seconds:
            raise BudgetExceeded(
                "regexstring matching used more than %.1f s of this request's budget"
                % self.seconds
            )
        if self.pause is not None and self._slice > _SLICE:
            self._slice = 0.0
            self.pause()
            self._mark = time.perf_counter()


class Pattern:
    """A compiled ``regexstring:`` pattern.

    :raises RegexError: when Python's ``re`` cannot parse it
    """

    def __init__(self, text: str) -> None:
        try:
            parsed = _sre_parse.parse(text, _FLAGS)
        except (re.error, OverflowError, RecursionError) as exc:
            raise RegexError("Invalid regex %r: %s" % (text, exc)) from None
        self.text = text
        items = _strip_dot_stars(list(parsed))
        self._parsed = _sre_parse.SubPattern(parsed.state, items)
        self._flags = parsed.state.flags
        self._items = items
        shape = _Shape.of(items, top=True)
        self._nested = shape.nested
        self._stars = shape.stars
        self._choices = shape.choices * max(shape.size, 1)
        self._needs_re = shape.needs_re
        self._re: re.Pattern[str] | None = None
        self._nfa: _Program | None = None
        starts = [_C.AT_BEGINNING_STRING]
        if not self._flags & re.MULTILINE:
            starts.append(_C.AT_BEGINNING)
        self._anchored = bool(items) and items[0][0] == _C.AT and items[0][1] in starts

    def _program(self) -> _Program | None:
        if self._nfa is None and not self._needs_re:
            try:
                self._nfa = _Program(self._items, self._flags)
            except _NoNFA:
                self._needs_re = True
        return self._nfa

    def _bound(self, length: int) -> float:
        if self._nested:
            return float("inf")
        return float(length + 1) ** (self._stars + 1) * self._choices

    def search(self, data: bytes, budget: Budget) -> bool:
        """Whether the pattern occurs in ``data`` (read as ISO-8859-1).

        :raises BudgetExceeded: when the request's budget runs out
        :raises RegexError: when only ``re`` could run this pattern and the
            bound for this value is too large
        """
        budget.begin()
        if self._bound(len(data)) <= MAX_BACKTRACK:
            if self._re is None:
                self._re = _sre_compile.compile(self._parsed, self._flags)
            found = self._re.search(data.decode("latin-1")) is not None
        elif self._program() is not None:
            found = self._nfa.search(data, budget, self._anchored)  # type: ignore[union-attr]
        else:
            raise RegexError(
                "regexstring %r needs backtracking (backreferences, lookaround, atomic "
                "groups or possessive quantifiers) and may take too long on a %d-byte value"
                % (self.text, len(data))
            )
        budget.checkpoint()
        return found


def _is_dot_star(item: tuple[Any, Any]) -> bool:
    op, av = item
    return op in _REPEATS and av[0] == 0 and av[1] == _MAXREPEAT and list(av[2]) == [
        (_C.ANY, None)]


def _strip_dot_stars(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Drop what cannot change a yes/no search: ``^.*`` / ``.*`` in front,
    ``.*`` / ``.*$`` at the end (``.`` matches every byte)."""
    starts = (_C.AT_BEGINNING, _C.AT_BEGINNING_STRING)
    ends = (_C.AT_END, _C.AT_END_STRING)
    head = 1 if items and items[0][0] == _C.AT and items[0][1] in starts else 0
    if len(items) > head and _is_dot_star(items[head]):
        items = items[head + 1:]
    tail = len(items)
    if items and items[-1][0] == _C.AT and items[-1][1] in ends:
        tail -= 1
    if tail > 0 and _is_dot_star(items[tail - 1]):
        items = items[:tail - 1]
    return items


class _Shape:
    """What bounds a backtracking search: unbounded repetitions (``stars``),
    the product of other choices, the size, and whether a repetition holds
    another repetition or an alternative (``nested``: exponential)."""

    def __init__(self) -> None:
        self.stars = 0
        self.choices = 1
        self.size = 0
        self.nested = False
        self.needs_re = False
        self.varies = False  # holds a repetition of variable count, or an alternative

    @classmethod
    def of(cls, items: list[tuple[Any, Any]], top: bool = False) -> _Shape:
        """The shape of a sequence; ``top`` for the whole pattern's, whose
        last item never has to give anything back."""
        shape = cls()
        for index, (op, av) in enumerate(items):
            shape._add(op, av, last=top and index == len(items) - 1)
        return shape

    def _merge(self, inner: _Shape) -> None:
        self.stars += inner.stars
        self.choices *= inner.choices
        self.size += inner.size
        self.nested = self.nested or inner.nested
        self.needs_re = self.needs_re or inner.needs_re
        self.varies = self.varies or inner.varies

    def _add(self, op: Any, av: Any, last: bool = False) -> None:
        if op in _NEEDS_RE:
            self.needs_re = True
        if op in _REPEATS or op is getattr(_C, "POSSESSIVE_REPEAT", None):
            low, high, body = av
            inner = _Shape.of(list(body))
            if inner.varies:
                self.nested = True
            self._merge(inner)
            if high != low:
                self.varies = True
            if high == _MAXREPEAT:
                self.stars += 0 if last else 1
            elif not last:
                self.choices *= high - low + 1
        elif op == _C.BRANCH:
            self.varies = True
            self.choices *= len(av[1])
            for alternative in av[1]:
                self._merge(_Shape.of(list(alternative)))
        elif op == _C.SUBPATTERN or op is getattr(_C, "ATOMIC_GROUP", None):
            body = av[-1]
            self._merge(_Shape.of(list(body)))
        elif op in (getattr(_C, "ASSERT", None), getattr(_C, "ASSERT_NOT", None)):
            self.stars += 1  # a lookaround may scan the rest of the value
            self._merge(_Shape.of(list(av[1])))
        elif op == getattr(_C, "GROUPREF", None):
            self.stars += 1  # compares up to the whole value
            self.size += 1
        else:
            self.size += 1


class _NoNFA(Exception):
    """The pattern needs a construct, or a size, the NFA does not have."""


def _fold(byte_set: set[int]) -> set[int]:
    """ASCII case folding, as Java's ``(?i)`` does by default."""
    out = set(byte_set)
    for b in byte_set:
        if 65 <= b <= 90:
            out.add(b + 32)
        elif 97 <= b <= 122:
            out.add(b - 32)
    return out


class _Program:
    """A Thompson NFA over bytes: instruction lists and a yes/no search."""

    def __init__(self, items: list[tuple[Any, Any]], flags: int) -> None:
        self.ops: list[int] = []
        self.args: list[Any] = []
        self.alts: list[int] = []
        self._tables: dict[frozenset[int], bytes] = {}
        self._emit(items, flags)
        self._add(_MATCH)

    # Compiling.

    def _add(self, op: int, arg: Any = None, alt: int = -1) -> int:
        if len(self.ops) >= MAX_PROGRAM:
            raise _NoNFA()
        self.ops.append(op)
        self.args.append(arg)
        self.alts.append(alt)
        return len(self.ops) - 1

    def _patch(self, pc: int, arg: Any = None, alt: int | None = None) -> None:
        if arg is not None:
            self.args[pc] = arg
        if alt is not None:
            self.alts[pc] = alt

    def _char(self, allowed: AbstractSet[int]) -> None:
        key = frozenset(allowed)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = bytes(1 if b in key else 0 for b in range(256))
        self._add(_CHAR, table)

    def _class(self, items: list[tuple[Any, Any]], flags: int) -> AbstractSet[int]:
        allowed: set[int] = set()
        negate = False
        for op, av in items:
            if op == _C.NEGATE:
                negate = True
            elif op == _C.LITERAL:
                allowed.add(av)
            elif op == _C.RANGE:
                allowed.update(range(av[0], min(av[1], 255) + 1))
            elif op == _C.CATEGORY and av in _CATEGORIES:
                allowed |= _CATEGORIES[av]
            elif op == _C.CATEGORY and av in _NEGATED:
                allowed |= _ALL - _CATEGORIES[_NEGATED[av]]
            else:
                raise _NoNFA()
        if flags & re.IGNORECASE:
            allowed = _fold(allowed)
        allowed &= _ALL
        return _ALL - allowed if negate else allowed

    def _emit(self, items: list[tuple[Any, Any]], flags: int) -> None:
        for op, av in items:
            self._emit_one(op, av, flags)

    def _emit_one(self, op: Any, av: Any, flags: int) -> None:
        if op in (_C.LITERAL, _C.NOT_LITERAL):
            allowed = self._class([(_C.LITERAL, av)], flags)
            self._char(allowed if op == _C.LITERAL else _ALL - allowed)
        elif op == _C.ANY:
            self._char(_ALL if flags & re.DOTALL else _ALL - {10})
        elif op == _C.IN:
            self._char(self._class(list(av), flags))
        elif op == _C.AT:
            self._add(_ASSERT, self._assertion(av, flags))
        elif op == _C.SUBPATTERN:
            _group, add_flags, del_flags, body = av
            self._emit(list(body), (flags | add_flags) & ~del_flags)
        elif op == _C.BRANCH:
            self._branch([list(alt) for alt in av[1]], flags)
        elif op in _REPEATS:
            self._repeat(av[0], av[1], list(av[2]), flags)
        else:
            raise _NoNFA()

    @staticmethod
    def _assertion(at: Any, flags: int) -> Any:
        if flags & re.MULTILINE:
            return {_C.AT_BEGINNING: _C.AT_BEGINNING_LINE, _C.AT_END: _C.AT_END_LINE}.get(at, at)
        return at

    def _branch(self, alternatives: list[list[tuple[Any, Any]]], flags: int) -> None:
        jumps = []
        for alternative in alternatives[:-1]:
            split = self._add(_SPLIT, len(self.ops) + 1)
            self._emit(alternative, flags)
            jumps.append(self._add(_JMP))
            self._patch(split, alt=len(self.ops))
        self._emit(alternatives[-1], flags)
        for jump in jumps:
            self._patch(jump, arg=len(self.ops))

    def _repeat(self, low: int, high: int, body: list[tuple[Any, Any]], flags: int) -> None:
        for _ in range(low):
            self._emit(body, flags)
        if high == _MAXREPEAT:
            split = self._add(_SPLIT, len(self.ops) + 1)
            self._emit(body, flags)
            self._add(_JMP, split)
            self._patch(split, alt=len(self.ops))
            return
        splits = []
        for _ in range(high - low):
            splits.append(self._add(_SPLIT, len(self.ops) + 1))
            self._emit(body, flags)
        for split in splits:
            self._patch(split, alt=len(self.ops))

    # Running.

    @staticmethod
    def _holds(at: Any, data: bytes, pos: int) -> bool:
        n = len(data)
        if at in (_C.AT_BEGINNING, _C.AT_BEGINNING_STRING):
            return pos == 0
        if at == _C.AT_BEGINNING_LINE:
            return pos == 0 or data[pos - 1] == 10
        if at == _C.AT_END:
            return pos == n or (pos == n - 1 and data[pos] == 10)
        if at == _C.AT_END_STRING:
            return pos == n
        if at == _C.AT_END_LINE:
            return pos == n or data[pos] == 10
        before = pos > 0 and data[pos - 1] in _WORD
        after = pos < n and data[pos] in _WORD
        if at == _C.AT_BOUNDARY:
            return before != after
        if at == _C.AT_NON_BOUNDARY:
            return before == after
        raise RegexError("unsupported assertion %s" % at)

    def _follow(self, out: list[int], pc: int, data: bytes, pos: int, seen: list[int]) -> bool:
        """Add the states reachable from ``pc`` without reading; True on a match."""
        ops, args, alts = self.ops, self.args, self.alts
        stack = [pc]
        while stack:
            pc = stack.pop()
            if seen[pc] == pos:
                continue
            seen[pc] = pos
            op = ops[pc]
            if op == _CHAR:
                out.append(pc)
            elif op == _SPLIT:
                stack.append(alts[pc])
                stack.append(args[pc])
            elif op == _JMP:
                stack.append(args[pc])
            elif op == _ASSERT:
                if self._holds(args[pc], data, pos):
                    stack.append(pc + 1)
            else:
                return True
        return False

    def search(self, data: bytes, budget: Budget, anchored: bool) -> bool:
        args = self.args
        seen = [-1] * len(self.ops)
        current: list[int] = []
        steps = 0
        for pos in range(len(data) + 1):
            if (pos == 0 or not anchored) and self._follow(current, 0, data, pos, seen):
                return True
            if pos == len(data) or (anchored and not current):
                return False
            byte = data[pos]
            following: list[int] = []
            for pc in current:
                if args[pc][byte] and self._follow(following, pc + 1, data, pos + 1, seen):
                    return True
            current = following
            steps += len(current) + 1
            if steps >= _CHECK_EVERY:
                steps = 0
                budget.checkpoint()
        return False
