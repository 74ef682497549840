"""Chat's own rows: conversations and their messages. The catalogue's AIModel is defined in
chat/catalogue/models.py and imported here so that Django registers it with the chat app."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Case, Count, OuterRef, Subquery, When
from django.urls import reverse
from django.utils import timezone

from chat.catalogue.models import AIModel, Provider, ProviderEndpoint  # noqa: F401 (registered here)

__all__ = ["AIModel", "Attachment", "Conversation", "Message", "Provider", "SharedLink"]


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, default="New chat")
    model = models.ForeignKey(AIModel, null=True, blank=True, on_delete=models.SET_NULL)
    system_prompt = models.TextField(blank=True, help_text="Sent first with every request of this conversation.")
    pinned = models.BooleanField(default=False, help_text="Listed first in the sidebar.")
    archived = models.BooleanField(default=False, help_text="Left out of the sidebar's list (under 'Archived').")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-updated_at"], name="conversation_user_recent"),
            # The sidebar's list: one owner's conversations, archived or not, pinned first, newest first.
            models.Index(fields=["user", "archived", "-pinned", "-updated_at"], name="conversation_sidebar"),
        ]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("chat:conversation", args=[self.pk])


def _count(rows: models.QuerySet) -> Subquery:
    return Subquery(rows.order_by().values("role").annotate(n=Count("pk")).values("n"))


class MessageQuerySet(models.QuerySet):
    def on_path(self):
        """The messages of the active path: the branch on screen, the history sent upstream."""
        return self.filter(on_path=True)

    def with_versions(self):
        """Each message with `version_count` (it and its siblings: the other answers to its parent, the other
        edits of its question) and `version_number` (its place among them, oldest first), in the same query."""
        siblings = Message.objects.filter(parent_id=OuterRef("parent_id"), role=OuterRef("role"))
        # The first message and its edits have no parent: their siblings are the conversation's other roots.
        roots = Message.objects.filter(
            conversation_id=OuterRef("conversation_id"), parent__isnull=True, role=OuterRef("role")
        )
        return self.annotate(
            version_count=Case(When(parent__isnull=True, then=_count(roots)), default=_count(siblings)),
            version_number=Case(
                When(parent__isnull=True, then=_count(roots.filter(id__lte=OuterRef("id")))),
                default=_count(siblings.filter(id__lte=OuterRef("id"))),
            ),
        )


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
    # The messages form a tree: an edited message is a sibling of the original (same parent), a regenerated
    # reply a sibling of the reply it redoes. The path on screen is marked `on_path` (its ids grow from the
    # first message to the last), so that paging, history and context read it without walking the tree.
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        help_text="The message this one follows (empty for the first message and its edits).",
    )
    on_path = models.BooleanField(default=True, help_text="On the branch shown and sent upstream.")
    chosen_at = models.DateTimeField(
        default=timezone.now,
        help_text="When it was last put on the path: going back to a branch shows its most recently chosen versions.",
    )
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

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "id"], name="message_conversation_id")]

    def __str__(self):
        return f"{self.role}: {self.content[:40]}"

    def save(self, *args, **kwargs):
        if self._state.adding and self.parent_id is None:
            # A message added without a parent continues the conversation's path (none: it is the first).
            self.parent_id = (
                Message.objects.filter(conversation_id=self.conversation_id, on_path=True)
                .order_by("-id")
                .values_list("id", flat=True)
                .first()
            )
        super().save(*args, **kwargs)


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
