#!/usr/bin/env python3
"""How faithfully the mock upstream replays recorded timing at speed 1. Prints figures, asserts nothing.

    python bench/mock_replay_fidelity.py [--events 300] [--runs 3]

Writes a recording of N events with delays cycling through 2, 5, 10, 20 and 50 ms into a temporary
folder, starts `python -m mock_upstream --speed 1 --recordings DIR`, streams it over a raw socket,
and compares when each event arrived with the recorded schedule:
  gap error   = (arrival gap between consecutive events) - (recorded delay_ms), per event
  drift       = (arrival time since the first event) - (recorded time since the first event), at the end
"""

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.mock_helpers import mock_headers, raw_post, start_mock  # noqa: E402

DELAYS_MS = (2, 5, 10, 20, 50)


def write_recording(directory: str, events: int) -> list:
    delays = [DELAYS_MS[i % len(DELAYS_MS)] for i in range(events)]
    lines = [{"format": "mock-recording/1", "name": "fidelity", "description": "timing benchmark", "kind": "stream"}]
    for i, delay in enumerate(delays):
        chunk = {"id": "chatcmpl-mock-fid", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]}
        lines.append({"delay_ms": delay, "data": chunk})
    lines.append({"delay_ms": 0, "data": "[DONE]"})
    with open(os.path.join(directory, "fidelity.jsonl"), "w") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + "\n")
    return delays


def arrivals(url: str) -> list:
    """Monotonic arrival time of every `data: {` event, read as bytes come off the socket."""
    host, port = url.split("//")[1].split(":")
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    times, seen = [], b""
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(raw_post("/v1/chat/completions", body, {"Authorization": "Bearer k", **mock_headers("fidelity")}))
        while True:
            piece = sock.recv(65536)
            if not piece:
                return times
            now = time.monotonic()
            seen += piece
            count = seen.count(b"data: {")
            times += [now] * (count - len(times))


def pct(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=300)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        delays = write_recording(directory, args.events)
        with start_mock("--speed", "1", "--recordings", directory) as mock:
            for run in range(1, args.runs + 1):
                got = arrivals(mock.url)
                gaps = [(b - a) * 1000.0 - d for a, b, d in zip(got, got[1:], delays[1:])]
                drift = (got[-1] - got[0]) * 1000.0 - sum(delays[1:len(got)])
                print(f"run {run}: {len(got)} events, recorded {sum(delays) / 1000.0:.2f} s; gap error ms: "
                      f"p50 {pct(gaps, 0.5):+.2f}  p99 {pct(gaps, 0.99):+.2f}  max {max(gaps):+.2f}  "
                      f"mean |err| {statistics.mean(abs(g) for g in gaps):.2f}; end drift {drift:+.1f} ms")


if __name__ == "__main__":
    main()
