"""The Thrift servers a pool connects to, and their back-off after failures."""

import logging
import random
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["Host", "HostList", "parse_address", "parse_hosts"]

logger = logging.getLogger("green_happybase")

#: One Thrift server: ``"host:port"``, ``"host"`` or ``(host, port)``.
HostSpec = str | tuple[str, int]


def parse_address(spec: HostSpec, default_port: int) -> tuple[str, int]:
    """One server as ``(host, port)``, from any form :data:`HostSpec` allows.

    ``"h"``, ``"h:9090"``, ``"[::1]:9090"``, ``"::1"`` (an IPv6 address
    without brackets has no port) and ``("h", 9090)``; the one parser for
    ``hosts=`` and for the servers of an ``hbase://`` URL.
    """
    if isinstance(spec, tuple) and len(spec) == 2:
        host, port = spec
    elif isinstance(spec, str):
        host, port = _split(spec, default_port)
    else:
        raise TypeError("server %r is not a 'host:port' string" % (spec,))
    if not host or not isinstance(host, str):
        raise ValueError("server %r has no host name" % (spec,))
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("server %r has no valid port: %r" % (spec, port))
    return host, port


def _split(spec: str, default_port: int) -> tuple[str, Any]:
    if spec.startswith("["):
        host, bracket, rest = spec[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("server %r is malformed: write [v6-address]:port" % (spec,))
        port_text = rest[1:] if rest else None
    elif spec.count(":") > 1:
        return spec, default_port  # a bare IPv6 address
    else:
        host, sep, port_text_or_empty = spec.partition(":")
        port_text = port_text_or_empty if sep else None
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("server %r has no valid port: %r" % (spec, port_text))
    return host, int(port_text)


def parse_hosts(hosts: Sequence[HostSpec], default_port: int) -> list[tuple[str, int]]:
    """Turn ``['a:9090', 'b', ('c', 9091), '[::1]:9092']`` into ``[(host, port), ...]``."""
    if isinstance(hosts, (str, bytes)) or not hasattr(hosts, "__iter__"):
        raise TypeError("'hosts' must be a list of 'host:port' strings, got %r" % (hosts,))
    parsed = []
    for spec in hosts:
        try:
            parsed.append(parse_address(spec, default_port))
        except (TypeError, ValueError) as error:
            raise type(error)("'hosts' entry: %s" % error) from None
    if not parsed:
        raise ValueError("'hosts' must name at least one server, got %r" % (hosts,))
    return parsed


class Host:
    """A Thrift server, its open connections and its back-off state."""

    __slots__ = ("host", "port", "address", "open", "connects_total",
                 "connect_errors_total", "failures", "retry_at", "probed")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.address = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
        self.open = 0
        self.connects_total = 0
        self.connect_errors_total = 0
        self.failures = 0
        self.retry_at = 0.0
        self.probed = False  # a probe proved transport and protocol right

    def stats(self, now: float) -> dict[str, Any]:
        return {
            "open": self.open,
            "connects_total": self.connects_total,
            "connect_errors_total": self.connect_errors_total,
            "failures": self.failures,
            "retry_in": max(0.0, self.retry_at - now),
        }


class HostList:
    """Round-robin over the servers, skipping those that are backing off.

    The rotation starts at a random server so that many processes started
    together do not all open their first connection to the same one.
    """

    def __init__(self, addresses: Any, retry_interval: float, retry_max: float,
                 default_port: int) -> None:
        #: A callable that names the servers anew at each connect, or None.
        self._source = addresses if callable(addresses) else None
        self._default_port = default_port
        self.hosts: list[Host] = []
        self._update(addresses() if self._source else addresses)
        self._next = random.randrange(len(self.hosts))
        self._retry_interval = retry_interval
        self._retry_max = retry_max

    def refresh(self) -> None:
        """Ask the *hosts* callable again; servers still named keep their state."""
        if self._source is not None:
            self._update(self._source())

    def _update(self, addresses: Any) -> None:
        parsed = parse_hosts(addresses, self._default_port)
        known = {(h.host, h.port): h for h in self.hosts}
        self.hosts = [known.get(address) or Host(*address) for address in parsed]

    def candidates(self, now: float) -> tuple[list[Host], list[Host]]:
        """The servers to try in order, and those backing off.

        Each call moves the rotation one step, which spreads new
        connections over the servers.
        """
        count = len(self.hosts)
        start = self._next % count
        self._next = (start + 1) % count
        ready: list[Host] = []
        waiting: list[Host] = []
        for i in range(count):
            host = self.hosts[(start + i) % count]
            (ready if host.retry_at <= now else waiting).append(host)
        return ready, waiting

    def failed(self, host: Host, error: BaseException) -> None:
        host.connect_errors_total += 1
        host.failures += 1
        delay = self._retry_interval * 2 ** min(host.failures - 1, 32)
        # Jitter keeps clients that failed together from retrying together.
        delay = min(self._retry_max, delay * random.uniform(0.8, 1.2))
        host.retry_at = time.monotonic() + delay
        logger.warning("cannot connect to %s (%s); retrying it in %.2f s",
                       host.address, error, delay)

    def succeeded(self, host: Host) -> None:
        host.connects_total += 1
        if host.failures:
            logger.info("%s is reachable again after %d failed attempt(s)",
                        host.address, host.failures)
            host.failures = 0
            host.retry_at = 0.0
