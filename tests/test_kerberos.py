"""Kerberos for real: a throwaway MIT KDC realm on loopback (k5test), SASL
GSSAPI over TCP with each qop, SPNEGO over HTTP and HTTPS, against the
embedded server's gateways acting as the Kerberos acceptor."""
from __future__ import annotations

import re
import ssl
import struct
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.socket
import pytest
from gevent.event import Event
from gevent.server import StreamServer
from thriftpy2.transport import TCyBufferedTransport, TCyFramedTransport

from gatewaykit import (
    HANG,
    USER,
    Gateway,
    calls_work,
    client,
    gateway_auth,
    kerberos_realm,
    needs_realm,
    sockets_to,
    wait_for,
)
from green_happybase import AuthenticationFailed
from green_happybase.auth import Kerberos
from green_happybase.transports import open_channel

pytestmark = needs_realm


@pytest.fixture(scope="module")
def realm() -> Iterator[Any]:
    with kerberos_realm() as made:
        yield made


@pytest.fixture(scope="module")
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    import trustme

    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client_side = ssl.create_default_context()
    ca.configure_trust(client_side)
    return server, client_side


@pytest.mark.parametrize("qop", ["auth", "auth-int", "auth-conf"])
def test_sasl_gssapi_with_each_qop(realm: Any, qop: str) -> None:
    with Gateway(auth=gateway_auth(realm, qop=qop)) as gw:
        channel = open_channel("127.0.0.1", gw.port, auth=Kerberos(qop=qop, hostname="localhost"),
                               timeout=HANG, connect_timeout=HANG)
        calls_work(channel, 4)
        # Without a security layer the frames are Thrift's framed transport.
        assert type(channel.transport) is (TCyFramedTransport if qop == "auth"
                                           else TCyBufferedTransport)
        channel.close()
    assert gw.layers == [qop] and gw.stats["users"] == {USER: 1}


def test_a_gateway_offering_more_protection_is_accepted(realm: Any) -> None:
    with Gateway(auth=gateway_auth(realm, qop="privacy")) as gw:
        channel = open_channel("127.0.0.1", gw.port, auth=Kerberos(hostname="localhost"),
                               timeout=HANG)
        calls_work(channel)
        channel.close()
    assert gw.layers == ["auth-conf"]


def test_a_gateway_offering_less_protection_is_refused(realm: Any) -> None:
    with Gateway(auth=gateway_auth(realm, qop="auth")) as gw:
        with pytest.raises(AuthenticationFailed) as raised:
            open_channel("127.0.0.1", gw.port, timeout=HANG,
                         auth=Kerberos(qop="auth-conf", hostname="localhost"))
    error = raised.value
    assert error.mechanism == "GSSAPI" and error.host == "127.0.0.1:%d" % gw.port
    assert "offers qop auth" in error.reason and "auth-conf" in error.reason


@pytest.mark.parametrize("tls", [False, True])
def test_spnego_over_http_a_fresh_token_per_request(realm: Any, tls: bool,
                                                    tls_pair: tuple[Any, Any]) -> None:
    server_tls, client_tls = tls_pair
    with Gateway("http", auth=gateway_auth(realm, "HTTP"), tls=server_tls if tls else None) as gw:
        channel = open_channel("127.0.0.1", gw.port, transport="http",
                               tls=client_tls if tls else False,
                               auth=Kerberos(hostname="localhost", qop="auth-conf" if tls
                                             else "auth"), timeout=HANG)
        calls_work(channel, 3)
        proxied = open_channel("127.0.0.1", gw.port, transport="http",
                               tls=client_tls if tls else False,
                               auth=Kerberos(hostname="localhost"), do_as="alice", timeout=HANG)
        calls_work(proxied, 2)
    # The servlet keeps no session: each request was authenticated on its own.
    assert gw.stats["users"] == {USER: 3, "alice": 2} and gw.stats["connections"] == 2


def test_spnego_without_a_token_is_a_401_asking_for_negotiate(realm: Any) -> None:
    with Gateway("http", auth=gateway_auth(realm, "HTTP")) as gw:
        channel = open_channel("127.0.0.1", gw.port, transport="http", timeout=HANG)
        with pytest.raises(AuthenticationFailed, match="401.*asks for Negotiate"):
            client(channel).getTableNames()


@pytest.mark.parametrize("transport", ["buffered", "http"])
def test_a_missing_ticket_is_an_authentication_failure(realm: Any, transport: str) -> None:
    service = "HTTP" if transport == "http" else "hbase"
    with Gateway(transport, auth=gateway_auth(realm, service)) as gw:
        auth = Kerberos(principal="nobody@KRBTEST.COM", hostname="localhost")
        with pytest.raises(AuthenticationFailed) as raised:
            channel = open_channel("127.0.0.1", gw.port, transport=transport, auth=auth,
                                   timeout=HANG)
            # Over HTTP the first request carries the first token.
            client(channel).getTableNames()
        if transport == "buffered":
            assert sockets_to(gw.port) == 0
        else:
            channel.close()
    error = raised.value
    assert error.mechanism == ("SPNEGO" if transport == "http" else "GSSAPI")
    # python-gssapi's message carries the minor status text.
    assert "Minor" in error.reason and "nobody@KRBTEST.COM" in error.reason


