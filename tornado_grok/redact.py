"""Keeping keys out of what the gateway writes.

Two tools, for two kinds of text:

- `scrub(text, secrets)` removes every run of MIN_PIECE (12) or more characters copied from a known
  secret (the upstream key, the requesting client's key): a whole key, `Bearer <key>`, a key with a
  character missing or changed all become `[redacted]`. It is applied where upstream text becomes
  the gateway's own text (errors.upstream_text) and to the client-chosen fields of a log line.
- `loggable(value, secrets)` is for a client-chosen value in a log line (a model name, a path, a
  request id that is not ours, an error text that may quote them): capped at LOG_FIELD_MAX
  characters, every key-like token in it masked (a run of 16+ of [A-Za-z0-9_-] with both upper and
  lower case letters: random keys always are, model names and UUIDs are not), then scrubbed. So a
  key of a client we cannot know (only hashes are stored) is not logged whole either.
"""

import functools
import logging
import re

MIN_PIECE = 12  # a run this long copied from a secret counts as a leak
LOG_FIELD_MAX = 200  # characters of one client-chosen value a log line shows
REDACTED = "[redacted]"

_KEY_LIKE = re.compile(r"[A-Za-z0-9_-]{16,}")
_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")
_DIGIT = re.compile(r"[0-9]")


@functools.lru_cache(maxsize=256)
def _grams(secret: str) -> frozenset:
    """Every MIN_PIECE-character substring of secret (cached: the same few keys come back all day)."""
    return frozenset(secret[i:i + MIN_PIECE] for i in range(len(secret) - MIN_PIECE + 1))


def _spans(text: str, secret: str) -> list:
    """(start, end) of every MIN_PIECE-character window of text that is also in secret."""
    n = MIN_PIECE
    found = []
    if len(secret) < n:
        # A secret too short to split: only its exact occurrences.
        j = text.find(secret) if secret else -1
        while j >= 0:
            found.append((j, j + len(secret)))
            j = text.find(secret, j + 1)
    elif len(text) <= 4 * len(secret):
        # A short text (a log field): look each of its windows up among the secret's.
        grams = _grams(secret)
        for i in range(len(text) - n + 1):
            if text[i:i + n] in grams:
                found.append((i, i + n))
    else:
        # A long text (an upstream body): search it for each of the secret's windows.
        for i in range(len(secret) - n + 1):
            gram = secret[i:i + n]
            j = text.find(gram)
            while j >= 0:
                found.append((j, j + n))
                j = text.find(gram, j + 1)
    return found


def scrub(text: str, secrets) -> str:
    """text with every run of MIN_PIECE+ characters of any of `secrets` replaced by [redacted]."""
    if not text:
        return text
    spans = []
    for secret in secrets:
        if secret:
            spans.extend(_spans(text, secret))
    if not spans:
        return text
    spans.sort()
    out, pos = [], 0
    start, end = spans[0]
    for s, e in spans[1:]:
        if s <= end:  # overlapping or touching windows are one run
            end = max(end, e)
            continue
        out.append(text[pos:start] + REDACTED)
        pos, start, end = end, s, e
    out.append(text[pos:start] + REDACTED)
    out.append(text[end:])
    return "".join(out)


def _mask_token(match) -> str:
    token = match.group(0)
    if _UPPER.search(token) and _LOWER.search(token):
        return token[:4] + "…"
    return token


def _mask_long_token(match) -> str:
    # For tracebacks and tornado's messages: CamelCase names (StreamClosedError) stay readable; a
    # key (tg- + 43, xai- + 80 characters) is longer than 24 or, cut short, still has a digit.
    token = match.group(0)
    if _UPPER.search(token) and _LOWER.search(token) and (len(token) >= 24 or _DIGIT.search(token)):
        return token[:4] + "…"
    return token


def loggable(value, secrets: tuple = ()) -> str:
    """A client-chosen value as a log line may show it: capped, key-like tokens masked, scrubbed."""
    return _loggable(value if type(value) is str else str(value), secrets)


@functools.lru_cache(maxsize=4096)
def _loggable(value: str, secrets: tuple) -> str:
    # Cached: the same few model names and paths come with the same few keys on most requests, and
    # this runs for every logged request (a hit costs a tenth of the work below). The cache holds
    # recent keys in this process's memory, where each request's headers hold them anyway.
    if len(value) > LOG_FIELD_MAX:
        value = value[:LOG_FIELD_MAX] + "…(%d chars)" % len(value)
    if len(value) >= 16:
        value = _KEY_LIKE.sub(_mask_token, value)
    if len(value) >= MIN_PIECE:
        value = scrub(value, secrets)
    return value


class LogFilter(logging.Filter):
    """Applied to every record of the process's log handlers (not the access log, which masks its
    own fields): tornado's own messages can quote a request line or a header value."""

    def __init__(self, secrets=()):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self._clean(message), None
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        return True

    def _clean(self, text: str) -> str:
        return scrub(_KEY_LIKE.sub(_mask_long_token, text), self.secrets)


def install_log_filter(secrets) -> None:
    """Puts a LogFilter on every handler of the root logger (call after logging is configured)."""
    log_filter = LogFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)
