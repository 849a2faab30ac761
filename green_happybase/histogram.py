"""A histogram of durations kept in plain numbers, readable from any thread."""

import bisect
from collections.abc import Sequence
from typing import Any

__all__ = ["DURATION_BUCKETS", "Histogram"]

#: Upper bounds, in seconds, of the duration histograms in ``stats()``: the
#: boundaries OpenTelemetry's database conventions advise, and +Inf.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, float("inf"))


class Histogram:
    """Counts of observed seconds per bucket, their sum and count.

    .. versionadded:: 0.2
    """

    __slots__ = ("bounds", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * len(self.bounds)
        self._sum = 0.0

    @property
    def count(self) -> int:
        return sum(self._counts)

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self._sum += seconds

    def snapshot(self, extra_in_first: int = 0) -> dict[str, Any]:
        """``le`` (bounds), cumulative ``counts``, ``sum`` and ``count``.

        *extra_in_first* adds observations of 0 not made one by one (leases
        that did not wait at all).
        """
        counts = list(self._counts)
        counts[0] += extra_in_first
        cumulative: list[int] = []
        running = 0
        for count in counts:
            running += count
            cumulative.append(running)
        return {"le": list(self.bounds), "counts": cumulative, "sum": self._sum,
                "count": running}
