"""How long and how big each workload runs, per profile."""

from typing import NamedTuple, Tuple

__all__ = ["FULL", "INTERRUPT", "Interrupt", "POINTS", "PROFILES", "QUICK", "SMOKE", "Scale", "WAIT_POINT"]

#: (greenlets, pool size) of the throughput runs.
POINTS: Tuple[Tuple[int, int], ...] = ((50, 4), (500, 10), (5000, 10))
#: The throughput run whose lease waits and memory are reported.
WAIT_POINT = (5000, 10)


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


class Scale(NamedTuple):
    name: str
    #: Seconds each throughput run warms up before it is measured.
    warmup: float
    #: Seconds each throughput run is measured.
    duration: float
    #: Leases per timed loop of the lease overhead, and loops (best one wins).
    lease_loops: int
    lease_repeats: int
    #: Leases in the interruption run.
    leases: int


QUICK = Scale("quick", warmup=0.3, duration=1.5, lease_loops=20000, lease_repeats=5,
              leases=1000)
FULL = Scale("full", warmup=1.0, duration=5.0, lease_loops=100000, lease_repeats=7,
             leases=5000)
#: For the test suite: every code path, a few seconds in all.
SMOKE = Scale("smoke", warmup=0.1, duration=0.3, lease_loops=2000, lease_repeats=2,
              leases=200)
PROFILES = {scale.name: scale for scale in (QUICK, FULL, SMOKE)}
