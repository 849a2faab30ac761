"""Configuration: pools from hbase:// URLs, and the per-process registry."""

import os
import signal
import time

import gevent
import gevent.os
import pytest

from green_happybase import ConnectionPool, PoolError
from green_happybase.config import (
    DEFAULT_SIZE,
    ENV_URL,
    PoolNotConfigured,
    close_all,
    configure,
    get_pool,
    parse_url,
)
from green_happybase.testing import HBaseServer

ISSUE_URL = ("hbase://host-a:9090,host-b:9090/?size=10&min_size=2&transport=framed"
             "&protocol=compact&timeout=5000&table_prefix=app")


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch):
    monkeypatch.delenv(ENV_URL, raising=False)
    yield
    close_all()


def url_of(server, query=""):
    return "hbase://%s/?%s" % (server.address, query)


# -- parse_url ---------------------------------------------------------------


def test_issue_url_gives_hosts_and_typed_options():
    assert parse_url(ISSUE_URL) == (10, {
        "hosts": [("host-a", 9090), ("host-b", 9090)],
        "min_size": 2,
        "transport": "framed",
        "protocol": "compact",
        "timeout": 5000,
        "table_prefix": "app",
    })


@pytest.mark.parametrize("query, expected", [
    ("size=3", {}),
    ("min_size=2", {"min_size": 2}),
    ("max_idle=4", {"max_idle": 4}),
    ("max_idle=none", {"max_idle": None}),
    ("max_waiting=", {"max_waiting": None}),
    ("idle_timeout=1.5", {"idle_timeout": 1.5}),
    ("idle_timeout=None", {"idle_timeout": None}),
    ("max_lifetime=60", {"max_lifetime": 60.0}),
    ("acquire_timeout=0.25", {"acquire_timeout": 0.25}),
    ("leak_timeout=none", {"leak_timeout": None}),
    ("autoconnect=false", {"autoconnect": False}),
    ("autoconnect=YES", {"autoconnect": True}),
    ("check=0", {"check": False}),
    ("check=on", {"check": True}),
    ("retry_interval=0.1&retry_max=2", {"retry_interval": 0.1, "retry_max": 2.0}),
    ("check_after=0", {"check_after": 0.0}),
    ("name=orders%20db", {"name": "orders db"}),
    ("name=a+b", {"name": "a b"}),
    ("timeout=250", {"timeout": 250}),
    ("timeout=2.5", {"timeout": 2.5}),
    ("timeout=none", {"timeout": None}),
    ("compat=0.94", {"compat": "0.94"}),
    ("table_prefix=", {"table_prefix": None}),
    ("table_prefix_separator=%3A", {"table_prefix_separator": ":"}),
    ("", {}),
    ("&&size=3&", {}),
])
def test_each_parameter_gets_its_type(query, expected):
    size, kwargs = parse_url("hbase://h:1/?" + query)
    assert size == (3 if "size=3" in query else DEFAULT_SIZE)
    assert kwargs == dict(expected, host="h", port=1)
    for key, value in expected.items():
        assert type(kwargs[key]) is type(value), key


@pytest.mark.parametrize("address, expected", [
    ("", {}),
    ("db", {"host": "db", "port": 9090}),
    ("db:9091", {"host": "db", "port": 9091}),
    ("[::1]:9091", {"host": "::1", "port": 9091}),
    ("[::1]", {"host": "::1", "port": 9090}),
    ("a,b:2,[::1]:3", {"hosts": [("a", 9090), ("b", 2), ("::1", 3)]}),
])
def test_address_names_one_or_several_servers(address, expected):
    assert parse_url("hbase://%s/" % address) == (DEFAULT_SIZE, expected)
    assert parse_url("hbase://%s" % address) == (DEFAULT_SIZE, expected)


@pytest.mark.parametrize("url, named", [
    ("http://h:9090/", "http://h:9090/"),
    ("h:9090", "h:9090"),
    ("hbase://h/table", "/table"),
    ("hbase://h/#x", "'x'"),
    ("hbase://user:pw@h/", "hbase://user:pw@h/"),
    ("hbase://h:port/", "'port'"),
    ("hbase://h:0/", "'0'"),
    ("hbase://h:65536/", "'65536'"),
    ("hbase://a,,b/", "''"),
    ("hbase://[::1/", "[::1"),
    ("hbase://h/?size=ten", "size='ten'"),
    ("hbase://h/?size=-1", "size='-1'"),
    ("hbase://h/?size=", "size=''"),
    ("hbase://h/?min_size=1.5", "min_size='1.5'"),
    ("hbase://h/?idle_timeout=soon", "idle_timeout='soon'"),
    ("hbase://h/?acquire_timeout=-1", "acquire_timeout='-1'"),
    ("hbase://h/?max_lifetime=inf", "max_lifetime='inf'"),
    ("hbase://h/?retry_max=nan", "retry_max='nan'"),
    ("hbase://h/?retry_interval=none", "retry_interval='none'"),
    ("hbase://h/?autoconnect=maybe", "autoconnect='maybe'"),
    ("hbase://h/?timeout=0", "timeout='0'"),
    ("hbase://h/?transport=zeromq", "transport='zeromq'"),
    ("hbase://h/?protocol=json", "protocol='json'"),
    ("hbase://h/?compat=2.0", "compat='2.0'"),
    ("hbase://h/?name=", "name=''"),
    ("hbase://h/?sise=10", "sise='10'"),
    ("hbase://h/?size=1&bogus=x&other=y", "bogus='x', other='y'"),
    ("hbase://h/?size=1&size=2", "'size'"),
    ("hbase://h/?size", "'size'"),
    ("hbase://h/?host=other", "host='other'"),
    ("hbase://h/?hosts=a,b", "hosts='a,b'"),
    ("hbase://h/?on_connect=print", "on_connect='print'"),
])
def test_bad_url_raises_value_error_naming_it(url, named):
    with pytest.raises(ValueError) as info:
        parse_url(url)
    assert named in str(info.value)


