"""Passwords in storage URLs: shown masked everywhere (messages, logs, files, the report).

`mask_url` is the one masking function: every place that shows a storage URL calls it. It works
on the text, not on a parser's idea of a valid URL, so a URL no parser accepts (a raw `@` or `/`
in the password, a typo) still loses its password. When in doubt it hides more, never less:

- userinfo `scheme://user:PASSWORD@host`: everything between the first `:` after the user and the
  LAST `@` before the query is the password (a raw `@` inside it is common: `u:p@ss@host`);
- query parameters and libpq key=value words whose name is a secret (password, pass, passwd,
  pwd, sslpassword, secret, token, ...), percent-encoded names included.

`mask_text` removes the secrets of known URLs from any text (an exception message, a traceback,
a log record). `remember` makes a URL's secrets known process-wide, so the CLI's last-resort
error handler and every log record mask them too. No third-party imports.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, unquote

MASK = "***"
# parameter names whose value is a secret (compared lower-case, after percent-decoding)
SECRET_NAMES = frozenset({"password", "pass", "passwd", "pwd", "sslpassword", "secret", "token",
                          "access_token", "auth_token", "api_key", "apikey", "client_secret"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$", re.DOTALL)
# a URL's query: name=value after ?, & or ;, value up to the next & ; or # (a raw space is kept in it)
_QUERY_PARAM = re.compile(r"(^|[?&;])([^=?&;#]+)=([^&;#]*)")
# a libpq key=value DSN ("host=h password=x"): words split by whitespace, values maybe quoted
_DSN_PARAM = re.compile(r"(^|\s)([^=\s]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]*)")

_known: set[str] = set()
_lock = threading.Lock()
_factory_installed = False


def _is_secret_name(name: str) -> bool:
    return unquote(name).strip().lower() in SECRET_NAMES


def _split_userinfo(rest: str, fallback: bool = True) -> tuple[str, str, str] | None:
    """(user, password, after) when `rest` (the URL after scheme://) has user:password@; else None.

    The userinfo ends at the last `@` before the query; with none there, at the last `@` at all
    (a raw `?` or `#` inside the password). A `user:` with nothing after it has an empty password.
    """
    if rest.startswith("/"):
        return None  # no authority: a file path such as sqlite:////tmp/a@b.db
    query = min((i for i in (rest.find("?"), rest.find("#")) if i != -1), default=len(rest))
    at = rest.rfind("@", 0, query)
    if at == -1 and fallback:
        at = rest.rfind("@")
    userinfo = rest[:at] if at > 0 else ""
    if ":" not in userinfo:
        return None
    user, password = userinfo.split(":", 1)
    return user, password, rest[at:]


def _mask_params(text: str, pattern: re.Pattern) -> str:
    def repl(match: re.Match) -> str:
        lead, name, value = match.groups()
        return f"{lead}{name}={MASK}" if _is_secret_name(name) and value else match.group(0)

    return pattern.sub(repl, text)


def mask_url(url: str) -> str:
    """The URL with every password replaced by ***; a URL without one comes back unchanged."""
    match = _SCHEME.match(url)
    if not match:  # a libpq DSN ("host=h password=x") or garbage: mask its key=value secrets
        return _mask_params(url, _DSN_PARAM)
    scheme, rest = match.groups()
    parts = _split_userinfo(rest)
    if parts is not None and parts[1]:
        rest = f"{parts[0]}:{MASK}{parts[2]}"
    query = min((i for i in (rest.find("?"), rest.find("#")) if i != -1), default=len(rest))
    return scheme + rest[:query] + _mask_params(rest[query:], _QUERY_PARAM)


# characters that end the userinfo for URL parsers: raw in a password, they split it
_RESERVED_IN_PASSWORD = {"@": "%40", "/": "%2F", "?": "%3F", "#": "%23"}


def password_needs_encoding(url: str) -> str | None:
    """What to percent-encode when the URL's password holds a raw @ / ? or #; None when it is fine.

    SQLAlchemy would read part of such a password as the host, and the driver's error would
    print it; the message names the characters, never the password.
    """
    match = _SCHEME.match(url)
    # only a clear userinfo (an @ before the query): "?user=me@corp" is a user name, not this
    parts = _split_userinfo(match.group(2), fallback=False) if match else None
    if parts is None:
        return None
    raw = [f"{char} as {code}" for char, code in _RESERVED_IN_PASSWORD.items() if char in parts[1]]
    if not raw:
        return None
    return (f"the password in {mask_url(url)} holds characters a URL cannot carry raw; "
            f"percent-encode them ({', '.join(raw)})")


def url_secrets(url: str) -> set[str]:
    """The passwords in `url` as written, percent-decoded and percent-encoded (to find them in text)."""
    found = set()
    match = _SCHEME.match(url)
    rest = match.group(2) if match else url
    parts = _split_userinfo(rest) if match else None
    if parts is not None and parts[1]:
        found.add(parts[1])
        # a raw reserved character splits the password for parsers: its pieces show up in errors
        found |= {piece for piece in re.split(r"[@/?#]", parts[1]) if len(piece) >= 3}
    for _, name, value in (_QUERY_PARAM if match else _DSN_PARAM).findall(rest):
        if _is_secret_name(name) and value:
            found.add(value.strip("'\""))
    variants = set()
    for secret in found:
        variants |= {secret, unquote(secret), unquote(secret.replace("+", " ")), quote(unquote(secret), safe="")}
    return {v for v in variants if v}


def mask_text(text: str, *urls: str) -> str:
    """`text` with the given URLs (and every remembered one) masked, and their passwords replaced."""
    with _lock:
        all_urls = set(urls) | _known
    secrets: set[str] = set()
    for url in all_urls:
        if url:
            text = text.replace(url, mask_url(url))
            secrets |= url_secrets(url)
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no half-masked secret
        text = text.replace(secret, MASK)
    return text


def remember(url: str) -> None:
    """Make the URL's secrets known: mask_text masks them, and so does every log record from now."""
    global _factory_installed
    if not url_secrets(url):
        return
    with _lock:
        _known.add(url)
        install = not _factory_installed
        _factory_installed = True
    if install:
        _install_log_masking()


def _install_log_masking() -> None:
    """Mask remembered secrets in every log record, whichever logger or handler writes it.

    A record factory (not a handler filter) because Optuna and SQLAlchemy bring their own handlers.
    """
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: leave it for logging to report
            return record
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    logging.setLogRecordFactory(factory)
