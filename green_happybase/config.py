"""Configuration: pool options from an ``hbase://`` URL, and a per-process registry.

A URL names the Thrift servers and carries every option of
:class:`~green_happybase.ConnectionPool` and of ``happybase.Connection`` as a
query parameter::

    hbase://host-a:9090,host-b:9090/?size=10&min_size=2&transport=framed
        &protocol=compact&timeout=5000&table_prefix=app

The registry lets code that cannot pass a pool around find it by name::

    green_happybase.configure("hbase://localhost:9090/?size=8")
    ...
    with green_happybase.get_pool().connection() as conn: ...
"""

import math
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import unquote_plus, urlsplit

from happybase.connection import COMPAT_MODES, THRIFT_PROTOCOLS, THRIFT_TRANSPORTS

from .errors import PoolNotConfigured

if TYPE_CHECKING:
    # Imported late at run time: pool.py imports parse_url from here.
    from .pool import ConnectionPool

__all__ = [
    "DEFAULT_SIZE",
    "ENV_URL",
    "close_all",
    "configure",
    "get_pool",
    "parse_url",
]

#: The environment variable :func:`get_pool` reads when nothing is configured.
ENV_URL = "GREEN_HAPPYBASE_URL"

#: The pool size of a URL without a ``size`` parameter.
DEFAULT_SIZE = 10

_DEFAULT_PORT = 9090
_NONE_WORDS = ("", "none")
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


# -- URL values --------------------------------------------------------------
# Each converter turns the text of one parameter into its value, or raises
# ValueError saying what it expected; _convert adds the name and the text.


def _int(text: str) -> int:
    if not text.isdigit():
        raise ValueError("a whole number >= 0")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError("a finite number of seconds >= 0")
    return value


