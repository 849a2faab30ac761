"""The servers the benchmark talks to, and their tables, set up and torn down."""

import contextlib
import importlib.util
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from green_happybase import ConnectionPool
from green_happybase.testing import HBaseServer

from . import dataset
from .security import ENV_PASSWORD, pool_kwargs, settings

__all__ = ["MODES", "Target", "open_mode_targets", "open_target"]

logger = logging.getLogger("green_happybase.bench")


class Target:
    """Where the workloads connect, and the table they read."""

    def __init__(self, host: str, port: int, options: dict[str, Any], table: str,
                 server: HBaseServer | None, security: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        #: ``happybase.Connection`` keyword arguments every variant uses.
        self.options = options
        #: How to reach a secure gateway (see :mod:`.security`).
        self.security = security or settings()
        #: What a child's environment needs to connect (a password).
        self.env = env or {}
        self.table = table
        self._server = server

    @property
    def embedded(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def spec(self) -> dict[str, Any]:
        """What a child needs to reach it, secrets left out."""
        return {"host": self.host, "port": self.port, "options": self.options,
                "security": self.security, "table": self.table}

    def set_latency(self, seconds: float) -> bool:
        """Delay every reply by *seconds*; ``False`` if the server cannot."""
        if self._server is None:
            return False
        self._server.set_latency(seconds)
        return True


@contextlib.contextmanager
def _session(host: str, port: int, options: Mapping[str, Any], security: Mapping[str, Any],
             env: Mapping[str, str]) -> Iterator[Any]:
    """A connection of a one-connection pool, for setting up and tearing down."""
    kwargs = dict(options, **pool_kwargs(options, security, dict(os.environ, **env)))
    with ConnectionPool(1, host=host, port=port, **kwargs) as pool:
        with pool.connection() as conn:
            yield conn


def _load(stack: contextlib.ExitStack, host: str, port: int, options: dict[str, Any],
          security: dict[str, Any], env: dict[str, str], warn: bool) -> str:
    """Create and load a fresh table; *stack* drops it on the way out."""
    table = dataset.table_name()
    try:
        with _session(host, port, options, security, env) as conn:
            dataset.create(conn, table)
    except BaseException:
        _drop(host, port, options, security, env, table, warn)  # it may exist, half loaded
        raise
    stack.callback(_drop, host, port, options, security, env, table, warn)
    return table


@contextlib.contextmanager
def open_target(host: str | None, port: int, transport: str, protocol: str,
                security: dict[str, Any] | None = None) -> Iterator[Target]:
    """Yield a :class:`Target` with a freshly loaded table.

    Without *host*, an embedded server is started in a child process (so
    that client and server do not share a hub). The table, and the embedded
    server, are removed on the way out, whatever happened.
    """
    options = {"transport": transport, "protocol": protocol}
    security = security or settings()
    with contextlib.ExitStack() as stack:
        server = None
        if host is None:
            server = stack.enter_context(HBaseServer(
                host="127.0.0.1", port=0, transport=transport, protocol=protocol,
                subprocess=True))
            host, port = server.host, server.port
        table = _load(stack, host, port, options, security, {}, server is None)
        yield Target(host, port, options, table, server, security)


def _drop(host: str, port: int, options: Mapping[str, Any], security: Mapping[str, Any],
          env: Mapping[str, str], table: str, warn: bool) -> None:
    """Remove *table*; on failure log a warning if *warn*, else quietly.

    An embedded server that has gone (Ctrl-C reaches it too) took the table
    with it.
    """
    # A fresh connection: the one that created the table may have gone stale.
    try:
        with _session(host, port, options, security, env) as conn:
            dataset.drop(conn, table)
    except Exception as error:
        # Reported, not raised: it must not hide the error that ended the run.
        logger.log(logging.WARNING if warn else logging.DEBUG,
                   "could not remove table %s from %s:%s: %s", table, host, port, error)


class Mode(NamedTuple):
    """One way of serving Thrift, for the transports table."""

    label: str
    transport: str
    tls: bool
    sasl: bool


#: The embedded server's modes, in report order. Kerberos is left out: it
#: needs a KDC.
MODES = {
    "tcp": Mode("TCP buffered", "buffered", tls=False, sasl=False),
    "tls": Mode("TLS", "buffered", tls=True, sasl=False),
    "http": Mode("HTTP", "http", tls=False, sasl=False),
    "https": Mode("HTTPS", "http", tls=True, sasl=False),
    "sasl_plain": Mode("SASL PLAIN", "buffered", tls=False, sasl=True),
}
_USER = "bench"


def tls_unavailable() -> str | None:
    """Why the TLS modes cannot run here, or ``None``."""
    if importlib.util.find_spec("trustme") is None:
        return "needs trustme for a throwaway certificate: pip install trustme"
    return None


def _certificate(folder: str) -> tuple[str, str, str]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, as files
    in *folder*: ``(ca, cert, key)``."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    paths = tuple(os.path.join(folder, name) for name in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(paths[0])
    leaf.cert_chain_pems[0].write_to_path(paths[1])
    leaf.private_key_pem.write_to_path(paths[2])
    return paths[0], paths[1], paths[2]


@contextlib.contextmanager
def open_mode_targets(modes: list[str]) -> Iterator[dict[str, Target]]:
    """Yield a :class:`Target` per mode of *modes* (keys of :data:`MODES`),
    each an embedded server of its own in its own process, with its table.

    The TLS modes trust a CA made for the run; SASL PLAIN knows one user
    whose password, made for the run too, reaches the children through
    their environment.
    """
    with contextlib.ExitStack() as stack:
        certificate = None
        if any(MODES[mode].tls for mode in modes):
            certificate = _certificate(stack.enter_context(tempfile.TemporaryDirectory()))
        yield {name: _start_mode(stack, MODES[name], certificate) for name in modes}


def _start_mode(stack: contextlib.ExitStack, mode: Mode,
                certificate: tuple[str, str, str] | None) -> Target:
    """Start an embedded server in *mode* and load its table, both undone by *stack*."""
    from green_happybase.testing.gateways import ServerAuth

    server_options: dict[str, Any] = {}
    security = settings()
    env = {}
    if mode.tls:
        assert certificate is not None
        server_options.update(tls_cert=certificate[1], tls_key=certificate[2])
        security.update(tls=True, cafile=certificate[0])
    if mode.sasl:
        password = secrets.token_urlsafe(16)
        server_options["auth"] = ServerAuth(users={_USER: password})
        security.update(auth="plain", user=_USER)
        env[ENV_PASSWORD] = password
    server = stack.enter_context(HBaseServer(
        host="127.0.0.1", port=0, transport=mode.transport, subprocess=True, **server_options))
    options = {"transport": mode.transport, "protocol": "binary"}
    table = _load(stack, server.host, server.port, options, security, env, False)
    return Target(server.host, server.port, options, table, server, security, env)
