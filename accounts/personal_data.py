"""A person's own data: one export of all of it, and deleting their account.

Each app looks after what it holds through two signals (apps above this layer cannot be imported
here): on `data_export` a receiver returns the files it adds to the export ({path: text}); on
`account_erasing` it deletes or anonymises the person's rows (inside the deletion's transaction).

Deleting keeps the user row as an anonymous tombstone (no email, no name, no password, inactive)
so that what accounting needs keeps pointing at one account: usage rows, searches, subscriptions
and invoices stay, API keys stay revoked (usage rows name their key). Conversations, files, shared
links, email addresses, authenticators and plan enquiries go."""

from __future__ import annotations

import io
import json
import zipfile

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from . import api_keys, audit
from .models import ApiKey, AuditEntry, User
from .signals import close_sockets

EXPORT_FORMAT = "aihub.account-export.v1"
DELETED_EMAIL_DOMAIN = "deleted.invalid"  # .invalid never resolves: no mail can reach it

data_export = Signal()  # receivers: (sender, user) -> {path inside the ZIP: text}
account_erasing = Signal()  # receivers: (sender, user) -> None


def iso(moment) -> str | None:
    """A moment in an export (ISO 8601), or None."""
    return moment.isoformat() if moment else None


def account_record(user: User) -> dict:
    """The profile, email addresses, two-factor methods and API keys (metadata: never a secret or hash)."""
    keys = ApiKey.objects.filter(user=user).prefetch_related("allowed_models")
    return {
        "format": EXPORT_FORMAT,
        "exported_at": timezone.now().isoformat(),
        "profile": {
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "date_joined": iso(user.date_joined),
            "last_login": iso(user.last_login),
            "theme": user.theme,
            "default_model": user.default_model.slug if user.default_model else None,
            "custom_instructions": user.custom_instructions,
        },
        "email_addresses": [
            {"email": a.email, "verified": a.verified, "primary": a.primary}
            for a in EmailAddress.objects.filter(user=user)
        ],
        "two_factor": sorted(Authenticator.objects.filter(user=user).values_list("type", flat=True)),
        "api_keys": [
            {
                "name": key.name,
                "prefix": key.prefix,
                "status": key.status,
                "created_at": iso(key.created_at),
                "last_used_at": iso(key.last_used_at),
                "expires_at": iso(key.expires_at),
                "revoked_at": iso(key.revoked_at),
                "allowed_models": sorted(m.slug for m in key.allowed_models.all()),
                "monthly_budget": str(key.monthly_budget) if key.monthly_budget is not None else None,
            }
            for key in keys
        ],
    }


def export(user: User) -> bytes:
    """Everything the person has here, as one ZIP: account.json and each app's files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("account.json", json.dumps(account_record(user), indent=2))
        for _, files in data_export.send(sender=User, user=user):
            files_of_app: dict[str, str] = files  # type: ignore[assignment]  # what the receivers return
            for path, text in files_of_app.items():
                archive.writestr(path, text)
    return buffer.getvalue()


def tombstone_email(user: User) -> str:
    return f"deleted-{user.pk}@{DELETED_EMAIL_DOMAIN}"


@transaction.atomic
def delete_account(user: User, actor: User | None = None) -> None:
    """Erase the person: every app's part, then the user row made an anonymous, inactive tombstone
    (its changed password hash and inactivity end every session) and their chat sockets closed."""
    actor = actor or user
    account_erasing.send(sender=User, user=user)
    api_keys.revoke(ApiKey.objects.filter(user=user), actor=actor)
    EmailAddress.objects.filter(user=user).delete()
    Authenticator.objects.filter(user=user).delete()
    user.email = tombstone_email(user)
    user.first_name = user.last_name = user.custom_instructions = ""
    user.default_model = None
    user.theme = User.Theme.SYSTEM
    user.is_active = user.is_staff = user.is_superuser = False
    user.deleted_at = timezone.now()
    user.set_unusable_password()
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
    # The log keeps what was done, not who it was: entries naming the person now name the tombstone.
    AuditEntry.objects.filter(target_type=User._meta.label_lower, target_id=str(user.pk)).update(target_repr=user.email)
    audit.record(actor, audit.Action.ACCOUNT_DELETED, user)
    transaction.on_commit(lambda: close_sockets(user.pk))
