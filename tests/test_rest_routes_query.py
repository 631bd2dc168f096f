"""A GET row of the route table (tornado_grok/routes.py) called with a query string reaches the
upstream without it (docs/api.md: "query strings are not forwarded"), seen in the mock's journal."""

import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests.mock_helpers import mock_headers
from tests.wire import bind
from tornado_grok import routes

GET_ROWS = [row for row in routes.ROUTES if row.method == "GET"]
IDS = {"model": "grok-4.20-non-reasoning", "request_id": "req_query_test"}


def fill(template: str, gateway=None, key=None) -> str:
    """The row's path with its ids; with a gateway and key, an owned id as the gateway hands it out."""
    for name, value in IDS.items():
        if gateway is not None and name in routes.OWNED:
            value = bind(gateway, key, routes.OWNED[name][0], value)
        template = template.replace("{%s}" % name, value)
    return template


@pytest.mark.parametrize("row", GET_ROWS, ids=[row.path for row in GET_ROWS])
def test_a_get_row_reaches_the_upstream_without_the_query_string(gateway, key, mock, row):
    test_id = "query-" + uuid.uuid4().hex[:8]
    url = gateway.base + fill(row.path, gateway, key) + "?limit=5&after=x&starting_after=3&api-key=leak"
    requests.get(url, headers=hh.auth(key, **mock_headers(test_id=test_id)), timeout=30)
    assert [(e["method"], e["path"]) for e in mock.journal(test_id=test_id)] == [("GET", "/v1" + fill(row.upstream))]
