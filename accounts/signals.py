"""Logging out closes that user's open chat sockets, in every server process (via the channel layer).
Staff sign-ins, two-factor changes and the admin's own log of edits go to the audit log."""

from allauth.mfa.signals import authenticator_added, authenticator_removed, authenticator_reset
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_save
from django.dispatch import receiver

from . import audit


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def close_sockets(user_id: int) -> None:
    """Close every open chat socket of this user (logging out, deleting the account)."""
    async_to_sync(get_channel_layer().group_send)(user_group(user_id), {"type": "session.logout"})


@receiver(user_logged_out)
def close_sockets_on_logout(sender, request, user, **kwargs):
    if user is not None:
        close_sockets(user.pk)


@receiver(user_logged_in)
def audit_staff_sign_in(sender, request, user, **kwargs):
    if user.is_staff:
        address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
        audit.record(user, audit.Action.STAFF_SIGNED_IN, user, {"ip": address})


ADMIN_ACTIONS = {
    ADDITION: audit.Action.ADMIN_ADDED,
    CHANGE: audit.Action.ADMIN_CHANGED,
    DELETION: audit.Action.ADMIN_DELETED,
}


@receiver(post_save, sender=LogEntry)
def audit_admin_edit(sender, instance: LogEntry, created: bool, raw: bool = False, **kwargs):
    """Each edit the admin logs (one object's add, change or delete form) in the audit log too. The
    admin's "delete selected" of several objects bulk-creates its log rows without this signal: those are
    in Admin → Log entries."""
    if created and not raw:
        content_type = instance.content_type
        label = f"{content_type.app_label}.{content_type.model}" if content_type else ""
        audit.record(
            instance.user,
            ADMIN_ACTIONS.get(instance.action_flag, audit.Action.ADMIN_CHANGED),
            (label, instance.object_id, instance.object_repr),
            {"message": instance.get_change_message()},
        )


TWO_FACTOR_ACTIONS = {
    authenticator_added: audit.Action.TWO_FACTOR_ADDED,
    authenticator_removed: audit.Action.TWO_FACTOR_REMOVED,
    authenticator_reset: audit.Action.TWO_FACTOR_RESET,
}


@receiver([authenticator_added, authenticator_removed, authenticator_reset])
def audit_two_factor_change(sender, request, user, authenticator, signal, **kwargs):
    audit.record(user, TWO_FACTOR_ACTIONS[signal], user, {"type": authenticator.type})
