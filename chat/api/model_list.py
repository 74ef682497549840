"""The model catalogue as the API lists it: OpenAI's list format with OpenRouter's pricing fields."""

from __future__ import annotations

from decimal import Decimal

from chat.catalogue.lookup import AUTO, reachable_models
from chat.catalogue.models import AIModel

MILLION = Decimal(1_000_000)


def _per_token(price_per_m: Decimal) -> str:
    """OpenRouter gives USD per token as a decimal string ("0.00000015")."""
    return f"{(price_per_m / MILLION).normalize():f}"


def model_entry(model: AIModel) -> dict:
    return {
        "id": model.slug,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.provider,
        "name": model.name,
        "description": model.description,
        "context_length": model.context_length,
        "pricing": {"prompt": _per_token(model.input_price_per_m), "completion": _per_token(model.output_price_per_m)},
    }


AUTO_ENTRY = {
    "id": AUTO,
    "object": "model",
    "created": 0,
    "owned_by": "aihub",
    "name": "Auto (best free model available)",
    "description": "Routes to the free models in priority order, falling back when one fails.",
    "context_length": None,
    "pricing": {"prompt": "0", "completion": "0"},
}


async def model_list(caller) -> dict:
    """Active models this server can reach that the caller may use, plus 'auto'."""
    models = reachable_models().order_by("slug")
    data = [model_entry(model) async for model in models if caller.may_use(model)]
    if caller.may_use(None):
        data.insert(0, AUTO_ENTRY)
    return {"object": "list", "data": data}
