"""``python -m green_happybase.bench``: it runs, reports every figure, and is honest.

The runs use the hidden ``--smoke`` scale (every workload, a few seconds in
all): the figures are not meant to be compared, and nothing here asserts on
speed.
"""

import json
import socket
import subprocess
import sys

import gevent
import happybase
import pytest

from green_happybase.bench.clients import OPEN_VARIANTS, VARIANTS, _FifoLock, unavailable
from green_happybase.bench.report import failures, targets
from green_happybase.testing import HBaseServer

RUN_TIMEOUT = 120
LOADS = [0.5, 0.9, 1.5]
OUTCOMES = ("served", "shed", "timed_out", "failed")


def _run(*args, timeout=RUN_TIMEOUT):
    return subprocess.run([sys.executable, "-m", "green_happybase.bench", *args],
                          capture_output=True, text=True, timeout=timeout)


def _bench(tmp_path, *args):
    out = tmp_path / "figures.json"
    proc = _run("--smoke", "--json", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    return _bench(tmp_path_factory.mktemp("bench"))


def test_json_has_every_figure_the_issue_names(embedded_run):
    """The JSON document keeps the issues' keys and shapes exactly."""
    figures, _ = embedded_run
    machine = figures["machine"]
    assert _is_number(machine["cpu_count"])
    assert all(isinstance(machine[key], str)
               for key in ("python", "gevent", "happybase", "cpu_model"))
    assert machine["happybase"] == happybase.__version__
    assert len(machine["load_average"]) == len(machine["load_average_end"]) == 3
    assert all(figures["lease_us"][key] > 0 for key in ("green", "happybase"))
    points = [(point["greenlets"], point["size"]) for point in figures["throughput"]]
    assert points == [(50, 4), (500, 10), (5000, 10)]
    for point in figures["throughput"]:
        for variant in VARIANTS:
            # A smoke window is short: a busy machine may finish no call in it.
            assert _is_number(point[variant]) and point[variant] >= 0, (point, variant)
            assert point["cpu_us"][variant] is None or point["cpu_us"][variant] > 0
            assert point["errors"][variant] == 0 and point["wrong"][variant] == 0
    wait = figures["wait"]
    for key in ("p50_ms", "p99_ms", "max_ms", "bytes_per_waiter"):
        assert _is_number(wait[key]) and wait[key] >= 0, key
    assert wait["p50_ms"] <= wait["p99_ms"] <= wait["max_ms"]
    wrong = figures["wrong_answers"]
    assert all(_is_number(wrong[key]) for key in ("green", "happybase", "calls"))


def test_interrupted_calls_never_answer_another_request(embedded_run):
    """Under the same cuts, happybase's pool mixes up replies and green's never does.

    The happybase count shows the workload really cuts calls mid-flight; the
    green count is the project's headline.
    """
    figures, proc = embedded_run
    wrong = figures["wrong_answers"]
    assert wrong["calls"] > 0
    assert wrong["details"]["green"]["interrupted"] > 0
    assert wrong["happybase"] > 0
    assert wrong["green"] == 0
    assert failures(figures) == []
    assert "wrong answers" in proc.stdout


def _check_open_loop(open_loop, loads):
    assert open_loop["calls"] == 2 and open_loop["deadline_ms"] == 100
    assert [row["load"] for row in open_loop["loads"]] == loads
    offered = 0
    for row in open_loop["loads"]:
        assert list(row["results"]) == list(OPEN_VARIANTS)
        for variant, result in row["results"].items():
            if not result["available"]:
                # Only the policy the pool may not have yet; it says why.
                assert variant == "green_adaptive" and unavailable(variant)
                assert result["reason"] == unavailable(variant)
                continue
            offered += result["offered"]
            assert result["offered"] == sum(result[key] for key in OUTCOMES), (variant, result)
            assert result["served"] == result["good"] + result["late"]
            assert result["unfinished"] <= result["timed_out"]
            for key in ("offered_s", "served_s", "goodput_s"):
                assert _is_number(result[key]), (variant, key)
            if result["served"]:
                assert result["p50_ms"] <= result["p99_ms"] <= result["p999_ms"]
            if variant.startswith("green"):
                assert result["wrong"] == 0 and result["errors"] == 0, result["first_error"]
    assert offered > 0


def test_open_loop_classifies_every_request_of_every_variant(embedded_run):
    """Each load offers every variant the same arrivals; each request ends one way.

    offered == served + shed + timed_out + failed, per variant and load, and
    green_happybase answers every get with its own row.
    """
    figures, proc = embedded_run
    open_loop = figures["open_loop"]
    capacity = open_loop["capacity"]
    assert capacity["variant"] == "green_fifo" and capacity["requests_s"] > 0
    _check_open_loop(open_loop, LOADS)
    assert [row["rate"] for row in open_loop["loads"]] == \
        pytest.approx([load * capacity["requests_s"] for load in LOADS])
    assert "OPEN LOOP" in proc.stdout and "goodput" in proc.stdout


def test_report_prints_every_target_and_explains_itself(embedded_run):
    """A missed target is printed as MISS, never turned into a failure.

    The report says where it ran and what its columns mean; the retired
    closed-loop targets are gone.
    """
    figures, proc = embedded_run
    names = [target["name"] for target in figures["targets"]]
    assert names == [target["name"] for target in targets(figures)]
    assert len(names) == 1 + 3 + 1 + 1 + 3 + 2 + 1
    assert not any("green/happybase" in name and "ops/s" in name for name in names)
    assert not any("per_request" in name for name in names)
    for target in figures["targets"]:
        assert ("PASS  " if target["pass"] else "MISS  ") + target["name"] in proc.stdout
    machine = figures["machine"]
    assert "%s cores" % machine["cpu_count"] in proc.stdout
    assert "load average" in proc.stdout and machine["python"] in proc.stdout
    for word in ("raw_patched:", "raw_fifo:", "per_request:", "bytes/waiter:", "starved:",
                 "calls cut:", "goodput:", "shed:", "timed_out:", "semaphore:", "Retired"):
        assert word in proc.stdout, word
    assert "[" in proc.stderr  # progress, one line per step


def test_a_wrong_green_answer_fails_the_run(embedded_run):
    """Wrong answers from green_happybase are a failure, not a missed target."""
    figures = json.loads(json.dumps(embedded_run[0]))
    figures["wrong_answers"]["details"]["green"]["wrong"] = 1
    figures["open_loop"]["loads"][2]["results"]["green_fifo"]["wrong"] = 2
    assert failures(figures) == [
        "green_happybase gave 1 wrong answers in the interruption run",
        "green_happybase gave 2 wrong answers in the open loop (150% of capacity, green_fifo)"]
    assert targets(figures)[-1]["value"] == 3 and not targets(figures)[-1]["pass"]


def test_open_loop_alone_against_a_given_gateway(tmp_path):
    """--open-loop --rate runs the open loop only, at that rate; the table is removed."""
    with HBaseServer(subprocess=True) as server:
        conn = happybase.Connection(server.host, server.port)
        conn.create_table("keep_me", {"f": {}})
        figures, proc = _bench(tmp_path, "--host", server.host, "--port", str(server.port),
                               "--open-loop", "--rate", "300")
        assert figures["server"] == {"address": server.address, "embedded": False,
                                     "transport": "buffered", "protocol": "binary"}
        assert "throughput" not in figures and "CLOSED LOOP" not in proc.stdout
        assert figures["open_loop"]["capacity"] is None
        assert figures["open_loop"]["loads"][0]["rate"] == 300
        _check_open_loop(figures["open_loop"], [None])
        assert [target["name"] for target in figures["targets"]] == \
            ["wrong answers green, every workload"]
        assert conn.tables() == [b"keep_me"]
        conn.close()


@pytest.mark.parametrize("where", ["missing/figures.json", "."])
def test_unwritable_json_is_a_usage_error_before_the_run(tmp_path, where):
    """--json to a path that cannot be written stops at once, as argparse errors do."""
    path = tmp_path / where
    proc = _run("--smoke", "--json", str(path), timeout=30)
    assert proc.returncode == 2
    assert "--json: cannot write %s" % path in proc.stderr
    assert "Traceback" not in proc.stderr and "run against" not in proc.stderr


def test_a_failed_run_leaves_no_json_file(tmp_path):
    """Checking --json early creates nothing that a failed run would leave behind."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nobody listens there once it is closed
    out = tmp_path / "figures.json"
    proc = _run("--smoke", "--json", str(out), "--host", "127.0.0.1", "--port", str(port),
                timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "benchmark failed" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, name", [(["--port", "0"], "--port"),
                                        (["--calls", "0"], "--calls"),
                                        (["--deadline-ms", "soon"], "--deadline-ms"),
                                        (["--loads", "0.5,-1"], "each load")])
def test_bad_argument_is_a_usage_error(args, name):
    proc = _run(*args, timeout=30)
    assert proc.returncode == 2
    assert name in proc.stderr


def test_a_killed_waiter_never_keeps_the_fifo_lock():
    """raw_fifo's lock passes on past waiters killed before or after their hand-off."""
    lock = _FifoLock()
    lock.acquire()
    got = []

    def wait(name):
        lock.acquire()
        got.append(name)
        lock.release()

    queued = [gevent.spawn(wait, name) for name in ("killed early", "handed then killed", "last")]
    gevent.sleep(0)  # all three queue, in order
    queued[0].kill()
    # The kill is scheduled first, so it lands after the hand-off below and
    # before the second waiter runs.
    queued[1].kill(block=False)
    lock.release()  # skips the first waiter, hands the lock to the second
    assert gevent.joinall(queued, timeout=10) == queued
    assert got == ["last"]
    lock.acquire()  # free again, without waiting
    lock.release()
