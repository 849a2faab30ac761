"""The pool's contract over every transport: TCP, TLS, HTTP, HTTPS, SASL PLAIN.

Each mode runs the same tests: leases and real calls, an interruption storm
with no wrong answer and no leaked socket, a connection the server dropped
replaced unseen, a fork where parent and child each get their own answers,
and one TCP connection per pooled connection.
"""

import os
import pickle
import random
import ssl

import gevent
import pytest

from green_happybase import AuthenticationFailed, ConnectionFailed, ConnectionPool
from green_happybase.auth import Basic, Bearer, Plain
from green_happybase.testing import HBaseServer
from green_happybase.testing.gateways import ServerAuth
from poolkit import ROWS, ask, balanced, fill_table, socket_fds

MODES = ["tcp", "tls", "http", "https", "sasl-plain", "http-basic"]




@pytest.fixture(scope="module")
def cert_files(ca, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


def client_context(ca):
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def server_and_options(mode, ca, cert_files, **server_options):
    """An embedded server in *mode* (in a subprocess), and the pool's options for it."""
    tls = mode in ("tls", "https")
    server = {"tls_cert": cert_files[0], "tls_key": cert_files[1]} if tls else {}
    client = {"tls": client_context(ca)} if tls else {}
    if mode in ("http", "https", "http-basic"):
        server["transport"] = client["transport"] = "http"
    if mode == "sasl-plain":
        server["auth"] = ServerAuth(users={"alice": "s3cret"})
        client["auth"] = Plain("alice", "s3cret")
    if mode == "http-basic":
        server["auth"] = ServerAuth(users={"alice": "s3cret"})
        client["auth"] = Basic("alice", "s3cret")
        client["do_as"] = "bob"
    server.update(server_options)
    return HBaseServer(subprocess=True, **server), client


@pytest.fixture(params=MODES)
def mode(request, ca, cert_files):
    server, options = server_and_options(request.param, ca, cert_files)
    with server:
        yield request.param, server, options


def make(server, options, size=4, **more):
    # The certificate names 127.0.0.1 too: no name to resolve (a forked
    # child's resolver needs gevent.reinit(), which os.fork() alone skips).
    return ConnectionPool(size, host=server.host, port=server.port, connect_timeout=5,
                          **options, **more)


def test_leases_and_calls_work_in_every_mode(mode):
    name, server, options = mode
    with make(server, options) as pool:
        fill_table(pool)
        assert all(ask(pool, key) for key in range(ROWS))
        with pool.connection() as conn:
            assert b"t" in conn.tables()
            with pool.connection() as inner:
                assert inner is conn
        assert balanced(pool)
    if name == "http-basic":
        assert server.stats()["users"].get("bob")  # doAs: the effective user


def test_interruption_storm_gives_no_wrong_answer_in_every_mode(mode):
    name, server, options = mode
    base = socket_fds()
    with make(server, options, size=8) as pool:
        fill_table(pool)
        server.set_latency(0.002)

        def one():
            key = random.randrange(ROWS)
            try:
                with gevent.Timeout(random.uniform(0, 0.02)):
                    return "right" if ask(pool, key) else "wrong"
            except gevent.Timeout:
                return "cut"

        greenlets = [gevent.spawn(one) for _ in range(200)]
        gevent.sleep(0.005)
        for victim in random.sample(greenlets, 20):
            victim.kill(block=False)
        gevent.joinall(greenlets, timeout=60)
        assert all(g.ready() for g in greenlets)
        outcomes = [g.value for g in greenlets]
        assert "wrong" not in outcomes
        server.set_latency(0)
        assert ask(pool, 1)
        assert balanced(pool)
        assert socket_fds() - base == pool.stats()["open"]
    assert socket_fds() == base


def test_a_connection_the_server_dropped_is_replaced_unseen(mode):
    name, server, options = mode
    with make(server, options, size=2, min_size=2) as pool:
        fill_table(pool)
        server.drop_connections()
        for key in range(4):
            assert ask(pool, key)
        assert balanced(pool)


def test_one_tcp_connection_per_pooled_connection(mode):
    name, server, options = mode
    with make(server, options, size=2) as pool:
        fill_table(pool)
        for key in range(ROWS):
            assert ask(pool, key)
        # Keep-alive over HTTP: every request of a connection on one socket.
        assert server.stats()["accepted"] == pool.stats()["open"] == 1


def test_fork_gives_parent_and_child_their_own_connections(mode):
    name, server, options = mode
    with make(server, options, size=2) as pool:
        fill_table(pool)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            result: object = "no result"
            try:
                with gevent.Timeout(20):
                    result = all(ask(pool, key) for key in range(ROWS))
            except BaseException as error:
                result = repr(error)
            finally:
                os.write(write_end, pickle.dumps(result))
                os._exit(0)
        os.close(write_end)
        assert all(ask(pool, key) for key in range(ROWS))
        with os.fdopen(read_end, "rb") as pipe:
            assert pickle.loads(gevent.get_hub().threadpool.apply(pipe.read)) is True
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        assert all(ask(pool, key) for key in range(ROWS))
        assert balanced(pool)


def test_a_refused_certificate_is_an_authentication_failure_without_back_off(ca, cert_files):
    server, _ = server_and_options("tls", ca, cert_files)
    with server:
        with pytest.raises(AuthenticationFailed) as info:
            ConnectionPool(1, host="localhost", port=server.port,
                           tls=ssl.create_default_context())  # the test CA is not trusted
        assert "localhost:%d" % server.port in str(info.value)
        pool = ConnectionPool(1, host="localhost", port=server.port, autoconnect=False,
                              tls=ssl.create_default_context())
        with pytest.raises(AuthenticationFailed):
            with pool.connection():
                pass
        host = pool.stats()["hosts"]["localhost:%d" % server.port]
        assert host["failures"] == 0 and host["retry_in"] == 0
        pool.close()


@pytest.mark.parametrize("mode_name", ["sasl-plain", "http-basic"])
def test_wrong_credentials_are_an_authentication_failure(mode_name, ca, cert_files):
    server, options = server_and_options(mode_name, ca, cert_files)
    wrong = Plain("alice", "nope") if mode_name == "sasl-plain" else Basic("alice", "nope")
    options["auth"] = wrong
    with server:
        with pytest.raises(AuthenticationFailed) as info:
            make(server, options)
        assert "nope" not in str(info.value) and "s3cret" not in str(info.value)


def test_a_bearer_callable_is_asked_for_each_request(ca, cert_files):
    tokens = iter(["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"] * 50)
    server = HBaseServer(subprocess=True, transport="http",
                         auth=ServerAuth(tokens={"t%d" % i: "alice" for i in range(1, 9)}))
    with server:
        pool = ConnectionPool(1, host=server.host, port=server.port, transport="http",
                              auth=Bearer(lambda: next(tokens)))
        with pool.connection() as conn:
            for _ in range(5):
                conn.tables()
        pool.close()


def test_auth_given_as_a_callable_is_asked_at_each_new_connection(ca, cert_files):
    server, options = server_and_options("sasl-plain", ca, cert_files)
    asked = []

    def credentials():
        asked.append(1)
        return Plain("alice", "s3cret")

    with server:
        pool = ConnectionPool(1, host=server.host, port=server.port, auth=credentials,
                              max_idle=0)
        for _ in range(3):
            with pool.connection() as conn:
                conn.tables()
        assert len(asked) == 4  # the constructor's connection, then one per lease
        pool.close()


@pytest.mark.parametrize("options, named", [
    ({"transport": "framed", "auth": Plain("a", "b")}, "framed"),
    ({"transport": "http", "protocol": "compact"}, "compact"),
    ({"auth": Basic("a", "b")}, "Basic"),
    ({"do_as": "bob"}, "do_as"),
    ({"tls": "yes"}, "tls"),
    ({"auth": "kerberos"}, "auth"),
    ({"http_path": "no-slash"}, "http_path"),
])
def test_combinations_the_gateway_refuses_are_named(options, named):
    with pytest.raises((TypeError, ValueError), match=named):
        ConnectionPool(1, autoconnect=False, **options)


def test_secrets_never_show_in_repr_or_errors():
    for auth in (Plain("alice", "s3cret"), Basic("alice", "s3cret"), Bearer("s3cret")):
        assert "s3cret" not in repr(auth)
    pool = ConnectionPool(1, autoconnect=False, transport="http", auth=Basic("a", "s3cret"))
    assert "s3cret" not in repr(pool) and "s3cret" not in str(pool.stats())
    with pytest.raises(ConnectionFailed) as info:
        with pool.connection(timeout=5):
            pass
    assert "s3cret" not in str(info.value)


# -- URLs ----------------------------------------------------------------------------

def test_secure_urls_build_the_same_pool_as_keywords(ca, cert_files, tmp_path, monkeypatch):
    from green_happybase.urls import parse_url

    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("GREEN_HAPPYBASE_PASSWORD", "s3cret")
    server, _ = server_and_options("http-basic", ca, cert_files)
    with server:
        url = ("hbase+http://%s/?size=2&auth=basic&user=alice&do_as=bob&http_path=/"
               % server.address)
        size, options = parse_url(url)
        assert size == 2 and options["transport"] == "http" and options["do_as"] == "bob"
        with ConnectionPool.from_url(url) as pool:
            fill_table(pool)
            assert ask(pool, 1)
        assert "s3cret" not in repr(options)
    server, _ = server_and_options("https", ca, cert_files)
    with server:
        with ConnectionPool.from_url("hbase+https://%s/?size=1&cafile=%s"
                                     % (server.address, ca_file)) as pool:
            fill_table(pool)
            assert ask(pool, 2)


@pytest.mark.parametrize("url, named", [
    ("hbase://h/?password=x", "password"),
    ("hbase://h/?token=x", "token"),
    ("hbase://h/?auth=plain", "user="),
    ("hbase://h/?auth=magic", "auth='magic'"),
    ("hbase://h/?qop=auth-conf", "qop='auth-conf'"),
    ("hbase://h/?cafile=/nowhere", "cafile='/nowhere'"),
    ("hbase+https://h/?cafile=/nowhere", "cafile='/nowhere'"),
    ("hbase+tls://h/?auth=bearer&user=x", "user='x'"),
    ("hbase+http://h/?protocol=compact", "compact"),
    ("hbase://h/?do_as=bob", "do_as"),
    ("ftp://h/", "hbase+https://"),
])
def test_malformed_secure_url_parameters_name_themselves(url, named, monkeypatch):
    from green_happybase.urls import parse_url

    monkeypatch.setenv("GREEN_HAPPYBASE_TOKEN", "t")
    with pytest.raises(ValueError) as info:
        size, options = parse_url(url)
        ConnectionPool(size, autoconnect=False, **options)
    assert named in str(info.value)


# -- Kerberos: SASL GSSAPI over TCP, SPNEGO over HTTP, through the pool --------------

@pytest.fixture(scope="module")
def realm():
    from gatewaykit import kerberos_realm, needs_realm

    if needs_realm.args[0]:
        pytest.skip(needs_realm.kwargs["reason"])
    with kerberos_realm() as made:
        yield made


@pytest.mark.parametrize("transport, qop", [("buffered", "auth"), ("buffered", "auth-conf"),
                                            ("http", "auth")])
def test_kerberos_through_the_pool(realm, transport, qop):
    from gatewaykit import gateway_auth
    from green_happybase.auth import Kerberos

    service = "HTTP" if transport == "http" else "hbase"
    server = HBaseServer(transport=transport, auth=gateway_auth(realm, service, qop))
    with server:
        pool = ConnectionPool(2, host=server.host, port=server.port, transport=transport,
                              auth=Kerberos(qop=qop, hostname="localhost"))
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.001)) for _ in range(10**6)])
        try:
            fill_table(pool)
            assert all(ask(pool, key) for key in range(ROWS))
        finally:
            ticker.kill()
            pool.close()
        assert ticks  # the hub kept running while GSSAPI worked in threads
        assert server.stats()["users"]
