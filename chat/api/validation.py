"""Reading and checking a chat completion request body (OpenAI's format) before anything runs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig

from aihub.inputs import BadJson, parse_json, whole_number
from aihub.message_content import IMAGE_TYPES, image_part, split_data_url
from chat.gateway.providers.openai_compat import OPENAI_PARAMS

from .errors import ApiError

# Images come inline (data: URLs): a body may be large. Bigger ones are refused at the ASGI edge
# (aihub/body_limit.py) before anything reads them.
MAX_BODY_BYTES = settings.API_MAX_BODY_BYTES
# "developer" is OpenAI's newer name for "system": passed on as "system", which every provider knows.
ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP_SEQUENCES = 4
MAX_TOOLS = 128
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
MAX_USER_CHARS = 256
# Every request parameter this API reads itself or passes on (chat/api/README.md lists them). Any
# other is refused with a 400 naming it rather than ignored: a client relying on it would silently
# get something else.
READ_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "n"})
# What the providers relay, and max_completion_tokens.
PASSED_PARAMS = OPENAI_PARAMS | {"max_completion_tokens"}
HINTS = {"functions": " Use 'tools'.", "function_call": " Use 'tool_choice'."}
# No model writes a longer reply; the bound keeps the worst-case reservation a number the database stores.
MAX_OUTPUT_TOKENS = 1_000_000


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]
    stream: bool = False
    include_usage: bool = False
    params: dict = field(default_factory=dict)


def _bad(message: str, param: str | None = None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, code, param=param)


def read_json_body(request) -> dict:
    """The body as a JSON object; 413 above MAX_BODY_BYTES, 400 when it is not a JSON object."""
    too_large = ApiError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.", "request_too_large")
    declared = whole_number(request.headers.get("Content-Length"))
    if declared is not None and declared > MAX_BODY_BYTES:
        raise too_large
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_large from None
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    try:
        data = parse_json(body)
    except BadJson as exc:
        raise _bad(str(exc), code="invalid_json") from None
    if not isinstance(data, dict):
        raise _bad("The request body must be a JSON object.", code="invalid_json")
    return data


def _number(data: dict, name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'{name}' must be a number.", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low:g} and {high:g}.", name, "invalid_value")
    return value


def _integer(data: dict, name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{name}' must be an integer.", name, "invalid_type")
    if not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise _bad(f"'{name}' must be between 1 and {MAX_OUTPUT_TOKENS}.", name, "invalid_value")
    return value


def _image_part(part: dict, where: str) -> dict:
    """An image part: its url a data: URL of a PNG, JPEG, WebP or GIF image, or an https: address."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise _bad(f"{where}.image_url must be {{url: a data: URL or an https: address}}.", where, "invalid_type")
    inline = split_data_url(url) if url.startswith("data:") else None
    if url.startswith("data:") and (inline is None or inline[0] not in IMAGE_TYPES):
        raise _bad(
            f"{where}: a data: URL must hold a base64 image of type {', '.join(IMAGE_TYPES)}.", where, "invalid_value"
        )
    if not inline and not url.startswith("https://"):
        raise _bad(f"{where}: an image URL must be a data: URL or an https: address.", where, "invalid_value")
    return image_part(url)


def _text_of(content, where: str, images: bool = False):
    """A message's content: a string, or a list of text parts, joined; with `images` (user messages),
    a list that holds image parts stays a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, part in enumerate(content):
            at = f"{where}[{index}]"
            if images and isinstance(part, dict) and part.get("type") == "image_url":
                parts.append(_image_part(part, at))
            elif not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kinds = "text and image_url parts are" if images else "only text parts are"
                raise _bad(f"{at}: {kinds} supported here.", at, "invalid_type")
            else:
                parts.append({"type": "text", "text": part["text"]})
        if any(part["type"] == "image_url" for part in parts):
            return parts
        return "".join(part["text"] for part in parts)
    raise _bad(f"{where} must be a string or a list of text parts.", where, "invalid_type")


def image_part_paths(messages: list[dict]) -> list[str]:
    """Where the request's image parts are ("messages[0].content[1]"), to name them in an error."""
    return [
        f"messages[{i}].content[{j}]"
        for i, message in enumerate(messages)
        if isinstance(message.get("content"), list)
        for j, part in enumerate(message["content"])
        if part["type"] == "image_url"
    ]


def _tool_calls_of(value, where: str) -> list[dict]:
    """An assistant message's tool_calls, as OpenAI's shape: [{id, type: "function", function: {name, arguments}}]."""
    if not isinstance(value, list) or not value:
        raise _bad(f"{where} must be a non-empty list of tool calls.", where, "invalid_type")
    calls = []
    for index, call in enumerate(value):
        at = f"{where}[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(call.get("id"), str)
            or call.get("type", "function") != "function"
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise _bad(
                f"{at} must be {{id, type: 'function', function: {{name, arguments (a JSON string)}}}}.",
                at,
                "invalid_type",
            )
        calls.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": function["arguments"]},
            }
        )
    return calls