def test_url_must_be_a_string():
    with pytest.raises(TypeError, match="'url'"):
        parse_url(b"hbase://h/")  # type: ignore[arg-type]


def test_overrides_win_and_servers_replace_servers():
    assert parse_url("hbase://a,b/?size=3&timeout=5", size=7, timeout=None) == (
        7, {"hosts": [("a", 9090), ("b", 9090)], "timeout": None})
    assert parse_url("hbase://a,b/?size=3", host="c") == (3, {"host": "c"})
    assert parse_url("hbase://a:1/", hosts=["c:2"]) == (DEFAULT_SIZE, {"hosts": ["c:2"]})


def test_every_url_option_is_accepted_by_the_pool(hbase_server):
    """A URL using every parameter builds a pool that works."""
    query = ("size=3&min_size=1&max_idle=2&idle_timeout=30&max_lifetime=600"
             "&acquire_timeout=5&max_waiting=10&autoconnect=true&retry_interval=0.2"
             "&retry_max=3&check=true&check_after=1&leak_timeout=60&name=every"
             "&timeout=5000&transport=%s&protocol=%s&compat=0.98&table_prefix=app"
             "&table_prefix_separator=%%2D" % (hbase_server.transport, hbase_server.protocol))
    size, kwargs = parse_url(url_of(hbase_server, query))
    with ConnectionPool(size, **kwargs) as pool:
        assert pool.name == "every" and pool.size == 3 and pool.min_size == 1
        with pool.connection() as conn:
            conn.create_table("users", {"f": {}})
            conn.table("users").put(b"k", {b"f:c": b"v"})
        with pool.connection(table_prefix=None) as conn:
            assert conn.tables() == [b"app-users"]


def test_framed_compact_url_talks_to_a_framed_compact_server():
    with HBaseServer(transport="framed", protocol="compact") as server:
        size, kwargs = parse_url(url_of(server, "size=2&transport=framed&protocol=compact"
                                                "&table_prefix=app"))
        with ConnectionPool(size, **kwargs) as pool:
            with pool.connection() as conn:
                conn.create_table("t", {"f": {}})
                with pool.table("t") as table:
                    table.put(b"r", {b"f:c": b"framed"})
                    assert table.row(b"r") == {b"f:c": b"framed"}
                assert conn.tables() == [b"t"]


def test_several_servers_in_the_url_share_the_connections():
    with HBaseServer() as first, HBaseServer() as second:
        size, kwargs = parse_url("hbase://%s,%s/?size=4&min_size=4"
                                 % (first.address, second.address))
        with ConnectionPool(size, **kwargs) as pool:
            hosts = pool.stats()["hosts"]
            assert set(hosts) == {first.address, second.address}
            assert [h["open"] for h in hosts.values()] == [2, 2]


def test_from_url_builds_the_pool_and_overrides_win(hbase_server):
    pool = ConnectionPool.from_url(url_of(hbase_server, "size=2&name=fromurl"), size=3)
    with pool:
        assert (pool.name, pool.size) == ("fromurl", 3)
        with pool.connection() as conn:
            assert conn.tables() == []
    with pytest.raises(ValueError, match="sise='2'"):
        ConnectionPool.from_url(url_of(hbase_server, "sise=2"))


# -- the registry --------------------------------------------------------------


def test_configure_then_get_pool_returns_that_pool(hbase_server):
    pool = configure(url_of(hbase_server, "size=2"))
    assert get_pool() is pool and get_pool("default") is pool
    assert pool.name == "default" and pool.size == 2
    other = configure({"size": 1, "host": hbase_server.host, "port": hbase_server.port,
                       "name": "explicit"}, name="other")
    assert get_pool("other") is other and other.name == "explicit"
    with get_pool().connection() as conn:
        conn.create_table("t", {"f": {}})
    with get_pool("other").table("t") as table:
        table.put(b"k", {b"f:c": b"v"})


def test_configure_again_closes_the_old_pool(hbase_server):
    old = configure(url_of(hbase_server, "size=2"))
    new = configure(url_of(hbase_server, "size=3"))
    assert get_pool() is new and new is not old
    assert old.stats()["closed"] and not new.stats()["closed"]


