"""The admin API under /_mock/ (no auth): health, scenarios, journal, runtime faults."""

import json

from tornado.web import RequestHandler

from mock_upstream.faults import FaultError, describe, parse_fault
from mock_upstream.journal import public_headers
from mock_upstream.plan import code_for, dumps, error_body


class AdminHandler(RequestHandler):
    """JSON in, JSON out; errors as {"code", "error"} like the rest of the mock."""

    def initialize(self, mock):
        self.mock = mock

    def reply(self, obj, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(obj))

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(code_for(status_code), self._reason))

    def fail(self, status: int, message: str) -> None:
        self.set_status(status, reason=message)
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(code_for(status), message))

    def number(self, name: str, default=None):
        value = self.get_query_argument(name, None)
        if value is None:
            return default
        try:
            return float(value) if name == "timeout" else int(value)
        except ValueError:
            return None


class HealthHandler(AdminHandler):
    def get(self):
        self.reply({"ok": True, "scenarios": len(self.mock.registry.scenarios)})


class ScenariosHandler(AdminHandler):
    def get(self):
        rows = []
        for name in self.mock.registry.names():
            s = self.mock.registry.get(name)
            kind = s.recording.kind if s.recording else "generator"
            rows.append({"name": name, "description": s.description, "kind": kind,
                         "api": s.recording.api if s.recording else "any",
                         "fault": describe(s.fault) if s.fault else None})
        self.reply({"scenarios": rows, "names": [r["name"] for r in rows]})


class JournalHandler(AdminHandler):
    def get(self):
        self.reply({"entries": self.mock.journal.entries(self.get_query_argument("test_id", None))})

    def delete(self):
        self.mock.journal.clear()
        self.reply({"ok": True})


class JournalWaitHandler(AdminHandler):
    """Long-poll until entry `seq` (or the latest) exists, and has ended with `ended=1`."""

    async def get(self):
        seq = self.number("seq")
        timeout = self.number("timeout", 5.0)
        if (self.get_query_argument("seq", None) is not None and seq is None) or timeout is None:
            return self.fail(400, "seq must be an integer and timeout a number")
        ended = self.get_query_argument("ended", "0") not in ("0", "", "false")
        entry, reached = await self.mock.journal.wait(seq, ended, min(timeout, 600.0),
                                                      self.get_query_argument("test_id", None))
        if reached:
            return self.reply({"ok": True, "entry": entry})
        self.set_status(408)
        self.reply({"ok": False, "code": code_for(408), "error": "timed out waiting for the journal", "entry": entry}, 408)


class FaultsHandler(AdminHandler):
    """POST {"test_id", "fault", "times"?}; DELETE ?test_id= (all without it); GET lists them."""

    def get(self):
        self.reply({"faults": self.mock.faults.snapshot()})

    def post(self):
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            return self.fail(400, "body must be JSON")
        if not isinstance(body, dict) or not isinstance(body.get("test_id"), str) or not body["test_id"]:
            return self.fail(400, 'body must be {"test_id": "...", "fault": {...}, "times": N?}')
        times = body.get("times")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            return self.fail(400, "times must be a positive integer")
        try:
            fault = parse_fault(body.get("fault", {}))
        except FaultError as e:
            return self.fail(400, f"fault: {e}")
        if fault.scenario is not None and fault.scenario not in self.mock.registry.scenarios:
            return self.fail(400, f"unknown scenario {fault.scenario!r}")
        self.mock.faults.set(body["test_id"], fault, times)
        self.reply({"ok": True, "test_id": body["test_id"], "fault": describe(fault), "times": times})

    def delete(self):
        self.mock.faults.clear(self.get_query_argument("test_id", None))
        self.reply({"ok": True})


class NotFoundHandler(AdminHandler):
    """Any other path: xAI's 404 body."""

    def prepare(self):
        if not self.request.path.startswith("/_mock/"):
            # Journaled like any API request, so a test can tell that nothing reached an unknown path.
            entry = self.mock.journal.add(self.request.method, self.request.uri, public_headers(self.request.headers),
                                          None, self.request.headers.get("X-Mock-Test-Id"))
            entry["status"] = 404
            self.mock.journal.end(entry, "complete")
        self.fail(404, f"No route for {self.request.method} {self.request.path}")


default_handlers = [
    (r"/_mock/healthz", HealthHandler),
    (r"/_mock/scenarios", ScenariosHandler),
    (r"/_mock/journal", JournalHandler),
    (r"/_mock/journal/wait", JournalWaitHandler),
    (r"/_mock/faults", FaultsHandler),
]
