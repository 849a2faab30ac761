"""green_happybase: a gevent-native connection pool for HappyBase."""
import logging

from .errors import (
    ConnectionFailed,
    LeaseError,
    PoolClosed,
    PoolError,
    PoolExhausted,
    ReplyMismatch,
)

__version__ = "0.1.0"

__all__ = [
    "ConnectionFailed",
    "LeaseError",
    "PoolClosed",
    "PoolError",
    "PoolExhausted",
    "ReplyMismatch",
]

logging.getLogger("green_happybase").addHandler(logging.NullHandler())
