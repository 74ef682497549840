"""The audit log (AuditEntry, read-only in the admin): plan changes and approvals, API keys issued and
revoked, staff sign-ins, admin edits, deleted accounts. `record` is the one way entries are written,
called where each of those happens (in the same transaction, so an entry exists if the action does)."""

from __future__ import annotations

from typing import Any

from django.db import models

from .models import AuditEntry

Action = AuditEntry.Action


def record(actor, action: str, target: models.Model | tuple[str, Any, str] | None = None, detail=None) -> AuditEntry:
    """Who (a user; None or anonymous: the system) did `action` to `target` (a row, or (type, id, text)
    of one that may be gone), with `detail` (JSON)."""
    if target is None:
        target_type, target_id, target_repr = "", "", ""
    elif isinstance(target, models.Model):
        target_type, target_id, target_repr = target._meta.label_lower, target.pk, str(target)
    else:
        target_type, target_id, target_repr = target
    return AuditEntry.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target_type=target_type,
        target_id="" if target_id is None else str(target_id),
        target_repr=str(target_repr)[:200],
        detail=detail or {},
    )
