"""POST /v1/responses (streamed or whole), GET and DELETE /v1/responses/{id}: the Responses API.

Scenario selection, faults and the journal work as for chat (handlers/chat.py); a scenario NAME
means the recording `responses_NAME` here (`X-Mock-Scenario: story` plays responses_story.jsonl),
or an API-neutral one (the http_4xx/5xx error recordings). Every answered response is stored
for GET/DELETE; `previous_response_id` must name a stored one (else 404, as xAI answers).
"""

import json

from mock_upstream import faults, responses
from mock_upstream.handlers.base import ApiHandler, XaiError
from mock_upstream.plan import Plan, dumps
from mock_upstream.scenarios import ScenarioError


class ResponsesHandler(ApiHandler):
    """Streams typed events (`"stream": true`) or answers one Response, as the chosen scenario says."""

    async def post(self):
        body = self.json_body()
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise XaiError(400, "Missing required field: model")
        value = body.get("input")
        if not isinstance(value, (str, list)) or not value:
            raise XaiError(400, "input must be a non-empty string or array")
        previous = body.get("previous_response_id")
        if previous is not None and (not isinstance(previous, str) or self.mock.responses.get(previous) is None):
            raise XaiError(404, f"Previous response with id '{previous}' not found.")
        runtime = self.mock.faults.take(self.test_id)
        try:
            scenario = self.mock.registry.select(self.request.headers, body, runtime.scenario if runtime else None,
                                                 api="responses")
        except ScenarioError as e:
            raise XaiError(400, str(e)) from None
        self.entry["scenario"] = scenario.name
        plan = self.build(scenario, body)
        plan.api = "responses"
        await self.play(faults.apply(plan, faults.merge(scenario.fault, runtime)))

    def build(self, scenario, body: dict) -> Plan:
        stream = bool(body.get("stream"))
        if scenario.recording is not None:
            recording = scenario.recording
            plan = recording.plan(body["model"], stream, False)
            if recording.api == "responses" and recording.body and body.get("store", True) is not False:
                stored = json.loads(recording.plan(body["model"], False, False).body)
                self.mock.responses.put(stored, recording.steps(dumps(body["model"]), False))
            return plan
        if scenario.generator == "synthetic":
            return responses.synthetic(body)
        plan, stored, steps = responses.default_answer(body, f"resp_mock_{self.entry['seq']}")
        if body.get("store", True) is not False:
            self.mock.responses.put(stored, steps)
        return plan


class ResponseHandler(ApiHandler):
    """A stored response: GET (whole, or its events again with `?stream=true&starting_after=N`), DELETE."""

    async def get(self, response_id):
        found = self.mock.responses.get(response_id)
        if found is None:
            raise XaiError(404, f"Response with id '{response_id}' not found.")
        stored, steps = found
        if self.get_query_argument("stream", "false") != "true":
            return await self.answer_or_fault(dumps(stored))
        after = self.get_query_argument("starting_after", None)
        if after is not None and not (after.isascii() and after.isdigit() and len(after) <= 18):
            raise XaiError(400, "starting_after must be a non-negative integer")
        plan = Plan(200, {"Content-Type": "text/event-stream"}, True,
                    steps=responses.after(steps, int(after) if after is not None else None), api="responses")
        await self.play(faults.apply(plan, self.mock.faults.take(self.test_id)))

    async def delete(self, response_id):
        if not self.mock.responses.delete(response_id):
            raise XaiError(404, f"Response with id '{response_id}' not found.")
        await self.answer_or_fault(dumps({"id": response_id, "object": "response", "deleted": True}))


default_handlers = [(r"/v1/responses", ResponsesHandler), (r"/v1/responses/([^/]+)", ResponseHandler)]
