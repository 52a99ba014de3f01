"""How queuewatch connects to a Redis: every URL form of the CLI contract, and
URLs made safe to show.

``redis_client(url)`` makes the redis-py client for ``redis://``, ``unix://``,
``rediss://`` (TLS: CA, client certificate and key from the query; the
server's certificate and host name are checked unless the URL says
otherwise) and ``redis+sentinel://`` (the master that the sentinels name,
followed across a failover). ``redact_url(url)`` replaces every secret of any
backend URL with ``***`` before it is shown or logged. Used by the monitored
backends (``backends.py``) and the Redis state store alike. No Flask here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis

# Query options whose values are secrets (redis-py's password, a Sentinel's, a key's passphrase).
_SECRET_OPTION = re.compile(r"pass|secret|token", re.IGNORECASE)
# ...and a password inside pika's ssl_options dict literal ({'password': '...'}).
_SECRET_IN_DICT = re.compile(r"""(['"](?:password|passphrase)['"]\s*:\s*)(['"]).*?\2""", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL with every secret replaced by ``***``: the password of its user
    information, and the values of secret query options (``password=``,
    ``sentinel_password=``, ``ssl_password=``, a password in pika's
    ``ssl_options``). Works on URLs the standard parser refuses (a Sentinel
    URL's ``host:port,host:port``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pairs = []
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            if eq and _SECRET_OPTION.search(unquote(key)):
                value = "***"
            elif eq and _SECRET_IN_DICT.search(unquote(value)):
                value = quote(_SECRET_IN_DICT.sub(r"\1'***'", unquote(value)), safe="*")
            pairs.append(key + eq + value)
        tail = path + "?" + "&".join(pairs) + hash_ + fragment
    return f"{scheme}://{netloc}{tail}"


# --- Redis clients for every URL form of the CLI contract (DESIGN.md) ----------
#
#   redis://[user:pass@]host:port/db          unix:///path/redis.sock?db=N
#   rediss://…?ssl_ca_certs=…&ssl_certfile=…&ssl_keyfile=…   (TLS; certificates and host name checked)
#   redis+sentinel://[user:pass@]host:port[,host:port…]/MASTER[/DB][?sentinel_password=…]

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
# TLS options taken from a rediss:// query; redis-py would pass them through as strings.
_TLS_PATHS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_password")
_TLS_OPTIONS = (*_TLS_PATHS, "ssl_cert_reqs", "ssl_check_hostname")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: expected true or false")


def _tls_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without its TLS query options, and those options as redis-py keyword arguments.

    Certificate checking is on by default, host name included (redis-py 5
    leaves the host name unchecked unless told): ``ssl_cert_reqs=none`` turns
    both off, ``ssl_check_hostname=false`` the name alone."""
    parts = urlsplit(url)
    kept, tls = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _TLS_OPTIONS:
            tls[key] = value
        else:
            kept.append((key, value))
    if tls and parts.scheme != "rediss":
        raise ValueError(f"{', '.join(sorted(tls))}: TLS options need a rediss:// URL")
    if parts.scheme != "rediss":
        return url, {}
    options: dict[str, Any] = {key: tls[key] for key in _TLS_PATHS if tls.get(key)}
    reqs = tls.get("ssl_cert_reqs", "required").lower()
    if reqs not in ("none", "optional", "required"):
        raise ValueError(f"ssl_cert_reqs={reqs!r}: expected none, optional or required")
    options["ssl_cert_reqs"] = reqs
    options["ssl_check_hostname"] = reqs != "none" and _flag("ssl_check_hostname", tls.get("ssl_check_hostname", "true"))
    return urlunsplit(parts._replace(query=urlencode(kept))), options


def parse_sentinel_url(url: str) -> dict[str, Any]:
    """The parts of ``redis+sentinel://[user:pass@]host:port[,host:port…]/MASTER[/DB][?options]``:
    ``sentinels`` [(host, port)], ``master``, ``db``, the master's ``username``/``password``
    (the URL's user information), ``sentinel_username``/``sentinel_password`` (query), and the
    remaining query options. Raises ValueError."""
    _, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    path, _, query = tail.partition("?")
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = item.strip(), "26379"
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"{redact_url(url)}: {item!r} is not HOST:PORT")
        sentinels.append((host, int(port)))
    names = [unquote(part) for part in path.split("/") if part]
    if not names or len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ValueError(f"{redact_url(url)}: expected redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER[/DB]")
    options = dict(parse_qsl(query, keep_blank_values=True))
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    return {
        "sentinels": sentinels,
        "master": names[0],
        "db": int(names[1]) if len(names) == 2 else int(options.pop("db", 0)),
        "username": unquote(username) or None,
        "password": unquote(password) or None,
        "sentinel_username": options.pop("sentinel_username", None) or None,
        "sentinel_password": options.pop("sentinel_password", None) or None,
        "options": options,
    }


def redis_client(url: str, *, timeout: float = 3.0, **pool: Any) -> redis.Redis:
    """A redis-py client for any URL form of the CLI contract, with socket timeouts of
    ``timeout`` and ``pool`` (``max_connections``, ``health_check_interval``) passed on.

    A Sentinel URL gives a client whose connections ask the sentinels where the
    master is each time they (re)connect, so it follows a failover: the
    connections to the old master fail once, the next ones reach the new one."""
    settings = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **pool}
    scheme = url.split("://", 1)[0].lower()
    if scheme != "redis+sentinel":
        plain_url, tls = _tls_options(url)
        return redis.Redis.from_url(plain_url, **settings, **tls)
    from redis.sentinel import Sentinel

    parts = parse_sentinel_url(url)
    if parts["options"]:
        raise ValueError(f"{redact_url(url)}: unknown option(s) {', '.join(sorted(parts['options']))}")
    sentinel_auth = {key: parts[f"sentinel_{key}"] for key in ("username", "password") if parts[f"sentinel_{key}"]}
    sentinels = Sentinel(parts["sentinels"], sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                                             **sentinel_auth})  # fmt: skip
    return sentinels.master_for(parts["master"], db=parts["db"], username=parts["username"], password=parts["password"],
                                **settings)  # fmt: skip
