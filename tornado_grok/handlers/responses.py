"""The Responses API: POST /api/v1/responses (streamed or whole), GET and DELETE /api/v1/responses/{id}.

Relayed to the upstream's /v1/responses through the same relay as chat (with ResponsesDialect),
so keys, limits, accounting, timeouts, keep-alives, backpressure and disconnects behave the same.
"""

import re

from .. import response_failures, validate
from ..dialects import ResponsesDialect
from ..ownership import RESPONSE
from ..relay import StreamRelay
from ..upstream import join_path
from . import streams
from .base import APIHandler, dumps
from .fallback import answer_response_whole

_INCLUDE = re.compile(r"^[A-Za-z0-9_.]{1,100}$")


def response_path(upstream_id: str) -> str:
    """The upstream path of a stored response: the upstream's id (validate.path_id checked it) escaped
    (upstream.join_path)."""
    return join_path("responses", upstream_id)


class ResponsesHandler(APIHandler):
    """POST /responses: a stream of typed events when the body says `"stream": true`, else JSON."""

    async def post(self) -> None:
        body = await self.begin()
        validate.responses(body)
        asked = body["model"]
        sent = self.config.aliases.get(asked, asked)
        body["model"] = sent
        self.log_fields["model"] = asked
        owner = self.owner()
        if body.get("previous_response_id") is not None:
            # Another key's response, or one the gateway never issued, is unknown: a 404 from here.
            # A chain stays with the upstream (and key) that made it: the request goes there.
            body["previous_response_id"] = self.locate(RESPONSE, body["previous_response_id"], "previous response")
        streamed = body.get("stream") is True
        if validate.responses_has_image(body):
            await answer_response_whole(self, body, asked, streamed)
        elif streamed and streams.wants_resumable(self):
            await streams.start(self, ResponsesDialect(owner), asked, sent, dumps(body))
        elif streamed:
            self.relay = relay = StreamRelay(self, self.gateway, asked, sent, ResponsesDialect(owner))
            await relay.run(dumps(body), self.forward_headers())
        else:
            result = await self.fetch_whole("POST", "/responses", body)
            result = response_failures.scrub_body(result, self.gateway.upstream.secrets)
            if isinstance(result, dict) and "model" in result:
                result["model"] = asked
            owner.issue_response(result)
            self.account(result.get("usage") if isinstance(result, dict) else None, "completed")
            self.write_json(result)


class ResponseHandler(APIHandler):
    """GET /responses/{id} (with `?stream=true&starting_after=N`, its events again) and DELETE."""

    async def get(self, response_id: str) -> None:
        query = self.upstream_query()
        owner = self.owner()
        # Only this key's own ids: another key's, or one never issued, is a 404 the upstream never sees.
        path = response_path(self.locate(RESPONSE, response_id, "response"))  # and its upstream
        if query.get("stream") == "true" and await streams.serve_response(
                self, response_id, int(query.get("starting_after", -1))):
            return  # a resumable stream of this key: served from the stream store
        await self.begin_without_body()
        if query.get("stream") == "true":
            self.relay = relay = StreamRelay(self, self.gateway, "", "", ResponsesDialect(owner))
            await relay.run(None, self.forward_headers(), "GET", path, query)
        else:
            result = await self.fetch_whole("GET", path, query=query)
            result = response_failures.scrub_body(result, self.gateway.upstream.secrets)
            owner.issue_response(result)
            self.account(None, "completed")
            self.write_json(result)

    async def delete(self, response_id: str) -> None:
        owner = self.owner()
        path = response_path(self.locate(RESPONSE, response_id, "response"))  # and its upstream
        await self.begin_without_body()
        result = await self.fetch_whole("DELETE", path)
        owner.issue_response(result)
        self.account(None, "completed")
        self.write_json(result)

    async def begin_without_body(self) -> None:
        await self.admit()

    def upstream_query(self) -> dict:
        """The query parameters the upstream gets: only those the Responses API defines, checked."""
        query = {}
        stream = self.get_query_argument("stream", None)
        if stream is not None:
            if stream not in ("true", "false"):
                raise validate.bad("query parameter 'stream' must be true or false")
            query["stream"] = stream
        after = self.get_query_argument("starting_after", None)
        if after is not None:
            query["starting_after"] = str(validate.ascii_int(after, "query parameter 'starting_after'", 12))
        include = self.get_query_arguments("include") + self.get_query_arguments("include[]")
        for value in include:
            if not _INCLUDE.match(value):
                raise validate.bad("query parameter 'include' has an invalid value")
        if include:
            query["include"] = include
        return query

    def account(self, usage, outcome) -> None:
        # Tokens are counted when a response is made (POST); reading it again is a request, not tokens.
        super().account(None, outcome)


default_handlers = [
    (r"/api/v1/responses", ResponsesHandler),
    (r"/api/v1/responses/(?P<response_id>[^/]+)", ResponseHandler),
]
