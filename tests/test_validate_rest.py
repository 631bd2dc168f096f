"""The body checks of the relayed REST routes (validate.tokenize, embeddings, image_edit) and the
shared pieces under them (need_string, path_id, number, choice): each documented refusal is a 400
with its exact message and code, and the valid bodies at each boundary pass.

The checks are pure functions, called here directly (the real code path, no mock); the last tests
send the same bodies through a real gateway to see the 400 on the wire and that nothing of a
refused request reaches the upstream.
"""

import uuid

import pytest
import requests

from tornado_grok import validate
from tornado_grok.errors import GatewayError


def refused(fn, *args, **kwargs):
    with pytest.raises(GatewayError) as e:
        fn(*args, **kwargs)
    assert e.value.status == 400
    return e.value


def expect(fn, body, message, code="invalid_field"):
    e = refused(fn, body)
    assert (e.message, e.code) == (message, code)


# -- the shared pieces

def test_bad_is_a_400_invalid_field_unless_told():
    e = validate.bad("some words")
    assert (e.status, e.message, e.code) == (400, "some words", "invalid_field")
    assert validate.bad("x", "missing_field").code == "missing_field"


@pytest.mark.parametrize("value,name", [
    ("s", "a string"), (True, "a boolean"), (False, "a boolean"), (1, "a number"), (1.5, "a number"),
    ([], "an array"), ({}, "an object"), (None, "null"), ((1,), "tuple"),
])
def test_type_names(value, name):
    assert validate._type_name(value) == name


def test_need_string():
    assert validate.need_string({"f": "v"}, "f") == "v"
    assert validate.need_string({"f": " v "}, "f", required=False) == " v "
    assert validate.need_string({}, "f", required=False) is None
    assert validate.need_string({"f": None}, "f", required=False) is None
    expect(lambda b: validate.need_string(b, "f"), {}, "field 'f' is required", "missing_field")
    expect(lambda b: validate.need_string(b, "f"), {"f": None}, "field 'f' is required", "missing_field")
    for value, name in (("", "a string"), ("  \t", "a string"), (5, "a number"), (["v"], "an array"),
                        (False, "a boolean")):
        for required in (True, False):
            expect(lambda b: validate.need_string(b, "f", required), {"f": value},
                   "field 'f' must be a non-empty string, not %s" % name)


ID_RULE = ("the id must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit, "
           "with no '..'")


@pytest.mark.parametrize("value", ["a", "0", "grok-4.3", "ft:grok:abc_1", "resp_" + "x" * 123, "a" * 128,
                                   "a.b", "a.b.c"])
def test_path_id_passes_ids_of_the_rule(value):
    assert validate.path_id(value, "the id") == value


@pytest.mark.parametrize("value", ["", "a" * 129, "a..b", "a..", ".a", "-a", "_a", ":a", "a/b", "a b", "a\n",
                                   "a%2e", "é", None, 5, ["a"]])
def test_path_id_refuses_the_rest(value):
    e = refused(validate.path_id, value, "the id")
    assert (e.message, e.code) == (ID_RULE, "invalid_id")


@pytest.mark.parametrize("body,value", [({}, None), ({"n": None}, None), ({"n": 1}, 1), ({"n": 10}, 10),
                                        ({"n": 5}, 5)])
def test_number_in_range_passes(body, value):
    assert validate.number(body, "n", int, 1, 10) == value


@pytest.mark.parametrize("value", [0, 11, -1, 10**30])
def test_number_out_of_range(value):
    expect(lambda b: validate.number(b, "n", int, 1, 10), {"n": value}, "field 'n' must be between 1 and 10")


def test_number_with_one_bound_and_floats():
    assert validate.number({"t": 0}, "t", (int, float), 0, 2) == 0
    assert validate.number({"t": 2.0}, "t", (int, float), 0, 2) == 2.0
    assert validate.number({"t": 0.5}, "t") == 0.5
    assert validate.number({"t": -5}, "t", high=0) == -5  # no low bound
    assert validate.number({"t": 10**9}, "t", low=0) == 10**9  # no high bound
    expect(lambda b: validate.number(b, "t", (int, float), 0, 2), {"t": 2.0001}, "field 't' must be between 0 and 2")
    expect(lambda b: validate.number(b, "t", (int, float), 0, 2), {"t": -0.0001}, "field 't' must be between 0 and 2")
    expect(lambda b: validate.number(b, "t", low=0), {"t": -1}, "field 't' must be between 0 and None")
    expect(lambda b: validate.number(b, "t", high=0), {"t": 1}, "field 't' must be between None and 0")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_number_refuses_what_is_not_finite(value):
    # json_body refuses these first; the check stays because NaN passes any range test.
    expect(lambda b: validate.number(b, "t", (int, float), 0, 2), {"t": value}, "field 't' must be a finite number")
    expect(lambda b: validate.number(b, "t"), {"t": value}, "field 't' must be a finite number")