def _message(message, index: int, asked: set[str]) -> dict:
    """One message, checked; `asked` holds the ids of tool calls not answered yet."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _bad(f"{where} must be an object.", where, "invalid_type")
    role = message.get("role")
    if role not in ROLES:
        raise _bad(f"{where}.role must be one of {', '.join(ROLES)}.", f"{where}.role", "invalid_value")
    content = _text_of(message.get("content"), f"{where}.content", images=role == "user")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in asked:
            raise _bad(
                f"{where}.tool_call_id must be the id of a tool call of an earlier assistant message.",
                f"{where}.tool_call_id",
                "invalid_value",
            )
        asked.discard(call_id)
        return {"role": "tool", "tool_call_id": call_id, "content": content}
    if role == "assistant" and message.get("tool_calls") is not None:
        calls = _tool_calls_of(message["tool_calls"], f"{where}.tool_calls")
        asked.update(call["id"] for call in calls)
        return {"role": "assistant", "content": content or None, "tool_calls": calls}
    return {"role": "system" if role == "developer" else role, "content": content}


def parse_messages(value) -> list[dict]:
    if value is None:
        raise _bad("'messages' is required.", "messages", "missing_required_parameter")
    if not isinstance(value, list):
        raise _bad("'messages' must be a list.", "messages", "invalid_type")
    if not value:
        raise _bad("'messages' must not be empty.", "messages", "invalid_value")
    asked: set[str] = set()
    return [_message(message, index, asked) for index, message in enumerate(value)]


def parse_params(data: dict) -> dict:
    """The generation parameters passed on upstream: temperature, max_tokens, top_p, stop."""
    # Newer clients send max_completion_tokens; both mean the same cap here (both are checked).
    max_tokens, max_completion_tokens = _integer(data, "max_tokens"), _integer(data, "max_completion_tokens")
    params: dict[str, Any] = {
        "temperature": _number(data, "temperature", 0, 2),
        "top_p": _number(data, "top_p", 0, 1),
        "max_tokens": max_tokens or max_completion_tokens,
    }
    stop = data.get("stop")
    if isinstance(stop, str):
        params["stop"] = [stop]
    elif isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in stop):
        params["stop"] = stop or None
    elif stop is not None:
        raise _bad(f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings.", "stop", "invalid_type")
    return {name: value for name, value in params.items() if value is not None}


def _tools(value) -> list[dict]:
    if not isinstance(value, list) or not value or len(value) > MAX_TOOLS:
        raise _bad(f"'tools' must be a list of 1 to {MAX_TOOLS} tools.", "tools", "invalid_type")
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            raise _bad(f"{where} must be {{type: 'function', function: {{name, ...}}}}.", where, "invalid_type")
        if not isinstance(function.get("name"), str) or not FUNCTION_NAME.match(function["name"]):
            raise _bad(
                f"{where}.function.name must be 1 to 64 letters, digits, '_' or '-'.",
                f"{where}.function.name",
                "invalid_value",
            )
        if not isinstance(function.get("description", ""), str):
            raise _bad(
                f"{where}.function.description must be a string.", f"{where}.function.description", "invalid_type"
            )
        if not isinstance(function.get("parameters", {}), dict):
            raise _bad(
                f"{where}.function.parameters must be a JSON Schema object.",
                f"{where}.function.parameters",
                "invalid_type",
            )
    return value


def _tool_choice(value, tools: list[dict] | None):
    if tools is None:
        raise _bad("'tool_choice' is only allowed with 'tools'.", "tool_choice", "invalid_value")
    if value in TOOL_CHOICES:
        return value
    function = value.get("function") if isinstance(value, dict) else None
    names = {tool["function"]["name"] for tool in tools}
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or value.get("type") != "function" or name not in names:
        raise _bad(
            f"'tool_choice' must be one of {', '.join(TOOL_CHOICES)}, or {{type: 'function', function: {{name}}}} "
            "naming one of the tools.",
            "tool_choice",
            "invalid_value",
        )
    return {"type": "function", "function": {"name": name}}


def _response_format(value) -> dict:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in RESPONSE_FORMATS:
        raise _bad(
            f"'response_format' must be {{type: {' | '.join(RESPONSE_FORMATS)}}}.", "response_format", "invalid_value"
        )
    if kind == "json_schema":
        schema = value.get("json_schema")
        if (
            not isinstance(schema, dict)
            or not isinstance(schema.get("name"), str)
            or not isinstance(schema.get("schema", {}), dict)
        ):
            raise _bad(
                "'response_format.json_schema' must be {name, schema (a JSON Schema object), strict?}.",
                "response_format.json_schema",
                "invalid_type",
            )
    return value


def _logit_bias(value) -> dict:
    if not isinstance(value, dict) or not all(
        isinstance(token, str)
        and token.isdigit()
        and isinstance(bias, int | float)
        and not isinstance(bias, bool)
        and -100 <= bias <= 100
        for token, bias in value.items()
    ):
        raise _bad("'logit_bias' must map token ids to numbers from -100 to 100.", "logit_bias", "invalid_value")
    return value


def parse_passed_params(data: dict) -> dict:
    """The parameters beyond sampling that are passed on as they are (checked here): tools, tool_choice,
    parallel_tool_calls, response_format, seed, presence_penalty, frequency_penalty, logit_bias, user."""
    params: dict[str, Any] = {
        "presence_penalty": _number(data, "presence_penalty", -2, 2),
        "frequency_penalty": _number(data, "frequency_penalty", -2, 2),
    }
    tools = _tools(data["tools"]) if data.get("tools") is not None else None
    params["tools"] = tools
    if data.get("tool_choice") is not None:
        params["tool_choice"] = _tool_choice(data["tool_choice"], tools)
    if data.get("parallel_tool_calls") is not None:
        if not isinstance(data["parallel_tool_calls"], bool) or tools is None:
            raise _bad(
                "'parallel_tool_calls' must be a boolean, given with 'tools'.", "parallel_tool_calls", "invalid_value"
            )
        params["parallel_tool_calls"] = data["parallel_tool_calls"]
    if data.get("response_format") is not None:
        params["response_format"] = _response_format(data["response_format"])
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("'seed' must be an integer.", "seed", "invalid_type")
    params["seed"] = seed
    if data.get("logit_bias") is not None:
        params["logit_bias"] = _logit_bias(data["logit_bias"])
    user = data.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise _bad(f"'user' must be a string of up to {MAX_USER_CHARS} characters.", "user", "invalid_type")
    params["user"] = user
    return {name: value for name, value in params.items() if value is not None}


def refuse_unknown_params(data: dict) -> None:
    """A 400 naming the first parameter this API neither reads nor passes on. Left out, null or false
    asks for nothing, so those are let through (some clients send `"logprobs": false` always)."""
    for name, value in data.items():
        if name in READ_PARAMS or name in PASSED_PARAMS or value is None or value is False:
            continue
        raise _bad(f"'{name}' is not supported by this API.{HINTS.get(name, '')}", name, "unsupported_parameter")


def parse_chat_request(data: dict) -> ChatRequest:
    model = data.get("model")
    if model is None:
        raise _bad(
            "'model' is required (a model id from /v1/models, or 'auto').", "model", "missing_required_parameter"
        )
    if not isinstance(model, str) or not model:
        raise _bad("'model' must be a non-empty string.", "model", "invalid_type")
    refuse_unknown_params(data)
    n = data.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise _bad("Only n=1 is supported.", "n", "invalid_value")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream", "invalid_type")
    options = data.get("stream_options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise _bad("'stream_options' must be an object.", "stream_options", "invalid_type")
    if not isinstance(options.get("include_usage", False), bool | None):
        raise _bad("'stream_options.include_usage' must be a boolean.", "stream_options.include_usage", "invalid_type")
    return ChatRequest(
        model=model,
        messages=parse_messages(data.get("messages")),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        params={**parse_params(data), **parse_passed_params(data)},
    )


MAX_EMBEDDING_INPUTS = 2048
ENCODING_FORMATS = ("float", "base64")
EMBEDDING_PARAMS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


@dataclass
class EmbeddingRequest:
    model: str
    texts: list[str]
    encoding_format: str = "float"
    params: dict = field(default_factory=dict)


def parse_embedding_request(data: dict) -> EmbeddingRequest:
    """POST /v1/embeddings: `input` a string or a list of strings (token arrays are refused), `dimensions`
    and `user` passed on where the provider takes them, `encoding_format` float or base64."""
    for name, value in data.items():
        if name not in EMBEDDING_PARAMS and value is not None and value is not False:
            raise _bad(f"'{name}' is not supported by this API.", name, "unsupported_parameter")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: an embedding model id from /v1/models.", "model", "missing_required_parameter")
    texts = data.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if (
        not isinstance(texts, list)
        or not 1 <= len(texts) <= MAX_EMBEDDING_INPUTS
        or not all(isinstance(text, str) and text for text in texts)
    ):
        raise _bad(
            f"'input' must be a non-empty string or a list of 1 to {MAX_EMBEDDING_INPUTS} of them "
            "(token arrays are not supported).",
            "input",
            "invalid_value",
        )
    encoding = data.get("encoding_format") or "float"
    if encoding not in ENCODING_FORMATS:
        raise _bad("'encoding_format' must be float or base64.", "encoding_format", "invalid_value")
    params: dict[str, Any] = {"dimensions": _integer(data, "dimensions")}
    user = data.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise _bad(f"'user' must be a string of up to {MAX_USER_CHARS} characters.", "user", "invalid_type")
    params["user"] = user
    return EmbeddingRequest(
        model=model,
        texts=texts,
        encoding_format=encoding,
        params={name: value for name, value in params.items() if value is not None},
    )
