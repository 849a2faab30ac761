"""Pool options from an ``hbase://`` URL.

A URL names the Thrift servers and carries every option of
:class:`~green_happybase.ConnectionPool` that can be written as text::

    hbase://host-a:9090,host-b:9090/?size=10&min_size=2&transport=framed
        &protocol=compact&timeout=5000&table_prefix=app
"""

from typing import Any
from urllib.parse import unquote_plus, urlsplit

from .hosts import parse_address
from .options import DEFAULT_PORT, OPTIONS

__all__ = ["DEFAULT_SIZE", "parse_url"]

#: The pool size of a URL without a ``size`` parameter.
DEFAULT_SIZE = 10


def _convert(name: str, text: str) -> Any:
    option = OPTIONS.get(name)
    try:
        if option is None:
            return _url_size(text)
        assert option.parse is not None
        value = option.parse(text)
    except ValueError as error:
        raise ValueError("URL parameter %s=%r is malformed: expected %s"
                         % (name, text, error)) from None
    try:
        return option.check(name, value)
    except (TypeError, ValueError) as error:
        raise ValueError("URL parameter %s=%r is malformed: %s" % (name, text, error)) from None


def _url_size(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError("a whole number >= 1")
    return int(text)


def _parse_query(query: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    unknown: list[str] = []
    known = ["size"] + [name for name, option in OPTIONS.items() if option.parse]
    for field in query.split("&"):
        if not field:
            continue
        raw_name, sep, raw_value = field.partition("=")
        name, text = unquote_plus(raw_name), unquote_plus(raw_value)
        if not sep:
            raise ValueError("URL parameter %r has no value (write %s=VALUE)" % (name, name))
        option = OPTIONS.get(name)
        if option is not None and option.parse is None:
            raise ValueError("URL parameter %s=%r is not allowed: %s"
                             % (name, text, option.not_in_url))
        if name not in known:
            unknown.append("%s=%r" % (name, text))
            continue
        if name in values:
            raise ValueError("URL parameter %r is given twice (last %r)" % (name, text))
        values[name] = _convert(name, text)
    if unknown:
        raise ValueError("unknown URL parameter(s) %s; known: %s"
                         % (", ".join(unknown), ", ".join(known)))
    return values


def _parse_server(entry: str) -> tuple[str, int]:
    try:
        return parse_address(unquote_plus(entry), DEFAULT_PORT)
    except (TypeError, ValueError) as error:
        raise ValueError("URL %s" % error) from None


def parse_url(url: str, **overrides: Any) -> tuple[int, dict[str, Any]]:
    """Turn an ``hbase://`` URL into ``(size, kwargs)`` for :class:`ConnectionPool`.

    The address part names one server (giving ``host`` and ``port``) or
    several, comma-separated (giving ``hosts``); a missing port is 9090,
    IPv6 addresses are written in brackets, an empty address leaves the
    pool's default, ``localhost:9090``. Every query parameter is a pool or
    connection option of the same name: whole numbers for counts, seconds
    for the pool's times, milliseconds for ``timeout`` (as happybase has
    it), ``true``/``false`` for switches, ``none`` (or nothing) where
    ``None`` is allowed. Without ``size`` the size is :data:`DEFAULT_SIZE`.

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
        servers = [_parse_server(entry) for entry in parts.netloc.split(",")]
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
