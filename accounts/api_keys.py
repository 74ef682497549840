"""API keys: issuing them, recognising them, and looking them up fast while honouring revocation.

A key reads `ahk_` + 32 random base62 characters (190 bits) + a 6-character CRC32 checksum of
them, like GitHub's tokens: a scanner can spot a leaked key by its prefix, and a mistyped or
made-up key is refused by its checksum before any database or cache lookup. Only the SHA-256 of
the whole key is stored, with a short prefix to show in lists.

With Redis (REDIS_URL), lookups are cached per process for a short while. Every revocation (or
other change to a key) bumps a shared version (aihub/shared_state.py), which each request reads: a
process drops cached entries of an older version, so a revoked key is refused by every server process
on its next request. Without Redis the cache is per process only, so nothing is cached: each
request reads the key's row (one indexed query).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
import zlib
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from aihub import shared_state

from . import audit
from .models import ApiKey, User

if TYPE_CHECKING:
    from chat.catalogue.models import AIModel

KEY_PREFIX = "ahk_"
SECRET_CHARS = 32
CHECKSUM_CHARS = 6
LOOKUP_PREFIX_CHARS = len(KEY_PREFIX) + 8
KEY_LENGTH = len(KEY_PREFIX) + SECRET_CHARS + CHECKSUM_CHARS
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase

VERSION_CACHE_KEY = "api_keys:version"
CACHE_SECONDS = 60.0
CACHE_MAX_ENTRIES = 10_000


class KeyRefused(Exception):
    """The key cannot be used. `code` says why (invalid_api_key, revoked_api_key, expired_api_key)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(secret: str) -> str:
    return _base62(zlib.crc32(secret.encode()), CHECKSUM_CHARS)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def is_well_formed(raw_key: str) -> bool:
    """Prefix, length, alphabet and checksum: no I/O, so forged keys cost nothing to refuse."""
    if len(raw_key) != KEY_LENGTH or not raw_key.startswith(KEY_PREFIX):
        return False
    body = raw_key[len(KEY_PREFIX) :]
    if any(char not in BASE62 for char in body):
        return False
    secret, checksum = body[:SECRET_CHARS], body[SECRET_CHARS:]
    return hmac.compare_digest(_checksum(secret), checksum)


def generate_key() -> str:
    secret = "".join(secrets.choice(BASE62) for _ in range(SECRET_CHARS))
    return KEY_PREFIX + secret + _checksum(secret)


class KeyLimitReached(Exception):
    """The user has as many active keys as their plan allows."""


@transaction.atomic
def issue_key(
    user: User,
    name: str,
    *,
    expires_at: datetime | None = None,
    allowed_models: Iterable[AIModel] = (),
    monthly_budget: Decimal | None = None,
    max_active_keys: int | None = None,
    actor: User | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never stored and cannot be shown again.
    With `max_active_keys`, raises KeyLimitReached when the user already has that many unrevoked keys.
    `actor`: who issued it, for the audit log (None: a command)."""
    if max_active_keys is not None:
        # The user's row lock makes concurrent issues take turns (across processes): each counts the
        # keys the ones before it created.
        get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()
        if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= max_active_keys:
            raise KeyLimitReached(max_active_keys)
    raw_key = generate_key()
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=raw_key[:LOOKUP_PREFIX_CHARS],
        hashed_key=hash_key(raw_key),
        expires_at=expires_at,
        monthly_budget=monthly_budget,
    )
    if allowed_models:
        api_key.allowed_models.set(allowed_models)
    audit.record(actor, audit.Action.KEY_ISSUED, api_key, {"owner_id": user.pk})
    return api_key, raw_key


def keys_changed() -> None:
    """Tell every process that cached key lookups are stale (after revoking or editing keys)."""
    shared_state.bump(VERSION_CACHE_KEY)


@transaction.atomic
def revoke(queryset: QuerySet[ApiKey], actor: User | None = None) -> int:
    """Revoke the keys of a queryset (those not revoked yet); effective on the next request everywhere.
    Each is in the audit log, revoked by `actor`."""
    # The rows themselves, locked (the queryset may carry annotations that cannot be locked).
    asked = list(queryset.values_list("pk", flat=True))
    revoked = list(ApiKey.objects.select_for_update().filter(pk__in=asked, revoked_at__isnull=True))
    ApiKey.objects.filter(pk__in=[key.pk for key in revoked]).update(revoked_at=timezone.now())
    for key in revoked:
        audit.record(actor, audit.Action.KEY_REVOKED, key, {"owner_id": key.user_id})
    keys_changed()
    return len(revoked)


# hash -> (version it was read under, monotonic time it was read, the key with its user)
_cached: dict[str, tuple[int | None, float, ApiKey]] = {}


async def _load(hashed: str) -> ApiKey | None:
    api_key = await ApiKey.objects.select_related("user").filter(hashed_key=hashed).afirst()
    if api_key is not None:
        api_key.allowed_model_ids = frozenset([pk async for pk in api_key.allowed_models.values_list("pk", flat=True)])
    return api_key


async def authenticate(raw_key: str) -> ApiKey:
    """The usable key for this secret, its user loaded and `allowed_model_ids` set. Raises KeyRefused."""
    if not is_well_formed(raw_key):
        raise KeyRefused("invalid_api_key", "Incorrect API key provided.")
    hashed = hash_key(raw_key)
    shared = shared_state.redis_configured()
    version = await shared_state.aversion(VERSION_CACHE_KEY) if shared else None
    entry = _cached.get(hashed) if shared else None
    now = time.monotonic()
    if entry is not None and entry[0] == version and now - entry[1] < CACHE_SECONDS:
        api_key = entry[2]
    else:
        loaded = await _load(hashed)
        if loaded is None:  # unknown keys are not cached: a key issued a moment ago works at once
            raise KeyRefused("invalid_api_key", "Incorrect API key provided.")
        api_key = loaded
        if shared:
            if len(_cached) >= CACHE_MAX_ENTRIES:
                _cached.clear()
            # Tagged with the version read before the lookup: a revocation racing it stays visible.
            _cached[hashed] = (version, now, api_key)
    if api_key.revoked_at is not None:
        raise KeyRefused("revoked_api_key", "This API key has been revoked.")
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise KeyRefused("expired_api_key", "This API key has expired.")
    if not api_key.user.is_active:
        raise KeyRefused("invalid_api_key", "Incorrect API key provided.")
    return api_key
