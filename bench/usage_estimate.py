#!/usr/bin/env python3
"""The error of the gateway's usage estimate (tornado_grok/usage.py) against the usage the mock's
recordings carry. Prints figures, asserts nothing.

    python bench/usage_estimate.py

For every stream recording in mock_upstream/recordings/ whose events carry usage, the events are
rendered as the mock sends them (one write each), cut just before the event that carries usage
(chat's usage chunk, a Responses terminal event), and fed to the relay's fast-path check
(sse.plain_events / sse.plain_deltas) as separate reads, counting what StreamRelay counts
(plain_bytes, plain_events, the last two reads). usage.output_tokens then estimates the output,
which is compared with the recording's completion_tokens (output_tokens); the prompt estimate of
the seed's prompt is compared with the prompt of the two story recordings, the ones the mock
answers it with.
"""

import json
import os
import statistics
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mock_upstream.plan import WRITE, dumps  # noqa: E402
from mock_upstream.recordings import load_dir, BUILTIN_DIR  # noqa: E402
from tornado_grok import sse, usage  # noqa: E402

SEED_PROMPT = "Write a short story about a space adventure"
MODEL = "grok-4-1-fast-non-reasoning"


def recorded_usage(step_data: bytes, api: str):
    """The usage an event carries (None when it carries none)."""
    start = step_data.find(b"data: ")
    try:
        obj = json.loads(step_data[start + 6:]) if start >= 0 else None
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if api == "responses":
        response = obj.get("response")
        return response.get("usage") if isinstance(response, dict) else None
    return obj.get("usage")


def texts_of(step_data: bytes, typed: bool) -> list:
    """The text strings an event carries (what the estimate tries to count), parsed exactly."""
    start = step_data.find(b"data: ")
    try:
        obj = json.loads(step_data[start + 6:]) if start >= 0 else None
    except ValueError:
        return []
    if not isinstance(obj, dict):
        return []
    return usage._responses_text(obj) if typed else usage._chat_text(obj)


def relayed(recording):
    """(a stand-in for the relay's counters after the cut, the recorded usage) or None."""
    typed = recording.api == "responses"
    plain = sse.plain_deltas if typed else sse.plain_events
    relay = types.SimpleNamespace(plain_bytes=0, plain_events=0, plain_sample=None, plain_before=None,
                                  dialect=types.SimpleNamespace(typed=typed), text=0)
    for step in recording.steps(dumps(MODEL), True):
        if step.action != WRITE or not step.data:
            continue
        found = recorded_usage(step.data, recording.api)
        if found:
            return relay, found
        relay.text += sum(len(t.encode()) for t in texts_of(step.data, typed))
        fast = plain(step.data)
        if fast is not None and fast[1]:
            block, count = fast[0], fast[1]
            relay.plain_bytes += len(block)
            relay.plain_events += count
            relay.plain_sample, relay.plain_before = block, relay.plain_sample
    return None


def main() -> int:
    rows = []
    for name, recording in sorted(load_dir(BUILTIN_DIR).items()):
        if recording.kind != "stream":
            continue
        result = relayed(recording)
        if result is None:
            continue
        relay, real = result
        real_out = real.get("output_tokens", real.get("completion_tokens"))
        estimate = usage.output_tokens(relay)
        rows.append((name, relay.plain_events, relay.plain_bytes, relay.text, real_out, estimate, estimate - real_out))
    print("Output tokens: the estimate of a stream cut just before its usage, against the recorded usage")
    print("(text: the bytes of text the relayed events carried, parsed exactly, for comparison)")
    print("%-28s %7s %7s %6s %9s %9s %6s" % ("recording", "events", "bytes", "text", "recorded", "estimate", "error"))
    for row in rows:
        print("%-28s %7d %7d %6d %9d %9d %+6d" % row)
    errors = [row[6] for row in rows]
    recorded, estimated = sum(row[4] for row in rows), sum(row[5] for row in rows)
    text = sum(row[3] for row in rows)
    print("recordings %d; mean error %+.1f tokens, mean |error| %.1f tokens (largest %+d); all together "
          "%d recorded, %d estimated (%+.0f%%)" % (
              len(rows), statistics.mean(errors), statistics.mean(abs(e) for e in errors),
              max(errors, key=abs), recorded, estimated, 100.0 * (estimated - recorded) / recorded))
    print("the recordings hold %.1f bytes of text a token (the estimate assumes %d); the exact text at %d bytes "
          "a token would be %d tokens" % (text / recorded, usage.BYTES_PER_TOKEN, usage.BYTES_PER_TOKEN,
                                          sum(-(-row[3] // usage.BYTES_PER_TOKEN) for row in rows)))
    chat_body = json.dumps({"model": MODEL, "stream": True,
                            "messages": [{"role": "user", "content": SEED_PROMPT}]}).encode()
    responses_body = json.dumps({"model": MODEL, "stream": True, "input": SEED_PROMPT}).encode()
    print("Prompt tokens of the seed's prompt (%r): recorded 14 (story, responses_story); estimated %d "
          "(chat), %d (Responses)" % (SEED_PROMPT, usage.prompt_tokens(chat_body), usage.prompt_tokens(responses_body)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
