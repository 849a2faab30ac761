"""Answer the clients that a blocked hub can never serve.

An in-process :class:`~green_happybase.testing.HBaseServer` serves from the
gevent hub of the thread that started it. A blocking client in that same
thread (a plain ``happybase.Connection``) sends its request and waits in
``recv()``: the hub never runs again, the server never reads the request,
and the program hangs forever without a word.

:class:`HubWatchdog` notices. A greenlet in the server's hub beats every
:data:`TICK` seconds and an OS thread watches the beat. When the hub has not
run for :data:`STALL` seconds while a request waits (on a connection the
server accepted, or one still in the listen backlog), the thread answers the
request itself with the error :func:`starved_message` words, and closes that
connection: the blocked client fails at once, naming the way out. A
connection the thread accepted but that has sent nothing yet goes back to
the server as soon as its hub runs again.

.. versionadded:: 0.2
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.monkey import get_original

__all__ = ["HubWatchdog", "STALL", "TICK", "starved_message"]

log = logging.getLogger("green_happybase.testing.server")

#: Seconds between two heartbeats of the hub, and two looks of the thread.
TICK = 0.25
#: Seconds the hub must stand still, while a request waits, before the
#: thread answers.
STALL = 2.0

# The real thing even when the program is monkey-patched: the watchdog must
# keep running while every greenlet is stuck.
_start_thread = get_original("_thread", "start_new_thread")
_allocate_lock = get_original("_thread", "allocate_lock")
_sleep = get_original("time", "sleep")
_poll = get_original("select", "poll")
_Socket = get_original("socket", "socket")
_POLLIN = 1


def starved_message(seconds: float) -> str:
    return (
        "the embedded HBase server runs in the gevent hub of the thread that started it, and "
        "that hub has not run for %.0f s while this request waited: a blocking client (a plain "
        "happybase.Connection) in that thread can never be answered. Use "
        "HBaseServer(subprocess=True) (in pytest: @pytest.mark.hbase_server(subprocess=True)), "
        "a green client such as green_happybase.ConnectionPool, or gevent's monkey-patching"
        % seconds
    )


class HubWatchdog:
    """Watch one in-process server's hub from an OS thread.

    :param answer: builds the reply to a starved request from its bytes
        (called in the watchdog's thread)
    :param adopt: serves a connection the watchdog accepted, once the hub
        runs again (called in the hub)
    :param stall: seconds of standstill before answering
    """

    def __init__(self, answer: Callable[[bytes, float], bytes],
                 adopt: Callable[[socket.socket], None], stall: float = STALL) -> None:
        self._answer = answer
        self._adopt = adopt
        self._stall = stall
        self._lock = _allocate_lock()
        self._listener = -1
        self._clients: set[int] = set()
        self._held: list[socket.socket] = []
        self._beats = 0
        self._running = False
        self._hub: Any = None
        self._heart: gevent.Greenlet[..., Any] | None = None

    def start(self) -> None:
        """Start beating and watching (in the server's hub)."""
        if self._running:
            return
        self._running = True
        self._hub = gevent.get_hub()
        self._heart = gevent.spawn(self._beat)
        _start_thread(self._watch, ())

    def stop(self) -> None:
        """Stop both; the thread ends within a tick."""
        self._running = False
        if self._heart is not None:
            self._heart.kill(block=False)
            self._heart = None
        with self._lock:
            self._listener = -1
            self._clients.clear()

    def listening(self, fd: int) -> None:
        """The listening socket's descriptor, ``-1`` before it is closed."""
        with self._lock:
            self._listener = fd

    def track(self, fd: int) -> None:
        with self._lock:
            self._clients.add(fd)

    def untrack(self, fd: int) -> None:
        """Forget a client connection; call it before closing the socket."""
        with self._lock:
            self._clients.discard(fd)

    def _beat(self) -> None:
        while True:
            self._beats += 1
            gevent.sleep(TICK)

    # In the watchdog's thread.

    def _watch(self) -> None:
        last, seen, standstill = time.monotonic(), self._beats, 0.0
        try:
            while self._running:
                _sleep(TICK)
                now = time.monotonic()
                gap, last = now - last, now
                if self._beats != seen:
                    seen, standstill = self._beats, 0.0
                    self._give_back()
                    continue
                # When the whole process stood still, this thread did too:
                # that is not the hub being blocked.
                standstill = standstill + gap if gap < 4 * TICK else 0.0
                if standstill >= self._stall:
                    self._rescue(standstill)
        finally:
            for sock in self._held:
                sock.close()
            self._held = []

    def _give_back(self) -> None:
        held, self._held = self._held, []
        for sock in held:
            self._hub.loop.run_callback_threadsafe(self._adopt, sock)

    def _rescue(self, standstill: float) -> None:
        waiting: list[socket.socket] = []
        with self._lock:
            poller = _poll()
            for fd in self._clients:
                poller.register(fd, _POLLIN)
            if self._listener >= 0:
                poller.register(self._listener, _POLLIN)
            for fd, _events in poller.poll(0):
                if fd == self._listener:
                    self._held.extend(self._accept_all(fd))
                else:
                    # A duplicate stays this connection's even if the server
                    # closes its own descriptor meanwhile.
                    waiting.append(_Socket(fileno=os.dup(fd)))
        for sock in list(self._held):
            poller = _poll()
            poller.register(sock.fileno(), _POLLIN)
            if poller.poll(0):
                self._held.remove(sock)
                waiting.append(sock)
        for sock in waiting:
            self._answer_on(sock, standstill)

    @staticmethod
    def _accept_all(listener: int) -> list[socket.socket]:
        accepted = []
        door = _Socket(fileno=os.dup(listener))
        try:
            while True:
                conn, _ = door.accept()
                conn.setblocking(False)
                accepted.append(conn)
        except OSError:  # BlockingIOError once the backlog is empty
            pass
        finally:
            door.close()
        return accepted

    def _answer_on(self, sock: socket.socket, standstill: float) -> None:
        try:
            sock.setblocking(False)
            try:
                request = sock.recv(65536)
            except BlockingIOError:
                request = b""
            if request:
                # Logged (on the hub, at its next turn) before the answer
                # goes out: the client, once answered, finds it logged.
                self._hub.loop.run_callback_threadsafe(
                    log.error, "answered a request the blocked hub could not: %s",
                    starved_message(standstill))
                sock.settimeout(1.0)
                sock.sendall(self._answer(request, standstill))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()
