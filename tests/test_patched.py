"""A pool built before ``gevent.monkey.patch_all()`` behaves like one built after.

gunicorn's ``preload_app`` imports the application, and so builds its pool,
in the unpatched master; the gevent worker patches later. Each scenario runs
in its own Python process, against a server in another process.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from green_happybase.testing import HBaseServer

SCRIPT = textwrap.dedent("""
    import json, random, sys
    from green_happybase import ConnectionPool
    host, port, patch_first = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "yes"
    if patch_first:
        from gevent import monkey; monkey.patch_all()
    pool = ConnectionPool(4, host=host, port=port)
    if not patch_first:
        from gevent import monkey; monkey.patch_all()
    import gevent
    from gevent.event import Event

    with pool.connection() as conn:
        conn.create_table("t", {"f": {}})
        for i in range(20):
            conn.table("t").put(b"row-%d" % i, {b"f:v": b"value-%d" % i})

    # Four greenlets at once hold four distinct connections.
    held, all_in, release = [], Event(), Event()
    def hold():
        with pool.connection() as conn:
            held.append(id(conn))
            if len(held) == 4:
                all_in.set()
            release.wait(5)
    holders = [gevent.spawn(hold) for _ in range(4)]
    all_in.wait(5)
    release.set()
    gevent.joinall(holders, timeout=5)

    # Interrupted calls never hand their reply to the next lease.
    wrong = 0
    def ask():
        global wrong
        key = random.randrange(20)
        try:
            with gevent.Timeout(random.uniform(0, 0.004)):
                with pool.connection() as conn:
                    if conn.table("t").row(b"row-%d" % key)[b"f:v"] != b"value-%d" % key:
                        wrong += 1
        except gevent.Timeout:
            pass
    for _ in range(10):
        gevent.joinall([gevent.spawn(ask) for _ in range(40)], timeout=10)
    stats = pool.stats()
    print(json.dumps({"distinct": len(set(held)), "wrong": wrong,
                      "discarded": stats["discarded_total"],
                      "balanced": stats["open"] == stats["idle"] + stats["in_use"]}))
""")


@pytest.mark.parametrize("patch_first", ["yes", "no"])
def test_pool_built_before_or_after_patching(patch_first):
    with HBaseServer(subprocess=True) as server:
        server.set_latency(0.001)
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, server.host, str(server.port), patch_first],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"distinct": 4, "wrong": 0, "discarded": result["discarded"],
                      "balanced": True}
    assert result["discarded"] > 0  # the interruptions did land mid-call