def test_configure_with_bad_options_keeps_the_registered_pool(hbase_server):
    pool = configure(url_of(hbase_server, "size=2"))
    with pytest.raises(ValueError, match="size='x'"):
        configure(url_of(hbase_server, "size=x"))
    with pytest.raises(ValueError, match="'size'"):
        configure({"host": hbase_server.host})
    with pytest.raises(TypeError, match="url_or_options"):
        configure(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'name'"):
        configure(url_of(hbase_server), name="")
    assert get_pool() is pool and not pool.stats()["closed"]


def test_get_pool_with_nothing_configured_raises_a_clear_error():
    with pytest.raises(PoolNotConfigured, match=ENV_URL) as info:
        get_pool()
    assert isinstance(info.value, PoolError) and isinstance(info.value, LookupError)
    with pytest.raises(LookupError, match="'reports'"):
        get_pool("reports")


def test_get_pool_builds_the_default_pool_from_the_environment(hbase_server, monkeypatch):
    monkeypatch.setenv(ENV_URL, url_of(hbase_server, "size=3"))
    pool = get_pool()
    assert get_pool() is pool and pool.size == 3 and pool.name == "default"
    with pytest.raises(PoolNotConfigured):
        get_pool("other")  # only the default name reads the environment


def test_greenlets_racing_to_build_from_the_environment_get_one_pool(hbase_server,
                                                                     monkeypatch):
    """Building connects and yields; the losers close their pool."""
    monkeypatch.setenv(ENV_URL, url_of(hbase_server, "size=2"))
    greenlets = [gevent.spawn(get_pool) for _ in range(5)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    pools = {id(g.value): g.value for g in greenlets}
    assert len(pools) == 1
    (pool,) = pools.values()
    assert get_pool() is pool and not pool.stats()["closed"]
    assert hbase_server.stats()["accepted"] == 5
    # The four losing pools were closed: the server sees their connections go.
    deadline = time.monotonic() + 5
    while hbase_server.stats()["connections"] > 1 and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert hbase_server.stats()["connections"] == 1


def test_close_all_empties_the_registry(hbase_server):
    pools = [configure(url_of(hbase_server, "size=1"), name=n) for n in ("a", "b")]
    close_all()
    assert all(p.stats()["closed"] for p in pools)
    with pytest.raises(PoolNotConfigured):
        get_pool("a")


def _wait_for_child(pid, seconds):
    """The exit code of a child made by gevent.fork() (which reaps it)."""
    try:
        with gevent.Timeout(seconds):
            _, status = gevent.os.waitpid(pid, 0)
    except gevent.Timeout:
        os.kill(pid, signal.SIGKILL)
        gevent.os.waitpid(pid, 0)
        raise AssertionError("forked child did not finish in %s s" % seconds) from None
    return os.waitstatus_to_exitcode(status)


def test_forked_child_uses_the_registered_pool_without_breaking_the_parents():
    """The child gets working connections of its own; the parent's survive."""
    with HBaseServer(subprocess=True) as server:
        pool = configure(url_of(server, "size=2"))
        with pool.connection() as conn:
            conn.create_table("t", {"f": {}})
            parent_socket = conn._socket.sock
        pid = gevent.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                with gevent.Timeout(10):
                    child_pool = get_pool()
                    with child_pool.table("t") as table:
                        table.put(b"from-child", {b"f:c": b"%d" % os.getpid()})
                    stats = child_pool.stats()
                    if child_pool is pool and stats["open"] == 1 and stats["acquired_total"] == 1:
                        code = 0
            finally:
                os._exit(code)
        assert _wait_for_child(pid, 15) == 0
        with pool.connection() as conn:
            assert conn._socket.sock is parent_socket  # the same, unbroken connection
            assert conn.table("t").row(b"from-child") == {b"f:c": b"%d" % pid}
        stats = pool.stats()
        assert stats["discarded_total"] == 0 and stats["open"] == 1, stats
        assert server.stats()["accepted"] == 2


@pytest.mark.parametrize("url, named", [
    ("http://localhost:9090/", "hbase://"),
    ("hbase://localhost/?size=ten", "size='ten'"),
    ("hbase://localhost/?max_size=3", "max_size='3'"),
])
def test_a_malformed_environment_url_names_the_variable(url, named, monkeypatch):
    """The error says the URL came from GREEN_HAPPYBASE_URL, and what is wrong in it."""
    monkeypatch.setenv(ENV_URL, url)
    with pytest.raises(ValueError) as info:
        get_pool()
    assert ENV_URL in str(info.value) and named in str(info.value)


@pytest.mark.parametrize("typo, suggestion", [
    ("max_size", "size"), ("pool_size", "size"), ("min_sise", "min_size"),
    ("acquire_timout", "acquire_timeout"), ("idle_time_out", "idle_timeout"),
])
def test_a_misspelt_option_is_named_with_the_closest_one(typo, suggestion):
    with pytest.raises(TypeError) as info:
        ConnectionPool(2, autoconnect=False, **{typo: 1})
    message = str(info.value)
    assert repr(typo) in message and "did you mean %r" % suggestion in message
