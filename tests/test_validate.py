"""The request checks (tornado_grok/validate.py): each refusal is a 400 (or 413) whose message names
the field, and what is valid passes, up to the exact limits (a vision image is measured decoded)."""

import base64

import pytest

from tornado_grok import validate
from tornado_grok.errors import GatewayError
from tests.wire import post

MIB = 1024 * 1024


def refused(fn, *args, status=400):
    with pytest.raises(GatewayError) as e:
        fn(*args)
    assert e.value.status == status
    return e.value


def data_uri(n: int, kind: str = "png") -> str:
    return "data:image/%s;base64,%s" % (kind, base64.b64encode(b"\x89" * n).decode())


@pytest.mark.parametrize("n", [28, 29, 30])  # three paddings: "==", "=", none
def test_an_image_of_exactly_the_limit_passes_and_one_byte_more_does_not(n):
    assert validate.image_url(data_uri(n), n) == data_uri(n)
    e = refused(validate.image_url, data_uri(n + 1), n, status=413)
    assert e.message == "field 'image_url' holds an image larger than %d bytes" % n and e.code == "image_too_large"


def test_the_image_limit_counts_decoded_bytes_not_base64_characters():
    # 3/4 of the base64 length: an image of 0.8 x the limit has 1.07 x the limit in base64 characters.
    assert validate.image_url(data_uri(800, "jpeg"), 1000)
    assert validate.image_url(data_uri(800, "JPG"), 1000)


@pytest.mark.parametrize("value,words", [
    (None, "field 'image_url' is required"), (5, "must be a string, not a number"), ("", "must be a string"),
    ("http://x/a.png", "https:// URL or a data:image"), ("data:image/gif;base64,AAAA", "https:// URL or a data:image"),
    ("https://x/a b.png", "not a valid https URL"), ("https://x/" + "a" * 8183, "not a valid https URL"),
    ("data:image/png;base64,", "holds no image after the data: prefix"),
    ("data:image/png;base64,@@@@", "not valid base64"), ("data:image/png;base64,AAA", "not valid base64"),
])
def test_image_url_refusals(value, words):
    assert words in refused(validate.image_url, value, 100).message


def test_https_image_urls_pass_up_to_8192_characters():
    url = "https://x/" + "a" * (8192 - 10)
    assert validate.image_url(url, 1) == url


@pytest.mark.parametrize("body,words", [
    ({"messages": [{"role": "user", "content": "x"}]}, "field 'model' is required"),
    ({"model": " ", "messages": []}, "field 'model' must be a non-empty string, not a string"),
    ({"model": 3, "messages": []}, "field 'model' must be a non-empty string, not a number"),
    ({"model": "m"}, "field 'messages' is required"),
    ({"model": "m", "messages": []}, "field 'messages' must be a non-empty array, not an empty array"),
    ({"model": "m", "messages": {}}, "field 'messages' must be a non-empty array, not an object"),
    ({"model": "m", "messages": ["hi"]}, "messages[0] must be an object, not a string"),
    ({"model": "m", "messages": [{"role": "user"}, {"role": "robot"}]}, "messages[1].role must be one of "
     "assistant, developer, function, system, tool, user"),
    ({"model": "m", "messages": [{"role": "user", "content": 1.5}]},
     "messages[0].content must be a string or an array of parts, not a number"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}, {"text": "x"}]}]},
     "messages[0].content[1] must be an object with a 'type'"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
     "field 'stream' must be a boolean, not a string"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": []},
     "field 'stream_options' must be an object, not an array"),
])
def test_chat_refusals_name_the_field(body, words):
    e = refused(validate.chat, body)
    assert e.message == words
    assert e.code == ("missing_field" if "is required" in words else "invalid_field")


def test_valid_chat_bodies_pass():
    for body in ({"model": "m", "messages": [{"role": "user", "content": "x"}]},
                 {"model": "m", "messages": [{"role": "tool", "content": None}], "stream": None,
                  "stream_options": {"include_usage": True}},
                 {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                  "stream": True}):
        assert validate.chat(body) is None


def test_stream_flag_and_has_image():
    assert validate.stream_flag({}) is False and validate.stream_flag({"stream": None}) is False
    assert validate.stream_flag({"stream": True}) is True and validate.stream_flag({"stream": False}) is False
    image = {"messages": [{"role": "user", "content": [{"type": "text"}, {"type": "image_url"}]}]}
    assert validate.has_image(image) is True
    for body in ({"messages": "x"}, {"messages": [{"role": "user", "content": "image_url"}]},
                 {"messages": [None, {"content": [{"type": "text"}, "image_url"]}]}):
        assert validate.has_image(body) is False


def test_numbers_and_choices():
    assert validate.number({"n": 3}, "n", int, 1, 10) == 3
    assert validate.number({"n": 1}, "n", int, 1, 10) == 1 and validate.number({"n": 10}, "n", int, 1, 10) == 10
    assert validate.number({}, "n", int, 1, 10) is None
    assert refused(validate.number, {"n": 0}, "n", int, 1, 10).message == "field 'n' must be between 1 and 10"
    assert refused(validate.number, {"n": 11}, "n", int, 1, 10).message == "field 'n' must be between 1 and 10"
    assert refused(validate.number, {"n": True}, "n").message == "field 'n' must be a number, not a boolean"
    assert refused(validate.number, {"n": 1.5}, "n", int).message == "field 'n' must be a number, not a number"
    assert validate.choice({"f": "url"}, "f", ("url", "b64")) == "url" and validate.choice({}, "f", ("a",)) is None
    assert refused(validate.choice, {"f": "x"}, "f", ("url", "b64")).message == "field 'f' must be one of url, b64"
    assert validate.need_string({}, "x", required=False) is None
    assert validate.need_string({"x": "v"}, "x") == "v" and validate.need_string({"x": "v"}, "x", False) == "v"


def test_a_10_mib_image_reaches_the_upstream_and_one_byte_more_is_413(gateway, headers):
    """Through the gateway: the limit of docs/api.md (`image_too_large`, 413, over `max_image_bytes`: 10 MiB), on decoded bytes."""
    h = dict(headers, Accept="application/json")
    ok = post(gateway.base + "/vision/analyze", {"image_url": data_uri(10 * MIB), "prompt": "What is it?"}, h)
    assert ok.status_code == 200, ok.content[:300]
    assert ok.json()["object"] == "chat.completion"
    big = post(gateway.base + "/vision/analyze", {"image_url": data_uri(10 * MIB + 1), "prompt": "What is it?"}, h)
    assert big.status_code == 413
    assert big.json()["error"]["message"] == "API error: field 'image_url' holds an image larger than 10485760 bytes"
