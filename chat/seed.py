"""The catalogue a fresh install starts with (refresh_models brings the full, priced lists)."""

from __future__ import annotations

from decimal import Decimal

from .catalogue.lookup import catalogue_changed
from .gateway.providers.local import CONTEXT_TOKENS, EMBEDDING_MAX_TOKENS, EMBEDDING_MODEL_ID, MODEL_ID
from .models import AIModel, Provider

SEED_MODELS = [
    # slug, provider, upstream id, name, $/1M in, $/1M out, auto priority, context
    ("local/smollm2-135m-instruct", Provider.LOCAL, MODEL_ID, "SmolLM2 135M Instruct", "0", "0", 900, CONTEXT_TOKENS),
    (
        "local/all-minilm-l6-v2",
        Provider.LOCAL,
        EMBEDDING_MODEL_ID,
        "all-MiniLM-L6-v2 (embeddings, 384 dimensions)",
        "0",
        "0",
        1000,
        EMBEDDING_MAX_TOKENS,
    ),
    (
        "meta-llama/llama-3.3-70b-instruct:free",
        Provider.OPENROUTER,
        "meta-llama/llama-3.3-70b-instruct:free",
        "Llama 3.3 70B Instruct (free)",
        "0",
        "0",
        10,
        131072,
    ),
    (
        "google/gemini-2.0-flash-exp:free",
        Provider.OPENROUTER,
        "google/gemini-2.0-flash-exp:free",
        "Gemini 2.0 Flash Experimental (free)",
        "0",
        "0",
        20,
        1048576,
    ),
    ("openai/gpt-4o-mini", Provider.OPENROUTER, "openai/gpt-4o-mini", "GPT-4o mini", "0.15", "0.60", 1000, 128000),
    (
        "anthropic/claude-3.5-haiku",
        Provider.OPENROUTER,
        "anthropic/claude-3.5-haiku",
        "Claude 3.5 Haiku",
        "0.80",
        "4",
        1000,
        200000,
    ),
    (
        "google/gemini-2.0-flash-001",
        Provider.OPENROUTER,
        "google/gemini-2.0-flash-001",
        "Gemini 2.0 Flash",
        "0.10",
        "0.40",
        1000,
        1048576,
    ),
    (
        "gemini/gemini-2.0-flash",
        Provider.GEMINI,
        "gemini-2.0-flash",
        "Gemini 2.0 Flash (Google)",
        "0.10",
        "0.40",
        1000,
        1048576,
    ),
    (
        "gemini/gemini-2.0-flash-lite",
        Provider.GEMINI,
        "gemini-2.0-flash-lite",
        "Gemini 2.0 Flash-Lite (Google)",
        "0.075",
        "0.30",
        1000,
        1048576,
    ),
]

# Models for POST /v1/embeddings only (every other seed model is a chat model).
SEED_EMBEDDING_MODELS = {"local/all-minilm-l6-v2"}

# The seed models that take images (refresh_models brings OpenRouter's own word on it).
SEED_VISION_MODELS = {
    "google/gemini-2.0-flash-exp:free",
    "openai/gpt-4o-mini",
    "google/gemini-2.0-flash-001",
    "gemini/gemini-2.0-flash",
    "gemini/gemini-2.0-flash-lite",
}

# OpenRouter → Gemini: the same model family served directly by Google when OpenRouter fails.
SEED_FALLBACKS = {
    "google/gemini-2.0-flash-001": "gemini/gemini-2.0-flash",
}


def seed_catalogue() -> int:
    """Add the seed models that are missing; returns how many. Rows already there keep their prices
    (refresh_models brings current ones) and any edits made in admin: seeding runs on every start."""
    added = []
    for slug, provider, upstream_id, name, price_in, price_out, priority, context in SEED_MODELS:
        _, created = AIModel.objects.get_or_create(
            slug=slug,
            defaults=dict(
                provider=provider,
                upstream_id=upstream_id,
                name=name,
                context_length=context,
                input_price_per_m=Decimal(price_in),
                output_price_per_m=Decimal(price_out),
                auto_priority=priority,
                kind=AIModel.Kind.EMBEDDING if slug in SEED_EMBEDDING_MODELS else AIModel.Kind.CHAT,
                supports_images=slug in SEED_VISION_MODELS,
            ),
        )
        if created:
            added.append(slug)
    for slug, fallback_slug in SEED_FALLBACKS.items():
        if slug in added:
            AIModel.objects.filter(slug=slug).update(fallback=AIModel.objects.get(slug=fallback_slug))
            catalogue_changed()  # a queryset update sends no signal
    return len(added)
