"""start() serves the mock on the caller's IOLoop, as the gateway's run.py uses it."""

import asyncio
import json

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from mock_upstream import recordings, start


def test_start_in_process_replays_story_and_404s_unknown_paths():
    async def scenario():
        server, port = start(0, "127.0.0.1", speed=0)
        try:
            client = AsyncHTTPClient()
            base = f"http://127.0.0.1:{port}"
            body = {"model": "inproc", "stream": True, "messages": [{"role": "user", "content": "[mock:story]"}]}
            r = await client.fetch(base + "/v1/chat/completions", method="POST", body=json.dumps(body),
                                   headers={"Authorization": "Bearer k"})
            want = b"".join(s.data for s in recordings.load_all()["story"].plan("inproc", True, False).steps)
            assert r.body == want
            try:
                await client.fetch(base + "/v1/nothing-here", headers={"Authorization": "Bearer k"})
            except HTTPClientError as e:
                assert e.code == 404 and set(json.loads(e.response.body)) == {"code", "error"}
            else:
                raise AssertionError("expected a 404")
            app_state = server.request_callback.settings["mock"]
            # The 404 is journaled too, so tests can see that a request went somewhere it should not.
            assert [(e["scenario"], e["path"], e["status"]) for e in app_state.journal.entries()] == [
                ("story", "/v1/chat/completions", 200), (None, "/v1/nothing-here", 404)]
        finally:
            server.stop()

    asyncio.run(scenario())
