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

Which place a connection is in (connecting, idle, leased, handed to a waiter,
gone) is the pool's business: see :mod:`green_happybase.pool`.
"""

import select
from typing import Any

import happybase
from thriftpy2.thrift import TApplicationException, TClient, TMessageType
from thriftpy2.transport import TSocket, TTransportException

from . import _green
from .errors import LeaseError, ReplyMismatch
from .transports import open_channel

# happybase loads its Thrift IDL under this module name when imported.
from Hbase_thrift import Hbase  # noqa: E402  # isort: skip

__all__ = ["GreenConnection"]

_POLL_FLAGS = select.POLLIN | select.POLLPRI
#: Calls that open a scanner (and return its id), and the one that closes it.
_SCANNER_OPENS = frozenset(["scannerOpen", "scannerOpenTs", "scannerOpenWithStop",
                            "scannerOpenWithStopTs", "scannerOpenWithPrefix",
                            "scannerOpenWithScan"])
_SCANNER_CALLS = _SCANNER_OPENS | {"scannerClose"}
_MAX_SEQID = 0x7FFFFFFF


class _GreenSocket(TSocket):
    """A thriftpy2 socket built on ``gevent.socket``, for IPv4 and IPv6."""

    def open(self) -> None:
        try:
            # Held from the start, so that close() can cut the connect.
            sock = _green.connect(self.host, self.port, self.connect_timeout, self._hold)
        except OSError as error:
            raise TTransportException(
                type=TTransportException.NOT_OPEN,
                message="Could not connect to %s:%s (%s)" % (self.host, self.port, error),
            ) from error
        # Reads block as long as happybase's timeout says, not the connect's.
        sock.settimeout(self.socket_timeout)

    def _hold(self, sock: Any) -> None:
        self.sock = sock

    def forget(self) -> None:
        """Drop the socket without ``shutdown()``.

        After ``os.fork()`` the descriptor is shared with the parent; a
        shutdown would cut the parent's connection too, a plain close only
        releases this process's copy.
        """
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


class _CheckedClient(TClient):
    """A Thrift client that numbers its calls and checks every reply."""

    def __init__(self, protocol: Any, connection: "GreenConnection") -> None:
        super().__init__(Hbase, protocol)
        self._connection = connection

    def _req(self, _api: str, *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if connection._owner is not _green.getcurrent():
            if _api == "scannerClose" and args and args[0] not in connection._scanners:
                # A scan generator finalised after its lease: the pool closed
                # its scanner when the lease ended.
                return None
            raise connection._not_leased()
        if connection._in_call:
            # An earlier call on this lease was interrupted (or the pool
            # closed the connection under it): its reply may still be on the
            # wire, so continue on a fresh socket, or fail if the pool is closed.
            connection._pool._renew(connection)
            return connection.client._req(_api, *args, **kwargs)
        wrap = connection._pool._call_wrapper
        if wrap is not None:  # instrumented: see ConnectionPool._instrument
            return wrap(connection, _api, args, lambda: self._call(_api, args, kwargs))
        if _api in _SCANNER_CALLS:
            return self._scanner_call(_api, *args, **kwargs)
        return super()._req(_api, *args, **kwargs)

    def _call(self, _api: str, args: Any, kwargs: Any) -> Any:
        if _api in _SCANNER_CALLS:
            return self._scanner_call(_api, *args, **kwargs)
        return super()._req(_api, *args, **kwargs)

    def _scanner_call(self, _api: str, *args: Any, **kwargs: Any) -> Any:
        """Keep the ids of the scanners this connection has open."""
        scanners = self._connection._scanners
        if _api == "scannerClose":
            scanners.discard(args[0] if args else kwargs.get("id"))
            return super()._req(_api, *args, **kwargs)
        scanner_id = super()._req(_api, *args, **kwargs)
        scanners.add(scanner_id)
        return scanner_id

    def _send(self, _api: str, **kwargs: Any) -> None:
        self._seqid = self._seqid % _MAX_SEQID + 1
        self._connection._in_call = True
        super()._send(_api, **kwargs)

    def _recv(self, _api: str) -> Any:
        iprot = self._iprot
        name, message_type, seqid = iprot.read_message_begin()
        if isinstance(name, bytes):
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
            # Read with decode_response=False: make the message text, so
            # that str(error) works.
            if isinstance(error.message, bytes):
                error.message = error.message.decode("utf-8", "replace")
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


class GreenConnection(happybase.Connection):  # type: ignore[misc]  # untyped base
    """A ``happybase.Connection`` made and leased by a pool.

    Use it like any happybase connection, from the greenlet that leased it
    and only while the lease lasts.

    .. versionadded:: 0.1
    .. versionadded:: 0.2
       *tls*, *auth*, *http_path*, *do_as* and ``transport="http"``: the
       connection then runs on a :class:`~green_happybase.transports.Channel`
    """

    def __init__(self, pool: Any, host: str, port: int, *, tls: Any = False,
                 auth: Any = None, http_path: str = "/", do_as: str | None = None,
                 **kwargs: Any) -> None:
        transport = kwargs.get("transport", "buffered")
        # TLS, SASL and HTTP run on a channel of their own; plain TCP keeps
        # the leaner socket below (one poll() per checkout).
        self._channel_options: dict[str, Any] | None = None
        if tls is not False or auth is not None or transport == "http":
            self._channel_options = {"transport": transport, "tls": tls, "auth": auth,
                                     "http_path": http_path, "do_as": do_as}
            kwargs["transport"] = "buffered"  # happybase knows no "http"
        self._pool = pool
        self._owner: Any = None  # the greenlet holding the lease
        self._depth = 0  # nested leases held by the owner
        self._saved_prefixes: list[Any] = []  # table prefixes to restore, innermost last
        # Set before a request's first byte, cleared after its reply's last;
        # also set by the pool to make the holder's next call renew or fail.
        self._in_call = False
        self._pid = _green.pid
        self._epoch = pool._epoch  # the pool's books this connection belongs to
        self._host: Any = None  # the pool's record of the host while connected
        self._lease_timeout: float | None = None  # the holder's acquire timeout
        self._created = self._last_used = self._expires = self._leased_at = 0.0
        self._leak_warned = False
        self._scanners: set[Any] = set()  # ids of the scanners opened and not closed
        self._socket: Any = None  # a _GreenSocket, or a channel's socket transport
        self._poll: Any = None  # the checkout check, set on connect
        super().__init__(host=host, port=port, autoconnect=False, **kwargs)

    @property
    def address(self) -> str:
        return ("[%s]:%s" if ":" in self.host else "%s:%s") % (self.host, self.port)

    def _refresh_thrift_client(self) -> None:
        self._socket = _GreenSocket(  # type: ignore[no-untyped-call]
            host=self.host, port=self.port, socket_timeout=self.timeout)
        self.transport = self._transport_class(self._socket)
        protocol = self._protocol_class(self.transport, decode_response=False)
        self.client = _CheckedClient(protocol, self)

    def _connect(self, host: str, port: int, timeout: float | None) -> None:
        """Open a fresh connection to *host*:*port* within *timeout* seconds.

        After it, ``_poll(0)`` is truthy when the connection is not quiet
        (EOF or unread bytes): the pool's checkout check.
        """
        self.host, self.port = host, port
        if self._channel_options is not None:
            channel = open_channel(host, port, timeout=self._io_seconds(),
                                   connect_timeout=timeout, **self._channel_options)
            self._socket = channel._inner  # .sock (None once closed), forget()
            self.transport = channel.transport
            self.client = _CheckedClient(
                self._protocol_class(self.transport, decode_response=False), self)
            self._poll = lambda _timeout: not channel.quiet()
            return
        self._refresh_thrift_client()
        self._socket.connect_timeout = timeout
        self.transport.open()
        # One poll object per socket makes the checkout check a single system
        # call: poll(0) is empty while the peer has sent nothing (no EOF, no
        # unread bytes).
        poller = _green.poll()
        poller.register(self._socket.sock.fileno(), _POLL_FLAGS)
        self._poll = poller.poll

    def _io_seconds(self) -> float | None:
        """happybase's socket timeout (milliseconds) in seconds."""
        return None if self.timeout is None else self.timeout / 1000

    def _set_io_timeout(self, seconds: float | None) -> None:
        """Bound each socket operation by *seconds* (``None``: back to happybase's)."""
        sock = self._socket.sock
        if sock is not None:
            sock.settimeout(self._io_seconds() if seconds is None else seconds)

    def _not_leased(self) -> LeaseError:
        if self._pid != _green.pid:
            return LeaseError(
                "connection to %s was leased in process %d before os.fork(); the "
                "child dropped it: lease a new connection in this process"
                % (self.address, self._pid))
        return LeaseError(
            "connection to %s used by %r outside its lease (held by %r); keep every "
            "use, scan generators included, inside the 'with pool.connection()' "
            "block that leased it" % (self.address, _green.getcurrent(), self._owner))

    def close(self) -> None:
        """Close the connection; in a forked child, only this process's copy."""
        if self._pid != _green.pid:
            self._forget()
        else:
            super().close()

    def _forget(self) -> None:
        self._socket.forget()