@pytest.mark.parametrize("value,name", [("3", "a string"), (True, "a boolean"), (False, "a boolean"),
                                        ([3], "an array"), ({}, "an object"), (3.0, "a number")])
def test_number_refuses_other_types(value, name):
    expect(lambda b: validate.number(b, "n", int, 1, 10), {"n": value}, "field 'n' must be a number, not %s" % name)


def test_choice():
    allowed = ("url", "b64_json")
    assert validate.choice({"f": "url"}, "f", allowed) == "url"
    assert validate.choice({"f": "b64_json"}, "f", allowed) == "b64_json"
    assert validate.choice({"f": None}, "f", allowed) is None and validate.choice({}, "f", allowed) is None
    for value in ("", "URL", "gif", 1, ["url"]):
        expect(lambda b: validate.choice(b, "f", allowed), {"f": value}, "field 'f' must be one of url, b64_json")


# -- POST /tokenize-text

def test_tokenize_passes():
    assert validate.tokenize({"text": "Hello", "model": "grok-4.3"}) is None
    assert validate.tokenize({"text": "", "model": "m", "user": "u"}) is None  # no tokens is an answer


@pytest.mark.parametrize("body,message,code", [
    ({"text": "x"}, "field 'model' is required", "missing_field"),
    ({"text": "x", "model": ""}, "field 'model' must be a non-empty string, not a string", "invalid_field"),
    ({"model": "m"}, "field 'text' is required and must be a string", "missing_field"),
    ({"model": "m", "text": None}, "field 'text' is required and must be a string", "missing_field"),
    ({"model": "m", "text": 5}, "field 'text' must be a string, not a number", "invalid_field"),
    ({"model": "m", "text": ["a"]}, "field 'text' must be a string, not an array", "invalid_field"),
    ({"model": "m", "text": False}, "field 'text' must be a string, not a boolean", "invalid_field"),
])
def test_tokenize_refusals(body, message, code):
    expect(validate.tokenize, body, message, code)


# -- POST /embeddings

@pytest.mark.parametrize("extra", [{}, {"input": ["a"]}, {"input": ["a", "b"]}, {"input": [[1, 2]]},
                                   {"encoding_format": "float"}, {"encoding_format": "base64"},
                                   {"encoding_format": None}, {"dimensions": 1}, {"dimensions": 100_000},
                                   {"dimensions": None}])
def test_embeddings_passes(extra):
    assert validate.embeddings(dict({"model": "v1", "input": "x"}, **extra)) is None


@pytest.mark.parametrize("body,message,code", [
    ({"input": "x"}, "field 'model' is required", "missing_field"),
    ({"model": 1, "input": "x"}, "field 'model' must be a non-empty string, not a number", "invalid_field"),
    ({"model": "v1"}, "field 'input' is required", "missing_field"),
    ({"model": "v1", "input": None}, "field 'input' is required", "missing_field"),
    ({"model": "v1", "input": []}, "field 'input' must be a string or a non-empty array, not an empty array",
     "invalid_field"),
    ({"model": "v1", "input": 3}, "field 'input' must be a string or a non-empty array, not a number",
     "invalid_field"),
    ({"model": "v1", "input": {"text": "x"}}, "field 'input' must be a string or a non-empty array, not an object",
     "invalid_field"),
    ({"model": "v1", "input": "x", "encoding_format": "int8"}, "field 'encoding_format' must be one of float, base64",
     "invalid_field"),
    ({"model": "v1", "input": "x", "dimensions": 0}, "field 'dimensions' must be between 1 and 100000",
     "invalid_field"),
    ({"model": "v1", "input": "x", "dimensions": 100_001}, "field 'dimensions' must be between 1 and 100000",
     "invalid_field"),
    ({"model": "v1", "input": "x", "dimensions": 8.0}, "field 'dimensions' must be a number, not a number",
     "invalid_field"),
    ({"model": "v1", "input": "x", "dimensions": "8"}, "field 'dimensions' must be a number, not a string",
     "invalid_field"),
])
def test_embeddings_refusals(body, message, code):
    expect(validate.embeddings, body, message, code)


# -- POST /images/edits

IMAGE_RULE = "field 'image' must be an object with a 'url' (an http(s) URL or a data:image URI)"


@pytest.mark.parametrize("extra", [
    {}, {"image": "https://example.com/a.png"}, {"image": {"url": "http://example.com/a.png"}},
    {"image": {"url": "data:image/png;base64,AAAA", "type": "image_url"}}, {"model": "grok-imagine-image"},
    {"model": None}, {"n": 1}, {"n": 10}, {"response_format": "url"}, {"response_format": "b64_json"},
])
def test_image_edit_passes(extra):
    assert validate.image_edit(dict({"prompt": "make it red", "image": {"url": "https://x/a.png"}}, **extra)) is None


