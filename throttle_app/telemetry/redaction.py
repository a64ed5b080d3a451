"""Secret redaction for log text: literal secrets and secret-looking patterns, in linear time.

Log text comes from outside (paths, User-Agent headers, HubSpot's error texts), so redacting it
must cost time proportional to its length whatever it holds. Two rules guarantee that:

- The text is capped: only the first ``max_chars`` characters (64 KiB by default) are redacted
  and logged, followed by a note of the text's full length. Literal secrets are redacted in a
  slightly longer prefix first, so no secret straddling the cut leaves a readable start behind.
- Every pattern is linear. No pattern can rescan text it has already scanned from an earlier
  start: quantifiers are possessive where a later start could otherwise scan the same run again,
  and where a pattern's tail may not arrive (a closing quote, the ``@`` of a URL password) the
  tail is optional, so a failed candidate is consumed as a match instead of being retried from
  every later position. A value whose closing quote never comes is redacted to the end of the
  text (a truncated line cannot leak the start of a token).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import quote

__all__ = ["MAX_REDACTED_CHARS", "MIN_SECRET_LENGTH", "REDACTED", "Redactor"]

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6
MAX_REDACTED_CHARS = 64 * 1024

_KEY_NAMES = r"\w*(?:token|secret|password|passwd)|code|api_?key|hapikey"
_KEY = rf"(?:{_KEY_NAMES}|authorization)"
_VALUE_KEY = rf"(?:{_KEY_NAMES})"  # a value follows the key (not an auth scheme)


def _url_password(match: re.Match[str]) -> str:
    """``scheme://user:PASS@`` -> ``scheme://user:***@``; a candidate without ``@`` unchanged."""
    return f"{match[1]}***@" if match[3] else match[0]


_Replacement = str | Callable[[re.Match[str]], str]
# Words a pattern needs (each pattern names them below): a pattern runs only on text that holds
# them, so ordinary text costs a few substring searches, not a pass of every pattern. Every
# pattern needs one of the trigger words; punctuation is looked up only once one is found.
_KEYWORDS = ("token", "secret", "passw", "code", "apikey", "api_key", "authorization")
_TRIGGERS = ("bearer", *_KEYWORDS, "://")
_PUNCTUATION = ('"', "'", "=", ":")
_Needs = tuple[frozenset[str], ...]  # every group must have one of its words in the text


def _pattern(needs: tuple[tuple[str, ...], ...], regex: str, replacement: _Replacement):
    return tuple(frozenset(group) for group in needs), re.compile(regex), replacement


