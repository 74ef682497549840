"""The chat's part of a person's export (their conversations, as the conversations ZIP has them) and
of deleting their account (conversations with their messages, files and share links; unsent files)."""

from __future__ import annotations

from django.dispatch import receiver

from accounts.personal_data import account_erasing, data_export

from . import sharing
from .models import Attachment, Conversation


@receiver(data_export)
def export_conversations(sender, user, **kwargs) -> dict[str, str]:
    return {f"conversations/{path}": text for path, text in sharing.conversation_files(user)}


@receiver(account_erasing)
def delete_conversations(sender, user, **kwargs) -> None:
    # Row by row (Django's collector, not a bulk delete): each attachment's stored file goes with it.
    Conversation.objects.filter(user=user).delete()
    Attachment.objects.filter(user=user).delete()
