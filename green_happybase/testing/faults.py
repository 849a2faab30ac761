"""What a test asks the embedded server to get wrong, and the checks on it.

:class:`Faults` holds the state of the misbehaviours that act per call
(latency, closing connections after some calls); the server reads it on
every call. The ones that act on sockets (dropping connections, refusing
connects, stopping) live with the sockets, in :mod:`.server`.

.. versionadded:: 0.2
"""
from __future__ import annotations

import numbers
from typing import Any

__all__ = ["Faults", "calls", "choice", "seconds"]


def choice(name: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise ValueError("%s must be one of %s, not %r" % (name, ", ".join(sorted(choices)), value))


def seconds(name: str, value: Any, *, positive: bool) -> float:
    """``value`` as seconds; ``positive`` refuses 0 as well as negatives."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a number of seconds, not %r" % (name, value))
    if value < 0 or (positive and value == 0) or value != value:
        raise ValueError("%s must be %s, not %r" % (name, "> 0" if positive else ">= 0", value))
    return float(value)


def calls(n: Any) -> int | None:
    """A number of calls (``n``), or ``None``."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("n must be an int or None, not %r" % (n,))
    if n < 1:
        raise ValueError("n must be >= 1 or None, not %r" % (n,))
    return n


class Faults:
    """Per-call misbehaviour: a delay before every reply, and connections
    closed right after their reply to their ``n``-th call."""

    def __init__(self) -> None:
        self.latency = 0.0
        self.close_after: int | None = None
        # Bumped by set_close_after(), so each connection counts from that moment.
        self.epoch = 0

    def set_close_after(self, n: int | None) -> None:
        self.close_after = n
        self.epoch += 1

    def counter(self) -> _CallCounter:
        """A counter for one connection."""
        return _CallCounter(self)


class _CallCounter:
    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._epoch = faults.epoch
        self._served = 0

    def served(self) -> bool:
        """Count one answered call; True when the connection must close now."""
        faults = self._faults
        if self._epoch != faults.epoch:
            self._epoch, self._served = faults.epoch, 0
        self._served += 1
        return faults.close_after is not None and self._served >= faults.close_after
