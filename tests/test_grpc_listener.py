"""The gRPC listener as an operator runs it: the README's quick-start as written, SIGTERM drain,
--workers sharing the port, TLS with a configured certificate, the mock's gRPC face on its own."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid

import grpc
import pytest
from xai_sdk import Client
from xai_sdk.chat import user
from xai_sdk.proto import chat_pb2, chat_pb2_grpc, models_pb2_grpc
from google.protobuf import empty_pb2

from tests import servers
from tests.mock_helpers import start_mock

MODEL = "grok-4.20-non-reasoning"
KESTREL = ("Once upon a time, the small ship Kestrel drifted past the rings of Saturn, its crew of three "
           "listening to the hum of the engines. They were home.")  # recordings/story.jsonl


def story_request() -> chat_pb2.GetCompletionsRequest:
    return chat_pb2.GetCompletionsRequest(model=MODEL, messages=[chat_pb2.Message(
        role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="Write a short story about a space adventure")])])


def test_readme_grpc_quick_start_runs_as_written(tmp_path):
    readme = open(os.path.join(servers.ROOT, "README.md")).read()
    start = readme.index("<!-- grpc-quick-start -->")
    code = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'api_host="127.0.0.1:8001"' in code
    g = servers.start_gateway(str(tmp_path), None, upstream_key=None)  # the newcomer's path: the bundled mock
    try:
        assert g.stdout.splitlines()[0] == "gRPC listening on %s (upstream %s)" % (
            g.grpc, g.stdout.splitlines()[0].rsplit("upstream ", 1)[1][:-1])
        key = servers.add_key(os.path.join(str(tmp_path), "keys.json"), "quick")
        script = "KEY = %r\n" % key + textwrap.dedent(code).replace("127.0.0.1:8001", g.grpc)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout == KESTREL + "\n"
    finally:
        g.stop()


def test_sigterm_lets_an_open_stream_finish(make_gateway):
    gateway, key = make_gateway({"drain_seconds": 30})
    metadata = (("authorization", "Bearer " + key), ("x-mock-scenario", "story"), ("x-mock-speed", "1"))
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        stream = stub.GetCompletionChunk(story_request(), metadata=metadata)
        first = next(stream)
        gateway.signal(signal.SIGTERM)
        rest = list(stream)  # recorded at 40 ms a chunk: the drain lets it end
        assert "".join(c.outputs[0].delta.content for c in [first] + rest if c.outputs) == KESTREL
        assert rest[-1].usage.total_tokens == 34
    assert gateway.wait(30) == 0
    assert "tornado_grok stopped" in gateway.stdout


def test_workers_share_the_grpc_port(make_gateway):
    gateway, key = make_gateway({"workers": 2})
    servers.wait_until(lambda: gateway.stdout.count("gRPC listening on %s " % gateway.grpc) == 2, timeout=20)
    client = Client(api_key=key, api_host=gateway.grpc, use_insecure_channel=True)
    for _ in range(6):
        assert [m.name for m in client.models.list_language_models()] == ["grok-4.20-non-reasoning", "grok-4.3"]
    gateway.stop_gracefully()
    assert gateway.proc.returncode == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (apt-get install openssl)")
def test_tls_when_a_certificate_is_configured(make_gateway, tmp_path):
    cert, key_file = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key_file, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    gateway, key = make_gateway({"grpc_tls_cert": cert, "grpc_tls_key": key_file})
    credentials = grpc.ssl_channel_credentials(root_certificates=open(cert, "rb").read())
    with grpc.secure_channel(gateway.grpc, credentials) as channel:
        models = models_pb2_grpc.ModelsStub(channel).ListLanguageModels(
            empty_pb2.Empty(), metadata=(("authorization", "Bearer " + key),), timeout=10)
    assert [m.name for m in models.models] == ["grok-4.20-non-reasoning", "grok-4.3"]
    with grpc.insecure_channel(gateway.grpc) as channel:  # plaintext is not served on a TLS port
        with pytest.raises(grpc.RpcError) as e:
            models_pb2_grpc.ModelsStub(channel).ListLanguageModels(empty_pb2.Empty(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_mock_alone_serves_xai_sdk_with_its_journal():
    with start_mock("--speed", "0", "--require-key", "xai-mock-key-123456") as mock:
        test_id = uuid.uuid4().hex
        client = Client(api_key="xai-mock-key-123456", api_host=mock.grpc, use_insecure_channel=True,
                        metadata=(("x-mock-test-id", test_id),))
        chat = client.chat.create(model=MODEL)
        chat.append(user("Write a short story about a space adventure"))
        assert chat.sample().content == KESTREL
        entry = mock.wait_ended(test_id=test_id)
        assert (entry["method"], entry["path"], entry["scenario"], entry["ended"]) == (
            "GRPC", "/xai_api.Chat/GetCompletion", "story", "complete")
        wrong = Client(api_key="xai-wrong-key-0000000", api_host=mock.grpc, use_insecure_channel=True)
        with pytest.raises(grpc.RpcError) as e:
            wrong.models.list_language_models()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert e.value.details().startswith("Incorrect API key provided: xai-…0000.")


def test_a_grpc_port_in_use_is_one_line_and_exit_2(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TG_") and k != "XAI_API_KEY"}
        out = subprocess.run([sys.executable, "run.py", "--port", "0", "--grpc-port", str(port),
                              "--keys-file", str(tmp_path / "keys.json")],
                             cwd=servers.ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert ("run.py: configuration error: cannot listen for gRPC on 127.0.0.1:%d (in use?): set grpc_port "
            "(--grpc-port), or grpc_enabled = false\n" % port) in out.stderr
    assert "Traceback" not in out.stderr
