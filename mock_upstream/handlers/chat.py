"""POST /v1/chat/completions: choose a scenario, build its plan, apply faults, play it."""

from mock_upstream import faults, generated
from mock_upstream.handlers.base import ApiHandler, XaiError
from mock_upstream.plan import dumps
from mock_upstream.scenarios import ScenarioError


class ChatCompletionsHandler(ApiHandler):
    """Streams (`"stream": true`) or answers one chat.completion, as the chosen scenario says."""

    async def post(self):
        body = self.json_body()
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise XaiError(400, "Missing required field: model")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise XaiError(400, "messages must be a non-empty array")
        if body.get("deferred") is True:
            # xAI's deferred request: the id to fetch the result with (handlers/rest.py answers it).
            return await self.answer_or_fault(dumps({"request_id": f"deferred_mock_{self.entry['seq']}"}))
        runtime = self.mock.faults.take(self.test_id)
        try:
            scenario = self.mock.registry.select(self.request.headers, body, runtime.scenario if runtime else None)
        except ScenarioError as e:
            raise XaiError(400, str(e)) from None
        self.entry["scenario"] = scenario.name
        fault = faults.merge(scenario.fault, runtime)
        await self.play(faults.apply(self.build(scenario, body, batch=fault is None), fault))

    def build(self, scenario, body: dict, batch: bool):
        if scenario.recording is not None:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return scenario.recording.plan(body["model"], bool(body.get("stream")), include_usage)
        if scenario.generator == "synthetic":
            return generated.synthetic(body, batch=batch)
        if scenario.generator == "paced":
            return generated.paced(body, scenario.pacing, f"chatcmpl-mock-{self.entry['seq']}")
        return generated.default_answer(body, f"chatcmpl-mock-{self.entry['seq']}")


default_handlers = [(r"/v1/chat/completions", ChatCompletionsHandler)]
