"""GET /responses/{id}?stream=true&starting_after=N finds its start without parsing stored events
: each stored block's first sequence_number is indexed as it is stored (in Redis, a
sorted set per stream), the start is a bisect, and the filter looks at one block at most, by a byte
scan. Every N from none to past the end gives the uninterrupted stream's events over N, on the
stream's own process and, through Redis, on another one."""

import json
import os
import uuid

import redis
import requests

from tests import hardening_helpers as hh
from tests import resumable_helpers as rh
from tests import servers
from tests.redis_server import skip_unless_available
from tests.wire import SEED_MODEL, SEED_PROMPT, bind
from tornado_grok import resumable_readers, resumable_relay, stored_stream
from tornado_grok.config import Config

BODY = {"model": SEED_MODEL, "input": SEED_PROMPT, "stream": True}
OPEN = {"requests_per_minute": 0, "concurrent_requests": 0}
RESPONSE_ID = "resp_mock_story"  # the upstream's id; the client sees it bound to its key


def events(body: bytes) -> list:
    return [e + b"\n\n" for e in body.split(b"\n\n")[:-1]]


def sequence(event: bytes) -> int:
    return json.loads(event.split(b"\ndata: ", 1)[1])["sequence_number"]


def delta(n: int, text: str = "x") -> bytes:
    # sequence_number second (as OpenAI orders it) and last (as the mock does), alternately
    obj = {"type": "response.output_text.delta", "sequence_number": n, "delta": text} if n % 2 else \
        {"type": "response.output_text.delta", "delta": text, "sequence_number": n}
    return b"event: response.output_text.delta\ndata: " + json.dumps(obj).encode() + b"\n\n"


class NoParsing:
    @staticmethod
    def loads(*args, **kwargs):
        raise AssertionError("a stored event was JSON-parsed")


def test_the_start_is_a_bisect_and_nothing_is_parsed(monkeypatch):
    entry = stored_stream.StoredStream("s", "k", "t", Config())
    entry.seqs = []  # a Responses stream (the store's create sets it)
    sizes = [1, 3, 1, 1, 5, 2, 1, 4]
    n, stored = 0, []
    for size in sizes:
        block = [delta(n + i, 'a "sequence_number": 999 quoted') for i in range(size)]
        stored += block
        entry.append(b"".join(block))
        n += size
    error = b'event: error\ndata: {"type":"error","code":"x","sequence_number":0}\n\n'  # passes always
    entry.append(error)
    monkeypatch.setattr(resumable_relay, "ujson", NoParsing)
    for after in range(-1, n + 2):
        start = entry.seek(after)
        out = b"".join(entry.after(start))
        looked_at = [e for e in events(rh.strip_ids(out)) if e != error and sequence(e) <= after]
        assert len(looked_at) < max(sizes)  # the rest of one block at most
        assert resumable_readers.SequenceFilter(after)(out) == b"".join(e for e in stored if sequence(e) > after) + error


def retrieve(g, key, n: int) -> bytes:
    query = "&starting_after=%d" % n if n >= 0 else ""  # none: the whole stream
    r = requests.get(g.base + "/responses/%s?stream=true%s" % (bind(g, key, "response", RESPONSE_ID), query),
                     headers=hh.auth(key), timeout=30)
    assert r.status_code == 200
    return r.content.replace(b": keep-alive\n", b"")


def check_every_start(g, key, plain: bytes) -> None:
    last = sequence(events(plain)[-1])
    for n in range(-1, last + 2):
        assert retrieve(g, key, n) == b"".join(e for e in events(plain) if sequence(e) > n), n


@skip_unless_available()
def test_every_start_on_the_streams_process_and_on_another_through_the_redis_index(mock, redis_server, tmp_path):
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    settings = dict(OPEN, stream_store="redis", redis_url=redis_server.url, resume_heartbeat=0.2)
    a = servers.start_gateway(folder, mock.base, settings)
    b = servers.start_gateway(folder, mock.base, settings)
    try:
        plain = rh.whole_stream(a, key, resumable=None, speed="0", path="/api/v1/responses", body=BODY)[1]
        head, body = rh.whole_stream(a, key, speed="0", path="/api/v1/responses", body=BODY,
                                     test_id=uuid.uuid4().hex)
        stream_id = rh.header(head, "X-Stream-Id")
        assert rh.resume(b, rh.header(head, "X-Resume-Url"), 0).content == body  # all written
        # The index: each block's first event id, scored by its sequence_number.
        index = redis.Redis.from_url(redis_server.url).zrange("tg:rs:%s:q" % stream_id, 0, -1, withscores=True)
        numbered = {int(e.split(b"\n", 1)[0][len(b"id: "):]): sequence(e) for e in events(body)}
        assert index and all(numbered[int(member)] == score for member, score in index)
        check_every_start(a, key, plain)  # from A's memory (StoredStream.seek)
        check_every_start(b, key, plain)  # from Redis (SequenceRemoteReader.run)
    finally:
        a.stop()
        b.stop()
