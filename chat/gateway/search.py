"""Web search: one interface, two backends chosen by settings (SearXNG's JSON API, self-hosted; Brave's
hosted Search API), and one entry point that admits, runs and records a search (its own usage row).

A search is an upstream call like a model request: the plan limits it (billing/searches.py) and every
search leaves one SearchRecord, however it ends."""

from __future__ import annotations

import abc
import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from channels.db import database_sync_to_async
from django.conf import settings

from accounts.models import ApiKey, User
from billing import searches

from .providers.http import get_client

MAX_QUERY_CHARS = 400
SNIPPET_CHARS = 500


@dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    snippet: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchFailed(Exception):
    """The backend did not answer (timeout, refused, an error status, a body we cannot read)."""


class SearchTimeout(SearchFailed):
    """The backend did not answer within WEB_SEARCH_TIMEOUT."""


class SearchUnavailable(Exception):
    """No search backend is configured on this server."""


def _result(title: Any, url: Any, snippet: Any) -> SearchResult | None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None  # only web addresses become links in a reply
    return SearchResult(
        title=str(title or url).strip()[:300], url=url[:2000], snippet=str(snippet or "").strip()[:SNIPPET_CHARS]
    )


class SearchBackend(abc.ABC):
    name: str

    @abc.abstractmethod
    def request(self, query: str, count: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """The URL, query parameters and headers of one search."""

    @abc.abstractmethod
    def results(self, data: dict[str, Any]) -> list[SearchResult]:
        """The results in a decoded answer."""

    async def search(self, query: str, count: int) -> list[SearchResult]:
        url, params, headers = self.request(query, count)
        try:
            response = await get_client().get(url, params=params, headers=headers, timeout=settings.WEB_SEARCH_TIMEOUT)
        except httpx.TimeoutException:
            raise SearchTimeout(f"{self.name} did not answer within {settings.WEB_SEARCH_TIMEOUT:g} s") from None
        except httpx.TransportError as exc:
            raise SearchFailed(f"cannot reach {self.name}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise SearchFailed(f"{self.name} answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise SearchFailed(f"{self.name} did not answer with JSON") from None
        if not isinstance(data, dict):
            raise SearchFailed(f"{self.name} answered with something else than a JSON object")
        return self.results(data)[:count]


class SearxngBackend(SearchBackend):
    """A SearXNG instance with the JSON format enabled (settings.yml: search.formats: [html, json])."""

    name = "SearXNG"

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def request(self, query: str, count: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        return f"{self.base_url}/search", {"q": query, "format": "json"}, {"Accept": "application/json"}

    def results(self, data: dict[str, Any]) -> list[SearchResult]:
        found = [_result(r.get("title"), r.get("url"), r.get("content")) for r in data.get("results") or []]
        return [r for r in found if r]


class BraveBackend(SearchBackend):
    """Brave's Search API (https://api.search.brave.com, a subscription token)."""

    name = "Brave Search"

    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def request(self, query: str, count: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        headers = {"Accept": "application/json", "X-Subscription-Token": self.api_key}
        return f"{self.base_url}/web/search", {"q": query, "count": count}, headers

    def results(self, data: dict[str, Any]) -> list[SearchResult]:
        web = data.get("web") or {}
        found = [_result(r.get("title"), r.get("url"), r.get("description")) for r in web.get("results") or []]
        return [r for r in found if r]


def configured_backend() -> SearchBackend | None:
    """WEB_SEARCH_BACKEND picks one; unset, the one whose setting is there (SearXNG first)."""
    choice = settings.WEB_SEARCH_BACKEND
    if choice in ("", "searxng") and settings.SEARXNG_URL:
        return SearxngBackend(settings.SEARXNG_URL)
    if choice in ("", "brave") and settings.BRAVE_SEARCH_API_KEY:
        return BraveBackend(settings.BRAVE_SEARCH_BASE_URL, settings.BRAVE_SEARCH_API_KEY)
    return None


async def web_search(*, user: User, query: str, api_key: ApiKey | None = None) -> list[SearchResult]:
    """Admit (raises billing.limits.LimitExceeded), search (raises SearchFailed), record one usage row.
    Raises SearchUnavailable, recording nothing, when no backend is configured."""
    backend = configured_backend()
    if backend is None:
        raise SearchUnavailable("Web search is not set up on this server.")
    query = " ".join(query.split())[:MAX_QUERY_CHARS]
    await database_sync_to_async(searches.admit_search)(user, api_key)
    started = time.monotonic()
    results: list[SearchResult] = []
    error = "stopped"  # unless the search ends otherwise
    try:
        results = await backend.search(query, settings.WEB_SEARCH_RESULTS)
        error = ""
        return results
    except SearchFailed as exc:
        error = str(exc)
        raise
    finally:
        record = database_sync_to_async(searches.record_search)(
            user=user,
            api_key=api_key,
            backend=backend.name,
            results=len(results),
            error=error,
            latency_ms=round((time.monotonic() - started) * 1000),
        )
        await asyncio.shield(record)  # a cancelled search is still recorded once


def sources_prompt(results: list[dict[str, Any]]) -> str:
    """The system message that hands the results to the model as numbered sources."""
    lines = [
        (
            "Web search results for the user's last message, numbered. Use them where they help and cite each "
            "one you use by its number in square brackets, like [1]."
        ),
        "",
    ]
    for number, result in enumerate(results, 1):
        lines += [f"[{number}] {result['title']}", result["url"], result["snippet"], ""]
    return "\n".join(lines).strip()
