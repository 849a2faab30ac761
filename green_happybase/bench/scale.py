"""How long and how big each workload runs, per profile."""

from typing import NamedTuple

__all__ = ["CONTENDED_POINT", "FULL", "INTERRUPT", "Interrupt", "OpenLoop", "POINTS", "QUICK",
           "ROW_POINT", "SMOKE", "Scale", "WAIT_POINT"]

#: (greenlets, pool size) of the throughput runs.
POINTS: tuple[tuple[int, int], ...] = ((50, 4), (500, 10), (5000, 10))
#: The throughput run whose lease waits and memory are reported.
WAIT_POINT = (5000, 10)
#: The throughput run whose client CPU per call is compared with raw_fifo's.
CONTENDED_POINT = (500, 10)
#: The throughput run of each row of the transports and costs tables.
ROW_POINT = (50, 4)


class Interrupt(NamedTuple):
    greenlets: int = 50
    size: int = 10
    #: Share of the calls run under a gevent.Timeout.
    fraction: float = 0.3
    #: Seconds the embedded server waits before every reply meanwhile, so
    #: that a short timeout expires while the reply is on its way.
    latency: float = 0.003
    seed: int = 6


INTERRUPT = Interrupt()


class OpenLoop(NamedTuple):
    """What the open-loop workload offers: requests from outside, each with a deadline."""

    #: Gets per request, all on one lease.
    calls: int = 2
    #: Seconds from a request's arrival until its answer is worthless.
    deadline: float = 0.1
    #: Requests per second, or ``None``: the *loads* below.
    rate: float | None = None
    #: Offered rates as fractions of the capacity measured first.
    loads: tuple[float, ...] = (0.5, 0.9, 1.5)
    size: int = 10
    #: Requests in flight, each a new greenlet, while capacity is measured:
    #: enough to keep every connection busy, few enough to queue little.
    concurrency: int = 20
    seed: int = 14


class Scale(NamedTuple):
    name: str
    #: Seconds each throughput or open-loop run warms up before it is measured.
    warmup: float
    #: Seconds each throughput or open-loop run is measured.
    duration: float
    #: Leases per timed loop of the lease overhead, and loops (best one wins).
    lease_loops: int
    lease_repeats: int
    #: Leases in the interruption run.
    leases: int
    #: Each variant's workload in a fresh child process, point by point, so
    #: that the variants compared run close in time and from a clean start;
    #: otherwise one child per variant and phase, which only saves time.
    fresh_children: bool = True
    #: Seconds each row of the transports and costs tables warms up, and is
    #: measured, in each round: a few seconds a row in all.
    row_warmup: float = 0.3
    row_duration: float = 1.5
    #: Rounds of the transports and costs tables, every row in turn in each:
    #: a row's ratio is the median of its ratios within a round, so that a
    #: change in the machine's load falls on both sides of each.
    row_rounds: int = 3


QUICK = Scale("quick", warmup=0.3, duration=1.5, lease_loops=20000, lease_repeats=5,
              leases=1000, row_warmup=0.2, row_duration=0.8, row_rounds=2)
FULL = Scale("full", warmup=1.0, duration=5.0, lease_loops=100000, lease_repeats=7,
             leases=5000)
#: For the test suite: every code path, a few seconds in all.
SMOKE = Scale("smoke", warmup=0.05, duration=0.15, lease_loops=2000, lease_repeats=2,
              leases=200, fresh_children=False, row_warmup=0.05, row_duration=0.15,
              row_rounds=1)
