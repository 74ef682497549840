"""Refreshing the catalogue from the providers' own model lists (run by `manage.py refresh_models`)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import httpx
from django.conf import settings
from django.db import transaction

from .lookup import catalogue_changed
from .models import AIModel, Provider, ProviderEndpoint

MILLION = Decimal(1_000_000)


class CatalogueError(Exception):
    pass


def _get(url: str, headers: dict) -> dict:
    try:
        response = httpx.get(url, headers=headers, timeout=30)
    except httpx.TransportError as exc:
        raise CatalogueError(f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        raise CatalogueError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError as exc:
        raise CatalogueError(f"{url} did not answer JSON: {response.text[:200]}") from exc


def _per_million(per_token) -> Decimal | None:
    """USD per 1M tokens from a per-token price; None when it cannot be metered: unreadable, or
    negative (OpenRouter's -1 for "variable", e.g. its auto router), which is not free."""
    try:
        price = Decimal(str(per_token or 0)) * MILLION
    except InvalidOperation:
        return None
    return price if price.is_finite() and price >= 0 else None


@transaction.atomic
def _store(provider: str, rows: list[dict]) -> int:
    """Upsert the rows; models the provider no longer lists are deactivated, not deleted (usage keeps them)."""
    seen = []
    for row in rows:
        AIModel.objects.update_or_create(
            provider=provider, upstream_id=row.pop("upstream_id"), defaults={**row, "is_active": True}
        )
        seen.append(row["slug"])
    AIModel.objects.filter(provider=provider).exclude(slug__in=seen).update(is_active=False)
    catalogue_changed()  # a queryset update sends no signal
    return len(seen)


def refresh_openrouter() -> int:
    return _refresh_openrouter(settings.OPENROUTER_BASE_URL, settings.OPENROUTER_API_KEY, Provider.OPENROUTER, "")


def _bearer(api_key: str) -> dict:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _refresh_openrouter(base_url: str, api_key: str, provider: str, slug_prefix: str) -> int:
    data = _get(f"{base_url.rstrip('/')}/models", _bearer(api_key))
    rows = []
    for item in data.get("data", []):
        pricing = item.get("pricing") or {}
        prices = _per_million(pricing.get("prompt")), _per_million(pricing.get("completion"))
        if None in prices:
            continue  # not offered (and deactivated if stored before): we could not charge for it
        # Models listing their parameters say whether they take tools and response_format.
        supported = item.get("supported_parameters")
        capabilities = (
            {"supports_tools": "tools" in supported, "supports_response_format": "response_format" in supported}
            if isinstance(supported, list)
            else {}
        )
        modalities = (item.get("architecture") or {}).get("input_modalities")
        if isinstance(modalities, list):
            capabilities["supports_images"] = "image" in modalities
        rows.append(
            {
                **capabilities,
                "slug": slug_prefix + item["id"],
                "upstream_id": item["id"],
                "name": item.get("name") or item["id"],
                "description": (item.get("description") or "")[:2000],
                "context_length": item.get("context_length"),
                "input_price_per_m": prices[0],
                "output_price_per_m": prices[1],
            }
        )
    return _store(provider, rows)


def refresh_openai_compat() -> int:
    return _refresh_openai_compat(
        settings.OPENAI_COMPAT_BASE_URL, settings.OPENAI_COMPAT_API_KEY, Provider.OPENAI_COMPAT, "compat/"
    )


def _refresh_openai_compat(base_url: str, api_key: str, provider: str, slug_prefix: str) -> int:
    data = _get(f"{base_url.rstrip('/')}/models", _bearer(api_key))
    rows = [
        # A self-hosted server costs nothing per token; an operator can set prices in admin.
        {
            "slug": slug_prefix + item["id"],
            "upstream_id": item["id"],
            "name": item["id"],
            "supports_images": item["id"] in settings.OPENAI_COMPAT_VISION_MODELS,
        }
        for item in data.get("data", [])
    ]
    return _store(provider, rows)


def refresh_endpoint(endpoint: ProviderEndpoint) -> int:
    """The models a provider added in the admin lists, as '<its name>/<model id>'. Gemini's list has
    no prices: its models are added in the admin, with theirs."""
    prefix = f"{endpoint.name}/"
    if endpoint.kind == ProviderEndpoint.Kind.OPENROUTER:
        return _refresh_openrouter(endpoint.base_url, endpoint.api_key, endpoint.name, prefix)
    if endpoint.kind == ProviderEndpoint.Kind.OPENAI_COMPAT:
        return _refresh_openai_compat(endpoint.base_url, endpoint.api_key, endpoint.name, prefix)
    return 0


def refresh_gemini() -> int:
    """Gemini's list has no prices: it updates names and limits of catalogued models, adds none."""
    data = _get(f"{settings.GEMINI_BASE_URL.rstrip('/')}/models", {"x-goog-api-key": settings.GEMINI_API_KEY})
    updated = 0
    for item in data.get("models", []):
        upstream_id = item.get("name", "").removeprefix("models/")
        updated += AIModel.objects.filter(provider=Provider.GEMINI, upstream_id=upstream_id).update(
            context_length=item.get("inputTokenLimit"), is_active=True, supports_images=True
        )
    catalogue_changed()  # a queryset update sends no signal
    return updated


REFRESHERS = {
    Provider.OPENROUTER: (refresh_openrouter, lambda: bool(settings.OPENROUTER_BASE_URL)),
    Provider.OPENAI_COMPAT: (refresh_openai_compat, lambda: bool(settings.OPENAI_COMPAT_BASE_URL)),
    Provider.GEMINI: (refresh_gemini, lambda: bool(settings.GEMINI_API_KEY)),
}
