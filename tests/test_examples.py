"""The examples run for real: gunicorn -k gevent, locust --headless, the crawler.

Each runs as the README's recipe does, from the repository root, and talks to
the embedded HBase server started as a child process (``python -m
green_happybase.testing``), on 127.0.0.1 only, bounded in time and requests.
Every child runs in its own session and is killed with its whole
process group if a test fails.
"""

import http.client
import json
import os
import signal
import socket
import sys
from pathlib import Path

import gevent
import gevent.subprocess
import pytest
from gevent.event import Event
from gevent.pywsgi import WSGIServer
from gevent.threadpool import ThreadPool

from green_happybase import ConnectionPool

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Child:
    """A child process whose output lines a greenlet collects."""

    def __init__(self, argv, env=None, cwd=None):
        self.argv = [str(arg) for arg in argv]
        self.proc = gevent.subprocess.Popen(
            self.argv, stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.STDOUT,
            stdin=gevent.subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
        self.lines = []
        self._new_line = Event()
        self.ended = Event()
        self._reader = gevent.spawn(self._read)

    def _read(self):
        try:
            for raw in self.proc.stdout:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._new_line.set()
        finally:
            self.ended.set()
            self._new_line.set()

    @property
    def output(self):
        return "\n".join(self.lines)

    def count(self, text):
        return sum(text in line for line in self.lines)

    def wait_for(self, text, count=1, timeout=30.0):
        """Wait until *count* output lines contain *text*; False if the output ends first."""
        with gevent.Timeout(timeout, False):
            while self.count(text) < count:
                if self.ended.is_set():
                    return False
                self._new_line.clear()
                self._new_line.wait()
            return True
        return False

    def wait(self, timeout):
        """The exit code; the process group is killed if it runs past *timeout*."""
        try:
            code = self.proc.wait(timeout)
        except gevent.subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s still ran after %s s:\n%s"
                                 % (self.argv[:3], timeout, self.output)) from None
        self._reader.join(5)
        return code

    def stop(self, timeout=30.0):
        """SIGTERM, then :meth:`wait`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        """Kill the child and everything it started (its session's process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def children():
    """Started children; any still running at teardown is killed with its group."""
    started = []
    yield started
    for child in started:
        if child.proc.poll() is None:
            child.kill()
        else:
            try:  # a dead leader may leave workers behind in its group
                os.killpg(child.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def child_env(**extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("GREEN_HAPPYBASE_URL", None)
    env.update(extra)
    return env


def start_hbase(children, *options):
    """The embedded HBase server run as a CLI child process, and its ``HOST:PORT``."""
    child = Child([sys.executable, "-m", "green_happybase.testing", "--host", "127.0.0.1",
                   "--port", "0", *options], env=child_env())
    children.append(child)
    assert child.wait_for("listening on ", timeout=30), child.output
    return child, child.lines[0].split("listening on ", 1)[1].strip()


@pytest.fixture
def hbase_address(children):
    """``HOST:PORT`` of the embedded HBase server, stopped cleanly at teardown."""
    child, address = start_hbase(children)
    yield address
    assert child.stop() == 0, child.output


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- gunicorn ------------------------------------------------------------------


def start_gunicorn(children, url, preload=False, workers=2, attempts=3):
    """The README's recipe, run from the repository root, on a free port.

    Retried on a port conflict.
    """
    for _ in range(attempts):
        port = free_port()
        argv = [BIN / "gunicorn", "-c", "examples/gunicorn/gunicorn.conf.py",
                "--no-control-socket", "-w", str(workers), "-b", "127.0.0.1:%d" % port]
        if preload:
            argv.append("--preload")
        child = Child(argv, env=child_env(GREEN_HAPPYBASE_URL=url), cwd=ROOT)
        children.append(child)
        if child.wait_for(": pool default ready", count=workers, timeout=60):
            return child, port
        if child.proc.poll() is None:
            child.kill()
        if "Connection in use" not in child.output:
            raise AssertionError("gunicorn did not start:\n" + child.output)
    raise AssertionError("no free port for gunicorn after %d attempts" % attempts)


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read(), int(response.getheader("X-Worker", "0"))
    finally:
        conn.close()


REQUESTS = 300


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-load", "preload"])
def test_gunicorn_gevent_workers_answer_every_request_with_its_own_row(
        children, hbase_address, preload):
    """Each of 300 concurrent writes is read back unchanged, from any worker.

    A pool shared across the fork would let one worker read another's reply;
    with a pool per worker every answer belongs to its request.
    """
    url = "hbase://%s/?size=4&acquire_timeout=10&timeout=10000" % hbase_address
    gunicorn, port = start_gunicorn(children, url, preload)
    worker_pids = {int(line.split("worker ")[1].split(":")[0])
                   for line in gunicorn.lines if ": pool default ready" in line}
    assert len(worker_pids) == 2, gunicorn.output
    token = os.urandom(4).hex()

    def roundtrip(i):
        value = ("value %d of %s" % (i, token)).encode() * (1 + i % 7)
        put = request(port, "PUT", "/kv/key-%d-%s" % (i, token), value)
        got = request(port, "GET", "/kv/key-%d-%s" % (i, token))
        return value, put, got

    threads = ThreadPool(32)
    try:
        results = [threads.spawn(roundtrip, i) for i in range(REQUESTS)]
        with gevent.Timeout(90):
            answers = [result.get() for result in results]
        missing = threads.spawn(request, port, "GET", "/kv/never-written-%s" % token).get(20)
    finally:
        threads.kill()
    served_by = set()
    for value, (put_status, _, put_pid), (get_status, body, get_pid) in answers:
        assert put_status == 204 and get_status == 200
        assert body == value
        served_by.update((put_pid, get_pid))
    assert missing[0] == 404
    assert served_by <= worker_pids, (served_by, worker_pids)

    assert gunicorn.stop(timeout=30) == 0, gunicorn.output
    assert "Shutting down: Master" in gunicorn.output
    assert not [pid for pid in worker_pids if pid_alive(pid)], "worker left running"
    if not preload:
        # The master never imports ssl (nor thriftpy2): nothing to warn about.
        assert "MonkeyPatchWarning" not in gunicorn.output, gunicorn.output


def test_gunicorn_app_stores_keys_as_the_bytes_of_the_url(children, hbase_address):
    """A percent-escaped key is stored as its bytes, UTF-8 or not, never encoded twice.

    WSGI gives the path as latin-1 text; encoding it as UTF-8 turned
    ``caf%C3%A9`` into the row ``b"caf\\xc3\\x83\\xc2\\xa9"``.
    """
    url = "hbase://%s/?size=2&acquire_timeout=10&timeout=10000" % hbase_address
    gunicorn, port = start_gunicorn(children, url, workers=1)
    keys = {"caf%C3%A9": b"caf\xc3\xa9", "%FF%00bin": b"\xff\x00bin",
            "%E2%9C%93/ok": b"\xe2\x9c\x93/ok"}

    def roundtrip():
        answers = {}
        for path in keys:
            value = ("value of %s" % path).encode()
            answers[path] = (value, request(port, "PUT", "/kv/" + path, value)[0],
                             request(port, "GET", "/kv/" + path)[:2])
        return answers

    threads = ThreadPool(1)
    try:
        answers = threads.spawn(roundtrip).get(60)
    finally:
        threads.kill()
    for path, (value, put_status, got) in answers.items():
        assert (put_status, got) == (204, (200, value)), path
    with ConnectionPool.from_url("hbase://%s/?size=1" % hbase_address) as pool:
        with pool.table("kv") as table:
            stored = {key: row[b"d:value"] for key, row in table.scan()}
    assert stored == {key: answers[path][0] for path, key in keys.items()}
    assert gunicorn.stop(timeout=30) == 0, gunicorn.output


# -- locust --------------------------------------------------------------------


def run_locust(children, tmp_path, url, users, duration, json_stats=True):
    """The README's locust recipe, headless: the child, its exit code, and its stats.

    The stats are locust's JSON totals by request name; without *json_stats*,
    locust prints its summary and error report instead, and the stats are None.
    """
    argv = [BIN / "locust", "-f", "examples/locustfile.py", "--headless", "-u", users,
            "-r", users, "-t", duration, "--stop-timeout", "0", "--only-summary", "--host", url]
    if json_stats:
        argv += ["--json-file", tmp_path / "stats"]
    locust = Child(argv, env=child_env(), cwd=ROOT)
    children.append(locust)
    code = locust.wait(60)
    if not json_stats:
        return locust, code, None
    entries = json.loads((tmp_path / "stats.json").read_text())
    return locust, code, {entry["name"]: entry for entry in entries}


def test_locust_run_reports_hbase_calls_without_failures(children, hbase_address, tmp_path):
    """20 users for 4 s: every call reported, none failed; users die mid-call."""
    url = "hbase://%s/?size=8&acquire_timeout=10" % hbase_address
    locust, code, by_name = run_locust(children, tmp_path, url, users=20, duration="4s")
    assert code == 0, locust.output
    entries = list(by_name.values())
    assert set(by_name) == {"put", "get", "scan"}, entries
    assert all(entry["method"] == "hbase" for entry in entries)
    assert sum(entry["num_requests"] for entry in entries) > 0
    assert sum(entry["num_failures"] for entry in entries) == 0, locust.output
    assert by_name["get"]["total_content_length"] > 0

    # Every reported put is in HBase; at most one more per user (killed mid-call).
    with ConnectionPool.from_url("hbase://%s/?size=1" % hbase_address) as pool:
        with pool.table("locust") as table:
            rows = sum(1 for _ in table.scan(columns=[b"d:v"], batch_size=1000))
    puts = by_name["put"]["num_requests"]
    assert puts <= rows <= puts + 20, (puts, rows)


def test_locust_with_unreachable_hbase_says_so_and_stops_at_once(children, tmp_path):
    """Nothing listens: one failed ``setup`` request, the reason logged, the run ends.

    Before, every user stopped silently and locust ran its whole time (here
    two minutes, beyond the child's 60 s limit) with no request at all.
    """
    url = "hbase://127.0.0.1:%d/?size=2" % free_port()
    locust, code, by_name = run_locust(children, tmp_path, url, users=5, duration="120s")
    assert code == 1, locust.output
    assert set(by_name) == {"setup"}, by_name
    assert by_name["setup"]["num_failures"] == 1
    assert "cannot use HBase, stopping the run: ConnectionFailed" in locust.output


def test_locust_reports_pool_exhausted_calls_as_failures(children, tmp_path):
    """A pool of one that never waits, 10 users, slow replies: PoolExhausted is a failure."""
    server, address = start_hbase(children, "--latency", "0.02")
    url = "hbase://%s/?size=1&acquire_timeout=0" % address
    locust, code, _ = run_locust(children, tmp_path, url, users=10, duration="2s",
                                 json_stats=False)
    assert code == 1, locust.output
    # locust's error report: a line per request name and error text (the
    # text says how long it waited, so there may be more than one).
    assert locust.count("hbase put: PoolExhausted(") >= 1, locust.output
    assert server.stop() == 0, server.output


# -- crawler -------------------------------------------------------------------

PAGES = 50


def page_html(i):
    links = ["/page/%d" % ((i + 1) % PAGES), "/page/%d#part" % ((i * 7 + 3) % PAGES),
             "/", "#top", "http://127.0.0.2:1/elsewhere", "/missing" if i == 10 else None]
    anchors = "".join('<a href="%s">link</a> ' % link for link in links if link)
    return ("<html><body><h1>page %d</h1>%s</body></html>" % (i, anchors)).encode()


def site_pages():
    pages = {"/page/%d" % i: page_html(i) for i in range(PAGES)}
    pages["/"] = b'<html><body><a href="page/0">start</a></body></html>'
    return pages


def test_crawler_stores_every_page_of_a_site_once(children, hbase_address):
    """51 pages (index + 50) end up in HBase, each fetched exactly once."""
    pages = site_pages()
    hits = {}

    def site(environ, start_response):
        path = environ["PATH_INFO"]
        hits[path] = hits.get(path, 0) + 1
        if path not in pages:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not here"]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [pages[path]]

    web = WSGIServer(("127.0.0.1", 0), site, log=None)
    web.start()
    try:
        base = "http://127.0.0.1:%d" % web.server_port
        crawler = Child([sys.executable, "examples/crawler.py", base + "/",
                         "--hbase", "hbase://%s/?size=3" % hbase_address,
                         "--concurrency", "8", "--max-pages", "200", "--timeout", "10"],
                        env=child_env(), cwd=ROOT)
        children.append(crawler)
        assert crawler.wait(60) == 0, crawler.output
    finally:
        web.stop()
    assert "51 pages stored, 1 broken links, 0 errors" in crawler.output, crawler.output
    assert hits == dict({path: 1 for path in pages}, **{"/missing": 1})

    with ConnectionPool.from_url("hbase://%s/?size=1" % hbase_address) as pool:
        with pool.table("pages") as table:
            stored = {key.decode(): row for key, row in table.scan()}
    assert set(stored) == {base + path for path in pages}
    for path, body in pages.items():
        row = stored[base + path]
        assert row == {b"p:body": body, b"p:status": b"200", b"p:type": b"text/html"}
