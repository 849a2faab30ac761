"""green_happybase: a gevent-native connection pool for HappyBase.

The public names load on first use (PEP 562), so that importing a submodule
(the pytest plugin, say) costs nothing and imports neither gevent nor
happybase.
"""
import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:  # the same names, for type checkers (explicit re-exports)
    from .config import close_all as close_all
    from .config import configure as configure
    from .config import get_pool as get_pool
    from .connection import GreenConnection as GreenConnection
    from .errors import AuthenticationFailed as AuthenticationFailed
    from .errors import ConnectDeadline as ConnectDeadline
    from .errors import ConnectionFailed as ConnectionFailed
    from .errors import LeaseError as LeaseError
    from .errors import PoolClosed as PoolClosed
    from .errors import PoolError as PoolError
    from .errors import PoolExhausted as PoolExhausted
    from .errors import PoolNotConfigured as PoolNotConfigured
    from .errors import ReplyMismatch as ReplyMismatch
    from .pool import ConnectionPool as ConnectionPool

#: Each public name and the module that defines it.
_HOMES = {
    "ConnectionPool": ".pool",
    "GreenConnection": ".connection",
    "AuthenticationFailed": ".errors",
    "ConnectDeadline": ".errors",
    "ConnectionFailed": ".errors",
    "LeaseError": ".errors",
    "PoolClosed": ".errors",
    "PoolError": ".errors",
    "PoolExhausted": ".errors",
    "ReplyMismatch": ".errors",
    "PoolNotConfigured": ".errors",
    "configure": ".config",
    "get_pool": ".config",
    "close_all": ".config",
}

__all__ = ["__version__", *_HOMES]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError("module 'green_happybase' has no attribute %r" % (name,))
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger("green_happybase").addHandler(logging.NullHandler())
