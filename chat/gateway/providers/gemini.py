"""Google Gemini through its native API (streamGenerateContent with SSE).

OpenAI's request is translated: tools become function declarations, tool_choice the function calling
mode, response_format the response MIME type (and JSON schema); assistant tool calls become
functionCall parts and tool results functionResponse parts. Function calls in the reply come back as
ToolCallDelta, one whole call each.
"""

from __future__ import annotations

import json
import mimetypes
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aihub.message_content import split_data_url

from .base import (
    SAMPLING_PARAMS,
    Completion,
    Embeddings,
    ProviderClient,
    ProviderError,
    StreamEnd,
    ToolCallDelta,
    Usage,
)
from .sse import open_stream, post_json, sse_json

# Gemini's finish reasons, in OpenAI's words.
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}
# OpenAI's tool_choice words as Gemini's function calling modes.
TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Gemini has no logit_bias, no end-user id and no switch for parallel calls: those are refused.
GEMINI_PARAMS = SAMPLING_PARAMS | {
    "tools",
    "tool_choice",
    "response_format",
    "seed",
    "presence_penalty",
    "frequency_penalty",
}


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assistant_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts = [{"text": message["content"]}] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        arguments = _json_or_text(call["function"]["arguments"] or "{}")
        parts.append({"functionCall": {"name": call["function"]["name"], "args": arguments}})
    return parts


def _tool_result_part(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A tool message as a functionResponse: Gemini wants the function's name (OpenAI gives the call id)
    and an object as the response."""
    result = _json_or_text(message.get("content") or "")
    return {
        "functionResponse": {
            "name": names.get(message["tool_call_id"], message["tool_call_id"]),
            "response": result if isinstance(result, dict) else {"content": result},
        }
    }


def _user_parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Text and images (OpenAI's image parts as inline data, or as file data for an https: address)."""
    if not isinstance(content, list):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "image_url":
            url = part["image_url"]["url"]
            inline = split_data_url(url)
            if inline:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
            else:
                mime = mimetypes.guess_type(url.split("?")[0])[0] or "image/jpeg"
                parts.append({"fileData": {"mimeType": mime, "fileUri": url}})
        else:
            parts.append({"text": part.get("text", "")})
    return parts


def gemini_contents(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name
    for message in messages:
        role = message["role"]
        if role == "system":
            continue
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
            contents.append({"role": "model", "parts": _assistant_parts(message) or [{"text": ""}]})
        elif role == "tool":
            part = _tool_result_part(message, names)
            # The results of one turn's calls go back together, in one content.
            if contents and contents[-1].get("tool_results"):
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part], "tool_results": True})
        else:
            contents.append({"role": "user", "parts": _user_parts(message["content"])})
    for content in contents:
        content.pop("tool_results", None)
    return contents


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, str):
        return {"functionCallingConfig": {"mode": TOOL_CHOICE_MODES[choice]}}
    if isinstance(choice, dict):  # {"type": "function", "function": {"name": ...}}: that one function
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}}
    return None


def _response_format_config(response_format: dict[str, Any] | None) -> dict[str, Any]:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema" and response_format is not None:
        schema = response_format["json_schema"].get("schema") or {"type": "object"}
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    return {}