@pytest.mark.parametrize("body,message,code", [
    ({"image": {"url": "https://x/a.png"}}, "field 'prompt' is required", "missing_field"),
    ({"prompt": " ", "image": {"url": "https://x/a.png"}}, "field 'prompt' must be a non-empty string, not a string",
     "invalid_field"),
    ({"prompt": "p"}, "field 'image' is required", "missing_field"),
    ({"prompt": "p", "image": None}, "field 'image' is required", "missing_field"),
    ({"prompt": "p", "image": {}}, IMAGE_RULE, "invalid_field"),
    ({"prompt": "p", "image": {"url": 5}}, IMAGE_RULE, "invalid_field"),
    ({"prompt": "p", "image": {"url": "ftp://x/a.png"}}, IMAGE_RULE, "invalid_field"),
    ({"prompt": "p", "image": {"url": "data:text/plain,x"}}, IMAGE_RULE, "invalid_field"),
    ({"prompt": "p", "image": "example.com/a.png"}, IMAGE_RULE, "invalid_field"),
    ({"prompt": "p", "image": ["https://x/a.png"]}, IMAGE_RULE, "invalid_field"),
    ({"prompt": "p", "image": 7}, IMAGE_RULE, "invalid_field"),
    ({"prompt": "p", "image": {"url": "https://x/a.png"}, "model": ""},
     "field 'model' must be a non-empty string, not a string", "invalid_field"),
    ({"prompt": "p", "image": {"url": "https://x/a.png"}, "n": 0}, "field 'n' must be between 1 and 10",
     "invalid_field"),
    ({"prompt": "p", "image": {"url": "https://x/a.png"}, "n": 11}, "field 'n' must be between 1 and 10",
     "invalid_field"),
    ({"prompt": "p", "image": {"url": "https://x/a.png"}, "n": "2"}, "field 'n' must be a number, not a string",
     "invalid_field"),
    ({"prompt": "p", "image": {"url": "https://x/a.png"}, "response_format": "png"},
     "field 'response_format' must be one of url, b64_json", "invalid_field"),
])
def test_image_edit_refusals(body, message, code):
    expect(validate.image_edit, body, message, code)


# -- through a real gateway: the 400 on the wire, nothing sent upstream, and the boundary values relayed

WIRE_REFUSALS = [
    ("/tokenize-text", {"model": "grok-4.3", "text": 5}, "field 'text' must be a string, not a number",
     "invalid_field"),
    ("/tokenize-text", {"text": "x"}, "field 'model' is required", "missing_field"),
    ("/embeddings", {"model": "v1", "input": []},
     "field 'input' must be a string or a non-empty array, not an empty array", "invalid_field"),
    ("/embeddings", {"model": "v1"}, "field 'input' is required", "missing_field"),
    ("/embeddings", {"model": "v1", "input": "x", "dimensions": 0}, "field 'dimensions' must be between 1 and 100000",
     "invalid_field"),
    ("/embeddings", {"model": "v1", "input": "x", "encoding_format": "int8"},
     "field 'encoding_format' must be one of float, base64", "invalid_field"),
    ("/images/edits", {"prompt": "p"}, "field 'image' is required", "missing_field"),
    ("/images/edits", {"prompt": "p", "image": {"url": "https://x/a.png"}, "n": 11},
     "field 'n' must be between 1 and 10", "invalid_field"),
    ("/images/edits", {"prompt": "p", "image": {"url": "https://x/a.png"}, "response_format": "png"},
     "field 'response_format' must be one of url, b64_json", "invalid_field"),
]


def tagged(key):
    return {"Authorization": "Bearer " + key, "X-Mock-Test-Id": uuid.uuid4().hex}


def test_refusals_on_the_wire_are_400_and_reach_no_upstream(gateway, key, mock):
    headers = tagged(key)
    for path, body, message, code in WIRE_REFUSALS:
        r = requests.post(gateway.base + path, json=body, headers=headers, timeout=30)
        assert r.status_code == 400, (path, body, r.text)
        assert r.headers["Content-Type"] == "application/json; charset=utf-8"
        assert r.json() == {"error": {"message": "API error: " + message, "type": "invalid_request_error",
                                      "code": code}}, (path, body)
    assert mock.journal(test_id=headers["X-Mock-Test-Id"]) == []


def test_boundary_values_are_relayed(gateway, key, mock):
    headers = tagged(key)
    sent = [("/tokenize-text", {"model": "grok-4.3", "text": ""}),
            ("/embeddings", {"model": "v1", "input": ["a"], "dimensions": 1, "encoding_format": "float"}),
            ("/images/edits", {"prompt": "p", "image": {"url": "data:image/png;base64,AAAA"}, "n": 10,
                               "response_format": "url"})]
    for path, body in sent:
        r = requests.post(gateway.base + path, json=body, headers=headers, timeout=30)
        assert r.status_code == 200, (path, r.text)
    assert [(e["path"], e["body"]) for e in mock.journal(test_id=headers["X-Mock-Test-Id"])] == [
        ("/v1" + path, body) for path, body in sent]
