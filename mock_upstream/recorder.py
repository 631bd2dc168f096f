"""A recording proxy: relays each request to a real upstream and saves the exchange as a recording.

    python run.py record --upstream https://api.x.ai --out my_story [--port 8601] [--dir DIR] [--overwrite]
    (installed with pip: grok-record ...; or python -m mock_upstream.recorder ...)

Point a client (the OpenAI SDK, the gateway) at the printed URL. Every /v1 exchange becomes
`DIR/NAME.jsonl`, then `NAME-2.jsonl`, ... in mock-recording/1 (README.md "Recording format"); the
recorder refuses to start when an earlier run left NAME files in DIR, unless --overwrite deletes
them first. Saved: status, the headers that matter, every SSE event with its delay since the
previous one (the first one since the request was sent), or the whole body when the answer was not
streamed. The upstream key (--upstream-key or env XAI_API_KEY) replaces the client's Authorization
upstream, and neither is ever written to a recording. Events that would not replay byte for byte as
`data` objects are saved as `raw`, so a replay at speed 0 sends exactly the bytes the upstream sent.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import sys
import time

import tornado.web
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.netutil import bind_sockets

from mock_upstream.cli import default_prog, is_loopback
from mock_upstream.plan import code_for, dumps, error_body
from mock_upstream.recordings import FORMAT

KEPT_HEADERS = ("content-type", "retry-after")
NOT_FORWARDED = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding", "authorization",
                 "keep-alive", "te", "upgrade", "proxy-authorization"}


class Recorder:
    """Names files, scrubs secrets and writes recordings; shared by the proxy's handlers."""

    def __init__(self, upstream: str, out: str, directory: str, key: str | None):
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.out, self.directory, self.key = out, directory, key
        self.count = 0
        self.client = CurlAsyncHTTPClient(max_clients=100)
        os.makedirs(directory, exist_ok=True)

    def next_name(self) -> str:
        self.count += 1
        return self.out if self.count == 1 else f"{self.out}-{self.count}"

    def scrub(self, text: str, client_key: str | None) -> str:
        for secret in (self.key, client_key):
            if secret:
                text = text.replace(secret, "***")
        return text

    def save(self, name: str, header: dict, lines: list, client_key: str | None) -> str:
        path = os.path.join(self.directory, name + ".jsonl")
        text = "\n".join(json.dumps(line, ensure_ascii=False) for line in [header] + lines) + "\n"
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(self.scrub(text, client_key))
        os.replace(path + ".tmp", path)
        return path


class EventSplitter:
    """Cuts relayed bytes into SSE events (ending in a blank line) and times each one."""

    def __init__(self, started: float):
        self.buf = b""
        self.last = started
        self.lines = []

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        while True:
            end = self.buf.find(b"\n\n")
            if end < 0:
                return
            event, self.buf = self.buf[: end + 2], self.buf[end + 2 :]
            self.add(event)

    def add(self, event: bytes) -> None:
        now = time.monotonic()
        line = {"delay_ms": round((now - self.last) * 1000.0, 1)}
        self.last = now
        line.update(classify(event))
        self.lines.append(line)

    def finish(self, dropped: bool) -> list:
        if self.buf:
            self.add(self.buf)
            self.buf = b""
        if dropped:
            self.lines.append({"delay_ms": 0, "action": "disconnect"})
        return self.lines


def classify(event: bytes) -> dict:
    """The most readable line kind that replays exactly these bytes."""
    try:
        text = event.decode("utf-8")
    except UnicodeDecodeError:
        return {"raw_b64": base64.b64encode(event).decode()}
    if text == "data: [DONE]\n\n":
        return {"data": "[DONE]"}
    if text.startswith(":") and text.endswith("\n\n") and "\n" not in text[:-2]:
        comment = text[1:-2]
        if comment == "" or comment.startswith(" "):
            return {"comment": comment[1:]}
    if text.startswith("data: {") and text.endswith("\n\n") and "\n" not in text[:-2]:
        try:
            obj = json.loads(text[6:-2])
        except ValueError:
            obj = None
        if isinstance(obj, dict) and b"data: " + dumps(obj) + b"\n\n" == event:
            return {"data": obj}
    return {"raw": text}


