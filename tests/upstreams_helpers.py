"""A gateway in front of several bundled mocks, each as a named upstream with a key of its own.

    mocks = {"a": start_mock("--speed", "0", "--require-key", KEYS["a"]), ...}
    g, key = start_pool(tmp_dir, [upstream("a", mocks["a"], weight=1000), upstream("b", mocks["b"])],
                        {"circuit_failures": 1000})
    r = chat(g, key, test_id="t1")              # X-Mock-Test-Id: t1 reaches every mock
    seen(mocks["a"], "t1")                      # what mock a received for t1

Every mock is started with --require-key: a call that reached it with another upstream's key would
be a 401, so every 200 shows that each upstream got its own key. No fixed ports, no sleeps.
"""

import os
import socket
import sys
import uuid

import requests

from tests import servers
from tests.mock_helpers import start_mock

KEYS = {name: "xai-%s-%s-key" % (name, uuid.uuid4().hex) for name in ("a", "b", "c")}
KEY_ENV = {name: "TG_TEST_UPSTREAM_KEY_" + name.upper() for name in KEYS}


def closed_port_url() -> str:
    """The /v1 URL of a loopback port nobody listens on (bound, then closed: connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d/v1" % port


def upstream(name: str, mock=None, url: str | None = None, **fields) -> dict:
    item = {"name": name, "url": url or mock.base, "key_env": KEY_ENV.get(name, KEY_ENV["a"])}
    item.update(fields)
    return item


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"')


def write_pool_config(path: str, upstreams: list, settings: dict | None = None) -> str:
    servers.write_config(path, dict({"forward_mock_headers": True}, **(settings or {})))
    with open(path, "a") as f:
        for item in upstreams:
            f.write("\n[[upstreams]]\n")
            for name, value in item.items():
                f.write("%s = %s\n" % (name, toml_value(value)))
    return path


def pool_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_") and k != "XAI_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({KEY_ENV[name]: key for name, key in KEYS.items()})
    return env


def start_pool(tmp_dir: str, upstreams: list, settings: dict | None = None):
    """A gateway (run.py, a free port) with this [[upstreams]] list; returns (gateway, client key)."""
    os.makedirs(tmp_dir, exist_ok=True)
    config = write_pool_config(os.path.join(tmp_dir, "gateway.toml"), upstreams, settings)
    keys = os.path.join(tmp_dir, "keys.json")
    key = servers.add_key(keys, "pool")
    argv = [sys.executable, "run.py", "--port", "0", "--config", config, "--keys-file", keys]
    return servers.Gateway(argv, pool_env()), key


def headers(key: str, test_id: str | None = None, stream: bool = False) -> dict:
    h = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    if stream:
        h["Accept"] = "text/event-stream"
    if test_id:
        h["X-Mock-Test-Id"] = test_id
    return h


def chat(gateway, key: str, test_id: str | None = None, stream: bool = False, session=None, **body):
    payload = dict({"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}]}, **body)
    if stream:
        payload["stream"] = True
    return (session or requests).post(gateway.base + "/chat/completions", json=payload,
                                      headers=headers(key, test_id, stream), timeout=60)


def seen(mock, test_id: str) -> list:
    """The requests `mock` received for test_id, oldest first."""
    return mock.journal(test_id=test_id)


def stream_text(body: bytes) -> str:
    """The content of a chat stream's chunks, joined (and whether it ended with [DONE])."""
    import json
    text = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            obj = json.loads(line[6:])
            for choice in obj.get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)



def two_mocks():
    """Mocks "a" and "b", each requiring its own key (KEYS): a module fixture's body
    (`yield from two_mocks()`), stopped after the module."""
    started = {name: start_mock("--speed", "0", "--require-key", KEYS[name]) for name in ("a", "b")}
    yield started
    for m in started.values():
        m.stop()
