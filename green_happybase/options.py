"""Every option of :class:`~green_happybase.ConnectionPool`, declared once.

Each :class:`Option` carries its name, default, the check applied to a value
given in Python, the parser applied to its text in an ``hbase://`` URL, and
the line that documents it. The constructor, :func:`parse_url
<green_happybase.urls.parse_url>` and the pool's docstring all read this
table, so an option cannot drift between them.
"""

import difflib
import logging
import math
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from happybase.connection import COMPAT_MODES, THRIFT_PROTOCOLS, THRIFT_TRANSPORTS

from .auth import Auth, check_combination
from .hosts import parse_hosts

__all__ = ["OPTIONS", "Option", "Settings", "check_seconds", "options_doc", "resolve"]

logger = logging.getLogger("green_happybase")

DEFAULT_PORT = 9090

#: Misspellings too far from the right name for difflib to suggest it.
_ALIASES = {"max_size": "size", "pool_size": "size", "maxsize": "size",
            "max_connections": "size", "min_idle": "min_size",
            "wait_timeout": "acquire_timeout", "pool_timeout": "acquire_timeout",
            "host_list": "hosts", "servers": "hosts"}

#: Below this, a ``timeout`` was most likely meant as seconds.
_TIMEOUT_WARN_MS = 100

_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