def _milliseconds(text: str) -> Union[int, float]:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("a number of milliseconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("a finite number of milliseconds > 0")
    return int(value) if value.is_integer() else value


def _bool(text: str) -> bool:
    word = text.lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError("one of %s" % ", ".join(_TRUE_WORDS + _FALSE_WORDS))


def _optional(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def optional(text: str) -> Any:
        if text.lower() in _NONE_WORDS:
            return None
        try:
            return convert(text)
        except ValueError as error:
            raise ValueError("%s, or 'none'" % error) from None
    return optional


def _choice(choices: Any) -> Callable[[str], str]:
    def choice(text: str) -> str:
        if text not in choices:
            raise ValueError("one of %s" % ", ".join(sorted(choices)))
        return text
    return choice


def _text(text: str) -> str:
    if not text:
        raise ValueError("a non-empty string")
    return text


def _prefix(text: str) -> Optional[str]:
    return text or None


_PARAMETERS: Dict[str, Callable[[str], Any]] = {
    # ConnectionPool's own options
    "size": _int,
    "min_size": _int,
    "max_idle": _optional(_int),
    "idle_timeout": _optional(_seconds),
    "max_lifetime": _optional(_seconds),
    "acquire_timeout": _optional(_seconds),
    "max_waiting": _optional(_int),
    "autoconnect": _bool,
    "retry_interval": _seconds,
    "retry_max": _seconds,
    "check": _bool,
    "check_after": _seconds,
    "leak_timeout": _optional(_seconds),
    "name": _text,
    # happybase.Connection's options (host and port come from the address)
    "timeout": _optional(_milliseconds),
    "transport": _choice(THRIFT_TRANSPORTS),
    "protocol": _choice(THRIFT_PROTOCOLS),
    "compat": _choice(COMPAT_MODES),
    "table_prefix": _prefix,
    "table_prefix_separator": _text,
}

_NOT_IN_QUERY = {
    "host": "name the servers in the URL's address: hbase://host:port,host:port/",
    "port": "name the servers in the URL's address: hbase://host:port,host:port/",
    "hosts": "name the servers in the URL's address: hbase://host:port,host:port/",
    "on_connect": "hooks are callables: pass them as keyword arguments",
    "on_checkout": "hooks are callables: pass them as keyword arguments",
    "on_checkin": "hooks are callables: pass them as keyword arguments",
    "on_discard": "hooks are callables: pass them as keyword arguments",
}


def _convert(name: str, text: str) -> Any:
    try:
        return _PARAMETERS[name](text)
    except ValueError as error:
        raise ValueError("URL parameter %s=%r is malformed: expected %s"
                         % (name, text, error)) from None


def _parse_query(query: str) -> Dict[str, Any]:
    values: Dict[str, Any] = {}
    unknown: List[str] = []
    for field in query.split("&"):
        if not field:
            continue
        raw_name, sep, raw_value = field.partition("=")
        name, text = unquote_plus(raw_name), unquote_plus(raw_value)
        if not sep:
            raise ValueError("URL parameter %r has no value (write %s=VALUE)" % (name, name))
        if name in _NOT_IN_QUERY:
            raise ValueError("URL parameter %s=%r is not allowed: %s"
                             % (name, text, _NOT_IN_QUERY[name]))
        if name not in _PARAMETERS:
            unknown.append("%s=%r" % (name, text))
            continue
        if name in values:
            raise ValueError("URL parameter %r is given twice (last %r)" % (name, text))
        values[name] = _convert(name, text)
    if unknown:
        raise ValueError("unknown URL parameter(s) %s; known: %s"
                         % (", ".join(unknown), ", ".join(_PARAMETERS)))
    return values


def _parse_address(entry: str) -> Tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` into ``(host, port)``."""
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("URL server %r is malformed" % (entry,))
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_or_empty = entry.partition(":")
        port_text = port_text_or_empty if sep else None
    if not host:
        raise ValueError("URL server %r has no host name" % (entry,))
    if port_text is None:
        return host, _DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("URL server %r has no valid port: %r" % (entry, port_text))
    return host, int(port_text)


def parse_url(url: str, **overrides: Any) -> Tuple[int, Dict[str, Any]]:
    """Turn an ``hbase://`` URL into ``(size, kwargs)`` for :class:`ConnectionPool`.

    The address part names one server (giving ``host`` and ``port``) or
    several, comma-separated (giving ``hosts``); a missing port is 9090, an
    empty address leaves the pool's default, ``localhost:9090``. Every query
    parameter is a pool or connection option of the same name: whole numbers
    for counts, seconds for the pool's times, milliseconds for ``timeout`` (as
    happybase has it), ``true``/``false`` for switches, ``none`` (or nothing)
    where ``None`` is allowed. Without ``size`` the size is
    :data:`DEFAULT_SIZE`.

    :param url: e.g. ``hbase://a:9090,b:9090/?size=10&transport=framed``
    :param overrides: options that win over the URL's; ``host``/``port``
        replace the URL's servers as ``hosts`` does
    :raises ValueError: not an ``hbase`` URL, or a parameter that is unknown,
        repeated or malformed (the message names it and its value)
    :raises TypeError: *url* is not a string
    """
    if not isinstance(url, str):
        raise TypeError("'url' must be a string, got %r" % (url,))
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise ValueError("'url' is malformed (%s): %r" % (error, url)) from None
    if parts.scheme != "hbase":
        raise ValueError("'url' must start with hbase://, got %r" % (url,))
    if parts.path not in ("", "/"):
        raise ValueError("'url' must have no path, got %r in %r" % (parts.path, url))
    if parts.fragment:
        raise ValueError("'url' must have no fragment, got %r in %r" % (parts.fragment, url))
    if "@" in parts.netloc:
        raise ValueError("'url' must carry no user or password, got %r" % (url,))
    kwargs = _parse_query(parts.query)
    if parts.netloc:
        servers = [_parse_address(entry) for entry in parts.netloc.split(",")]
        if len(servers) == 1:
            kwargs["host"], kwargs["port"] = servers[0]
        else:
            kwargs["hosts"] = servers
    if "hosts" in overrides or "host" in overrides or "port" in overrides:
        for key in ("host", "port", "hosts"):
            kwargs.pop(key, None)
    kwargs.update(overrides)
    size = kwargs.pop("size", DEFAULT_SIZE)
    return size, kwargs


# -- the registry ------------------------------------------------------------

_pools: Dict[str, "ConnectionPool"] = {}


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError("'name' must be a non-empty string, got %r" % (name,))


def _build(url_or_options: Union[str, Mapping[str, Any]], name: str) -> "ConnectionPool":
    from .pool import ConnectionPool

    if isinstance(url_or_options, str):
        size, kwargs = parse_url(url_or_options)
    elif isinstance(url_or_options, Mapping):
        kwargs = dict(url_or_options)
        if "size" not in kwargs:
            raise ValueError("'url_or_options' must include 'size', got %r" % (url_or_options,))
        size = kwargs.pop("size")
    else:
        raise TypeError("'url_or_options' must be an hbase:// URL or a dict of "
                        "ConnectionPool options, got %r" % (url_or_options,))
    kwargs.setdefault("name", name)
    return ConnectionPool(size, **kwargs)


def configure(url_or_options: Union[str, Mapping[str, Any]],
              name: str = "default") -> "ConnectionPool":
    """Create the pool registered as *name*, closing any pool it replaces.

    :param url_or_options: an ``hbase://`` URL (see :func:`parse_url`), or a
        dict of :class:`ConnectionPool` keyword arguments including ``size``
    :param name: the registry key; also the pool's name unless the options
        give one
    :returns: the new pool, which :func:`get_pool` returns from now on
    """
    _check_name(name)
    pool = _build(url_or_options, name)
    old = _pools.get(name)
    _pools[name] = pool
    if old is not None:
        old.close()
    return pool


def get_pool(name: str = "default") -> "ConnectionPool":
    """The pool registered as *name*.

    With nothing registered as ``"default"``, the first call builds that pool
    from the URL in the ``GREEN_HAPPYBASE_URL`` environment variable.

    After ``os.fork()`` the child gets the same pool object: the pool itself
    drops the connections it inherited, without touching the parent's, and
    opens its own on first use. Objects that hold the pool (a module global,
    a metrics collector) therefore keep working in every process.

    :raises PoolNotConfigured: nothing is registered under *name* (nor, for
        ``"default"``, is ``GREEN_HAPPYBASE_URL`` set); it is both a
        :class:`PoolError` and a ``LookupError``
    """
    pool = _pools.get(name)
    if pool is not None:
        return pool
    _check_name(name)
    url = os.environ.get(ENV_URL, "") if name == "default" else ""
    if not url:
        hint = (" and %s is not set" % ENV_URL) if name == "default" else ""
        raise PoolNotConfigured("no pool is configured as %r%s; call "
                                "green_happybase.configure(url_or_options, name=%r) first"
                                % (name, hint, name))
    pool = _build(url, name)
    # Building connects and may yield: another greenlet may have won the race.
    winner = _pools.setdefault(name, pool)
    if winner is not pool:
        pool.close()
    return winner


def close_all(timeout: Optional[float] = None) -> None:
    """Close every registered pool and empty the registry (e.g. at worker exit).

    :param timeout: passed to each pool's :meth:`~ConnectionPool.close`
    """
    pools = list(_pools.values())
    _pools.clear()
    for pool in pools:
        pool.close(timeout)
