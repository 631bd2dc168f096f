"""The gRPC methods the gateway relays: an allowlist, as data (the gRPC counterpart of routes.py).

Each row names a method of xAI's public API, whether it streams, and the generated protobuf classes
(xai_proto: the modules xai-sdk ships, pinned in requirements.txt) of its request and response: the relay parses a request
once (model alias, ids) and a unary answer once (model, ids, usage), and never a stream's messages
but its first and last. Anything not in the table is UNIMPLEMENTED, the services that describe or
manage the operator's key or account (`xai_api.Auth/get_api_key_info`, the management API) above
all, like `/v1/api-key` in the REST table; so are files, batches, collections and video, which this
gateway does not relay.
"""

from dataclasses import dataclass

from google.protobuf import empty_pb2
from .xai_proto import chat_pb2, deferred_pb2, embed_pb2, image_pb2, models_pb2, sample_pb2, tokenize_pb2

from .ownership import DEFERRED, RESPONSE


@dataclass(frozen=True)
class Method:
    """One relayed method: its path, whether the answer is a server stream, its message classes."""

    path: str
    stream: bool
    request: type
    response: type
    model_field: str = "model"  # the request's model name ("name" for a model lookup); "" for none
    opens: tuple = ()  # (request field, ownership kind): ids the client gives, bound to its key
    issues: tuple = ()  # (response field, ownership kind): ids the answer carries, bound to the key
    usage: bool = False  # the answer (a stream's last message) carries SamplingUsage to account
    model_list: bool = False  # the answer lists models: the gateway's aliases join each one's `aliases`


def _rows():
    c = chat_pb2.GetCompletionsRequest
    model = models_pb2.GetModelRequest
    return [
        Method("/xai_api.Chat/GetCompletion", False, c, chat_pb2.GetChatCompletionResponse,
               opens=(("previous_response_id", RESPONSE),), issues=(("id", RESPONSE),), usage=True),
        Method("/xai_api.Chat/GetCompletionChunk", True, c, chat_pb2.GetChatCompletionChunk,
               opens=(("previous_response_id", RESPONSE),), issues=(("id", RESPONSE),), usage=True),
        Method("/xai_api.Chat/StartDeferredCompletion", False, c, deferred_pb2.StartDeferredResponse,
               opens=(("previous_response_id", RESPONSE),), issues=(("request_id", DEFERRED),)),
        Method("/xai_api.Chat/GetDeferredCompletion", False, deferred_pb2.GetDeferredRequest,
               chat_pb2.GetDeferredCompletionResponse, "", opens=(("request_id", DEFERRED),), usage=True),
        Method("/xai_api.Chat/GetStoredCompletion", False, chat_pb2.GetStoredCompletionRequest,
               chat_pb2.GetChatCompletionResponse, "", opens=(("response_id", RESPONSE),),
               issues=(("id", RESPONSE),)),
        Method("/xai_api.Chat/DeleteStoredCompletion", False, chat_pb2.DeleteStoredCompletionRequest,
               chat_pb2.DeleteStoredCompletionResponse, "", opens=(("response_id", RESPONSE),),
               issues=(("response_id", RESPONSE),)),
        Method("/xai_api.Models/ListLanguageModels", False, empty_pb2.Empty, models_pb2.ListLanguageModelsResponse, "",
               model_list=True),
        Method("/xai_api.Models/ListEmbeddingModels", False, empty_pb2.Empty, models_pb2.ListEmbeddingModelsResponse, "",
               model_list=True),
        Method("/xai_api.Models/ListImageGenerationModels", False, empty_pb2.Empty,
               models_pb2.ListImageGenerationModelsResponse, "", model_list=True),
        Method("/xai_api.Models/GetLanguageModel", False, model, models_pb2.LanguageModel, "name"),
        Method("/xai_api.Models/GetEmbeddingModel", False, model, models_pb2.EmbeddingModel, "name"),
        Method("/xai_api.Models/GetImageGenerationModel", False, model, models_pb2.ImageGenerationModel, "name"),
        Method("/xai_api.Tokenize/TokenizeText", False, tokenize_pb2.TokenizeTextRequest,
               tokenize_pb2.TokenizeTextResponse),
        Method("/xai_api.Image/GenerateImage", False, image_pb2.GenerateImageRequest, image_pb2.ImageResponse),
        Method("/xai_api.Embedder/Embed", False, embed_pb2.EmbedRequest, embed_pb2.EmbedResponse),
        Method("/xai_api.Sample/SampleText", False, sample_pb2.SampleTextRequest, sample_pb2.SampleTextResponse,
               usage=True),
        Method("/xai_api.Sample/SampleTextStreaming", True, sample_pb2.SampleTextRequest,
               sample_pb2.SampleTextResponse, usage=True),
    ]


ALLOWED = {m.path: m for m in _rows()}


def string_field(number: int, value: str) -> bytes:
    """The wire bytes of one string field. Appended to a message, it replaces that field's value
    (a parser keeps the last value of a non-repeated field): a stream's model name or id is put
    back on each message without parsing it."""
    data = value.encode("utf-8")
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_number(message_class, name: str) -> int:
    return message_class.DESCRIPTOR.fields_by_name[name].number
