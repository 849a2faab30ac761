"""Reading Thrift requests off a connection, within bounds.

thriftpy2 allocates whatever length a peer announces and loops over whatever
element count it announces: a 40-byte request can announce a list of
2**31 - 1 elements of a type that takes no bytes, and skipping them freezes
the process for seconds; a 4 MB request of empty structs decodes into 400 MB
of objects. So :class:`Inbox` first walks each request's structure, building
nothing, and hands thriftpy2 only a request that keeps every bound:

- at most :data:`MAX_MESSAGE_BYTES` bytes (framed transport: every frame also
  at most the server's maximum frame size);
- containers of valid element types only, whose announced count times the
  smallest encoding of one element fits in the bytes the request may still
  have;
- nesting at most :data:`MAX_DEPTH` deep (structs and containers);
- an estimate of the memory thriftpy2 will build (Python objects, by kind and
  size) of at most :data:`MEMORY_FACTOR` times the bytes received plus
  :data:`MEMORY_FLOOR`: realistic requests stay well under it, requests of
  empty structs or empty containers do not.

Walking costs time in proportion to the bytes received, and pauses every
4096 values so that other clients are served meanwhile.

.. versionadded:: 0.2
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

__all__ = ["Closed", "Inbox", "MAX_DEPTH", "MAX_MESSAGE_BYTES", "MEMORY_FACTOR",
           "MEMORY_FLOOR", "Rejected"]

#: Largest request, in bytes, whatever the transport.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Deepest nesting of structs and containers (Apache Thrift's default).
MAX_DEPTH = 64
#: Decoded memory a request may need, per byte received ...
MEMORY_FACTOR = 32
#: ... plus this much.
MEMORY_FLOOR = 1024 * 1024

_MAX_NAME = 64 * 1024  # a method name
_PAUSE_EVERY = 4096  # values walked between two pauses
_RECV = 65536

_I32 = struct.Struct("!i")
_VERSION_MASK = -65536  # 0xffff0000 as a signed i32
_VERSION_1 = -2147418112  # 0x80010000 as a signed i32

# Estimated bytes of Python object per decoded value.
_STRUCT, _BYTES, _LIST, _SLOT, _MAP, _ENTRY, _NUMBER = 128, 33, 56, 8, 64, 48, 32

# Binary protocol: fixed sizes, smallest encodings and costs, by type id.
_B_FIXED = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8}
_B_MIN = {**_B_FIXED, 11: 4, 12: 1, 13: 6, 14: 5, 15: 5}
_B_COST = {2: 0, 3: 0, 4: _NUMBER, 6: 0, 8: _NUMBER, 10: _NUMBER}

# Compact protocol: type ids 1 and 2 are booleans; every value takes a byte
# at least, doubles eight.
_C_MIN = {t: 8 if t == 7 else 1 for t in range(1, 13)}
_C_FIXED = {1: 1, 2: 1, 3: 1, 7: 8}
_C_VARINT = {4: 3, 5: 5, 6: 10}  # longest varint by integer type


class Rejected(Exception):
    """A request broke a bound: the server closes its connection."""


class Closed(Exception):
    """The peer closed the connection."""


class Inbox:
    """The requests arriving on one connection, one whole request at a time.

    :param sock: a connected (gevent) socket; its timeout applies to each read
    :param framed: whether requests come in frames with a 4-byte length
    :param binary: binary protocol (else compact)
    :param max_frame: largest frame accepted, in bytes (framed only)
    :param pause: called now and then during a long walk
    """

    def __init__(self, sock: Any, *, framed: bool, binary: bool, max_frame: int,
                 pause: Callable[[], Any] | None = None) -> None:
        self._sock = sock
        self._framed = framed
        self._walk = self._walk_binary if binary else self._walk_compact
        self._max_frame = max_frame
        self._pause = pause
        self._buf = bytearray()  # request bytes, frame headers removed
        self._raw = bytearray()  # framed: socket bytes not yet in _buf
        self._frame_left = 0
        self._cost = 0
        self._values = 0
        self._next_check = _PAUSE_EVERY

    def next(self) -> bytes:
        """The next whole request.

        :raises Closed: the peer closed the connection
        :raises Rejected: the request breaks a bound
        :raises OSError: from the socket (``TimeoutError`` when idle too long)
        """
        self._cost = self._values = 0
        self._next_check = _PAUSE_EVERY
        end = self._walk()
        message = bytes(memoryview(self._buf)[:end])
        del self._buf[:end]
        return message

    # Bytes.

    def _recv(self) -> bytes:
        data: bytes = self._sock.recv(_RECV)
        if not data:
            raise Closed("mid-request" if self._buf or self._raw else "")
        return data

    def _fill(self, size: int) -> None:
        """Make the request's first ``size`` bytes available."""
        if size > MAX_MESSAGE_BYTES:
            raise Rejected("request exceeds %d bytes" % MAX_MESSAGE_BYTES)
        while len(self._buf) < size:
            if not self._framed:
                self._buf += self._recv()
                continue
            if not self._frame_left:
                while len(self._raw) < 4:
                    self._raw += self._recv()
                frame = _I32.unpack_from(self._raw)[0]
                del self._raw[:4]
                if frame < 0:
                    raise Rejected("Read a negative frame size (%d)!" % frame)
                if frame > self._max_frame:
                    raise Rejected("Frame size (%d) larger than max length (%d)!"
                                   % (frame, self._max_frame))
                self._frame_left = frame
                continue
            if not self._raw:
                self._raw += self._recv()
            take = min(self._frame_left, len(self._raw))
            self._buf += self._raw[:take]
            del self._raw[:take]
            self._frame_left -= take

    def _count(self, values: int, cost: int) -> None:
        self._values += values
        self._cost += cost
        if self._values >= self._next_check:
            self._next_check = self._values + _PAUSE_EVERY
            self._check_memory()
            if self._pause is not None:
                self._pause()

    def _check_memory(self) -> None:
        if self._cost > MEMORY_FACTOR * len(self._buf) + MEMORY_FLOOR:
            raise Rejected("request would decode into about %d bytes of objects, more than "
                           "%d times its size" % (self._cost, MEMORY_FACTOR))

    def _elements(self, count: int, smallest: int | None, kind: int, at: int) -> None:
        if smallest is None:
            raise Rejected("invalid element type %d" % kind)
        if count < 0:
            raise Rejected("negative container size %d" % count)
        if count * smallest > MAX_MESSAGE_BYTES - at:
            raise Rejected("container of %d elements cannot fit in a request of at most %d "
                           "bytes" % (count, MAX_MESSAGE_BYTES))

    def _finish(self, end: int) -> int:
        self._check_memory()
        return end

    # Binary protocol.

    def _walk_binary(self) -> int:
        self._fill(4)
        head = _I32.unpack_from(self._buf)[0]
        if head < 0:
            if head & _VERSION_MASK != _VERSION_1:
                raise Rejected("Bad version in readMessageBegin")
            at = self._string_b(4, _MAX_NAME) + 4
        else:
            # An old-style (non-strict) message: the name's length comes first.
            if head > _MAX_NAME:
                raise Rejected("method name of %d bytes" % head)
            at = 4 + head + 1 + 4
        self._fill(at)
        return self._finish(self._struct_b(at, 1))

    def _string_b(self, at: int, limit: int = MAX_MESSAGE_BYTES) -> int:
        self._fill(at + 4)
        size: int = _I32.unpack_from(self._buf, at)[0]
        if size < 0 or size > limit:
            raise Rejected("string of %d bytes" % size)
        self._fill(at + 4 + size)
        self._count(1, _BYTES + size)
        return at + 4 + size

    def _struct_b(self, at: int, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise Rejected("nested deeper than %d" % MAX_DEPTH)
        self._count(1, _STRUCT)
        buf = self._buf
        while True:
            self._fill(at + 1)
            kind = buf[at]
            if kind == 0:
                return at + 1
            self._fill(at + 3)
            at = self._value_b(kind, at + 3, depth)

    def _value_b(self, kind: int, at: int, depth: int) -> int:
        buf = self._buf
        size = _B_FIXED.get(kind)
        if size is not None:
            self._fill(at + size)
            self._count(1, _B_COST[kind])
            return at + size
        if kind == 11:
            return self._string_b(at)
        if kind == 12:
            return self._struct_b(at, depth + 1)
        if kind in (14, 15):
            self._fill(at + 5)
            element, count = buf[at], _I32.unpack_from(buf, at + 1)[0]
            return self._sequence_b(element, count, at + 5, depth + 1)
        if kind == 13:
            self._fill(at + 6)
            key, value, count = buf[at], buf[at + 1], _I32.unpack_from(buf, at + 2)[0]
            return self._map(key, value, count, at + 6, depth + 1, _B_MIN, self._value_b)
        raise Rejected("invalid type %d" % kind)

    def _sequence_b(self, element: int, count: int, at: int, depth: int) -> int:
        return self._sequence(element, count, at, depth, _B_MIN, _B_FIXED,
                              _B_COST.get(element, 0), self._value_b)

    # Containers, the same in both protocols but for sizes and readers.

    def _map(self, key: int, value: int, count: int, at: int, depth: int,
             minimum: dict[int, int], read: Callable[[int, int, int], int]) -> int:
        self._elements(count, minimum.get(key), key, at)
        self._elements(count, minimum.get(value), value, at)
        self._elements(count, minimum[key] + minimum[value], key, at)
        if depth > MAX_DEPTH:
            raise Rejected("nested deeper than %d" % MAX_DEPTH)
        self._count(count, _MAP + _ENTRY * count)
        for _ in range(count):
            at = read(key, at, depth)
            at = read(value, at, depth)
        return at

    def _sequence(self, element: int, count: int, at: int, depth: int,
                  minimum: dict[int, int], fixed: dict[int, int], cost: int,
                  read: Callable[[int, int, int], int]) -> int:
        self._elements(count, minimum.get(element), element, at)
        if depth > MAX_DEPTH:
            raise Rejected("nested deeper than %d" % MAX_DEPTH)
        self._count(count, _LIST + _SLOT * count)
        size = fixed.get(element)
        if size is not None:
            self._fill(at + count * size)
            self._count(0, cost * count)
            return at + count * size
        for _ in range(count):
            at = read(element, at, depth)
        return at

    # Compact protocol.

    def _varint(self, at: int, longest: int) -> tuple[int, int]:
        buf = self._buf
        result = shift = 0
        for _ in range(longest):
            self._fill(at + 1)
            byte = buf[at]
            at += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, at
            shift += 7
        raise Rejected("varint longer than %d bytes" % longest)

    def _walk_compact(self) -> int:
        self._fill(2)
        if self._buf[0] != 0x82:
            raise Rejected("Bad protocol id in the message: %d" % self._buf[0])
        if self._buf[1] & 0x1F != 1:
            raise Rejected("Bad version: %d (expect 1)" % (self._buf[1] & 0x1F))
        _, at = self._varint(2, 5)  # sequence id
        size, at = self._varint(at, 5)
        if size > _MAX_NAME:
            raise Rejected("method name of %d bytes" % size)
        self._fill(at + size)
        return self._finish(self._struct_c(at + size, 1))

    def _struct_c(self, at: int, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise Rejected("nested deeper than %d" % MAX_DEPTH)
        self._count(1, _STRUCT)
        buf = self._buf
        while True:
            self._fill(at + 1)
            head = buf[at]
            at += 1
            kind = head & 0x0F
            if kind == 0:
                return at
            if head >> 4 == 0:
                _, at = self._varint(at, 3)  # a field id that is not a small delta
            if kind in (1, 2):
                continue  # a boolean field: its value is in the type nibble
            at = self._value_c(kind, at, depth)

    def _value_c(self, kind: int, at: int, depth: int) -> int:
        buf = self._buf
        size = _C_FIXED.get(kind)
        if size is not None:
            self._fill(at + size)
            self._count(1, _NUMBER if kind == 7 else 0)
            return at + size
        longest = _C_VARINT.get(kind)
        if longest is not None:
            self._count(1, _NUMBER)
            return self._varint(at, longest)[1]
        if kind == 8:
            size, at = self._varint(at, 5)
            if size > MAX_MESSAGE_BYTES - at:
                raise Rejected("string of %d bytes" % size)
            self._fill(at + size)
            self._count(1, _BYTES + size)
            return at + size
        if kind == 12:
            return self._struct_c(at, depth + 1)
        if kind in (9, 10):
            self._fill(at + 1)
            count, element = buf[at] >> 4, buf[at] & 0x0F
            at += 1
            if count == 15:
                count, at = self._varint(at, 5)
            return self._sequence_c(element, count, at, depth + 1)
        if kind == 11:
            count, at = self._varint(at, 5)
            if count == 0:
                self._count(1, _MAP)
                return at
            self._fill(at + 1)
            key, value = buf[at] >> 4, buf[at] & 0x0F
            return self._map(key, value, count, at + 1, depth + 1, _C_MIN, self._value_c)
        raise Rejected("invalid type %d" % kind)

    def _sequence_c(self, element: int, count: int, at: int, depth: int) -> int:
        return self._sequence(element, count, at, depth, _C_MIN, _C_FIXED,
                              _NUMBER if element == 7 else 0, self._value_c)