_PATTERNS: tuple[tuple[_Needs, re.Pattern[str], _Replacement], ...] = (
    # "Bearer xxx" anywhere (Authorization headers, repr of header dicts, error texts).
    _pattern((("bearer",),), r"(?i)\b(bearer\s++)[A-Za-z0-9\-._~+/]++=*+", r"\1" + REDACTED),
    # "Authorization: Basic xxx" and other non-bearer schemes.
    _pattern(
        (("authorization",),),
        r"(?i)\b(authorization[\"']?\s*+[:=]\s*+[\"']?(?:basic|token)\s++)[^\s\"',;]++",
        r"\1" + REDACTED,
    ),
    # JSON or Python-repr values: "access_token": "...", 'password': '...' (unclosed: to the end).
    _pattern(
        (_KEYWORDS, ('"',)),
        rf"(?is)(\"{_KEY}\"\s*+:\s*+\")(?:[^\"\\]|\\.)*+(\")?",
        r"\1" + REDACTED + r"\2",
    ),
    _pattern(
        (_KEYWORDS, ("'",)),
        rf"(?is)('{_KEY}'\s*+:\s*+')(?:[^'\\]|\\.)*+(')?",
        r"\1" + REDACTED + r"\2",
    ),
    # Form bodies and query strings: refresh_token=...&, code=...
    _pattern((_KEYWORDS, ("=",)), rf"(?i)(?<![\w.-])({_KEY}=)[^&\s\"'#;,]++", r"\1" + REDACTED),
    # Keyword-argument reprs: access_token='...', refresh_token="..." (unclosed: to the end).
    _pattern(
        (_KEYWORDS, ("=",)),
        rf"(?is)(?<![\w.-])({_KEY}=)(['\"])(?:(?!\2)[^\\]|\\.)*+(\2)?",
        r"\1\2" + REDACTED + r"\3",
    ),
    # Unquoted "key: value" (YAML, header-like and message text): refresh_token: na1-...
    _pattern(
        (_KEYWORDS, (":",)),
        rf"(?i)(?<![\w.\"'-])({_VALUE_KEY}:[ \t]*+)(?![\"'\s])[^\s\"',;}}}}]++",
        r"\1" + REDACTED,
    ),
    # Passwords in URLs: scheme://user:PASS@host -> scheme://user:***@host. The password runs to
    # the first space, quote, bracket or "@"; the "@" is optional so that a run without one is
    # consumed once (a text of repeated "a://b:" is then one match, not one rescan per "a://").
    _pattern(
        (("://",),),
        r"(?i)(?<=[a-z0-9+.-])(://[^\s:/?#@\"']*+:)([^\s@\"'<>]++)(@)?",
        _url_password,
    ),
)
# The patterns ignore case the way `re` does: besides what str.casefold folds, re's IGNORECASE
# lets the dotted and dotless capital I of Turkish match "i".
_FOLD_FIXES = str.maketrans({"\u0130": "i", "\u0131": "i"})


def _words_in(text: str) -> set[str]:
    """The trigger words (and, if any, the punctuation) the patterns need that ``text`` holds,
    compared the way the patterns' IGNORECASE compares."""
    folded = text.lower() if text.isascii() else text.translate(_FOLD_FIXES).casefold()
    present = {word for word in _TRIGGERS if word in folded}
    if present:
        present.update(mark for mark in _PUNCTUATION if mark in folded)
    return present


class Redactor:
    """Replaces known secrets and secret-looking values in text. Linear in the text's length,
    and never returns more than ``max_chars`` characters of it (plus a short note)."""

    def __init__(self, secrets: Iterable[str] = (), max_chars: int = MAX_REDACTED_CHARS) -> None:
        self.max_chars = max_chars
        self._literals: tuple[tuple[str, ...], re.Pattern[str] | None] = ((), None)
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the literal secrets (values shorter than 6 characters are ignored)."""
        variants: set[str] = set()
        for secret in secrets or ():
            if isinstance(secret, bytes):
                secret = secret.decode("utf-8", "replace")
            if not isinstance(secret, str) or len(secret.strip()) < MIN_SECRET_LENGTH:
                continue
            variants.update({secret, secret.strip(), quote(secret, safe="")})
        ordered = tuple(sorted(variants, key=len, reverse=True))
        literal = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        # One assignment: threads logging meanwhile see the old or the new pair, never a mix.
        self._literals = (ordered, literal)

    def redact(self, text: str, max_chars: int | None = None) -> str:
        """``text`` with known secrets and secret-looking values replaced, cut at ``max_chars``
        (this redactor's own limit unless a smaller one is given)."""
        limit = self.max_chars if max_chars is None else min(max_chars, self.max_chars)
        length = len(text)
        literals, literal = self._literals
        if length > limit:  # keep a secret that straddles the cut whole, so it is replaced
            text = text[: limit + (len(literals[0]) if literals else 0)]
        if literal is not None and any(secret in text for secret in literals):
            text = literal.sub(REDACTED, text)
        text = text[:limit]
        present = _words_in(text)
        if present:
            for needs, pattern, replacement in _PATTERNS:
                if all(not group.isdisjoint(present) for group in needs):
                    text = pattern.sub(replacement, text)
        if length > limit or len(text) > limit:  # replacements may lengthen the text
            text = f"{text[:limit]} [cut at {limit} of {length} characters]"
        return text
