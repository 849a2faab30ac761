"""The benchmark: ``python -m green_happybase.bench [--quick] [--open-loop] [--json FILE]``.

Closed loop: greenlets that lease, call and loop at once, for lease
overhead, throughput, client CPU per call, lease waits and correctness
under ``gevent.Timeout``. It compares, in one run and against one server,
four ways of getting a connection under gevent:

``green``
    :class:`green_happybase.ConnectionPool`, in a process that is *not*
    monkey-patched (the pool is cooperative on its own).
``happybase``
    ``happybase.ConnectionPool`` in a process that ran
    ``gevent.monkey.patch_all()`` first, as its users run it under gevent.
``raw``
    one persistent connection per group of greenlets and no pool: the upper
    bound for any pool. It uses the pool's own connection class
    (:class:`green_happybase.GreenConnection`) in the unpatched process, so
    that ``green``/``raw`` isolates what the pool itself costs.
``per_request``
    a new ``happybase.Connection`` for every request (patched process), what
    applications do without a pool; at most *size* connections at once.

An extra column, ``raw_patched``, is ``raw`` with plain
``happybase.Connection`` objects in a patched process: the price of the
connection class rather than of the pool. Another, ``raw_fifo``, is ``raw``
with a lock that serves waiting greenlets in order, as the pool does: gevent's
locks let a releasing greenlet take the lock straight back, so ``raw`` never
pays for fairness and starves most of its greenlets.

Open loop (``--open-loop`` alone): requests arriving at random, each a new
greenlet making a few gets under a deadline, at fractions of the capacity
measured first, through ``green_fifo`` and ``green_adaptive`` (the pool with
each ``queue`` policy), ``happybase``, ``semaphore`` (a
``gevent.lock.BoundedSemaphore`` over a list of happybase connections, what
users hand-roll) and ``raw_fifo``; see :func:`.workloads.open_loop`.

Costs (part of the closed loop): the pool's lease overhead and client CPU
per call as it comes, with ``keepalive=None, scanner_cleanup=False``, and
under OpenTelemetry (API only, then the SDK), side by side in one child; see
:func:`.workloads.costs`. Transports (closed loop, embedded server only):
the same throughput run over TCP, TLS, HTTP, HTTPS and SASL PLAIN, each mode
against a server of its own. ``--transport http``, ``--tls`` and ``--auth``
reach a secure gateway of the user's (see :mod:`.security`), where the
variants built on ``happybase.Connection`` cannot run.

Every workload of every variant runs in a fresh child process (the test
suite's smoke scale groups them per variant), which reports JSON lines on
its stdout; see :mod:`green_happybase.bench.runner`.
"""

__all__: list[str] = []
