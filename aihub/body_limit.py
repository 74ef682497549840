"""Request bodies capped at the ASGI edge, before Django reads them.

Django's ASGI handler copies a whole request body into a temporary file (spooled to disk past
FILE_UPLOAD_MAX_MEMORY_SIZE) before any view runs, so a limit checked in a view comes too late: a
200 MB upload would already be on disk. Here a body whose declared length is over its path's limit is
answered 413 at once, and one sent without a length (chunked) is cut off as soon as it passes the
limit. The limits: API_MAX_BODY_BYTES under /v1/ and /api/ (images inline), the largest upload a plan
allows on the upload URL, PAGE_MAX_BODY_BYTES elsewhere. (The server in front, nginx, caps bodies
too: client_max_body_size; daphne itself buffers a body before calling the application.)"""

from __future__ import annotations

import json

from django.conf import settings

UPLOAD_PATHS = ("/chat/attachments/", "/api/v1/files")
# Room for the multipart envelope around the file (boundaries, headers, the other fields).
MULTIPART_OVERHEAD = 64 * 1024


def limit_for(path: str) -> int:
    if path in UPLOAD_PATHS:
        return settings.UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD
    if path.startswith(("/v1/", "/api/")):
        return settings.API_MAX_BODY_BYTES
    return settings.PAGE_MAX_BODY_BYTES


async def _refuse(send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "message": f"The request body is larger than {limit} bytes.",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_too_large",
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _refuse(send, limit)
        received, over, started = 0, False, False

        async def capped_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # Django sees a client that went away, and stops reading
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, capped_receive, watched_send)
        if over and not started:
            await _refuse(send, limit)
