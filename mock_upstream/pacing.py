"""Pacing: a model's feel as distributions (TTFT, tokens per second, output length, jitter), seeded.

A scenario of scenarios.toml with a `pacing` table is answered by the `paced` generator
(generated.paced): every request draws its own time to first token, decode speed and output length
from the scenario's distributions, and every gap between tokens is that speed's gap times a jitter
factor. The n-th request of a scenario draws from `random.Random("<seed>/<n>")`, so a run with the
same seed gets the same plans in the same order, whatever the concurrency. Format: README.md
"Realistic pacing".
"""

import dataclasses
import itertools
import math
import random
from dataclasses import dataclass, field

KINDS = {"fixed": ("value",), "uniform": ("min", "max"), "normal": ("mean", "sd"), "lognormal": ("median", "sigma")}
BOUNDS = ("min", "max")  # optional clamps on normal and lognormal draws


class PacingError(ValueError):
    """A pacing table has an unknown field or a bad value; the message names the field."""


@dataclass(frozen=True)
class Distribution:
    """One of fixed(value), uniform(min, max), normal(mean, sd), lognormal(median, sigma); clamped to [low, high]."""

    kind: str
    a: float  # value | min | mean | median
    b: float = 0.0  # - | max | sd | sigma (of the underlying normal)
    low: float = 0.0
    high: float = math.inf

    def draw(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            value = self.a
        elif self.kind == "uniform":
            value = rng.uniform(self.a, self.b)
        elif self.kind == "normal":
            value = rng.gauss(self.a, self.b)
        else:
            value = self.a * math.exp(rng.gauss(0.0, self.b))
        return min(self.high, max(self.low, value))


def parse_distribution(obj, name: str, low: float = 0.0) -> Distribution:
    """`{dist = "normal", mean = 80, sd = 10, min = 20}`, or a bare number for fixed."""
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        obj = {"dist": "fixed", "value": obj}
    if not isinstance(obj, dict) or obj.get("dist") not in KINDS:
        raise PacingError(f"{name}: a number, or a table with dist = {' | '.join(KINDS)}")
    kind = obj["dist"]
    params = KINDS[kind]
    allowed = {"dist", *params, *(BOUNDS if kind in ("normal", "lognormal") else ())}
    unknown = set(obj) - allowed
    if unknown:
        raise PacingError(f"{name}: unknown field(s) {', '.join(sorted(unknown))} for dist = {kind!r}")
    values = {}
    for key in allowed - {"dist"}:
        value = obj.get(key)
        if value is None and key in params:
            raise PacingError(f"{name}: dist = {kind!r} needs {', '.join(params)}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise PacingError(f"{name}.{key} must be a non-negative number")
        values[key] = value
    if kind == "uniform" and values["min"] > values["max"]:
        raise PacingError(f"{name}: min must not be above max")
    if kind == "lognormal" and values["median"] <= 0:
        raise PacingError(f"{name}.median must be greater than 0")
    a, b = values[params[0]], values[params[1]] if len(params) > 1 else 0.0
    lo = max(low, values.get("min") or 0.0)
    hi = values["max"] if kind != "uniform" and values.get("max") is not None else math.inf
    if lo > hi:
        raise PacingError(f"{name}: min must not be above max")
    return Distribution(kind, float(a), float(b), lo, hi)


@dataclass
class Pacing:
    """The distributions of one scenario and its draw counter; `draw()` gives one request's Draw."""

    ttft_ms: Distribution
    tokens_per_s: Distribution
    output_tokens: Distribution
    jitter: float = 0.0  # each gap is multiplied by a factor uniform in [1 - jitter, 1 + jitter]
    chunk_tokens: int = 1  # tokens per content chunk
    seed: int = 0
    _count: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False, compare=False)

    def fresh(self) -> "Pacing":
        """The same distributions with a draw counter of its own (for a scenario built on this one)."""
        return dataclasses.replace(self, _count=itertools.count(1))

    def draw(self, index: int | None = None) -> "Draw":
        """The next request's draw (or the `index`-th one: the same for the same seed and index)."""
        n = next(self._count) if index is None else index
        rng = random.Random(f"{self.seed}/{n}")
        ttft = self.ttft_ms.draw(rng) / 1000.0
        speed = self.tokens_per_s.draw(rng)
        tokens = max(1, int(round(self.output_tokens.draw(rng))))
        chunks = math.ceil(tokens / self.chunk_tokens)
        gap = self.chunk_tokens / speed
        gaps = tuple(gap * (1.0 + self.jitter * rng.uniform(-1.0, 1.0)) if self.jitter else gap
                     for _ in range(chunks - 1))
        return Draw(n, ttft, speed, tokens, gaps)


@dataclass(frozen=True)
class Draw:
    """One request's pacing: TTFT and the gaps after the first chunk, in seconds."""

    index: int
    ttft: float
    tokens_per_s: float
    output_tokens: int
    gaps: tuple


TABLE_KEYS = {"ttft_ms", "tokens_per_s", "output_tokens", "jitter", "chunk_tokens", "seed"}
DEFAULTS = {"ttft_ms": 200, "tokens_per_s": 50, "output_tokens": 100}


def parse_pacing(obj, name: str = "pacing") -> Pacing:
    """Validate a `pacing` table (TOML or JSON) into a Pacing."""
    if not isinstance(obj, dict):
        raise PacingError(f"{name} must be a table")
    unknown = set(obj) - TABLE_KEYS
    if unknown:
        raise PacingError(f"{name}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(TABLE_KEYS))}")
    values = {**DEFAULTS, **obj}
    jitter, chunk_tokens, seed = values.get("jitter", 0.0), values.get("chunk_tokens", 1), values.get("seed", 0)
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
        raise PacingError(f"{name}.jitter must be a number from 0 to below 1")
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise PacingError(f"{name}.chunk_tokens must be a whole number of at least 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PacingError(f"{name}.seed must be a whole number")
    speed = parse_distribution(values["tokens_per_s"], f"{name}.tokens_per_s", low=0.1)
    if speed.kind in ("fixed", "uniform") and speed.a <= 0:
        raise PacingError(f"{name}.tokens_per_s must be greater than 0")
    return Pacing(parse_distribution(values["ttft_ms"], f"{name}.ttft_ms"), speed,
                  parse_distribution(values["output_tokens"], f"{name}.output_tokens", low=1.0),
                  float(jitter), chunk_tokens, seed)
