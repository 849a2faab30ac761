"""The connection the pool makes: green socket, checked replies, lease check.

:class:`GreenConnection` is a ``happybase.Connection`` with three changes, all
below happybase's API:

* its socket is gevent's, so a call yields to the hub whether or not the
  process is monkey-patched;
* every call carries its own sequence id, and the reply must echo it and the
  method name, so a stale reply can never be taken for a fresh one;
* every call checks that the calling greenlet holds the connection's lease,
  and marks the connection as being mid-call until its reply has been read in
  full. A connection still marked when its lease ends may hold half an RPC and
  is never used again.
"""

import select
import socket
from typing import Any

import happybase
from thriftpy2.thrift import TApplicationException, TClient, TMessageType
from thriftpy2.transport import TSocket

from . import _green
from .errors import LeaseError, ReplyMismatch

# happybase loads its Thrift IDL under this module name when imported.
from Hbase_thrift import Hbase  # noqa: E402  isort:skip

__all__ = ["GreenConnection"]

_POLL_FLAGS = select.POLLIN | select.POLLPRI
_MAX_SEQID = 0x7FFFFFFF


class _GreenSocket(TSocket):
    """A thriftpy2 socket built on ``gevent.socket``."""

    def _init_sock(self) -> None:
        sock = _green.green_socket.socket(self.socket_family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.sock = sock

    def open(self) -> None:
        super().open()
        # TSocket leaves the connect timeout on the socket when no socket
        # timeout is set; reads must block as long as happybase's timeout says.
        self.sock.settimeout(self.socket_timeout)

    def forget(self) -> None:
        """Drop the socket without ``shutdown()``.

        After ``os.fork()`` the descriptor is shared with the parent; a
        shutdown would cut the parent's connection too, a plain close only
        releases the child's copy.
        """
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _CheckedClient(TClient):
    """A Thrift client that numbers its calls and checks every reply."""

    def __init__(self, protocol, connection: "GreenConnection") -> None:
        super().__init__(Hbase, protocol)
        self._connection = connection

    def _req(self, _api, *args, **kwargs):
        connection = self._connection
        if connection._owner is not _green.getcurrent():
            raise LeaseError(
                "connection to %s used by %r outside its lease (held by %r); "
                "keep every use, scan generators included, inside the "
                "'with pool.connection()' block that leased it"
                % (connection.address, _green.getcurrent(), connection._owner))
        if connection._in_call:
            # An earlier call on this lease was interrupted: its reply may
            # still be on the wire, so continue on a fresh socket.
            connection._pool._renew(connection)
            return connection.client._req(_api, *args, **kwargs)
        return super()._req(_api, *args, **kwargs)

    def _send(self, _api, **kwargs):
        self._seqid = self._seqid % _MAX_SEQID + 1
        self._connection._in_call = True
        super()._send(_api, **kwargs)

    def _recv(self, _api):
        iprot = self._iprot
        name, message_type, seqid = iprot.read_message_begin()
        if name.__class__ is bytes:
            name = name.decode("utf-8", "replace")
        if seqid != self._seqid or name != _api:
            raise ReplyMismatch(
                "reply %r #%d from %s does not answer call %r #%d; the "
                "connection is discarded"
                % (name, seqid, self._connection.address, _api, self._seqid))
        if message_type == TMessageType.EXCEPTION:
            error = TApplicationException()
            error.read(iprot)
            iprot.read_message_end()
            self._connection._in_call = False
            raise error
        result = getattr(self._service, _api + "_result")()
        result.read(iprot)
        iprot.read_message_end()
        self._connection._in_call = False
        # The reply was read in full: an error it carries leaves the
        # connection clean.
        success = getattr(result, "success", None)
        if success is not None:
            return success
        for field, value in result.__dict__.items():
            if field != "success" and value is not None:
                raise value
        if hasattr(result, "success"):
            raise TApplicationException(TApplicationException.MISSING_RESULT)
        return None


class GreenConnection(happybase.Connection):
    """A ``happybase.Connection`` made and leased by a pool.

    Use it like any happybase connection, from the greenlet that leased it
    and only while the lease lasts.

    .. versionadded:: 0.1
    """

    def __init__(self, pool, host: str, port: int, **kwargs) -> None:
        self._pool = pool
        self._owner: Any = None  # the greenlet holding the lease
        self._depth = 0  # nested leases held by the owner
        self._saved_prefixes: list = []  # table prefixes to restore, innermost last
        self._in_call = False
        self._pid = _green.pid
        self._host: Any = None  # the pool's record of the host, set on connect
        self._created = self._last_used = self._expires = 0.0
        super().__init__(host=host, port=port, autoconnect=False, **kwargs)

    @property
    def address(self) -> str:
        return "%s:%s" % (self.host, self.port)

    def _refresh_thrift_client(self) -> None:
        self._socket = _GreenSocket(
            host=self.host, port=self.port, socket_timeout=self.timeout)
        self.transport = self._transport_class(self._socket)
        protocol = self._protocol_class(self.transport, decode_response=False)
        self.client = _CheckedClient(protocol, self)

    def _connect(self, host: str, port: int, timeout: "float | None") -> None:
        """Open a fresh socket to *host*:*port*, waiting at most *timeout* s."""
        self.host, self.port = host, port
        self._refresh_thrift_client()
        if timeout is not None:
            self._socket.connect_timeout = timeout
        self._in_call = False
        self.transport.open()
        # One poll object per socket makes the checkout check a single system
        # call: poll(0) is empty while the peer has sent nothing (no EOF, no
        # unread bytes).
        poller = _green.poll()
        poller.register(self._socket.sock.fileno(), _POLL_FLAGS)
        self._poll = poller.poll

    def close(self) -> None:
        """Close the connection; in a forked child, only this process's copy."""
        if self._pid != _green.pid:
            self._forget()
        else:
            super().close()

    def _forget(self) -> None:
        self._socket.forget()
