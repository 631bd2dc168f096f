"""xAI's generated protobuf modules, the ones xai-sdk ships as `xai_sdk.proto`, imported without the
SDK: `from tornado_grok.xai_proto import chat_pb2`.

`import xai_sdk.proto` runs xai_sdk/__init__.py, which imports the whole SDK (its sync and async
clients, aiohttp, opentelemetry): about 0.5 s of CPU in every process that only needs the messages
(each gateway and mock start). This package's path is the SDK's folder of generated modules instead
(v5 under protobuf 5, else v6, as xai_sdk.proto chooses), found without importing the SDK. They are
the same files and register the same descriptors, so a process that also imports xai_sdk (a test
with the SDK's client) sees one set of message types.
"""

import importlib.util
import os

import google.protobuf


def _folder() -> str:
    spec = importlib.util.find_spec("xai_sdk")  # finds the package; does not import it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("xai-sdk is not installed (pip install -r requirements.txt): the gRPC side needs "
                          "the protobuf modules it ships")
    version = "v5" if google.protobuf.__version__.split(".", 1)[0] == "5" else "v6"
    return os.path.join(list(spec.submodule_search_locations)[0], "proto", version)


__path__ = [_folder()]
