"""The user's document's three examples, run as written with only the URL and the key swapped."""

import contextlib
import io
import json
import re
import subprocess

from tests import needs
from tests.wire import SEED_PROMPT, chat_body, contents, direct, post

SDK_EXAMPLE = '''
import os
from openai import OpenAI

# Set up client
client = OpenAI(
    api_key="your_api_key",
    base_url="https://your-api-domain.com/api/v1"  # Point to your API server
)

# Create a streaming completion
stream = client.chat.completions.create(
    model="grok-4-1-fast-non-reasoning",
    messages=[
        {"role": "user", "content": "Write a short story about a space adventure"}
    ],
    stream=True  # Enable streaming
)

# Print each chunk as it arrives
for chunk in stream:
    if chunk.choices[0].delta.content is not None:
        print(chunk.choices[0].delta.content, end="", flush=True)
'''

REQUESTS_EXAMPLE = '''
import requests
import json

API_KEY = "your_api_key"
API_URL = "https://your-api-domain.com/api/v1/chat/completions"

headers = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
    "Accept": "text/event-stream"
}

data = {
    "model": "grok-4-1-fast-non-reasoning",
    "messages": [
        {"role": "user", "content": "Write a short story about a space adventure"}
    ],
    "stream": True
}

# Make the request with streaming enabled
response = requests.post(API_URL, headers=headers, json=data, stream=True)

# Process the streaming response
for line in response.iter_lines():
    if line:
        line = line.decode('utf-8')
        # SSE format is "data: {...}"
        if line.startswith('data: '):
            if line.strip() == 'data: [DONE]':
                break
            json_str = line[6:]  # Remove 'data: ' prefix
            try:
                chunk = json.loads(json_str)
                content = chunk['choices'][0]['delta'].get('content', '')
                if content:
                    print(content, end='', flush=True)
            except json.JSONDecodeError:
                continue
'''

CURL_EXAMPLE = '''curl -X POST https://your-api-domain.com/api/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer your_api_key" \\
  -d '{
    "model": "grok-4-1-fast-non-reasoning",
    "messages": [
      {"role": "user", "content": "Write a short story about a space adventure"}
    ],
    "stream": true
  }'
'''


def swap(code: str, gateway, key: str) -> str:
    return code.replace("https://your-api-domain.com/api/v1", gateway.base).replace("your_api_key", key)


def expected_story(mock) -> str:
    """What the mock answers the seed's prompt, read straight from it."""
    text = contents(direct(mock, chat_body(model="grok-4.20-non-reasoning")).content)
    assert len(text) > 20
    return text


def run_python(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<seed example>", "exec"), {"__name__": "seed_example"})
    return out.getvalue()


def test_openai_sdk_example(gateway, key, mock):
    assert run_python(swap(SDK_EXAMPLE, gateway, key)) == expected_story(mock)


def test_requests_example(gateway, key, mock):
    assert run_python(swap(REQUESTS_EXAMPLE, gateway, key)) == expected_story(mock)


def test_curl_example(gateway, key, mock, headers):
    needs.program("curl", "apt-get install curl")
    out = subprocess.run(["bash", "-c", swap(CURL_EXAMPLE, gateway, key)],
                         capture_output=True, timeout=60, check=True).stdout
    assert out.endswith(b"data: [DONE]\n\n")
    assert contents(out) == expected_story(mock)
    # curl sees exactly the bytes any other client sees (but for the per-request completion id).
    other = post(gateway.base + "/chat/completions", json.loads(
        CURL_EXAMPLE.split("-d '")[1].rsplit("'", 1)[0]), headers).content
    same_id = re.compile(rb'"id":"chatcmpl-[^"]*"')
    assert same_id.sub(b'"id":""', out) == same_id.sub(b'"id":""', other)
    assert SEED_PROMPT in CURL_EXAMPLE
