"""Pool options from an ``hbase://`` URL.

A URL names the Thrift servers and carries every option of
:class:`~green_happybase.ConnectionPool` that can be written as text::

    hbase://host-a:9090,host-b:9090/?size=10&min_size=2&transport=framed
        &protocol=compact&timeout=5000&table_prefix=app

Secure gateways have schemes of their own: ``hbase+tls://`` (TLS on the
socket), ``hbase+http://`` and ``hbase+https://`` (Thrift over HTTP), with
``cafile=`` to trust a private CA and ``auth=kerberos|plain|basic|bearer``
(``service=``, ``qop=``, ``principal=``, ``hostname=`` for Kerberos;
``user=`` for plain and basic). Secrets never go in a URL: the password
comes from ``GREEN_HAPPYBASE_PASSWORD``, the bearer token from
``GREEN_HAPPYBASE_TOKEN`` (read at each request), or pass ``auth=`` as a
keyword argument.
"""

import os
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from . import auth
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


def _parse_query(query: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The options of a query, and the raw text of its security parameters."""
    values: dict[str, Any] = {}
    security: dict[str, str] = {}
    unknown: list[str] = []
    known = ["size"] + [name for name, option in OPTIONS.items() if option.parse]
    for field in query.split("&"):
        if not field:
            continue
        raw_name, sep, raw_value = field.partition("=")
        name, text = unquote_plus(raw_name), unquote_plus(raw_value)
        if not sep:
            raise ValueError("URL parameter %r has no value (write %s=VALUE)" % (name, name))
        if name in _SECRETS:
            raise ValueError("URL parameter %r is not allowed: secrets never go in a URL; "
                             "set %s or pass auth= as a keyword argument" % (name, _SECRETS[name]))
        if name in _SECURITY:
            if name in security:
                raise ValueError("URL parameter %r is given twice (last %r)" % (name, text))
            security[name] = text
            continue
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
                         % (", ".join(unknown), ", ".join(known + list(_SECURITY))))
    return values, security


def _security(scheme: str, params: dict[str, str]) -> dict[str, Any]:
    """The ``transport``, ``tls`` and ``auth`` options a scheme and its parameters ask for."""
    options: dict[str, Any] = dict(_SCHEMES[scheme])
    cafile = params.pop("cafile", None)
    if cafile is not None:
        if not options.get("tls"):
            raise ValueError("URL parameter cafile=%r needs the hbase+https:// or hbase+tls:// "
                             "scheme" % (cafile,))
        try:
            options["tls"] = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as error:
            raise ValueError("URL parameter cafile=%r cannot be loaded: %s"
                             % (cafile, error)) from None
    kind = params.pop("auth", None)
    if kind is None:
        if params:
            raise ValueError("URL parameter(s) %s need auth=kerberos|plain|basic|bearer"
                             % ", ".join("%s=%r" % item for item in sorted(params.items())))
        return options
    maker = _AUTH_KINDS.get(kind)
    if maker is None:
        raise ValueError("URL parameter auth=%r is malformed: expected one of %s"
                         % (kind, ", ".join(_AUTH_KINDS)))
    try:
        options["auth"] = maker(params)
    except (TypeError, ValueError) as error:
        raise ValueError("URL parameters for auth=%s: %s" % (kind, error)) from None
    return options


def _kerberos(params: dict[str, str]) -> Any:
    return auth.Kerberos(**_take(params, "service", "principal", "qop", "hostname"))


def _password(kind: Any) -> Callable[[dict[str, str]], Any]:
    def make(params: dict[str, str]) -> Any:
        user = _take(params, "user").get("user")
        if user is None:
            raise ValueError("user= is missing")
        password = os.environ.get(ENV_PASSWORD)
        if password is None:
            raise ValueError("the password comes from the environment variable %s, which is "
                             "not set" % ENV_PASSWORD)
        return kind(user, password)
    return make


def _bearer(params: dict[str, str]) -> Any:
    _take(params)
    if ENV_TOKEN not in os.environ:
        raise ValueError("the token comes from the environment variable %s, which is not set"
                         % ENV_TOKEN)
    # Read at each request: a token rotated in the environment is used at once.
    return auth.Bearer(lambda: os.environ[ENV_TOKEN])


def _take(params: dict[str, str], *names: str) -> dict[str, str]:
    """Pop *names* from *params*; any parameter left over is not for this auth."""
    taken = {name: params.pop(name) for name in names if name in params}
    if params:
        raise ValueError("parameter(s) %s do not apply"
                         % ", ".join("%s=%r" % item for item in sorted(params.items())))
    return taken


#: The environment variables that carry the secrets a URL cannot.
ENV_PASSWORD = "GREEN_HAPPYBASE_PASSWORD"
ENV_TOKEN = "GREEN_HAPPYBASE_TOKEN"

_SCHEMES: dict[str, dict[str, Any]] = {
    "hbase": {},
    "hbase+tls": {"tls": True},
    "hbase+http": {"transport": "http"},
    "hbase+https": {"transport": "http", "tls": True},
}
_AUTH_KINDS: dict[str, Callable[[dict[str, str]], Any]] = {
    "kerberos": _kerberos,
    "plain": _password(auth.Plain),
    "basic": _password(auth.Basic),
    "bearer": _bearer,
}
#: URL parameters that build ``tls`` and ``auth`` rather than name an option.
_SECURITY = ("auth", "service", "qop", "principal", "hostname", "user", "cafile")
_SECRETS = {"password": ENV_PASSWORD, "token": ENV_TOKEN}


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
    if parts.scheme not in _SCHEMES:
        raise ValueError("'url' must start with %s, got %r"
                         % (", ".join("%s://" % scheme for scheme in _SCHEMES), url))
    if parts.path not in ("", "/"):
        raise ValueError("'url' must have no path, got %r in %r" % (parts.path, url))
    if parts.fragment:
        raise ValueError("'url' must have no fragment, got %r in %r" % (parts.fragment, url))
    if "@" in parts.netloc:
        raise ValueError("'url' must carry no user or password, got %r" % (url,))
    kwargs, security = _parse_query(parts.query)
    kwargs.update(_security(parts.scheme, security))
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
