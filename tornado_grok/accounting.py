"""Usage per client key: requests and the upstream's token counts, abandoned streams included, and
how many requests (and tokens) were charged an estimate (usage.py) for want of the upstream's."""

import collections
import time

from .usage import MAX_TOKENS


def usage_numbers(usage: dict | None) -> tuple[int, int, int]:
    """(prompt, completion, reasoning) tokens from an OpenAI/xAI usage object, chat completions'
    (prompt_/completion_tokens) or the Responses API's (input_/output_tokens); zeros when absent."""
    if not isinstance(usage, dict):
        return 0, 0, 0
    if "input_tokens" in usage or "output_tokens" in usage:
        details = usage.get("output_tokens_details") or {}
        reasoning = details.get("reasoning_tokens", 0) if isinstance(details, dict) else 0
        return _int(usage.get("input_tokens")), _int(usage.get("output_tokens")), _int(reasoning)
    details = usage.get("completion_tokens_details") or {}
    reasoning = details.get("reasoning_tokens", 0) if isinstance(details, dict) else 0
    return (_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), _int(reasoning))


def count(totals: collections.Counter, usage: dict | None, stream: bool, ended: str) -> None:
    """Adds one request to a key's totals (both backends count the same way)."""
    prompt, completion, reasoning = usage_numbers(usage)
    totals["requests"] += 1
    totals["prompt_tokens"] += prompt
    totals["completion_tokens"] += completion
    totals["reasoning_tokens"] += reasoning
    if isinstance(usage, dict) and usage.get("usage_estimated") is True:
        totals["estimated_requests"] += 1
        totals["estimated_tokens"] += prompt + completion
    if stream:
        totals["streams"] += 1
        if ended == "client_gone":
            totals["abandoned_streams"] += 1
    if ended not in ("completed", "client_gone"):
        totals["errors"] += 1


def _int(value) -> int:
    """A count as usage.sane keeps it: a positive int, at most MAX_TOKENS (else 0)."""
    return min(value, MAX_TOKENS) if type(value) is int and value > 0 else 0


class Accounting:
    """In-process totals; `snapshot()` is what the operator reads."""

    FIELDS = ("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens",
              "streams", "abandoned_streams", "errors", "estimated_requests", "estimated_tokens")

    def __init__(self):
        self._totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self._claimed: dict[str, float] = {}  # claim(): token -> when it may be claimed again

    async def claim(self, token: str, ttl: float) -> bool:
        """True the first time `token` is claimed within `ttl` seconds, False after: something is
        charged once (a deferred completion's usage), however often it is fetched."""
        now = time.monotonic()
        if len(self._claimed) > 10000:
            self._claimed = {t: until for t, until in self._claimed.items() if until > now}
        if self._claimed.get(token, 0.0) > now:
            return False
        self._claimed[token] = now + ttl
        return True

    async def record(self, key: str, usage: dict | None, stream: bool, ended: str) -> None:
        self.record_now(key, usage, stream, ended)

    def record_now(self, key: str, usage: dict | None, stream: bool, ended: str) -> None:
        """record(), synchronously: the handlers call this form of an in-process backend directly."""
        count(self._totals[key], usage, stream, ended)

    async def snapshot(self) -> dict:
        return {key: {f: t[f] for f in self.FIELDS} for key, t in sorted(self._totals.items())}

    async def close(self) -> None:
        pass