# -- checks of Python values ---------------------------------------------------
# Each takes the option's name and value and returns the value to use, or
# raises TypeError/ValueError naming both.

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(minimum: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if not _is_int(value):
            raise TypeError("%r must be an int, got %r" % (name, value))
        if value < minimum:
            raise ValueError("%r must be at least %d, got %r" % (name, minimum, value))
        return int(value)
    return check


def check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%r must be a number of seconds, got %r" % (name, value))
    if not math.isfinite(value) or value < 0:
        raise ValueError("%r must be a finite number of seconds >= 0, got %r" % (name, value))
    return float(value)


def _positive_seconds(name: str, value: Any) -> float:
    seconds = check_seconds(name, value)
    if seconds == 0:
        raise ValueError("%r must be more than 0 seconds, got %r" % (name, value))
    return seconds


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def optional(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)
    return optional


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("%r must be True or False, got %r" % (name, value))
    return value


def _one_of(choices: Sequence[str]) -> Callable[[str, Any], str]:
    def one_of(name: str, value: Any) -> str:
        if value not in choices:
            raise ValueError("%r must be one of %s, got %r"
                             % (name, ", ".join(sorted(choices)), value))
        return str(value)
    return one_of


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("%r must be a non-empty string, got %r" % (name, value))
    return value


def _bytes_text(name: str, value: Any) -> Any:
    if not isinstance(value, (str, bytes)):
        raise TypeError("%r must be a string, got %r" % (name, value))
    return value


def _callable(name: str, value: Any) -> Any:
    if not callable(value):
        raise TypeError("%r must be callable, got %r" % (name, value))
    return value


def _check(name: str, value: Any) -> Any:
    if not (isinstance(value, bool) or callable(value)):
        raise TypeError("%r must be True, False or a callable, got %r" % (name, value))
    return value


def _milliseconds(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%r must be milliseconds, got %r" % (name, value))
    if not math.isfinite(value) or value <= 0:
        raise ValueError("%r must be a finite number of milliseconds > 0, got %r"
                         % (name, value))
    return value


def _port(name: str, value: Any) -> int:
    if not _is_int(value) or not 0 < value < 65536:
        raise ValueError("%r must be a TCP port number, got %r" % (name, value))
    return int(value)


def _tls(name: str, value: Any) -> Any:
    if not isinstance(value, (bool, ssl.SSLContext)):
        raise TypeError("%r must be True, False or an ssl.SSLContext, got %r" % (name, value))
    return value


def _auth(name: str, value: Any) -> Any:
    if value is None or callable(value) and not isinstance(value, Auth):
        return value  # a callable is asked at each new connection
    if not isinstance(value, Auth):
        raise TypeError("%r must be an object from green_happybase.auth (Kerberos, Plain, "
                        "Basic, Bearer, Headers) or a callable returning one, got %r"
                        % (name, value))
    return value


def _http_path(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or any(
            c.isspace() for c in value):
        raise ValueError("%r must be a path starting with '/' and without spaces, got %r"
                         % (name, value))
    return value


def _hosts(name: str, value: Any) -> Any:
    # A callable is asked again at each new connection (service discovery).
    return value if callable(value) else parse_hosts(value, DEFAULT_PORT)


def _prefix(name: str, value: Any) -> Any:
    return value if callable(value) else _bytes_text(name, value)


# -- parsers of URL text ---------------------------------------------------------
# Each turns a parameter's text into a Python value, or raises ValueError
# saying what it expected; the URL parser adds the name and the text.

def _url_int(text: str) -> int:
    if not text.isdigit():
        raise ValueError("a whole number >= 0")
    return int(text)


def _url_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("a number") from None
    if not math.isfinite(value):
        raise ValueError("a finite number")
    return value


def _url_ms(text: str) -> Any:
    value = _url_number(text)
    return int(value) if value.is_integer() else value


def _url_bool(text: str) -> bool:
    word = text.lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError("one of %s" % ", ".join(_TRUE_WORDS + _FALSE_WORDS))


def _url_text(text: str) -> str:
    return text


def _url_optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def optional(text: str) -> Any:
        if text.lower() in ("", "none"):
            return None
        try:
            return parse(text)
        except ValueError as error:
            raise ValueError("%s, or 'none'" % error) from None
    return optional


class Option:
    """One option: its default, its checks, its URL form and its doc line."""

    __slots__ = ("name", "default", "check", "parse", "not_in_url", "doc")

    def __init__(self, name: str, default: Any, check: Callable[[str, Any], Any],
                 parse: Callable[[str], Any] | None, doc: str,
                 not_in_url: str = "") -> None:
        self.name = name
        self.default = default
        self.check = check
        #: Text to value for a URL parameter; ``None``: not allowed in a URL.
        self.parse = parse
        #: Why the option cannot be a URL parameter.
        self.not_in_url = not_in_url
        self.doc = doc


_ADDRESS = "name the servers in the URL's address: hbase://host:port,host:port/"
_CALLABLE = "callables cannot be written in a URL: pass them as keyword arguments"

_TABLE = [
    # The pool's own options.
    Option("min_size", 0, _count(0), _url_int,
           "connections kept open at all times, refilled in the background "
           "after losses (default 0)"),
    Option("max_idle", None, _optional(_count(0)), _url_optional(_url_int),
           "the most idle connections kept; one returned beyond it is closed "
           "(default: *size*; at least *min_size*)"),
    Option("idle_timeout", 50.0, _optional(check_seconds), _url_optional(_url_number),
           "seconds after which an idle connection above *min_size* is closed; "
           "below HBase's 60 s idle cut (default 50; ``None``: never)"),
    Option("max_lifetime", 3600.0, _optional(check_seconds), _url_optional(_url_number),
           "seconds after which a connection is closed when next returned or "
           "while idle, less a random 0-10 % (default 3600; ``None``: never)"),
    Option("acquire_timeout", None, _optional(check_seconds), _url_optional(_url_number),
           "default seconds :meth:`connection` waits for a connection, both for "
           "a free slot and for connecting (default ``None``: no limit)"),
    Option("connect_timeout", 10.0, _optional(_positive_seconds),
           _url_optional(_url_number),
           "seconds one connect may take, whatever the caller's own deadline "
           "(default 10; ``None``: the operating system's)"),
    Option("max_waiting", None, _optional(_count(0)), _url_optional(_url_int),
           "the most greenlets queued for a connection; the next one gets "
           ":class:`PoolExhausted` at once (default ``None``: no limit)"),
    Option("queue", "fifo", _one_of(("fifo", "adaptive")), _url_text,
           "the order in which waiting greenlets are served: ``fifo`` (first "
           "come, first served) or ``adaptive`` (FIFO until a standing queue "
           "forms, then newest first, shedding waiters that can no longer use a "
           "connection; see *queue_target*) (default ``fifo``)"),
    Option("queue_target", 0.005, _positive_seconds, _url_number,
           "adaptive queue: the wait, in seconds, above which a queue that has "
           "not emptied for *queue_interval* counts as standing; also the least "
           "time before its deadline a waiter needs to be served (default 0.005)"),
    Option("queue_interval", 0.1, _positive_seconds, _url_number,
           "adaptive queue: seconds the queue must stay non-empty to count as "
           "standing, and the longest wait before a waiter is shed while it "
           "stands (default 0.1)"),
    Option("autoconnect", True, _flag, _url_bool,
           "open ``max(1, min_size)`` connections in the constructor, so that a "
           "wrong host fails at once (default ``True``)"),
    Option("hosts", None, _optional(_hosts), None,
           "several Thrift servers, ``['a:9090', '[::1]:9091', ('c', 9090)]``, "
           "instead of *host*/*port*; new connections go round-robin from a "
           "random start, skipping servers that back off. A callable returning "
           "such a list is asked at each new connection (service discovery)",
           _ADDRESS),
    Option("retry_interval", 0.5, _positive_seconds, _url_number,
           "seconds before a server that failed to connect is tried again, "
           "doubling with jitter; also the fastest pace of refills (default 0.5)"),
    Option("retry_max", 30.0, _positive_seconds, _url_number,
           "the longest back-off, in seconds (default 30)"),
    Option("check", True, _check, _url_bool,
           "checkout health check. ``True`` (default): discard a connection "
           "whose socket shows EOF or unread bytes, no round trip; ``False``: "
           "none; a callable ``check(conn)``: that check too, and the callable "
           "for connections idle longer than *check_after*"),
    Option("check_after", 5.0, check_seconds, _url_number,
           "idle seconds before a *check* callable is called (default 5)"),
    Option("leak_timeout", None, _optional(check_seconds), _url_optional(_url_number),
           "seconds a lease may be held before one warning with the holder's "
           "stack is logged (default ``None``: never)"),
    Option("name", None, _optional(_text), _url_text,
           "the pool's name in logs and metrics (default ``poolN``)"),
    Option("on_connect", None, _optional(_callable), None,
           "``on_connect(conn)`` after a connection is opened", _CALLABLE),
    Option("on_checkout", None, _optional(_callable), None,
           "``on_checkout(conn)`` when a lease starts", _CALLABLE),
    Option("on_checkin", None, _optional(_callable), None,
           "``on_checkin(conn)`` when a lease ends", _CALLABLE),
    Option("on_discard", None, _optional(_callable), None,
           "``on_discard(conn, reason)`` after a connection was closed", _CALLABLE),
    Option("keepalive", 30.0, _optional(_positive_seconds), _url_optional(_url_number),
           "seconds an idle connection may go unused before the maintainer "
           "sends it one cheap round trip, so that connections kept by "
           "*min_size* survive the gateway's 60 s idle cut; one that fails is "
           "replaced in the background (default 30; ``None``: never)"),
    Option("gateway_idle_timeout", 60.0, _optional(_positive_seconds),
           _url_optional(_url_number),
           "the gateway's idle cut (``hbase.thrift.server.socket.read.timeout``) "
           "in seconds: a lease whose connection makes no call for that long "
           "logs one warning, since the gateway has cut it (default 60; "
           "``None``: no warning)"),
    Option("scanner_cleanup", True, _flag, _url_bool,
           "close the scanners a lease opened and left open when it ends "
           "(default ``True``)"),
    Option("reconnect_timeout", 300.0, _positive_seconds, _url_number,
           "seconds without reaching any server after which *reconnect_failed* "
           "is called (default 300)"),
    Option("reconnect_failed", None, _optional(_callable), None,
           "``reconnect_failed(pool)``, called once when no server could be "
           "reached for *reconnect_timeout* seconds (e.g. to exit the worker "
           "and let its supervisor restart it); again only after a success",
           _CALLABLE),
    # happybase.Connection's options, with happybase's meaning.
    Option("host", None, _optional(_text), None,
           "the Thrift server's host name (default ``localhost``)", _ADDRESS),
    Option("port", None, _optional(_port), None,
           "its port (default 9090)", _ADDRESS),
    Option("timeout", None, _optional(_milliseconds), _url_optional(_url_ms),
           "socket timeout in **milliseconds**, as in happybase (default "
           "``None``: none); a value under 100 logs a warning"),
    Option("transport", "buffered", _one_of(sorted(THRIFT_TRANSPORTS) + ["http"]), _url_text,
           "``buffered``, ``framed`` or ``http`` (Thrift over HTTP POST, for a "
           "gateway with ``hbase.regionserver.thrift.http=true``), as the gateway "
           "serves (default buffered)"),
    Option("tls", False, _tls, None,
           "``True`` (system CAs, host name checked), an ``ssl.SSLContext``, or "
           "``False``: HTTPS with ``transport='http'``, else TLS on the socket "
           "(for a TLS proxy in front of the gateway) (default ``False``)",
           "use the hbase+https:// or hbase+tls:// scheme, and cafile="),
    Option("auth", None, _auth, None,
           "an object from :mod:`green_happybase.auth` (``Kerberos``, ``Plain``, "
           "``Basic``, ``Bearer``, ``Headers``), or a callable returning one, asked "
           "at each new connection (rotating credentials) (default ``None``)",
           "use auth=kerberos|plain|basic|bearer"),
    Option("http_path", "/", _http_path, _url_text,
           "the path Thrift requests are posted to, with ``transport='http'`` "
           "(default ``/``)"),
    Option("do_as", None, _optional(_text), _url_text,
           "the user to act as (the ``doAs`` header of an HTTP gateway with "
           "``hbase.thrift.support.proxyuser=true``) (default ``None``)"),
    Option("protocol", "binary", _one_of(sorted(THRIFT_PROTOCOLS)), _url_text,
           "``binary`` or ``compact``, as the gateway serves (default binary)"),
    Option("compat", "0.98", _one_of(sorted(COMPAT_MODES)), _url_text,
           "HBase compatibility mode, as in happybase (default 0.98)"),
    Option("table_prefix", None, _optional(_prefix), _url_optional(_url_text),
           "prefix of every table name, as in happybase; a callable returning "
           "it is asked at each new connection"),
    Option("table_prefix_separator", b"_", _bytes_text, _url_text,
           "separator after *table_prefix* (default ``_``)"),
]

#: Every option of :class:`~green_happybase.ConnectionPool` but *size*, by name.
OPTIONS: dict[str, Option] = {option.name: option for option in _TABLE}

#: The options passed on to ``happybase.Connection``.
CONNECTION_OPTIONS = ("timeout", "transport", "protocol", "compat", "table_prefix",
                      "table_prefix_separator", "tls", "auth", "http_path", "do_as")


class Settings:
    """A pool's options after every check: one attribute per option."""

    max_idle: Any
    addresses: Any  # [(host, port), ...] or a callable returning host specs

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # only for names not set above
        raise AttributeError("no option %r" % (name,))

    def connection_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CONNECTION_OPTIONS}


def unknown_option(owner: str, name: str, known: Sequence[str]) -> TypeError:
    """A ``TypeError`` for a misspelt keyword, suggesting the closest option."""
    guess = _ALIASES.get(name) or next(iter(difflib.get_close_matches(name, known, 1)), None)
    hint = "; did you mean %r?" % guess if guess else ""
    return TypeError("%s got an unexpected keyword argument %r%s"
                     % (owner, name, hint))


def resolve(size: Any, given: Mapping[str, Any]) -> Settings:
    """Check *size* and the keyword options *given*; fill in the defaults.

    :raises TypeError: an unknown option (naming the closest one), or a value
        of the wrong type
    :raises ValueError: a value out of range, or options that contradict each
        other (naming both)
    """
    for name in given:
        if name not in OPTIONS:
            raise unknown_option("ConnectionPool()", name, ["size", *OPTIONS])
    values: dict[str, Any] = {"size": _count(1)("size", size)}
    for name, option in OPTIONS.items():
        values[name] = option.check(name, given[name]) if name in given else option.default
    settings = Settings(values)
    _check_together(settings)
    return settings


def _check_together(s: Settings) -> None:
    if s.min_size > s.size:
        raise ValueError("'min_size' must be at most size=%d, got %r" % (s.size, s.min_size))
    if s.max_idle is None:
        s.max_idle = s.size
    elif s.max_idle < s.min_size:
        # Otherwise the refill opens what the return path closes, forever.
        raise ValueError("'max_idle' (%r) must be at least 'min_size' (%r)"
                         % (s.max_idle, s.min_size))
    if s.min_size and s.max_lifetime is not None and s.max_lifetime < 1.0:
        raise ValueError("'max_lifetime' (%r s) is too short to keep 'min_size' (%r) "
                         "connections open: use at least 1 s, or min_size=0"
                         % (s.max_lifetime, s.min_size))
    if s.hosts is not None:
        if s.host is not None or s.port is not None:
            raise ValueError("give either 'hosts' or 'host'/'port', not both "
                             "(hosts=%r, host=%r, port=%r)" % (s.hosts, s.host, s.port))
        s.addresses = s.hosts
    else:
        s.addresses = [(s.host or "localhost", s.port or DEFAULT_PORT)]
    if not callable(s.auth) or isinstance(s.auth, Auth):
        check_combination(s.transport, s.protocol, s.tls, s.auth, s.do_as)
    if s.timeout is not None and s.timeout < _TIMEOUT_WARN_MS:
        logger.warning("ConnectionPool: timeout=%r is in milliseconds (happybase's "
                       "meaning), so socket operations time out after %r ms; for "
                       "seconds of waiting for a connection use acquire_timeout",
                       s.timeout, s.timeout)


def options_doc() -> str:
    """The ``:param:`` lines of every option, for the pool's docstring."""
    return "\n".join(":param %s: %s" % (option.name, option.doc) for option in _TABLE)
