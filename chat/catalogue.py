"""The model catalogue: as people see it (grouped by provider, only what this server can reach), and
as requests look models up."""

from __future__ import annotations

from itertools import groupby

from .conversations import AUTO, UnknownModel
from .models import AIModel, Provider
from .providers.router import configured_providers


def models_by_provider() -> list[tuple[str, list[AIModel]]]:
    available = configured_providers()
    models = AIModel.objects.active().filter(provider__in=available)
    ordered = sorted(models, key=lambda m: (available.index(m.provider), not m.is_free, m.name))
    return [(Provider(provider).label, list(group)) for provider, group in groupby(ordered, key=lambda m: m.provider)]


def active_model(slug: str) -> AIModel | None:
    """The active catalogue model of that slug; None means 'auto'. Raises UnknownModel. Sync."""
    if not slug or slug == AUTO:
        return None
    model = AIModel.objects.active().filter(slug=slug).first()
    if model is None:
        raise UnknownModel(f"The model '{slug}' is not in the catalogue.")
    return model