class ProxyHandler(tornado.web.RequestHandler):
    """Relays one request upstream as it arrives, and records it."""

    SUPPORTED_METHODS = ("GET", "POST", "DELETE")

    def initialize(self, recorder: Recorder):
        self.recorder = recorder
        self.status_seen = None
        self.header_lines = []
        self.relayed = False
        self.splitter = None
        self.body_parts = []
        self.headers_done = False
        self.pending = []

    async def get(self, path):
        await self.proxy(path)

    async def post(self, path):
        await self.proxy(path)

    async def delete(self, path):
        await self.proxy(path)

    def client_key(self) -> str | None:
        scheme, _, key = self.request.headers.get("Authorization", "").partition(" ")
        return key.strip() or None

    def upstream_request(self, path: str) -> HTTPRequest:
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in NOT_FORWARDED}
        key = self.recorder.key or self.client_key()
        if key:
            headers["Authorization"] = "Bearer " + key
        url = self.recorder.upstream + "/" + path + (("?" + self.request.query) if self.request.query else "")
        return HTTPRequest(url, method=self.request.method, headers=headers,
                           body=self.request.body if self.request.method == "POST" else None,
                           header_callback=self.on_header, streaming_callback=self.on_chunk,
                           connect_timeout=10, request_timeout=3600, decompress_response=False)

    def on_header(self, line: str) -> None:
        if line.startswith("HTTP/"):
            self.header_lines = []
            self.status_seen = int(line.split()[1])
        elif line.strip():
            self.header_lines.append(line)
        elif self.status_seen is not None and self.status_seen >= 200:
            self.headers_done = True
            for chunk in self.pending:
                self.relay(chunk)
            self.pending = []

    def upstream_headers(self) -> HTTPHeaders:
        headers = HTTPHeaders()
        for line in self.header_lines:
            headers.parse_line(line)
        return headers

    def on_chunk(self, chunk: bytes) -> None:
        # Curl's header and body callbacks reach the IOLoop in no guaranteed order: hold body
        # bytes until the blank line that ends the headers.
        if self.headers_done:
            self.relay(chunk)
        else:
            self.pending.append(chunk)

    def relay(self, chunk: bytes) -> None:
        if not self.relayed:
            self.relayed = True
            # Tornado leaves Nagle on for a reused connection: events would wait for the delayed ACK.
            self.request.connection.stream.set_nodelay(True)
            headers = self.upstream_headers()
            self.set_status(self.status_seen or 502)
            for name in KEPT_HEADERS + ("cache-control",):
                if name in headers:
                    self.set_header(name, headers[name])
            if headers.get("Content-Type", "").startswith("text/event-stream"):
                self.splitter = EventSplitter(self.started)
        if self.splitter is not None:
            self.splitter.feed(chunk)
        else:
            self.body_parts.append(chunk)
        self.write(chunk)
        self.flush()

    async def proxy(self, path: str) -> None:
        self.started = time.monotonic()
        dropped = False
        try:
            await self.recorder.client.fetch(self.upstream_request(path), raise_error=False)
        except HTTPClientError:
            dropped = True
        except OSError:
            dropped = True
        for chunk in self.pending:  # headers never ended properly: relay what came anyway
            self.relay(chunk)
        self.pending = []
        if path.startswith("v1/") and (self.relayed or not dropped):
            self.record(path, dropped)
        if dropped and self.relayed:
            self.detach().close()  # the upstream dropped us: drop the client too
            return
        if not self.relayed:
            self.set_status(self.status_seen or 502)
            if dropped:
                self.set_header("Content-Type", "application/json")
                self.write(error_body(code_for(502), f"recorder: the upstream {self.recorder.upstream} did not answer"))
        self.finish()

    def record(self, path: str, dropped: bool) -> None:
        headers = self.upstream_headers()
        kept = {name.title(): headers[name] for name in KEPT_HEADERS if name in headers}
        try:
            request_body = json.loads(self.request.body) if self.request.body else None
        except ValueError:
            request_body = self.request.body.decode("utf-8", "replace")
        name = self.recorder.next_name()
        header = {"format": FORMAT, "name": name,
                  "description": f"Recorded from {self.recorder.upstream} {self.request.method} /{path}",
                  "kind": "stream" if self.splitter is not None else "json",
                  "status": self.status_seen or 502, "headers": kept,
                  "request": {"method": self.request.method, "path": "/" + path, "body": request_body}}
        if self.splitter is not None:
            lines = self.splitter.finish(dropped)
        else:
            lines = [{"delay_ms": round((time.monotonic() - self.started) * 1000.0, 1), "body": body_value(b"".join(self.body_parts))}]
        self.recorder.save(name, header, lines, self.client_key())


def body_value(raw: bytes):
    """A JSON body as an object when it re-encodes to the same bytes, else as text."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
    return obj if isinstance(obj, (dict, list)) and dumps(obj) == raw else raw.decode("utf-8", "replace")


def parse_args(argv=None, prog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog or default_prog("mock_upstream.recorder"),
                                description="Record upstream exchanges as mock recordings.")
    p.add_argument("--upstream", required=True, help="upstream base URL, e.g. https://api.x.ai")
    p.add_argument("--out", required=True, help="recording name: NAME.jsonl, NAME-2.jsonl, ...")
    p.add_argument("--dir", default=".", help="where to write the recordings (default: current directory)")
    p.add_argument("--port", type=int, default=8601, help="port to listen on (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument("--upstream-key", default=os.environ.get("XAI_API_KEY"), help="upstream key (env XAI_API_KEY); else the client's")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the recordings of an earlier run with the same --out first (else the recorder refuses to start)")
    args = p.parse_args(argv)
    if not is_loopback(args.host):
        p.error("the recorder listens on loopback only")
    return args


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    recorder = Recorder(args.upstream, args.out, args.dir, args.upstream_key)
    app = tornado.web.Application([(r"/(.*)", ProxyHandler, {"recorder": recorder})])
    server = HTTPServer(app)
    sockets = bind_sockets(args.port, args.host)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print(f"mock_upstream recorder listening on http://{args.host}:{port}", flush=True)
    await stop.wait()
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 5)
    recorder.client.close()


def main(argv=None, prog: str | None = None) -> None:
    """`python -m mock_upstream.recorder`, `run.py record` and `grok-record` (`prog` names which).

    Exits 2, before listening, when recordings of an earlier run with the same --out are in --dir
    (and --overwrite was not given): a second run would otherwise replace them without a word."""
    args = parse_args(argv, prog)
    os.makedirs(args.dir, exist_ok=True)
    pattern = re.compile(re.escape(args.out) + r"(-[0-9]+)?\.jsonl")
    earlier = sorted(f for f in os.listdir(args.dir) if pattern.fullmatch(f))
    if earlier and not args.overwrite:
        print(f"{prog or default_prog('mock_upstream.recorder')}: error: {os.path.join(args.dir, earlier[0])} exists "
              f"({len(earlier)} recording(s) named {args.out!r} in {args.dir}); "
              "choose another --out, or pass --overwrite to replace them", file=sys.stderr)
        sys.exit(2)
    for name in earlier:
        os.remove(os.path.join(args.dir, name))
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
