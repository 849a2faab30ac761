"""TLS, HTTP and authentication for the benchmark's connections.

A target's *security* is a dict of plain values (it crosses to the
variants' children as JSON): ``tls`` (bool), ``cafile``, ``tls_insecure``,
``auth`` (``plain``, ``basic``, ``bearer``, ``kerberos`` or ``None``),
``user``, ``do_as`` and ``http_path``. Secrets never travel with it: each
process reads the password from ``GREEN_HAPPYBASE_PASSWORD`` and the token
from ``GREEN_HAPPYBASE_TOKEN`` in its own environment.
"""

import os
import ssl
from collections.abc import Mapping
from typing import Any

from ..auth import Auth, Basic, Bearer, Kerberos, Plain
from ..urls import ENV_PASSWORD, ENV_TOKEN

__all__ = ["AUTH_KINDS", "ENV_PASSWORD", "ENV_TOKEN", "describe", "needs_green",
           "pool_kwargs", "settings"]

AUTH_KINDS = ("plain", "basic", "bearer", "kerberos")


def settings(*, tls: bool = False, cafile: str | None = None, tls_insecure: bool = False,
             auth: str | None = None, user: str | None = None, do_as: str | None = None,
             http_path: str | None = None) -> dict[str, Any]:
    """A *security* dict; every key present."""
    return {"tls": tls, "cafile": cafile, "tls_insecure": tls_insecure, "auth": auth,
            "user": user, "do_as": do_as, "http_path": http_path}


def _secret(name: str, environ: Mapping[str, str], kind: str, empty_ok: bool) -> str:
    value = environ.get(name)
    if value is None or (not value and not empty_ok):
        raise ValueError("--auth %s needs the %s in the environment variable %s"
                         % (kind, "token" if name == ENV_TOKEN else "password", name))
    return value


def _auth(security: Mapping[str, Any], environ: Mapping[str, str]) -> Auth | None:
    kind, user = security.get("auth"), security.get("user")
    if kind is None:
        return None
    if kind in ("plain", "basic"):
        if user is None:
            raise ValueError("--auth %s needs --user" % kind)
        password = _secret(ENV_PASSWORD, environ, kind, empty_ok=True)
        return Plain(user, password) if kind == "plain" else Basic(user, password)
    if kind == "bearer":
        if user is not None:
            raise ValueError("--user with --auth bearer: the token says who the user is")
        return Bearer(_secret(ENV_TOKEN, environ, kind, empty_ok=False))
    if kind == "kerberos":
        return Kerberos(principal=user)  # credentials from the ticket cache or keytab
    raise ValueError("--auth must be one of %s, not %r" % (", ".join(AUTH_KINDS), kind))


def _tls(security: Mapping[str, Any]) -> bool | ssl.SSLContext:
    cafile, insecure = security.get("cafile"), security.get("tls_insecure")
    if not security.get("tls"):
        if cafile is not None or insecure:
            raise ValueError("%s needs --tls" % ("--cafile" if cafile else "--tls-insecure"))
        return False
    if cafile is not None and insecure:
        raise ValueError("--cafile and --tls-insecure: verify against the CA file or skip "
                         "verification, not both")
    if insecure:
        # What a self-signed test gateway needs: no certificate or host check.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if cafile is None:
        return True  # the system's CAs, host name checked
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as error:
        raise ValueError("--cafile: cannot load %s: %s"
                         % (cafile, getattr(error, "strerror", None) or error)) from None


def pool_kwargs(options: Mapping[str, Any], security: Mapping[str, Any],
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The pool's (and ``GreenConnection``'s) keywords for *security*.

    Only the keywords that differ from the defaults: ``{}`` for a plain
    TCP gateway.

    :raises ValueError: an option without the one it needs, a missing
        secret, an unreadable CA file (the message names the flag)
    :raises ImportError: Kerberos without python-gssapi
    """
    environ = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {}
    tls = _tls(security)
    if tls is not False:
        kwargs["tls"] = tls
    auth = _auth(security, environ)
    if auth is not None:
        kwargs["auth"] = auth
    if security.get("do_as") is not None:
        kwargs["do_as"] = security["do_as"]
    if security.get("http_path") is not None:
        if options.get("transport") != "http":
            raise ValueError("--http-path needs --transport http")
        kwargs["http_path"] = security["http_path"]
    return kwargs


def needs_green(options: Mapping[str, Any], security: Mapping[str, Any]) -> bool:
    """Whether only green_happybase's connections can reach the gateway.

    ``happybase.Connection`` speaks neither TLS, HTTP nor SASL.
    """
    return options.get("transport") == "http" or bool(security.get("tls")) \
        or security.get("auth") is not None


def describe(security: Mapping[str, Any]) -> str | None:
    """What *security* asks for, in words, secrets left out; ``None``: nothing."""
    parts = []
    if security.get("tls"):
        parts.append("TLS, " + ("certificate not verified" if security.get("tls_insecure")
                                else "verified against %s" % security["cafile"]
                                if security.get("cafile") else "verified against the system CAs"))
    if security.get("auth") is not None:
        parts.append("auth %s%s" % (security["auth"], " as %s" % security["user"]
                                    if security.get("user") else ""))
    if security.get("do_as") is not None:
        parts.append("doAs %s" % security["do_as"])
    if security.get("http_path") is not None:
        parts.append("path %s" % security["http_path"])
    return ", ".join(parts) or None
