"""The failover table (upstreams.classify) and how long an upstream asked to be left alone
(upstreams.retry_after_seconds): the two small tables the pool decides with, row by row."""

import email.utils
import time

import pytest
from tornado.httputil import HTTPHeaders

from tornado_grok import errors
from tornado_grok.upstreams import classify, retry_after_seconds


@pytest.mark.parametrize("status,errno,cancelled,stalled,kind", [
    (429, 0, False, False, "status_429"),
    (500, 0, False, False, "status_500"),
    (502, 0, False, False, "status_502"),
    (503, 0, False, False, "status_503"),
    (504, 0, False, False, "status_504"),
    (0, errors.CURLE_COULDNT_CONNECT, False, False, "connect"),
    (0, errors.CURLE_COULDNT_RESOLVE_HOST, False, False, "connect"),
    (0, errors.CURLE_OPERATION_TIMEDOUT, False, False, "timeout"),
    (0, errors.CURLE_GOT_NOTHING, False, False, "transport"),
    (0, errors.CURLE_RECV_ERROR, False, False, "transport"),
    (0, errors.CURLE_ABORTED_BY_CALLBACK, True, True, "first_event_timeout"),
    # No other upstream would answer these differently, or the gateway itself ended the attempt:
    (0, errors.CURLE_ABORTED_BY_CALLBACK, True, False, None),
    (200, 0, False, False, None),
    (200, errors.CURLE_PARTIAL_FILE, False, False, None),  # a body that broke after the status
    (400, 0, False, False, None),
    (401, 0, False, False, None),
    (404, 0, False, False, None),
    (413, 0, False, False, None),
    (501, 0, False, False, None),
])
def test_which_failures_fail_over(status, errno, cancelled, stalled, kind):
    assert classify(status, errno, cancelled, stalled) == kind


def headers(**values) -> HTTPHeaders:
    h = HTTPHeaders()
    for name, value in values.items():
        h[name.replace("_", "-")] = value
    return h


@pytest.mark.parametrize("given,seconds", [
    ({"Retry_After": "7"}, 7.0),
    ({"Retry_After": "0"}, 0.0),
    ({"Retry_After": "1.5"}, 1.5),
    ({"retry_after_ms": "250"}, 0.25),
    ({"retry_after_ms": "250", "Retry_After": "9"}, 0.25),  # the finer one first, as the SDKs read it
    ({"Retry_After": "99999"}, 3600.0),  # capped at an hour
    ({"x_ratelimit_reset_requests": "1s", "x_ratelimit_reset_tokens": "6m0s"}, 360.0),
    ({"x_ratelimit_reset_requests": "20ms"}, 0.02),
    ({"Retry_After": "soon"}, None),
    ({"x_ratelimit_reset_requests": "1x"}, None),
    ({}, None),
])
def test_how_long_an_upstream_asked_to_wait(given, seconds):
    assert retry_after_seconds(headers(**given)) == seconds


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 60 <= retry_after_seconds(headers(Retry_After=when)) <= 120  # a date 120 s ahead, parsed
