"""The model catalogue as people see it: grouped by provider, only what this server can reach."""

from __future__ import annotations

from itertools import groupby

from .models import AIModel, Provider
from .providers.router import configured_providers


def models_by_provider() -> list[tuple[str, list[AIModel]]]:
    available = configured_providers()
    models = AIModel.objects.active().filter(provider__in=available)
    ordered = sorted(models, key=lambda m: (available.index(m.provider), not m.is_free, m.name))
    return [(Provider(provider).label, list(group)) for provider, group in groupby(ordered, key=lambda m: m.provider)]
