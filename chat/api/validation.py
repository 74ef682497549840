"""Reading and checking a chat completion request body (OpenAI's format) before anything runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.core.exceptions import RequestDataTooBig

from .errors import ApiError

MAX_BODY_BYTES = 1024 * 1024
ROLES = ("system", "user", "assistant")
MAX_STOP_SEQUENCES = 4
# Refused rather than ignored: a client relying on them would silently get a plain text reply.
UNSUPPORTED_PARAMS = ("tools", "functions", "tool_choice", "function_call")


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
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_large from None
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _bad("The request body is not valid JSON.", code="invalid_json") from None
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
    if value < 1:
        raise _bad(f"'{name}' must be at least 1.", name, "invalid_value")
    return value


def _text_of(content, index: int) -> str:
    """A message's content: a string, or a list of text parts (other parts are not supported)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad(
                    f"messages[{index}].content: only text parts are supported.",
                    f"messages[{index}].content",
                    "invalid_type",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise _bad(
        f"messages[{index}].content must be a string or a list of text parts.",
        f"messages[{index}].content",
        "invalid_type",
    )


def parse_messages(value) -> list[dict]:
    if value is None:
        raise _bad("'messages' is required.", "messages", "missing_required_parameter")
    if not isinstance(value, list):
        raise _bad("'messages' must be a list.", "messages", "invalid_type")
    if not value:
        raise _bad("'messages' must not be empty.", "messages", "invalid_value")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise _bad(f"messages[{index}] must be an object.", f"messages[{index}]", "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise _bad(
                f"messages[{index}].role must be one of {', '.join(ROLES)}.", f"messages[{index}].role", "invalid_value"
            )
        messages.append({"role": role, "content": _text_of(message.get("content"), index)})
    return messages


def parse_params(data: dict) -> dict:
    """The generation parameters passed on upstream: temperature, max_tokens, top_p, stop."""
    params = {
        "temperature": _number(data, "temperature", 0, 2),
        "top_p": _number(data, "top_p", 0, 1),
        # Newer clients send max_completion_tokens; both mean the same cap here.
        "max_tokens": _integer(data, "max_tokens") or _integer(data, "max_completion_tokens"),
    }
    stop = data.get("stop")
    if isinstance(stop, str):
        params["stop"] = [stop]
    elif isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in stop):
        params["stop"] = stop or None
    elif stop is not None:
        raise _bad(f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings.", "stop", "invalid_type")
    return {name: value for name, value in params.items() if value is not None}


def parse_chat_request(data: dict) -> ChatRequest:
    model = data.get("model")
    if model is None:
        raise _bad(
            "'model' is required (a model id from /v1/models, or 'auto').", "model", "missing_required_parameter"
        )
    if not isinstance(model, str) or not model:
        raise _bad("'model' must be a non-empty string.", "model", "invalid_type")
    for unsupported in UNSUPPORTED_PARAMS:
        if data.get(unsupported):
            raise _bad(f"'{unsupported}' is not supported by this API.", unsupported, "unsupported_parameter")
    n = data.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise _bad("Only n=1 is supported.", "n", "invalid_value")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream", "invalid_type")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("'stream_options' must be an object.", "stream_options", "invalid_type")
    return ChatRequest(
        model=model,
        messages=parse_messages(data.get("messages")),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        params=parse_params(data),
    )
