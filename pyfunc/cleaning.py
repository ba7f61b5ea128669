"""Review text -> one string of space-separated tokens, with regular expressions over whole strings.

The seed cleaned word by word in Python (NLTK stemming, stop-word removal) and spent 95% of its
time there; here every step is a C-level `str`/`re` operation on the whole review, so cleaning
costs tens of microseconds. What it does, in order:

1. Windows-1252 punctuation stored as C1 control characters (IMDB has U+0085, U+0091-U+0097...)
   becomes the punctuation it stands for; typographic quotes and dashes become ASCII.
2. Unicode normalisation (NFKD, then combining marks dropped: "café" -> "cafe", fullwidth
   letters -> ASCII); letters of other scripts are kept (their diacritics go too: "й" -> "и").
3. HTML tags (`<br />`) become spaces, entities (`&amp;`) are unescaped, URLs become `url`.
4. Lower case; optional negation scope marking, exactly as NLTK's `mark_negation`
   (words after "not", "never", "n't"... up to the next . : ; ! ? get a `_NEG` suffix).
5. Tokens: words with inner apostrophes ("don't", "i'm"), numbers, one-letter words, and the
   `!`/`?` marks, which carry sentiment. No stop-word list: sklearn's deletes not/no/never/very.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

from sklearn.base import BaseEstimator, TransformerMixin


def _cp1252_c1() -> dict[int, str]:
    """U+0080-U+009F as the Windows-1252 characters whose byte values they carry."""
    table = {}
    for code in range(0x80, 0xA0):
        try:
            table[code] = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are undefined in cp1252
            table[code] = " "
    return table


# Typographic punctuation -> the ASCII the tokens are built from.
_ASCII_PUNCT = {
    "\u2018": "'",  # left single quote
    "\u2019": "'",  # right single quote (the usual apostrophe in "don’t")
    "\u201a": "'",
    "\u00b4": "'",  # acute accent used as an apostrophe
    "`": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2013": " - ",  # en dash
    "\u2014": " - ",  # em dash
    "\u2026": " ... ",  # ellipsis
    "\u00a0": " ",  # no-break space
}
_TRANSLATION = str.maketrans(
    {
        **{chr(code): _ASCII_PUNCT.get(char, char) for code, char in _cp1252_c1().items()},
        **_ASCII_PUNCT,
    }
)

_TAG = re.compile(r"</?[a-zA-Z!][^<>]{0,200}>")  # a tag starts with a letter: "3 < 5" is no tag
_URL = re.compile(r"(?:https?://|www\.)\S+")
_WORD = r"[^\W_]+(?:'[^\W_]+)*"  # letters/digits with inner apostrophes, no underscores
TOKEN = re.compile(_WORD + r"|[!?]")
_TOKEN_NEG = re.compile(_WORD + r"(?:_NEG)?|[!?]")
NEG_SUFFIX = "_NEG"

# NLTK's negation words (nltk.sentiment.util.NEGATION): a token that is one of these, or that
# contains "n't", opens a scope that runs to the next clause punctuation (NLTK's CLAUSE_PUNCT).
_NEGATION_WORDS = (
    "never|no|nothing|nowhere|noone|none|not|havent|hasnt|hadnt|cant|couldnt|shouldnt|"
    "wont|wouldnt|dont|doesnt|didnt|isnt|arent|aint"
)
_NEGATION_SCOPE = re.compile(
    # a whole token (not part of "did'not" or "_not_"), or any token containing n't ...
    r"(?:(?<![^\W_])(?<![^\W_]')(?:" + _NEGATION_WORDS + r")(?![^\W_])(?!'[^\W_])"
    r"|n't[\w']*)"
    # ... then everything up to the next clause punctuation: that is the scope.
    r"([^.:;!?]*)"
)
_SCOPE_WORD = re.compile(_WORD)


def normalise(text: str) -> str:
    """Plain lower-case text: C1/typographic punctuation, accents, HTML and URLs dealt with."""
    if not text.isascii():
        text = text.translate(_TRANSLATION)
        text = unicodedata.normalize("NFKD", text)
        if not text.isascii():
            text = "".join(char for char in text if not unicodedata.combining(char))
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    if "://" in text or "www." in text:
        text = _URL.sub(" url ", text)
    return text.lower()


def _mark_scope(match: re.Match) -> str:
    head = match.group(0)[: match.start(1) - match.start(0)]
    return head + _SCOPE_WORD.sub(r"\g<0>" + NEG_SUFFIX, match.group(1))


def mark_negation(text: str) -> str:
    """Suffix `_NEG` to every word in a negation's scope, as `nltk.sentiment.util.mark_negation`."""
    return _NEGATION_SCOPE.sub(_mark_scope, text)


def tokenize(text: str, negation: bool = False) -> list[str]:
    """The tokens of one raw review."""
    text = normalise(text)
    if negation:
        return _TOKEN_NEG.findall(mark_negation(text))
    return TOKEN.findall(text)


def clean(text: str, negation: bool = False) -> str:
    """One raw review -> its tokens joined by single spaces ("" when it has none)."""
    return " ".join(tokenize(text, negation))


class TextCleaner(TransformerMixin, BaseEstimator):
    """Pipeline step: raw reviews -> cleaned token strings (see the module docstring)."""

    def __init__(self, negation: bool = False):
        self.negation = negation

    def fit(self, X: Iterable[str], y=None) -> TextCleaner:
        return self

    def transform(self, X: Iterable[str]) -> list[str]:
        negation = self.negation
        return [clean(text, negation) for text in X]
