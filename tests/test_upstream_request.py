"""What reaches the upstream: the gateway's own key, the aliased model, usage asked for, nothing of
the client's credentials; and what comes back shows the name the client asked for."""

import json
import uuid

from tests.servers import UPSTREAM_KEY
from tests.wire import SEED_MODEL, chat_body, post


def send(gateway, key, body, **headers):
    test_id = uuid.uuid4().hex
    h = {"Authorization": "Bearer " + key, "X-Mock-Test-Id": test_id, "X-Request-Id": "req-" + test_id}
    h.update(headers)
    return post(gateway.base + "/chat/completions", body, h), test_id


def test_stream_request_as_the_upstream_sees_it(gateway, mock, key):
    r, test_id = send(gateway, key, chat_body(temperature=0.5, max_tokens=64))
    assert r.status_code == 200
    entry = mock.journal(test_id=test_id)[-1]
    assert entry["path"] == "/v1/chat/completions"
    assert entry["headers"]["authorization"] == "Bearer %s…%s" % (UPSTREAM_KEY[:4], UPSTREAM_KEY[-4:])
    assert entry["headers"]["x-request-id"] == "req-" + test_id
    assert entry["body"] == {
        "model": "grok-4.20-non-reasoning",  # conf/model_aliases.toml
        "messages": [{"role": "user", "content": "Write a short story about a space adventure"}],
        "stream": True, "temperature": 0.5, "max_tokens": 64,
        "stream_options": {"include_usage": True},  # asked for accounting; not shown to this client
    }
    assert key not in json.dumps(entry)
    for line in r.content.split(b"\n\n")[:-2]:
        assert json.loads(line[6:])["model"] == SEED_MODEL


def test_unaliased_model_passes_through_untouched(gateway, mock, key):
    r, test_id = send(gateway, key, chat_body(model="grok-4.3", stream=False))
    assert r.json()["model"] == "grok-4.3"
    assert mock.journal(test_id=test_id)[-1]["body"]["model"] == "grok-4.3"


def test_client_stream_options_are_kept(gateway, mock, key):
    r, test_id = send(gateway, key, chat_body(stream_options={"include_usage": True}))
    assert mock.journal(test_id=test_id)[-1]["body"]["stream_options"] == {"include_usage": True}
    assert b'"usage"' in r.content


def test_unicode_and_unknown_fields_reach_the_upstream_intact(gateway, mock, key):
    body = chat_body(content="héllo 🚀 \u2028 \"quoted\" / slash", stream=False,
                     seed=7, response_format={"type": "text"}, user="u-1")
    r, test_id = send(gateway, key, body)
    assert r.status_code == 200
    sent = mock.journal(test_id=test_id)[-1]["body"]
    assert sent["messages"] == body["messages"]
    assert (sent["seed"], sent["response_format"], sent["user"]) == (7, {"type": "text"}, "u-1")
