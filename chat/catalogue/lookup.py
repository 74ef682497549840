"""The model catalogue: as people see it (grouped by provider, only what this server can reach), and
as requests read it (a per-process copy, dropped as soon as any process changes the catalogue).

Every change to AIModel rows bumps a version number in the shared cache once its transaction
commits: saves and deletes through signals (admin, update_or_create, get_or_create), queryset
updates by calling `catalogue_changed` (catalogue_sync, seed), and every change to a provider added in
the admin (the copy holds their names). A request reads that number (one
Redis round trip, inside the admission's thread hop) and reloads the whole table in one query when
it moved, so a deactivated or repriced model takes effect on the next request in every process.
Without Redis (REDIS_URL empty) the cache is per process and cannot see other processes' changes,
so nothing is kept: each lookup is a query, as before (and likewise inside a transaction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from aihub import shared_state

from .models import AIModel, Provider, ProviderEndpoint

VERSION_CACHE_KEY = "catalogue:version"
AUTO = "auto"


class UnknownModel(Exception):
    pass


def is_configured(provider: str) -> bool:
    """Whether this server has what it needs to call that provider (its settings)."""
    needs: dict[str, object] = {
        Provider.OPENROUTER: settings.OPENROUTER_API_KEY,
        Provider.GEMINI: settings.GEMINI_API_KEY,
        Provider.OPENAI_COMPAT: settings.OPENAI_COMPAT_BASE_URL,
        Provider.LOCAL: settings.LOCAL_MODEL_ENABLED,
    }
    return bool(needs.get(provider))


def reachable_models():
    """The active models of the providers this server can reach, as a lazy queryset (one query when
    evaluated, so async code may iterate it)."""
    from_environment = [name for name in settings.PROVIDER_CHAIN if is_configured(name)]
    added = ProviderEndpoint.objects.filter(is_active=True).values("name")
    return AIModel.objects.active().filter(Q(provider__in=from_environment) | Q(provider__in=added))


ADDED_PROVIDERS_CACHE_KEY = "catalogue:added-providers"


def added_providers() -> list[str]:
    """The names of the active providers added in the admin, from the cache (shared through Redis, and
    dropped at every change of one; otherwise this process's for a minute at most)."""
    names = cache.get_or_set(
        ADDED_PROVIDERS_CACHE_KEY,
        lambda: list(ProviderEndpoint.objects.filter(is_active=True).values_list("name", flat=True)),
        timeout=60,
    )
    return list(names or [])


def configured_providers(models: Catalogue | None = None) -> list[str]:
    """The providers this server can reach: those set in the environment in the order of
    settings.PROVIDER_CHAIN, then the active ones added in the admin (from `models`, a request's catalogue,
    where given: its copy holds them, no cache read per request). Sync."""
    added = models.added_providers() if models is not None else added_providers()
    return [name for name in settings.PROVIDER_CHAIN if is_configured(name)] + added


def models_by_provider() -> list[tuple[str, list[AIModel]]]:
    available = configured_providers()
    models = AIModel.objects.active().chat().filter(provider__in=available)
    ordered = sorted(models, key=lambda m: (available.index(m.provider), not m.is_free, m.name))
    return [(provider_label(provider), list(group)) for provider, group in groupby(ordered, key=lambda m: m.provider)]


def provider_label(name: str) -> str:
    """'openai_compat' -> 'OpenAI-compatible'; a provider added in the admin (or gone) by its name."""
    return Provider(name).label if name in Provider.values else name


def catalogue_changed() -> None:
    """Tell every process its copy of the catalogue is stale. After the commit: a process reloading
    in between would otherwise keep the old rows under the new version."""
    transaction.on_commit(lambda: shared_state.bump(VERSION_CACHE_KEY))


@receiver(post_save, sender=AIModel)
@receiver(post_delete, sender=AIModel)
def _catalogue_row_changed(**kwargs) -> None:
    catalogue_changed()


@receiver(post_save, sender=ProviderEndpoint)
@receiver(post_delete, sender=ProviderEndpoint)
def _provider_changed(**kwargs) -> None:
    transaction.on_commit(lambda: cache.delete(ADDED_PROVIDERS_CACHE_KEY))
    catalogue_changed()  # the processes' copies hold the added providers too


class LiveCatalogue:
    """Lookups straight from the database (no shared cache to tell when a copy goes stale)."""

    def active(self, slug: str) -> AIModel | None:
        if "\x00" in slug:  # no slug holds one, and PostgreSQL refuses it in a query
            return None
        return AIModel.objects.active().filter(slug=slug).first()

    def get(self, pk: int) -> AIModel | None:
        return AIModel.objects.filter(pk=pk).first()

    def active_free(self) -> list[AIModel]:
        """The free chat models: those 'auto' picks from."""
        return list(AIModel.objects.active().chat().free())

    def added_providers(self) -> list[str]:
        return added_providers()


@dataclass
class CatalogueCopy:
    """Every AIModel row and the active added providers' names as of `version`. Its objects are shared by
    concurrent requests: read only."""

    version: int
    by_pk: dict[int, AIModel] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.by_slug = {m.slug: m for m in self.by_pk.values() if m.is_active}

    def active(self, slug: str) -> AIModel | None:
        return self.by_slug.get(slug)

    def get(self, pk: int) -> AIModel | None:
        return self.by_pk.get(pk)

    def active_free(self) -> list[AIModel]:
        return [m for m in self.by_slug.values() if m.is_free and m.kind == AIModel.Kind.CHAT]

    def added_providers(self) -> list[str]:
        return self.added


Catalogue = LiveCatalogue | CatalogueCopy

_copy: CatalogueCopy | None = None


def current() -> Catalogue:
    """The catalogue to read for this request (read it once per request). Sync: one Redis round trip,
    plus one query after a change."""
    global _copy
    # Rows read inside a transaction may yet be rolled back: such a read is not kept.
    if not shared_state.redis_configured() or transaction.get_connection().in_atomic_block:
        return LiveCatalogue()
    version = shared_state.version(VERSION_CACHE_KEY)
    if _copy is None or _copy.version != version:
        # Tagged with the version read before loading: a change racing the load is reloaded next time.
        _copy = CatalogueCopy(
            version,
            {m.pk: m for m in AIModel.objects.all()},
            list(ProviderEndpoint.objects.filter(is_active=True).values_list("name", flat=True)),
        )
    return _copy


def active_model(slug: str, models: Catalogue | None = None) -> AIModel | None:
    """The active model of that slug in `models` (the current catalogue when not given); None means
    'auto'. Raises UnknownModel. Sync."""
    if not slug or slug == AUTO:
        return None
    model = (models or current()).active(slug)
    if model is None:
        raise UnknownModel(f"The model '{slug}' is not in the catalogue.")
    return model
