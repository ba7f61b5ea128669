"""Credentials in values that may be shown: find them, refuse them, hide them.

One place decides what a credential looks like, so run params, tags, log lines and error lines
all hide the same things, in any spelling:

- the password of a URL (`scheme://user:password@host`), shown as `user:***@`;
- any attribute of an ODBC connection string and any query or fragment parameter whose name
  contains a credential word (`CREDENTIAL_WORDS`: pass, pwd, secret, token, key, sig, auth,
  credential), any case, spacing or bracing, percent-encoded or not: `PWD=x`, `Pwd = {a;b}`,
  `?api-key=x`, `&X-Goog-Signature=x`, `#access_token=x`; those naming a password (`pass`, `pwd`)
  make a source refused;
- `Bearer <token>` values.

`shown()` is what any value that came from a user goes through before it is logged or printed:
credentials hidden and control characters escaped, so the line stays one line.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

HIDDEN = "***"

# A query or fragment parameter, or a connection-string attribute, is a credential when its name
# contains one of these words, in any case and spelling around them (`api-key`, `AccessToken`,
# `X-Goog-Signature`, `Auth_AccessToken`): a class, not a list of names. The password words make
# a source refused outright; the others are hidden wherever the value is shown.
PASSWORD_WORDS = ("pass", "pwd")
CREDENTIAL_WORDS = (*PASSWORD_WORDS, "secret", "token", "key", "sig", "auth", "credential")
_KEY = (
    r"[A-Za-z0-9_.\-]*?(?:" + "|".join(CREDENTIAL_WORDS) + r")[A-Za-z0-9_.\-]*"
)  # fmt: skip
# key=value in a connection string (after ;, odbc:, a space or the start): the value is an ODBC
# braced value ({...} with }} for }) or runs to the next ; (a password may hold & and spaces).
_ATTRIBUTE = re.compile(
    rf"(?P<head>(?:^|[;:\s])\s*(?P<key>{_KEY})\s*=\s*)(?P<value>\{{(?:[^}}]|\}}\}})*\}}?|[^;]*)",
    re.IGNORECASE,
)
# key=value in a query string or a fragment (after ?, & or #): the value runs to the next & or #.
_QUERY = re.compile(rf"(?P<head>[?&#](?P<key>{_KEY})=)(?P<value>[^&#]*)", re.IGNORECASE)
# Not secrets: the project's `*_env` settings name the variable that holds one, and prose spells
# the form of a setting as `key=value`.
_VARIABLE_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_PLACEHOLDERS = ("value", "<value>", "...")
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
    for match in _credentials(text):
        if any(word in match["key"].lower() for word in PASSWORD_WORDS):
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
    for match in _credentials(text):
        return f"{match['key']}="
    if _BEARER.search(text):
        return "Bearer <token>"
    return None


def _credentials(text: str) -> list[re.Match]:
    """The credential-named attributes and parameters of `text` that carry a value."""
    found = [*_ATTRIBUTE.finditer(text), *_QUERY.finditer(text)]
    return [m for m in found if m["value"].strip() and not _not_a_secret(m)]


def _not_a_secret(match: re.Match) -> bool:
    value = match["value"].strip()
    if value.split()[0].lower().rstrip(",;.)'\"") in _PLACEHOLDERS:
        return True
    return match["key"].lower().endswith("_env") and bool(_VARIABLE_NAME.fullmatch(value))


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
    if not value or value.startswith(HIDDEN) or _not_a_secret(match):
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
