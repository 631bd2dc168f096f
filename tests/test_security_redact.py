"""The two tools of tornado_grok/redact.py, as a table (the wire tests are tests/test_security_*.py)."""

import pytest

from tornado_grok.redact import REDACTED, loggable, scrub

KEY = "xai-Zq9fT3kLmN8pQ2rS5tUv7wXy1zAbCdEfGhIjKlMnOp"
CLIENT = "tg-PH7kFTmrbZvlmyYACstpPoZUYfugPHY3D_KTCn6wDmM"


@pytest.mark.parametrize("text,expected", [
    ("Incorrect API key provided: " + KEY, "Incorrect API key provided: " + REDACTED),
    ("Bearer " + KEY + ".", "Bearer " + REDACTED + "."),
    ("short " + KEY[:-1] + " and " + KEY[1:], "short %s and %s" % (REDACTED, REDACTED)),
    (KEY[:20] + "#" + KEY[20:], REDACTED + "#" + REDACTED),
    ("a piece " + KEY[5:17] + " ok", "a piece " + REDACTED + " ok"),
    ("eleven " + KEY[5:16] + " stays", "eleven " + KEY[5:16] + " stays"),  # under 12 characters: not a leak
    ("x" * 5000 + KEY + "y", "x" * 5000 + REDACTED + "y"),  # the long-text path
    ("nothing here", "nothing here"),
    ("", ""),
])
def test_scrub(text, expected):
    assert scrub(text, (KEY,)) == expected


@pytest.mark.parametrize("value,expected", [
    ("grok-4-1-fast-non-reasoning", "grok-4-1-fast-non-reasoning"),
    ("550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"),
    ("7ab7facf86894e54bd7b707a856476e7", "7ab7facf86894e54bd7b707a856476e7"),
    ("ft:grok-3:my-org:custom:abc123", "ft:grok-3:my-org:custom:abc123"),
    (CLIENT, "tg-P…"),
    (CLIENT[:-1], "tg-P…"),
    ("Bearer " + CLIENT, "Bearer tg-P…"),
    ("/api/v1/models/" + CLIENT, "/api/v1/models/tg-P…"),
    (CLIENT[:14].lower(), CLIENT[:14].lower()),  # not a piece of the key once lowercased
    ("model " + CLIENT[3:17], "model " + REDACTED),  # too short to look like a key, but a piece of this one
    ("x" * 300, "x" * 200 + "…(300 chars)"),
    (7, "7"),
])
def test_loggable(value, expected):
    assert loggable(value, (CLIENT, KEY)) == expected


def test_the_log_filter_keeps_tracebacks_readable_and_masks_keys():
    import logging

    from tornado_grok.redact import LogFilter
    record = logging.LogRecord("tornado.general", logging.INFO, __file__, 1,
                               "StreamClosedError in CurlAsyncHTTPClient: Invalid header value %r",
                               ("Bearer " + CLIENT + " " + KEY,), None)
    LogFilter((KEY,)).filter(record)
    assert record.getMessage() == "StreamClosedError in CurlAsyncHTTPClient: Invalid header value 'Bearer tg-P… xai-…'"


def test_a_placeholder_upstream_key_of_a_few_characters_is_not_scrubbed_from_text():
    """XAI_API_KEY=k against a local mock: the access log keeps its letters (it said "[redacted]ey")."""
    from tornado_grok.upstream import UpstreamClient
    short = UpstreamClient("http://127.0.0.1:9/v1", "k")
    real = UpstreamClient("http://127.0.0.1:9/v1", "xai-" + "a" * 20)
    try:
        assert short.secrets == () and real.secrets == ("xai-" + "a" * 20,)
    finally:
        short.close()
        real.close()