def test_an_expired_ticket_is_an_authentication_failure(realm: Any, tmp_path: Any,
                                                        monkeypatch: Any) -> None:
    import gssapi

    realm.addprinc("brief@KRBTEST.COM", "brief-password")
    ccache = str(tmp_path / "brief.ccache")
    realm.kinit("brief@KRBTEST.COM", "brief-password", flags=["-l", "1s", "-c", ccache])
    monkeypatch.setenv("KRB5CCNAME", ccache)
    # The one wait on the clock (a ticket lives at least a second), until the
    # library refuses the ticket for another service: then it refuses it for all.
    elsewhere = gssapi.Name("nosuch@localhost", gssapi.NameType.hostbased_service)
    with gevent.Timeout(HANG, AssertionError("the 1 s ticket never expired")):
        while True:
            try:
                gssapi.SecurityContext(name=elsewhere, usage="initiate").step()
            except gssapi.exceptions.GSSError as error:
                if "expired" in str(error):
                    break
            gevent.sleep(0.1)
    with Gateway(auth=gateway_auth(realm)) as gw, \
            pytest.raises(AuthenticationFailed, match="(?i)expired") as raised:
        open_channel("127.0.0.1", gw.port, auth=Kerberos(hostname="localhost"), timeout=HANG)
    assert raised.value.mechanism == "GSSAPI" and "Minor" in raised.value.reason


def test_credentials_from_the_client_keytab(realm: Any, tmp_path: Any, monkeypatch: Any) -> None:
    """KRB5_CLIENT_KTNAME: no kinit; MIT Kerberos gets (and renews) the
    tickets from the keytab by itself."""
    realm.addprinc("robot@KRBTEST.COM")
    realm.extract_keytab("robot@KRBTEST.COM", realm.client_keytab)
    monkeypatch.setenv("KRB5CCNAME", "FILE:" + str(tmp_path / "robot.ccache"))
    with Gateway(auth=gateway_auth(realm)) as gw:
        channel = open_channel("127.0.0.1", gw.port, timeout=HANG,
                               auth=Kerberos(principal="robot@KRBTEST.COM", hostname="localhost"))
        calls_work(channel)
        channel.close()
    assert gw.stats["users"] == {"robot": 1}


class SlowKdc:
    """A TCP relay to the realm's KDC that forwards each request only after a
    ticker greenlet has ticked a few more times: a Kerberos call that blocked
    the hub could never get its reply."""

    def __init__(self, kdc_port: int) -> None:
        self.kdc_port = kdc_port
        self.ticks = 0
        self.relayed = 0
        self._target = 0
        self._ticked = Event()
        self._ticker = gevent.spawn(self._tick)
        self.server = StreamServer(("127.0.0.1", 0), self._relay)
        self.server.start()

    def _tick(self) -> None:
        for _ in range(100000):
            self.ticks += 1
            if self.ticks >= self._target:
                self._ticked.set()
            gevent.sleep(0.001)

    def _relay(self, sock: Any, address: Any) -> None:
        request = _kdc_message(sock)
        self._ticked.clear()
        self._target = self.ticks + 5
        wait_for(self._ticked, "the ticker")
        kdc = gevent.socket.create_connection(("127.0.0.1", self.kdc_port), timeout=HANG)
        try:
            kdc.sendall(request)
            sock.sendall(_kdc_message(kdc))
        finally:
            kdc.close()
            sock.close()
        self.relayed += 1

    def close(self) -> None:
        self.server.close()
        self._ticker.kill()


def _kdc_message(sock: Any) -> bytes:
    """One KDC message over TCP: a 4-byte length, then the message."""
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
        chunk = sock.recv(65536)
        assert chunk, "the KDC connection closed mid-message"
        data += chunk
    return data


@pytest.mark.parametrize("transport", ["buffered", "http"])
def test_other_greenlets_run_during_a_kerberos_handshake(realm: Any, tmp_path: Any,
                                                         monkeypatch: Any,
                                                         transport: str) -> None:
    """Every GSSAPI call runs in the hub's thread pool: the client needs a
    service ticket, the KDC it asks is a greenlet in this process that answers
    only after the ticker ticked, and the handshake completes."""
    slow = SlowKdc(realm.portbase)
    try:
        with open(realm.env["KRB5_CONFIG"]) as conf:
            text = conf.read()
        text = re.sub(r"kdc = \S+", "kdc = 127.0.0.1:%d" % slow.server.server_port, text)
        text = text.replace("[libdefaults]", "[libdefaults]\n\tudp_preference_limit = 1")
        (tmp_path / "krb5.conf").write_text(text)
        ccache = str(tmp_path / "fresh.ccache")  # no service ticket cached yet
        realm.kinit(realm.user_princ, realm.password("user"), flags=["-c", ccache])
        monkeypatch.setenv("KRB5CCNAME", ccache)
        monkeypatch.setenv("KRB5_CONFIG", str(tmp_path / "krb5.conf"))
        service = "HTTP" if transport == "http" else "hbase"
        with Gateway(transport, auth=gateway_auth(realm, service)) as gw:
            before = slow.ticks
            channel = open_channel("127.0.0.1", gw.port, transport=transport,
                                   auth=Kerberos(hostname="localhost"), timeout=HANG,
                                   connect_timeout=HANG)
            calls_work(channel, 1)
            channel.close()
        assert slow.relayed >= 1 and slow.ticks >= before + 5
        assert gw.stats["users"] == {USER: 1}
    finally:
        slow.close()
