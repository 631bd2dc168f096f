"""The check of a Responses API create body (validate.responses) and the vision test on its `input`
items (validate.responses_has_image): each refusal is a 400 with its exact message and code, the
valid shapes of the OpenAI Responses API pass, and an `input_image` part, wherever it sits, is seen.

Pure functions, called directly; the last test sends refused bodies through a real gateway.
"""

import uuid

import pytest
import requests

from tornado_grok import validate
from tornado_grok.errors import GatewayError

TEXT = {"type": "input_text", "text": "What is in this image?"}
IMAGE = {"type": "input_image", "image_url": "https://example.com/a.png"}


def refusal(body):
    with pytest.raises(GatewayError) as e:
        validate.responses(body)
    assert e.value.status == 400
    return e.value.message, e.value.code


@pytest.mark.parametrize("extra", [
    {},
    {"input": " "},  # whitespace is text the model can be asked about
    {"input": [{"role": "user", "content": "hi"}]},
    {"input": [{"type": "message", "role": "user", "content": [TEXT, IMAGE]}]},
    {"input": [{"role": "user", "content": "hi"}, {"type": "function_call_output", "call_id": "c1", "output": "42"}]},
    {"stream": True}, {"stream": False}, {"stream": None},
    {"previous_response_id": "resp_123"}, {"previous_response_id": None},
    {"instructions": "be brief", "tools": [], "store": False},  # the rest is the upstream's to check
])
def test_valid_bodies_pass(extra):
    assert validate.responses(dict({"model": "grok-4.3", "input": "Hello"}, **extra)) is None


@pytest.mark.parametrize("body,message,code", [
    ({"input": "hi"}, "field 'model' is required", "missing_field"),
    ({"model": " ", "input": "hi"}, "field 'model' must be a non-empty string, not a string", "invalid_field"),
    ({"model": ["m"], "input": "hi"}, "field 'model' must be a non-empty string, not an array", "invalid_field"),
    ({"model": "m"}, "field 'input' is required", "missing_field"),
    ({"model": "m", "input": None}, "field 'input' is required", "missing_field"),
    ({"model": "m", "input": ""}, "field 'input' must be a non-empty string or array, not an empty value",
     "invalid_field"),
    ({"model": "m", "input": []}, "field 'input' must be a non-empty string or array, not an empty value",
     "invalid_field"),
    ({"model": "m", "input": 0}, "field 'input' must be a non-empty string or array, not a number", "invalid_field"),
    ({"model": "m", "input": False}, "field 'input' must be a non-empty string or array, not a boolean",
     "invalid_field"),
    ({"model": "m", "input": {"role": "user", "content": "hi"}},
     "field 'input' must be a non-empty string or array, not an object", "invalid_field"),
    ({"model": "m", "input": ["hi"]}, "input[0] must be an object, not a string", "invalid_field"),
    ({"model": "m", "input": [{"role": "user", "content": "hi"}, None]}, "input[1] must be an object, not null",
     "invalid_field"),
    ({"model": "m", "input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, [TEXT]]},
     "input[2] must be an object, not an array", "invalid_field"),
    ({"model": "m", "input": "hi", "stream": "true"}, "field 'stream' must be a boolean, not a string",
     "invalid_field"),
    ({"model": "m", "input": "hi", "stream": 1}, "field 'stream' must be a boolean, not a number", "invalid_field"),
    ({"model": "m", "input": "hi", "previous_response_id": ""},
     "field 'previous_response_id' must be a non-empty string, not a string", "invalid_field"),
    ({"model": "m", "input": "hi", "previous_response_id": 7},
     "field 'previous_response_id' must be a non-empty string, not a number", "invalid_field"),
])
def test_refusals_name_the_field(body, message, code):
    assert refusal(body) == (message, code)


def test_the_first_bad_field_is_named():
    # model before input, input before stream, stream before previous_response_id
    assert refusal({"input": [], "stream": "x"})[0] == "field 'model' is required"
    assert refusal({"model": "m", "input": ["x"], "stream": "x"})[0] == "input[0] must be an object, not a string"
    assert refusal({"model": "m", "input": "x", "stream": "x", "previous_response_id": 1})[0] == (
        "field 'stream' must be a boolean, not a string")


@pytest.mark.parametrize("items", [
    [{"role": "user", "content": [IMAGE]}],
    [{"role": "user", "content": [TEXT, IMAGE]}],
    [{"role": "user", "content": "first"}, {"type": "message", "role": "user", "content": [TEXT, IMAGE]}],
    ["not an item", {"role": "user", "content": [None, "input_image", IMAGE]}],
])
def test_an_input_image_part_is_seen_anywhere(items):
    assert validate.responses_has_image({"input": items}) is True


@pytest.mark.parametrize("body", [
    {}, {"input": "input_image"}, {"input": None}, {"input": {"content": [IMAGE]}},
    {"input": [{"role": "user", "content": [TEXT]}]},
    {"input": [{"role": "user", "content": "input_image"}]},
    {"input": [{"role": "user", "content": ["input_image", {"text": "x"}, {"type": "image_url"}]}]},
    {"input": [{"role": "user", "content": {"type": "input_image"}}]},
    {"input": ["input_image", [IMAGE], None, {"role": "user"}]},
    {"input": [IMAGE]},  # a part, not an item's content: not a message with an image
])
def test_no_input_image_part_means_no_image(body):
    assert validate.responses_has_image(body) is False


def test_refusals_on_the_wire(gateway, key, mock):
    """POST /responses: the 400 is JSON (with or without "stream": true) and reaches no upstream."""
    headers = {"Authorization": "Bearer " + key, "X-Mock-Test-Id": uuid.uuid4().hex}
    cases = [({"model": "grok-4.3", "input": []},
              "field 'input' must be a non-empty string or array, not an empty value", "invalid_field"),
             ({"model": "grok-4.3", "input": ["hi"], "stream": True}, "input[0] must be an object, not a string",
              "invalid_field"),
             ({"model": "grok-4.3", "stream": True}, "field 'input' is required", "missing_field"),
             ({"model": "grok-4.3", "input": "hi", "stream": "yes"}, "field 'stream' must be a boolean, not a string",
              "invalid_field")]
    for body, message, code in cases:
        r = requests.post(gateway.base + "/responses", json=body, headers=headers, timeout=30)
        assert r.status_code == 400, (body, r.text)
        assert r.headers["Content-Type"] == "application/json; charset=utf-8"
        assert r.json() == {"error": {"message": "API error: " + message, "type": "invalid_request_error",
                                      "code": code}}, body
    assert mock.journal(test_id=headers["X-Mock-Test-Id"]) == []
