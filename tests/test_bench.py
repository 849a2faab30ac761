"""``python -m green_happybase.bench``: it runs, reports every figure, and is honest.

The runs use the hidden ``--smoke`` scale (every workload, a few seconds in
all): the figures are not meant to be compared, and nothing here asserts on
speed. Two runs in all (one embedded, one against a secure gateway); the
argument checks run in this process.
"""

import json
import os
import socket
import ssl
import subprocess
import sys

import gevent
import happybase
import pytest

from green_happybase import ConnectionPool
from green_happybase.auth import Basic
from green_happybase.bench.__main__ import _parse, main
from green_happybase.bench.clients import (
    OPEN_VARIANTS,
    SETUPS,
    VARIANTS,
    _FifoLock,
    unavailable,
)
from green_happybase.bench.report import failures, render, targets
from green_happybase.bench.scale import WAIT_POINT
from green_happybase.bench.suite import _closed_figures
from green_happybase.bench.target import MODES
from green_happybase.testing import HBaseServer
from green_happybase.testing.gateways import ServerAuth

RUN_TIMEOUT = 120
LOADS = [0.5, 0.9, 1.5]
OUTCOMES = ("served", "shed", "timed_out", "failed")


def _run(*args, timeout=RUN_TIMEOUT, env=None):
    return subprocess.run([sys.executable, "-m", "green_happybase.bench", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else dict(os.environ, **env))


def _bench(tmp_path, *args, env=None):
    out = tmp_path / "figures.json"
    proc = _run("--smoke", "--json", str(out), *args, env=env)
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
    assert figures["unavailable"] == {}
    assert figures["server"]["security"] is None
    assert {"costs", "transports", "open_loop"} <= set(figures)


def test_costs_table_has_a_row_per_setup(embedded_run):
    """The plain pool, without keepalive and scanner cleanup, and under
    OpenTelemetry (API only, then the SDK): lease and per-call cost, each
    against the plain pool; the SDK row shows the spans really went out."""
    figures, proc = embedded_run
    costs = figures["costs"]
    assert (costs["greenlets"], costs["size"]) == (50, 4)
    assert list(costs["rows"]) == list(SETUPS) == \
        ["plain", "no_keepalive_cleanup", "otel_api", "otel_sdk"]
    for row in costs["rows"].values():
        assert row["available"], row
        assert row["wrong"] == 0 and row["errors"] == 0, row["first_error"]
        assert row["lease_us"] > 0 and _is_number(row["ops_s"])
        assert row["cpu_us"] is None or row["cpu_us"] > 0
        assert len(row["cpu_us_rounds"]) == costs["rounds"]
        assert row["lease_ratio"] == pytest.approx(row["lease_us"] / costs["rows"]["plain"]
                                                   ["lease_us"])
        assert row["what"] in proc.stdout
    assert costs["rows"]["plain"]["lease_ratio"] == 1
    sdk = costs["rows"]["otel_sdk"]
    assert sdk["spans"] > 0 and sdk["data_points"] > 0
    assert all(costs["rows"][setup]["spans"] is None for setup in ("plain", "otel_api"))
    assert "Costs on the hot path" in proc.stdout


def test_transports_table_has_a_row_per_mode(embedded_run):
    """The same workload through TCP, TLS, HTTP, HTTPS and SASL PLAIN, each
    against a server of its own: every call answered right, ratios to TCP."""
    figures, proc = embedded_run
    transports = figures["transports"]
    assert (transports["greenlets"], transports["size"]) == (50, 4)
    assert list(transports["rows"]) == list(MODES) == ["tcp", "tls", "http", "https",
                                                       "sasl_plain"]
    for mode, row in transports["rows"].items():
        assert row["available"], row
        assert row["wrong"] == 0 and row["errors"] == 0, (mode, row["first_error"])
        assert _is_number(row["ops_s"]) and (row["cpu_us"] is None or row["cpu_us"] > 0)
        assert row["label"] == MODES[mode].label and row["label"] in proc.stdout
    assert transports["rows"]["tcp"]["ops_ratio"] in (1, None)  # None: no call in a round
    assert all(len(row["cpu_us_rounds"]) == transports["rounds"]
               for row in transports["rows"].values())
    assert "Transports:" in proc.stdout and "Kerberos" in proc.stdout


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


def _check_open_loop(open_loop, loads, options=None, security=None):
    """Every request of every load counted once; a variant missing only
    where it cannot run against a gateway served with *options*, *security*."""
    assert open_loop["calls"] == 2 and open_loop["deadline_ms"] == 100
    assert [row["load"] for row in open_loop["loads"]] == loads
    offered = 0
    for row in open_loop["loads"]:
        assert list(row["results"]) == list(OPEN_VARIANTS)
        for variant, result in row["results"].items():
            if not result["available"]:
                # Only the policy the pool may not have yet, or what cannot
                # reach the gateway; it says why.
                assert result["reason"] == unavailable(variant, options, security) is not None
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
    figures["costs"]["rows"]["otel_sdk"]["wrong"] = 4
    figures["transports"]["rows"]["https"]["errors"] = 1
    figures["open_loop"]["loads"][2]["results"]["green_fifo"]["wrong"] = 2
    sdk = figures["costs"]["rows"]["otel_sdk"]["what"]
    assert failures(figures) == [
        "green_happybase gave 1 wrong answers in the interruption run",
        "green_happybase gave 4 wrong answers in the costs table (%s)" % sdk,
        "green_happybase had 1 errors in the transports table (HTTPS)",
        "green_happybase gave 2 wrong answers in the open loop (150% of capacity, green_fifo)"]
    assert targets(figures)[-1]["value"] == 7 and not targets(figures)[-1]["pass"]


def test_columns_of_variants_that_cannot_connect_say_so(embedded_run):
    """Against a TLS, HTTP or SASL gateway the variants built on
    happybase.Connection do not run: their cells are empty and say why, the
    target that needs them says so, and green's figures are all there."""
    figures = json.loads(json.dumps(embedded_run[0]))
    missing = {variant: unavailable(variant, {"transport": "http"}, {}) for variant in VARIANTS}
    missing = {variant: why for variant, why in missing.items() if why}
    assert sorted(missing) == ["happybase", "per_request", "raw_patched"]
    # The suite's results for the variants that ran, from this run's figures.
    results = {variant: {} for variant in VARIANTS if variant not in missing}
    for point in figures["throughput"]:
        for variant in results:
            results[variant][(point["greenlets"], point["size"])] = dict(
                {key: point[key][variant] for key in ("cpu_us", "p99_ms", "errors", "wrong")},
                ops_s=point[variant])
    results["green"][WAIT_POINT].update(figures["wait_by_variant"]["green"])
    results["green"]["lease"] = {"lease_us": figures["lease_us"]["green"]}
    results["green"]["interrupted"] = figures["wrong_answers"]["details"]["green"]
    figures.update(_closed_figures(results, None), unavailable=missing)
    assert figures["lease_us"]["happybase"] is None
    assert figures["wait_by_variant"]["happybase"] is None
    assert figures["throughput"][0]["happybase"] is None
    assert figures["wrong_answers"]["green"] == 0
    report = render(figures)
    assert "not run: happybase, per_request, raw_patched: happybase.Connection speaks " \
           "neither TLS, HTTP nor SASL" in report
    assert "happybase    not run" in report
    lease = next(target for target in targets(figures) if target["name"].startswith("lease"))
    assert lease["value"] is None and lease["note"] == "happybase unavailable"
    assert failures(figures) == []


def test_open_loop_alone_against_a_given_secure_gateway(tmp_path, ca):
    """--open-loop --rate runs the open loop only, at that rate, through
    HTTPS with Basic auth and doAs; happybase's variants cannot connect and
    say so, the password goes nowhere but the gateway, the table is removed."""
    folder = tmp_path / "tls"
    folder.mkdir()
    ca_file, cert_file, key_file = (str(folder / name)
                                    for name in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(ca_file)
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(cert_file)
    leaf.private_key_pem.write_to_path(key_file)
    password = "pw-%s" % os.urandom(8).hex()
    with HBaseServer(subprocess=True, transport="http", tls_cert=cert_file, tls_key=key_file,
                     auth=ServerAuth(users={"alice": password})) as server:
        with ConnectionPool(1, host=server.host, port=server.port, transport="http",
                            tls=ssl.create_default_context(cafile=ca_file),
                            auth=Basic("alice", password)) as pool:
            with pool.connection() as conn:
                conn.create_table("keep_me", {"f": {}})
            figures, proc = _bench(
                tmp_path, "--host", server.host, "--port", str(server.port), "--transport",
                "http", "--tls", "--cafile", ca_file, "--auth", "basic", "--user", "alice",
                "--do-as", "bob", "--open-loop", "--rate", "300",
                env={"GREEN_HAPPYBASE_PASSWORD": password})
            with pool.connection() as conn:
                assert conn.tables() == [b"keep_me"]
        assert server.stats()["users"]["bob"] > 0  # every call made as bob
    assert figures["server"] == {
        "address": server.address, "embedded": False, "transport": "http",
        "protocol": "binary",
        "security": "TLS, verified against %s, auth basic as alice, doAs bob" % ca_file}
    assert figures["server"]["security"] in proc.stdout
    assert "throughput" not in figures and "costs" not in figures
    assert "transports" not in figures and "CLOSED LOOP" not in proc.stdout
    assert figures["open_loop"]["capacity"] is None
    assert figures["open_loop"]["loads"][0]["rate"] == 300
    _check_open_loop(figures["open_loop"], [None], {"transport": "http"}, {"tls": True})
    results = figures["open_loop"]["loads"][0]["results"]
    assert [variant for variant, result in results.items() if not result["available"]] == \
        ["happybase", "semaphore"]
    assert results["happybase"]["reason"] == "happybase.Connection speaks neither TLS, HTTP " \
                                             "nor SASL"
    assert [target["name"] for target in figures["targets"]] == \
        ["wrong answers green, every workload"]
    for text in (proc.stdout, proc.stderr, (tmp_path / "figures.json").read_text()):
        assert password not in text


def _usage_error(capsys, *args):
    """Run the CLI on *args* in this process; return its usage error (exit status 2)."""
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    assert stopped.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def secrets_env(monkeypatch):
    """No password or token in the environment but those a test sets."""
    for name in ("GREEN_HAPPYBASE_PASSWORD", "GREEN_HAPPYBASE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("where", ["missing/figures.json", "."])
def test_unwritable_json_is_a_usage_error_before_the_run(tmp_path, where, capsys):
    """--json to a path that cannot be written stops at once, as argparse errors do."""
    path = tmp_path / where
    error = _usage_error(capsys, "--smoke", "--json", str(path))
    assert "--json: cannot write %s" % path in error
    assert "run against" not in error
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
def test_bad_argument_is_a_usage_error(args, name, capsys):
    assert name in _usage_error(capsys, *args)


PASSWORD = {"GREEN_HAPPYBASE_PASSWORD": "pw-never-shown"}
TOKEN = {"GREEN_HAPPYBASE_TOKEN": "token-never-shown"}
HTTP = ["--host", "gw", "--transport", "http"]


@pytest.mark.parametrize("args, env, message", [
    (["--tls"], {}, "--tls: give --host"),
    (["--auth", "plain", "--user", "u"], PASSWORD, "--auth: give --host"),
    (["--host", "gw", "--cafile", "ca.pem"], {}, "--cafile needs --tls"),
    (["--host", "gw", "--tls-insecure"], {}, "--tls-insecure needs --tls"),
    (["--host", "gw", "--tls", "--cafile", "ca.pem", "--tls-insecure"], {},
     "--cafile and --tls-insecure"),
    (["--host", "gw", "--tls", "--cafile", "/no/such/ca.pem"], {},
     "--cafile: cannot load /no/such/ca.pem"),
    (["--host", "gw", "--user", "u"], {}, "--user needs --auth"),
    (HTTP + ["--auth", "basic"], PASSWORD, "--auth basic needs --user"),
    (HTTP + ["--auth", "basic", "--user", "u"], {},
     "--auth basic needs the password in the environment variable GREEN_HAPPYBASE_PASSWORD"),
    (HTTP + ["--auth", "bearer"], {},
     "--auth bearer needs the token in the environment variable GREEN_HAPPYBASE_TOKEN"),
    (HTTP + ["--auth", "bearer", "--user", "u"], TOKEN, "--user with --auth bearer"),
    (["--host", "gw", "--auth", "basic", "--user", "u"], PASSWORD,
     "--transport buffered --protocol binary --auth basic --user u do not go together"),
    (HTTP + ["--auth", "plain", "--user", "u"], PASSWORD,
     "--transport http --protocol binary --auth plain --user u do not go together"),
    (["--host", "gw", "--transport", "framed", "--auth", "plain", "--user", "u"], PASSWORD,
     "SASL over buffered transport only"),
    (["--host", "gw", "--do-as", "bob"], {}, "--do-as bob do not go together"),
    (["--host", "gw", "--http-path", "/hbase"], {}, "--http-path needs --transport http"),
    (HTTP + ["--protocol", "compact"], {}, "--protocol compact do not go together"),
])
def test_secure_gateway_flags_that_do_not_go_together_are_usage_errors(
        args, env, message, capsys, secrets_env):
    """Each bad combination stops before the run, naming the flags; no secret is shown."""
    for name, value in env.items():
        secrets_env.setenv(name, value)
    error = _usage_error(capsys, *args)
    assert message in error
    assert "never-shown" not in error and "Traceback" not in error


def test_secure_gateway_flags_travel_without_their_secret(secrets_env):
    """What the variants' children get on their command line names the
    token's variable at most, never the token."""
    secrets_env.setenv("GREEN_HAPPYBASE_TOKEN", "token-never-shown")
    args = _parse(HTTP + ["--tls", "--tls-insecure", "--auth", "bearer", "--do-as", "bob",
                          "--http-path", "/hbase"])
    assert args.security == {"tls": True, "cafile": None, "tls_insecure": True,
                             "auth": "bearer", "user": None, "do_as": "bob",
                             "http_path": "/hbase"}
    assert "never-shown" not in repr(vars(args))


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
