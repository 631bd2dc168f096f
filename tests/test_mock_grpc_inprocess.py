"""The in-process mock (mock_upstream.testing.MockServer, what the grok_mock pytest fixture runs)
serves xAI's gRPC API beside its HTTP routes, with one journal for both."""

from xai_sdk import Client
from xai_sdk.chat import user

from mock_upstream.testing import MockServer


def test_mock_server_gives_its_grpc_address_and_journals_grpc_calls():
    with MockServer(speed=0) as mock:
        client = Client(api_key="xai-any", api_host=mock.grpc_address, use_insecure_channel=True,
                        metadata=(("x-mock-test-id", "inproc-grpc"),))
        chat = client.chat.create(model="mock-model")
        chat.append(user("hello [mock:reasoning]"))
        response = chat.sample()
        assert response.reasoning_content and response.content
        entry = mock.wait_ended(test_id="inproc-grpc")
        assert (entry["method"], entry["path"], entry["scenario"], entry["ended"]) == (
            "GRPC", "/xai_api.Chat/GetCompletion", "reasoning", "complete")
        assert entry["body"]["messages"] == [{"role": "user", "content": "hello [mock:reasoning]"}]
