"""A message's content in OpenAI's shape: a string, or a list of parts ({"type": "text", "text"} and
{"type": "image_url", "image_url": {"url"}}, the url a data: URL or an https: address). Helpers that
every layer reading content uses (providers, metering, the API's checks): a platform helper, below them all."""

from __future__ import annotations

import base64
import re

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
DATA_URL = re.compile(r"^data:(image/[a-z+.-]+);base64,([A-Za-z0-9+/=\s]+)$", re.DOTALL)
# What one image counts for in estimates and reservations: OpenAI's high-detail price of a 1024 px square.
IMAGE_TOKENS = 765


def text_of(content) -> str:
    """The text of a content, its image parts left out."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def image_urls(content) -> list[str]:
    if not isinstance(content, list):
        return []
    return [part["image_url"]["url"] for part in content if part.get("type") == "image_url"]


def has_images(messages: list[dict]) -> bool:
    return any(image_urls(m.get("content")) for m in messages)


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def data_url(content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def split_data_url(url: str) -> tuple[str, str] | None:
    """(MIME type, base64 data) of a data: URL of an image, or None."""
    match = DATA_URL.match(url)
    return (match.group(1), re.sub(r"\s", "", match.group(2))) if match else None
