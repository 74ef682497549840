"""Chat's own rows: conversations and their messages. The catalogue's AIModel is defined in
chat/catalogue/models.py and imported here so that Django registers it with the chat app."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse

from chat.catalogue.models import AIModel, Provider, ProviderEndpoint  # noqa: F401 (registered here)

__all__ = ["AIModel", "Attachment", "Conversation", "Message", "Provider", "SharedLink"]


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, default="New chat")
    model = models.ForeignKey(AIModel, null=True, blank=True, on_delete=models.SET_NULL)
    system_prompt = models.TextField(blank=True, help_text="Sent first with every request of this conversation.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="conversation_user_recent")]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("chat:conversation", args=[self.pk])


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        FAILED = "failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    model = models.ForeignKey(AIModel, null=True, blank=True, on_delete=models.SET_NULL)
    # A reply's request id; its usage row (tokens, cost, provider, timings) is written under that id when the
    # request settles, or never (refused before any upstream call). No database constraint: the id comes first.
    usage = models.ForeignKey(
        "billing.UsageRecord",
        to_field="request_id",
        db_column="request_id",
        db_constraint=False,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
    )
    sources = models.JSONField(
        default=list, blank=True, help_text="Web search results given to the model: [{title, url, snippet}]."
    )
    search_note = models.CharField(max_length=500, blank=True, help_text="Why a requested web search is missing.")
    first_sent_id = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The oldest message sent with this reply's request when older ones did not fit the model's "
        "context; empty when the whole history was sent.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "id"], name="message_conversation_id")]

    def __str__(self):
        return f"{self.role}: {self.content[:40]}"


class SharedLink(models.Model):
    """A read-only link to a snapshot of a conversation, taken when it was shared. Revoking deletes
    the row (the link then answers 404); deleting the conversation deletes its links."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shared_links")
    token = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    snapshot = models.JSONField(help_text="The messages as they were when shared; nothing about the owner.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("shared_conversation", args=[self.token])


def attachment_path(attachment: Attachment, filename: str) -> str:
    """A random name under the owner's folder: nothing of the uploaded name, nothing guessable."""
    return f"attachments/{attachment.user_id}/{uuid.uuid4().hex}"


class Attachment(models.Model):
    """A file sent with a message: a document (its text goes to the model) or an image (an image part,
    for models that take images). Uploaded before the message is sent (`message` empty until then);
    deleted with its message, so with its conversation (the stored file too: chat/attachments.py)."""

    class Kind(models.TextChoices):
        DOCUMENT = "document"
        IMAGE = "image"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=200)
    name = models.CharField(max_length=255, help_text="The name it was uploaded with (shown, never used as a path).")
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    text = models.TextField(blank=True, help_text="A document's text, as given to the model.")
    tokens = models.PositiveIntegerField(default=0, help_text="What it adds to a request's prompt.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["user", "message"], name="attachment_user_message")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("chat:attachment", args=[self.pk])
