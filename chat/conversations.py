"""What happens to a conversation: messages added, replies replaced, titles made, history built."""

from __future__ import annotations

from django.db import transaction

from .catalogue.lookup import AUTO, UnknownModel
from .models import AIModel, Conversation, Message

TITLE_CHARS = 60


async def resolve_model(slug: str) -> AIModel | None:
    """The active catalogue model of that slug; None means 'auto'."""
    if not slug or slug == AUTO:
        return None
    model = await AIModel.objects.active().filter(slug=slug).afirst()
    if model is None:
        raise UnknownModel(f"The model '{slug}' is not in the catalogue.")
    return model


def title_from(text: str) -> str:
    """A title from the first message: its first line, cut at a word boundary."""
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line or "New chat"
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut + "…"


def preferred_model(user) -> str:
    """The slug a new chat starts with: the user's default model, else the model of their last chat,
    else auto (a model since taken out of the catalogue counts as none)."""
    model = user.default_model
    if model is None:
        last = Conversation.objects.filter(user=user).select_related("model").first()
        model = last.model if last else None
    return model.slug if model is not None and model.is_active else AUTO


@transaction.atomic
def start_conversation(user, text: str, model: AIModel | None):
    """A conversation is stored with its first message, never empty. Returns (conversation, message, reply)."""
    conversation = Conversation.objects.create(user=user, title=title_from(text), model=model)
    user_message, reply, _ = add_user_message(conversation, text, model)
    return conversation, user_message, reply


@transaction.atomic
def add_user_message(conversation: Conversation, text: str, model: AIModel | None):
    """Save the user's message and an empty reply to stream into. Returns (message, reply, title_changed)."""
    first = not conversation.messages.exists()
    user_message = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=text)
    reply = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, model=model
    )
    conversation.model = model
    fields = ["model", "updated_at"]
    if first:
        conversation.title = title_from(text)
        fields.append("title")
    conversation.save(update_fields=fields)
    return user_message, reply, first


@transaction.atomic
def replace_last_reply(conversation: Conversation, model: AIModel | None):
    """Delete the last reply (if any) and start a new one. Returns (deleted reply id, new reply)."""
    last = conversation.messages.order_by("-created_at", "-id").first()
    if last is None:
        return None, None
    replaced = None
    if last.role == Message.Role.ASSISTANT:
        replaced = last.pk
        last.delete()
    reply = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, model=model
    )
    return replaced, reply


def history_for(conversation: Conversation, reply: Message) -> list[dict]:
    """The messages sent upstream for this reply: everything before it with text."""
    rows = conversation.messages.filter(id__lt=reply.pk).exclude(content="").values_list("role", "content")
    return [{"role": role, "content": content} for role, content in rows]


async def fail_reply(reply: Message, error: str) -> None:
    """Mark a reply that never reached the metering as failed, so it does not stay 'streaming'."""
    await Message.objects.filter(pk=reply.pk, status=Message.Status.STREAMING).aupdate(
        status=Message.Status.FAILED, error=error
    )
