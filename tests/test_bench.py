"""``python -m green_happybase.bench``: it runs, reports every figure, and is honest.

The runs use the hidden ``--smoke`` scale (every workload, a few seconds in
all): the figures are not meant to be compared, and nothing here asserts on
speed.
"""

import json
import subprocess
import sys

import happybase
import pytest

from green_happybase.bench.report import failures, targets
from green_happybase.testing import HBaseServer

VARIANTS = ("green", "happybase", "raw", "per_request")
RUN_TIMEOUT = 120


def _bench(tmp_path, *args):
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "green_happybase.bench", "--smoke", "--json", str(out), *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    return _bench(tmp_path_factory.mktemp("bench"))


def test_json_has_every_figure_the_issue_names(embedded_run):
    """The JSON document keeps the issue's keys and shapes exactly."""
    figures, _ = embedded_run
    machine = figures["machine"]
    assert _is_number(machine["cpu_count"])
    assert all(isinstance(machine[key], str) for key in ("python", "gevent", "happybase"))
    assert machine["happybase"] == happybase.__version__
    assert all(figures["lease_us"][key] > 0 for key in ("green", "happybase"))
    points = [(point["greenlets"], point["size"]) for point in figures["throughput"]]
    assert points == [(50, 4), (500, 10), (5000, 10)]
    for point in figures["throughput"]:
        for variant in VARIANTS:
            assert _is_number(point[variant]) and point[variant] > 0, (point, variant)
            assert point["cpu_us"][variant] > 0
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


def test_report_prints_table_and_every_target(embedded_run):
    """A missed target is printed as MISS, never turned into a failure."""
    figures, proc = embedded_run
    assert "Throughput" in proc.stdout and "Targets" in proc.stdout
    names = [target["name"] for target in figures["targets"]]
    assert names == [target["name"] for target in targets(figures)]
    assert len(names) == 1 + 3 * 3 + 2
    for target in figures["targets"]:
        assert ("PASS  " if target["pass"] else "MISS  ") + target["name"] in proc.stdout
    assert "[" in proc.stderr  # progress, one line per step


def test_a_wrong_green_answer_fails_the_run(embedded_run):
    """Wrong answers from green_happybase are a failure, not a missed target."""
    figures = json.loads(json.dumps(embedded_run[0]))
    figures["wrong_answers"]["green"] = 1
    assert failures(figures) == ["green_happybase gave 1 wrong answers under interruption"]


def test_against_a_given_gateway_the_table_is_removed(tmp_path):
    """With --host/--port the bench creates its own table there and drops it."""
    with HBaseServer(subprocess=True) as server:
        conn = happybase.Connection(server.host, server.port)
        conn.create_table("keep_me", {"f": {}})
        figures, proc = _bench(tmp_path, "--host", server.host, "--port", str(server.port))
        assert figures["server"] == {"address": server.address, "embedded": False,
                                     "transport": "buffered", "protocol": "binary"}
        assert figures["wrong_answers"]["green"] == 0
        assert conn.tables() == [b"keep_me"]
        conn.close()


def test_bad_port_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "green_happybase.bench", "--port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--port" in proc.stderr