def gemini_request(messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    config = {
        "temperature": params.get("temperature"),
        "topP": params.get("top_p"),
        "maxOutputTokens": params.get("max_tokens"),
        "stopSequences": [params["stop"]] if isinstance(params.get("stop"), str) else params.get("stop"),
        "seed": params.get("seed"),
        "presencePenalty": params.get("presence_penalty"),
        "frequencyPenalty": params.get("frequency_penalty"),
        **_response_format_config(params.get("response_format")),
    }
    body: dict[str, Any] = {"contents": gemini_contents(messages)}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = {k: v for k, v in config.items() if v is not None}
    if config:
        body["generationConfig"] = config
    if params.get("tools"):
        declarations = []
        for tool in params["tools"]:
            function = tool["function"]
            declaration = {"name": function["name"], "description": function.get("description", "")}
            if function.get("parameters"):
                declaration["parametersJsonSchema"] = function["parameters"]
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(params.get("tool_choice"))
        if tool_config:
            body["toolConfig"] = tool_config
    return body


class _ReplyReader:
    """Reads Gemini's reply events: text, function calls (numbered across events), finish and usage."""

    def __init__(self) -> None:
        self.calls = 0
        self.finish: str | None = None
        self.usage = Usage()

    def read(self, event: dict[str, Any]) -> list[str | ToolCallDelta]:
        if "error" in event:
            error = event["error"]
            raise ProviderError(f"upstream error: {error.get('message', error)}", outcome="stream_error")
        items: list[str | ToolCallDelta] = []
        for candidate in event.get("candidates") or []:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if part.get("text"):
                    items.append(part["text"])
                elif "functionCall" in part:
                    call = part["functionCall"]
                    items.append(
                        ToolCallDelta(
                            index=self.calls,
                            id=call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                            name=call.get("name", ""),
                            arguments=json.dumps(call.get("args") or {}),
                        )
                    )
                    self.calls += 1
            if candidate.get("finishReason"):
                reason = candidate["finishReason"]
                self.finish = FINISH_REASONS.get(reason, reason.lower())
        if event.get("usageMetadata"):
            self.usage = _usage(event["usageMetadata"])
        return items

    def finish_reason(self) -> str | None:
        # Gemini ends a reply that calls functions with STOP; OpenAI's clients look for "tool_calls".
        return "tool_calls" if self.calls and self.finish == "stop" else self.finish


def _usage(meta: dict[str, Any]) -> Usage:
    """Thinking tokens are billed as output, so they count as completion tokens."""
    output = [meta[k] for k in ("candidatesTokenCount", "thoughtsTokenCount") if meta.get(k) is not None]
    return Usage(meta.get("promptTokenCount"), sum(output) if output else None)


class GeminiProvider(ProviderClient):
    params = GEMINI_PARAMS
    embedding_params = frozenset({"dimensions"})

    def __init__(self, base_url: str, api_key: str, name: str = "gemini"):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.headers = {"x-goog-api-key": api_key}

    async def stream(
        self, messages: list[dict[str, Any]], model: str, params: dict[str, Any]
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        url = f"{self.base_url}/models/{model}:streamGenerateContent?alt=sse"
        reader = _ReplyReader()
        async with open_stream(url, json_body=gemini_request(messages, params), headers=self.headers) as r:
            async for event in sse_json(r):
                if event is None:
                    continue
                for item in reader.read(event):
                    yield item
        if reader.finish is None:
            raise ProviderError("upstream stream ended before it was complete", outcome="connection_lost")
        yield StreamEnd(reader.usage, reader.finish_reason())

    async def complete(self, messages: list[dict[str, Any]], model: str, params: dict[str, Any]) -> Completion:
        url = f"{self.base_url}/models/{model}:generateContent"
        reader = _ReplyReader()
        items = reader.read(await post_json(url, json_body=gemini_request(messages, params), headers=self.headers))
        return Completion(
            "".join(item for item in items if isinstance(item, str)),
            StreamEnd(reader.usage, reader.finish_reason() or "stop"),
            tuple(item for item in items if isinstance(item, ToolCallDelta)),
        )

    async def embed(self, texts: list[str], model: str, params: dict[str, Any]) -> Embeddings:
        """batchEmbedContents: one request per text. Gemini counts no tokens for it (counted here)."""
        request: dict[str, Any] = {"model": f"models/{model}"}
        if params.get("dimensions"):
            request["outputDimensionality"] = params["dimensions"]
        body = {"requests": [{**request, "content": {"parts": [{"text": text}]}} for text in texts]}
        url = f"{self.base_url}/models/{model}:batchEmbedContents"
        data = await post_json(url, json_body=body, headers=self.headers)
        if "error" in data:
            raise ProviderError(f"upstream error: {data['error']}", outcome="stream_error")
        try:
            vectors = [item["values"] for item in data["embeddings"]]
        except (KeyError, TypeError) as exc:
            raise ProviderError("upstream embeddings reply has none", outcome="bad_response", retryable=True) from exc
        if len(vectors) != len(texts):
            raise ProviderError(
                f"upstream sent {len(vectors)} embeddings for {len(texts)} inputs", outcome="bad_response"
            )
        return Embeddings(vectors)
