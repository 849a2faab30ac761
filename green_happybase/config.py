"""A per-process registry of pools, by name.

The registry lets code that cannot pass a pool around find it by name::

    green_happybase.configure("hbase://localhost:9090/?size=8")
    ...
    with green_happybase.get_pool().connection() as conn: ...

``parse_url`` and ``DEFAULT_SIZE`` are re-exported here from
:mod:`green_happybase.urls`, where URLs are parsed.
"""

import os
from collections.abc import Mapping
from typing import Any

from .errors import PoolNotConfigured
from .pool import ConnectionPool
from .urls import DEFAULT_SIZE, parse_url

__all__ = [
    "DEFAULT_SIZE",
    "ENV_URL",
    "PoolNotConfigured",
    "close_all",
    "configure",
    "get_pool",
    "parse_url",
]

#: The environment variable :func:`get_pool` reads when nothing is configured.
ENV_URL = "GREEN_HAPPYBASE_URL"

_pools: dict[str, ConnectionPool] = {}


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError("'name' must be a non-empty string, got %r" % (name,))


def _build(url_or_options: str | Mapping[str, Any], name: str) -> ConnectionPool:
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


def configure(url_or_options: str | Mapping[str, Any],
              name: str = "default") -> ConnectionPool:
    """Create the pool registered as *name*, closing any pool it replaces.

    :param url_or_options: an ``hbase://`` URL (see
        :func:`~green_happybase.urls.parse_url`), or a dict of
        :class:`ConnectionPool` keyword arguments including ``size``
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


def get_pool(name: str = "default") -> ConnectionPool:
    """The pool registered as *name*.

    With nothing registered as ``"default"``, the first call builds that pool
    from the URL in the ``GREEN_HAPPYBASE_URL`` environment variable; an
    error in that URL names the variable.

    After ``os.fork()`` the child gets the same pool object: the pool itself
    forgets the connections it inherited, without touching the parent's, and
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
    try:
        pool = _build(url, name)
    except (TypeError, ValueError) as error:
        raise type(error)("environment variable %s: %s" % (ENV_URL, error)) from None
    # Building connects and may yield: another greenlet may have won the race.
    winner = _pools.setdefault(name, pool)
    if winner is not pool:
        pool.close()
    return winner


def close_all(timeout: float | None = None) -> None:
    """Close every registered pool and empty the registry (e.g. at worker exit).

    :param timeout: passed to each pool's :meth:`~ConnectionPool.close`
    """
    pools = list(_pools.values())
    _pools.clear()
    for pool in pools:
        pool.close(timeout)
