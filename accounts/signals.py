"""Logging out closes that user's open chat sockets, in every server process (via the channel layer)."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def close_sockets(user_id: int) -> None:
    """Close every open chat socket of this user (logging out, deleting the account)."""
    async_to_sync(get_channel_layer().group_send)(user_group(user_id), {"type": "session.logout"})


@receiver(user_logged_out)
def close_sockets_on_logout(sender, request, user, **kwargs):
    if user is not None:
        close_sockets(user.pk)
