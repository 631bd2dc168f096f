"""NaN, Infinity and numbers too large for a double are a 400 naming the field.

ujson reads `NaN`, `Infinity`, `-Infinity` and `1e400` as floats, which would be relayed as invalid
JSON (`"temperature":NaN`) and pass the vision temperature range check (NaN < 0 is false). Each
literal, in a top-level and in a nested field of chat, vision and image requests, gets a 400
whose message names the field, and the mock upstream's journal shows that none was sent on.
"""

import json
import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests.mock_helpers import start_mock

LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+400", "123456789e999"]
MESSAGE = "API error: field '%s' is not a finite number (NaN, Infinity and numbers too large for a double are not JSON)"
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

# (endpoint, body with a %s where the number goes, the field the message names)
PLACES = [
    ("/chat/completions", '{"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}], '
                          '"temperature": %s}', "temperature"),
    ("/chat/completions", '{"model": "grok-4.3", "stream": true, "messages": [{"role": "user", "content": "hi", '
                          '"x": {"y": [1, %s]}}]}', "messages[0].x.y[1]"),
    ("/vision/analyze", '{"image_url": "' + PNG + '", "prompt": "what is it?", "temperature": %s}', "temperature"),
    ("/vision/analyze", '{"image_url": "' + PNG + '", "prompt": "what is it?", "options": {"top_p": %s}}',
     "options.top_p"),
    ("/images/generate", '{"prompt": "a cat", "quality": %s}', "quality"),
    ("/images/generate", '{"prompt": "a cat", "extra": {"weights": [0.5, {"w": %s}]}}', "extra.weights[1].w"),
]


@pytest.fixture(scope="module")
def mock():
    """A mock of this module's own, and below a gateway: its requests stay out of the session key's limits."""
    m = start_mock("--speed", "0")
    yield m
    m.stop()


@pytest.fixture(scope="module")
def gateway_key(mock, tmp_path_factory):
    gateway, key = hh.start(str(tmp_path_factory.mktemp("numbers")), mock.base)
    yield gateway, key
    gateway.stop()


def post(gateway, key, path: str, raw: str, test_id: str):
    return requests.post(gateway.base + path, data=raw.encode(), timeout=30, headers={
        "Authorization": "Bearer " + key, "Content-Type": "application/json", "X-Mock-Test-Id": test_id})


@pytest.mark.parametrize("path,template,field", PLACES)
@pytest.mark.parametrize("literal", LITERALS)
def test_a_non_finite_number_is_a_400_naming_the_field(gateway_key, mock, path, template, field, literal):
    gateway, key = gateway_key
    test_id = "nonfinite-" + uuid.uuid4().hex
    r = post(gateway, key, path, template % literal, test_id)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"message": MESSAGE % field, "type": "invalid_request_error",
                                  "code": "invalid_number"}}
    assert mock.journal(test_id) == []


@pytest.mark.parametrize("path,template,field", PLACES)
def test_the_same_body_with_a_finite_number_goes_upstream(gateway_key, mock, path, template, field):
    """The control: the journal and the tagging above do see a request when there is one."""
    gateway, key = gateway_key
    test_id = "finite-" + uuid.uuid4().hex
    r = post(gateway, key, path, template % "0.5", test_id)
    assert r.status_code == 200, r.text
    sent = mock.journal(test_id)
    assert len(sent) == 1
    assert b"NaN" not in json.dumps(sent[0]["body"]).encode()


def test_a_string_that_says_nan_is_just_a_string(gateway_key, mock):
    gateway, key = gateway_key
    test_id = "nan-text-" + uuid.uuid4().hex
    r = post(gateway, key, "/chat/completions", '{"model": "grok-4.3", "messages": [{"role": "user", '
             '"content": "NaN Infinity 1e400"}], "temperature": 1e300}', test_id)
    assert r.status_code == 200, r.text
    assert len(mock.journal(test_id)) == 1
