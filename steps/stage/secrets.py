"""Credentials in values that may be shown: find them, refuse them, hide them.

One place decides what a credential looks like, so run params, tags, log lines and error lines
all hide the same things, in any spelling:

- the password of a URL (`scheme://user:password@host`), shown as `user:***@`;
- a password attribute of an ODBC connection string or a query string (`PWD=x`,
  `Pwd = {a;b}`, `?password=x`), any case, spacing or bracing, percent-encoded or not;
- other credential-like attributes and query parameters (`token=`, `api_key=`, `secret=`,
  `X-Amz-Signature=` of a presigned URL...), and `Bearer <token>` values.

`shown()` is what any value that came from a user goes through before it is logged or printed:
credentials hidden and control characters escaped, so the line stays one line.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

HIDDEN = "***"

_PASSWORD_KEYS = ("pwd", "password", "passwd")
_TOKEN_KEYS = (
    "token", "access_token", "auth_token", "refresh_token", "api_key", "apikey", "secret",
    "client_secret", "sig", "signature", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token",
)  # fmt: skip
_KEYS = "|".join(re.escape(k) for k in _PASSWORD_KEYS + _TOKEN_KEYS)
# key=value in a connection string (after ;, odbc:, a space or the start): the value is an ODBC
# braced value ({...} with }} for }) or runs to the next ; (a password may hold & and spaces).
_ATTRIBUTE = re.compile(
    rf"(?P<head>(?:^|[;:\s])\s*(?P<key>{_KEYS})\s*=\s*)(?P<value>\{{(?:[^}}]|\}}\}})*\}}?|[^;]*)",
    re.IGNORECASE,
)
# key=value in a query string (after ? or &): the value runs to the next & or #.
_QUERY = re.compile(rf"(?P<head>[?&](?P<key>{_KEYS})=)(?P<value>[^&#]*)", re.IGNORECASE)
# scheme://user:password@ : the password runs to the last @ before the path.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<value>[^/\s]*)@")
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<value>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE)
# Characters that would break a line or hide text on a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def find_password(text: str) -> str | None:
    """How a password is written into `text` (`PWD=`, `user:password@`; percent-encoded or
    not), or None when it carries none."""
    decoded = unquote(text)
    if decoded != text and (found := find_password(decoded)):
        return found
    for match in [*_ATTRIBUTE.finditer(text), *_QUERY.finditer(text)]:
        if match["key"].lower() in _PASSWORD_KEYS and match["value"].strip():
            return f"{match['key']}="
    if any(match["value"] for match in _USERINFO.finditer(text)):
        return "user:password@"
    return None


def find_credential(text: str) -> str | None:
    """How a credential (a password, a token, a signature) is written into `text`, or None."""
    decoded = unquote(text)
    if decoded != text and (found := find_credential(decoded)):
        return found
    if found := find_password(text):
        return found
    for match in [*_ATTRIBUTE.finditer(text), *_QUERY.finditer(text)]:
        if match["value"].strip():
            return f"{match['key']}="
    if _BEARER.search(text):
        return "Bearer <token>"
    return None


def redact(text: str) -> str:
    """`text` with every credential value replaced by *** (decoded first if only its
    percent-decoded form shows one)."""
    decoded = unquote(text)
    if decoded != text and _hide(decoded) != decoded and _hide(text) == text:
        return _hide(decoded)
    return _hide(text)


def _hide(text: str) -> str:
    for pattern in (_ATTRIBUTE, _QUERY):
        text = pattern.sub(_hide_value, text)
    text = _USERINFO.sub(lambda m: f"{m['head']}{HIDDEN}@" if m["value"] else m[0], text)
    return _BEARER.sub(lambda m: m["head"] + HIDDEN, text)


def _hide_value(match: re.Match) -> str:
    # In free text a value runs to the next ; so it may swallow words after it: hidden already
    # (a line that is shown twice) it is left alone, keeping those words.
    value = match["value"].strip()
    if not value or value.startswith(HIDDEN):
        return match[0]
    return match["head"] + HIDDEN


def printable(text: str) -> str:
    """`text` with control characters (NUL, newlines, escapes...) written as \\xNN escapes."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str) -> str:
    """A user-given value as it may be logged, recorded or printed: no credentials, one line."""
    return printable(redact(str(text)))
