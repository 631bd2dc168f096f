#!/usr/bin/env python3
"""The mock upstream's replay timing error over reused (keep-alive) connections. Prints, asserts nothing.

    python bench/mock_timing.py [--responses 30] [--events 20] [--spacing 5,40]

For each chunk spacing S (ms) it writes a recording whose first event is due S ms after the request
and every next one S ms later, starts `python -m mock_upstream --speed 1 --recordings DIR`, and
plays it `--responses` times in a row on ONE keep-alive connection (raw socket, HTTP/1.1 chunked).
The error of an event is (its arrival since the request was sent) - (its recorded time since the
request); the first event's error is the TTFT error. A response that waits for the client's delayed
ACK shows up as a ~40 ms error (Nagle's algorithm on the mock's socket).
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.mock_helpers import mock_headers, start_mock  # noqa: E402


def write_recording(directory: str, name: str, spacing_ms: float, events: int) -> None:
    lines = [{"format": "mock-recording/1", "name": name, "description": "timing benchmark", "kind": "stream"}]
    for i in range(events):
        chunk = {"id": "chatcmpl-timing", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]}
        lines.append({"delay_ms": spacing_ms, "data": chunk})
    lines.append({"delay_ms": 0, "data": "[DONE]"})
    with open(os.path.join(directory, name + ".jsonl"), "w") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + "\n")


def request_bytes(scenario: str) -> bytes:
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}).encode()
    head = ["POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Authorization: Bearer k"]
    head += [f"{k}: {v}" for k, v in mock_headers(scenario).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def one_response(sock: socket.socket, request: bytes) -> list:
    """Send one request on the open connection; seconds from the send to each `data: {` event."""
    sent = time.monotonic()
    sock.sendall(request)
    times, seen = [], b""
    while not seen.endswith(b"\r\n0\r\n\r\n"):
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError("the mock closed the keep-alive connection")
        now = time.monotonic()
        seen += piece
        times += [now - sent] * (seen.count(b"data: {") - len(times))
    return times


def pct(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(url: str, scenario: str, spacing_ms: float, responses: int) -> tuple:
    host, port = url.split("//")[1].split(":")
    request = request_bytes(scenario)
    first, every = [], []
    with socket.create_connection((host, int(port))) as sock:
        one_response(sock, request)  # warm-up: the connection's first response is not a reused one
        for _ in range(responses):
            times = one_response(sock, request)
            errors = [t * 1000.0 - spacing_ms * (i + 1) for i, t in enumerate(times)]
            first.append(errors[0])
            every += errors
    return first, every


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--responses", type=int, default=30, help="responses per spacing, on one connection")
    p.add_argument("--events", type=int, default=20, help="events per response")
    p.add_argument("--spacing", default="5,40", help="chunk spacings in ms, comma-separated")
    args = p.parse_args()
    spacings = [float(s) for s in args.spacing.split(",")]
    with tempfile.TemporaryDirectory() as directory:
        for s in spacings:
            write_recording(directory, f"timing_{s:g}ms", s, args.events)
        with start_mock("--speed", "1", "--recordings", directory) as mock:
            print(f"{args.responses} responses of {args.events} events per spacing, one keep-alive connection each")
            for s in spacings:
                first, every = measure(mock.url, f"timing_{s:g}ms", s, args.responses)
                print(f"spacing {s:4g} ms: TTFT error p50 {pct(first, .5):+6.2f} p99 {pct(first, .99):+6.2f} ms; "
                      f"every event error p50 {pct(every, .5):+6.2f} p99 {pct(every, .99):+6.2f} "
                      f"max {max(every):+6.2f} ms")


if __name__ == "__main__":
    main()
