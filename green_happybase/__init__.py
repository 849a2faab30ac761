"""green_happybase: a gevent-native connection pool for HappyBase."""
import logging

from ._version import __version__
from .connection import GreenConnection
from .errors import (
    AuthenticationFailed,
    ConnectionFailed,
    LeaseError,
    PoolClosed,
    PoolError,
    PoolExhausted,
    PoolNotConfigured,
    ReplyMismatch,
)
from .config import close_all, configure, get_pool
from .pool import ConnectionPool

__all__ = [
    "ConnectionPool",
    "GreenConnection",
    "AuthenticationFailed",
    "ConnectionFailed",
    "LeaseError",
    "PoolClosed",
    "PoolError",
    "PoolExhausted",
    "ReplyMismatch",
    "PoolNotConfigured",
    "configure",
    "get_pool",
    "close_all",
]

logging.getLogger("green_happybase").addHandler(logging.NullHandler())
