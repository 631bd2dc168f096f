"""What each request sends: prompts from a dataset or the one --prompt, lengths drawn from seeded
distributions, extra headers and body fields, and multi-turn conversations.

A Workload hands out Conversations; each gives the messages of its next turn and takes the answer
of the last one (appended as the assistant's message before the next user message).
"""
import json
import math
import random

FILLER = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge "
          "every box of frozen jam").split()


class Dist:
    """A seeded integer distribution: `N`, `fixed:N`, `uniform:LO:HI`, `normal:MEAN:SD`,
    `lognormal:MEAN:SD` (the mean and sd of the values themselves). Draws are at least 1."""

    def __init__(self, spec):
        self.spec = spec
        kind, _, rest = spec.partition(":")
        try:
            if not rest:
                kind, args = "fixed", [float(kind)]
            else:
                args = [float(x) for x in rest.split(":")]
        except ValueError:
            raise ValueError(f"bad distribution {spec!r}: numbers expected") from None
        want = {"fixed": 1, "uniform": 2, "normal": 2, "lognormal": 2}
        if kind not in want or len(args) != want[kind]:
            raise ValueError(f"bad distribution {spec!r}: one of N, fixed:N, uniform:LO:HI, "
                             "normal:MEAN:SD, lognormal:MEAN:SD")
        if any(a < 0 for a in args) or (kind == "uniform" and args[0] > args[1]) or \
                (kind == "lognormal" and args[0] <= 0):
            raise ValueError(f"bad distribution {spec!r}: negative, empty or impossible")
        self.kind, self.args = kind, args
        if kind == "lognormal":  # the underlying normal of a lognormal with this mean and sd
            mean, sd = args
            s2 = math.log(1.0 + (sd / mean) ** 2)
            self.mu, self.sigma = math.log(mean) - s2 / 2.0, math.sqrt(s2)

    def draw(self, rng):
        k, a = self.kind, self.args
        if k == "fixed":
            v = a[0]
        elif k == "uniform":
            v = rng.randint(int(a[0]), int(a[1]))
        elif k == "normal":
            v = rng.gauss(a[0], a[1])
        else:
            v = rng.lognormvariate(self.mu, self.sigma)
        return max(1, int(round(v)))


def load_dataset(path):
    """Rows of a prompt file as (first turn's messages, later user texts).

    JSONL (or one JSON array) of: {"messages": [...]} (chat messages, used as they are), a bare list
    of messages, {"prompt": "..."}, or ShareGPT {"conversations": [{"from": "human"|"gpt"|"system",
    "value": ...}]} (its human turns become the conversation's user turns). Rows without a user
    message are skipped."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip()[:1] == "[":
        items = json.loads(text)
    else:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e})") from None
    rows = [r for r in (_row(item) for item in items) if r is not None]
    if not rows:
        raise ValueError(f"{path}: no row with a user message")
    return rows


_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
          "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system"}


def _row(item):
    if isinstance(item, list):
        item = {"messages": item}
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("prompt"), str):
        return [{"role": "user", "content": item["prompt"]}], []
    if isinstance(item.get("messages"), list):
        msgs = [m for m in item["messages"] if isinstance(m, dict) and "role" in m]
        return (msgs, []) if any(m["role"] == "user" for m in msgs) else None
    conv = item.get("conversations")
    if isinstance(conv, list):
        system = [{"role": "system", "content": t["value"]} for t in conv
                  if isinstance(t, dict) and _ROLES.get(t.get("from")) == "system"
                  and isinstance(t.get("value"), str)][:1]
        users = [t["value"] for t in conv if isinstance(t, dict) and _ROLES.get(t.get("from")) == "user"
                 and isinstance(t.get("value"), str)]
        if users:
            return system + [{"role": "user", "content": users[0]}], users[1:]
    return None


class Conversation:
    """One conversation of `turns` requests; `messages()` is the next turn's message list."""

    __slots__ = ("id", "turns", "turn", "history", "later", "repeat")

    def __init__(self, cid, first, later, turns):
        self.id = cid
        self.turns = turns
        self.turn = 0
        self.history = list(first)
        self.later = list(later)
        self.repeat = next(m["content"] for m in reversed(first) if m.get("role") == "user")

    def messages(self):
        return self.history

    def answered(self, text):
        """The answer to the current turn: append it and the next user message."""
        self.turn += 1
        if self.turn < self.turns:
            nxt = self.later.pop(0) if self.later else self.repeat
            self.history = self.history + [{"role": "assistant", "content": text},
                                           {"role": "user", "content": nxt}]


class Workload:
    """Prompts (cycled in file order), length distributions, turns; seeded."""

    def __init__(self, prompt, dataset=None, max_tokens=None, prompt_tokens=None, turns=1, seed=None,
                 rows=None):
        """`rows`: a dataset already loaded (load_dataset), so each run need not read it again."""
        if rows is None:
            rows = load_dataset(dataset) if dataset else [([{"role": "user", "content": prompt}], [])]
        self.rows = rows
        self.max_tokens = Dist(max_tokens) if max_tokens else None
        self.prompt_tokens = Dist(prompt_tokens) if prompt_tokens else None
        self.turns = turns
        self.rng = random.Random(seed)
        self.next_id = 0

    @property
    def varies(self):
        """False when every request sends the same body (it is then built once)."""
        return len(self.rows) > 1 or self.max_tokens is not None or \
            self.prompt_tokens is not None or self.turns > 1

    def conversation(self):
        first, later = self.rows[self.next_id % len(self.rows)]
        cid = self.next_id
        self.next_id += 1
        if self.prompt_tokens is not None:  # pad the last user message with filler words
            n = self.prompt_tokens.draw(self.rng)
            pad = " ".join(FILLER[i % len(FILLER)] for i in range(n))
            first = list(first)
            for i in range(len(first) - 1, -1, -1):
                if first[i].get("role") == "user" and isinstance(first[i].get("content"), str):
                    first[i] = dict(first[i], content=first[i]["content"] + " " + pad)
                    break
        return Conversation(cid, first, later, self.turns)

    def max_tokens_for_next(self):
        return None if self.max_tokens is None else self.max_tokens.draw(self.rng)


def parse_header(text):
    """`K:V` -> (K, V); refuses line breaks and an empty name."""
    k, sep, v = text.partition(":")
    k, v = k.strip(), v.strip()
    if not sep or not k or any(c in text for c in "\r\n\0") or any(c in k for c in " \t"):
        raise ValueError(f"bad --header {text!r}: NAME:VALUE expected")
    if k.lower() in _FRAMING:
        raise ValueError(f"--header {k}: set by the load tester (it frames the request)")
    return k, v


_FRAMING = ("content-length", "transfer-encoding", "host", "connection")


def parse_rates(spec):
    """`R1,R2,...` or `START:STOP:STEP` (STOP included) -> ascending rates."""
    try:
        if ":" in spec:
            a, b, s = (float(x) for x in spec.split(":"))
            if s <= 0 or a <= 0 or b < a:
                raise ValueError
            n = int(math.floor((b - a) / s + 1e-9)) + 1
            rates = [round(a + i * s, 6) for i in range(n)]
        else:
            rates = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"bad --rate-sweep {spec!r}: R1,R2,... or START:STOP:STEP") from None
    if not rates or any(r <= 0 for r in rates) or len(rates) > 100:
        raise ValueError(f"bad --rate-sweep {spec!r}: 1 to 100 rates, each > 0")
    return sorted(set(rates))
