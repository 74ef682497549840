"""Reading an upstream's server-sent events, with transport errors turned into ProviderError."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from deploy.logs import request_id

from .base import ProviderError
from .http import get_client


def _with_request_id(headers: dict[str, Any]) -> dict[str, Any]:
    """The request's id (the usage row's) goes upstream too, to find one request in both logs."""
    current = request_id.get()
    return {**headers, "X-Request-ID": current} if current else headers


@asynccontextmanager
async def open_stream(url: str, *, json_body: dict[str, Any], headers: dict[str, Any]) -> AsyncIterator[httpx.Response]:
    """POST and yield the streaming response once its status is known to be 2xx.

    Leaving the block (normally, by an error or by cancellation) closes the upstream connection.
    """
    try:
        async with get_client().stream("POST", url, json=json_body, headers=_with_request_id(headers)) as response:
            if response.status_code >= 400:
                body = (await response.aread()).decode(errors="replace")
                raise ProviderError.from_status(response.status_code, body, response.headers)
            yield response
    except httpx.TransportError as exc:
        raise ProviderError.from_transport(exc) from exc


async def post_json(url: str, *, json_body: dict[str, Any], headers: dict[str, Any]) -> dict[str, Any]:
    try:
        response = await get_client().post(url, json=json_body, headers=_with_request_id(headers))
    except httpx.TransportError as exc:
        raise ProviderError.from_transport(exc) from exc
    if response.status_code >= 400:
        raise ProviderError.from_status(response.status_code, response.text, response.headers)
    try:
        data = response.json()
    except ValueError as exc:
        raise ProviderError("upstream sent invalid JSON", outcome="bad_response", retryable=True) from exc
    if not isinstance(data, dict):
        raise ProviderError("upstream reply is not a JSON object", outcome="bad_response", retryable=True)
    return data


async def _lines(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's lines, ended by LF, CR or CRLF as SSE's are. Split here, in bytes, rather than by httpx's text
    and line decoders (two more generators and an incremental decoder per chunk received: a tenth of a stream's
    CPU). A CRLF split between two chunks makes an empty line more, which SSE ignores."""
    unfinished = b""
    async for chunk in response.aiter_bytes():
        if not chunk:
            continue
        lines = (unfinished + chunk).splitlines()
        unfinished = b"" if chunk[-1] in b"\r\n" else lines.pop()
        for line in lines:
            yield line
    if unfinished:
        yield unfinished


async def sse_json(response: httpx.Response) -> AsyncIterator[dict[str, Any] | None]:
    """Yield each `data:` payload as JSON; None for the OpenAI end marker `[DONE]`."""
    try:
        async for line in _lines(response):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                yield None
                continue
            try:
                event = json.loads(data.decode(errors="replace"))  # as httpx's text decoder had it
            except ValueError as exc:
                raise ProviderError("upstream sent an invalid event", outcome="bad_response") from exc
            if not isinstance(event, dict):
                raise ProviderError("upstream sent an event that is not a JSON object", outcome="bad_response")
            yield event
    except httpx.TransportError as exc:
        raise ProviderError.from_transport(exc) from exc
