"""What happens to a conversation: messages added, replies replaced and stored, titles made, history built;
and an exchange started (the chat socket and the REST API start theirs here)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiKey, User
from billing import limits, outbox
from billing.models import UsageRecord

from . import attachments
from .catalogue.lookup import AUTO
from .gateway.generation import Generation
from .models import AIModel, Attachment, Conversation, Message

TITLE_CHARS = 60
MAX_MESSAGE_CHARS = 32_000
MAX_SYSTEM_PROMPT_CHARS = 8_000


class ReplyInProgress(Exception):
    def __init__(self):
        super().__init__("A reply is still being written. Stop it or wait for it to finish.")


def _one_reply_at_a_time(conversation: Conversation) -> None:
    """Inside a transaction: the conversation's row is locked, so two tabs sending at once take turns,
    and the second finds the first one's reply being written (a reply is per conversation, not per socket)."""
    list(Conversation.objects.select_for_update().filter(pk=conversation.pk).values_list("pk", flat=True))
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise ReplyInProgress


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
def start_conversation(user, text: str, model: AIModel | None, system_prompt: str = ""):
    """A conversation is stored with its first message, never empty: three inserts, as a new conversation
    has no path to look up and no reply in progress. Returns (conversation, message, reply)."""
    conversation = Conversation.objects.create(
        user=user, title=title_from(text), model=model, system_prompt=system_prompt
    )
    # bulk_create: Message.save would look for the path's end to hang a message without parent on
    (user_message,) = Message.objects.bulk_create(
        [Message(conversation=conversation, role=Message.Role.USER, content=text)]
    )
    return conversation, user_message, _new_reply(conversation, model, user_message)


class NotOnPath(Exception):
    def __init__(self):
        super().__init__("That message is not in this conversation as it is shown: reload the page.")


def _path_end(conversation: Conversation) -> Message | None:
    return conversation.messages.on_path().order_by("-id").first()


def _leave_path_after(conversation: Conversation, parent_id: int | None) -> None:
    """Take the path's messages after `parent_id` (all of them for None) off the path: a new branch starts
    there. The path's ids grow along it, so they are the path's messages with greater ids."""
    conversation.messages.on_path().filter(id__gt=parent_id or 0).update(on_path=False)


def _shown_message(conversation: Conversation, message_id: int, role: str) -> Message:
    """A message of this conversation on the path shown (an edit or a switch starts from what is on screen)."""
    message = conversation.messages.on_path().filter(pk=message_id, role=role).first()
    if message is None:
        raise NotOnPath
    return message


@transaction.atomic
def add_user_message(conversation: Conversation, text: str, model: AIModel | None, edit_of: int | None = None):
    """Save the user's message and an empty reply to stream into. Returns (message, reply, title_changed).
    With `edit_of` (a user message on the path) the message is a new version of that one: a new branch from
    the same parent, the old one kept off the path with its reply. Raises ReplyInProgress, NotOnPath."""
    _one_reply_at_a_time(conversation)
    edited = None if edit_of is None else _shown_message(conversation, edit_of, Message.Role.USER)
    first = False
    if edited is None:
        parent = _path_end(conversation)
        first = parent is None  # no message yet
    else:
        _leave_path_after(conversation, edited.parent_id)
        parent = edited.parent
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=text, parent=parent
    )
    if edited is not None:  # the edit is sent with the files of the message it replaces
        attachments.carry_over(edited, user_message)
    reply = _new_reply(conversation, model, user_message)
    conversation.model = model
    fields = ["model", "updated_at"]
    if first:
        conversation.title = title_from(text)
        fields.append("title")
    conversation.save(update_fields=fields)
    return user_message, reply, first


@transaction.atomic
def add_reply_version(conversation: Conversation, model: AIModel | None):
    """A new reply to the path's last question: a sibling of the last reply, which stays (off the path, with
    its usage row). Returns (the reply it is a new version of or None, the new reply); (None, None) when
    there is nothing to answer. Raises ReplyInProgress."""
    _one_reply_at_a_time(conversation)
    last = _path_end(conversation)
    if last is None:
        return None, None
    previous = None
    question = last
    if last.role == Message.Role.ASSISTANT and last.parent is not None:
        previous, question = last, last.parent
        _leave_path_after(conversation, question.pk)
    return previous, _new_reply(conversation, model, question)


@transaction.atomic
def show_version(conversation: Conversation, message_id: int, step: int) -> Message:
    """Put the sibling `step` places from a message on the path (-1: the previous version, 1: the next),
    with the branch below it as it was last shown. Returns the sibling shown. Raises ReplyInProgress,
    NotOnPath (also for a step past the first or last version)."""
    _one_reply_at_a_time(conversation)
    shown = conversation.messages.on_path().filter(pk=message_id).first()
    if shown is None:
        raise NotOnPath
    siblings = conversation.messages.filter(parent_id=shown.parent_id, role=shown.role).order_by("id")
    ids = list(siblings.values_list("id", flat=True))
    place = ids.index(shown.pk) + step
    if not 0 <= place < len(ids):
        raise NotOnPath
    _leave_path_after(conversation, shown.parent_id)
    chosen = [ids[place], *_branch_below(conversation, ids[place])]
    conversation.messages.filter(pk__in=chosen).update(on_path=True, chosen_at=timezone.now())
    return conversation.messages.get(pk=ids[place])


def _branch_below(conversation: Conversation, message_id: int) -> list[int]:
    """The messages below one, following at each step the version chosen last (the newest when none was)."""
    rows = conversation.messages.filter(id__gt=message_id).values_list("id", "parent_id", "chosen_at")
    latest: dict[int, tuple] = {}
    for pk, parent_id, chosen_at in rows:
        if parent_id is not None and (parent_id not in latest or (chosen_at, pk) > latest[parent_id]):
            latest[parent_id] = (chosen_at, pk)
    below, at = [], message_id
    while at in latest:
        at = latest[at][1]
        below.append(at)
    return below


def _new_reply(conversation: Conversation, model: AIModel | None, question: Message) -> Message:
    """An empty reply to stream into, with the id of the request that will write it."""
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
        usage_id=uuid.uuid4(),
        parent=question,
    )


def streaming_reply_ids(conversation: Conversation) -> list[int]:
    return list(conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True))


def history_for(conversation: Conversation, reply: Message | None) -> list[dict]:
    """The messages that may be sent upstream for this reply (None: for the next message): everything
    before it on the path shown with text, with their attachments (the generation then fits them to the
    model's context: chat.gateway.context_window)."""
    rows = conversation.messages.on_path().exclude(content="")
    if reply is not None:
        rows = rows.filter(id__lt=reply.pk)
    found = list(rows.values_list("id", "role", "content"))
    history = [{"role": role, "content": content} for _, role, content in found]
    return attachments.with_attachments(history, [pk for pk, _, _ in found], reply.model if reply else None)


def first_history(user_message: Message, files: Sequence[Attachment]) -> list[dict]:
    """A new conversation's history (as history_for would read it): its first message with its files, known
    without a query."""
    entry = {"role": Message.Role.USER.value, "content": user_message.content}
    return [attachments.with_files(entry, list(files), user_message.conversation.model)]


def first_sent_id(reply: Message, generation: Generation) -> int | None:
    """The oldest message of the reply's history (as history_for reads it) that its request sent, when
    older ones were left out to fit the model's context (the page marks where they stop being sent)."""
    if generation.admission is None or not generation.admission.dropped_messages:
        return None
    sent = sum(1 for m in generation.messages if m["role"] != "system")
    newest_first = (
        Message.objects.filter(conversation_id=reply.conversation_id, id__lt=reply.pk, on_path=True)
        .exclude(content="")
        .exclude(role=Message.Role.SYSTEM)
        .order_by("-id")
    )
    return newest_first.values_list("id", flat=True)[sent - 1 : sent].first()


def instructions_for(conversation: Conversation) -> list[dict]:
    """The system message sent first: the owner's custom instructions, then the conversation's system prompt
    (read now: either may have changed since the socket opened)."""
    custom = User.objects.filter(pk=conversation.user_id).values_list("custom_instructions", flat=True).first()
    text = "\n\n".join(part.strip() for part in (custom or "", conversation.system_prompt) if part.strip())
    return [{"role": "system", "content": text}] if text else []


def store_reply(reply: Message, generation: Generation, usage: UsageRecord | None) -> None:
    """The reply as its request left it: called by the generation when the request is over, after its
    usage row is committed, or with no row when the plan refused it."""
    if usage is None:
        mark_failed(reply, generation.error)
        return
    # An update, not a save: a reply deleted meanwhile (with its conversation, or replaced) is no error.
    Message.objects.filter(pk=reply.pk).update(
        content=generation.text,
        status=generation.status,
        error=generation.error,
        model=generation.trail.model,
        first_sent_id=first_sent_id(reply, generation),
    )
    Conversation.objects.filter(pk=reply.conversation_id).update(updated_at=timezone.now())


def generation_for(
    reply: Message,
    *,
    user: User,
    model: AIModel | None,
    api_key: ApiKey | None = None,
    params: dict | None = None,
    history: list[dict] | None = None,
) -> Generation:
    """The request that writes this reply: the conversation's history up to it (`history` when the caller
    knows it), under the reply's request id."""
    if history is None:
        history = history_for(reply.conversation, reply)
    return Generation(
        user=user,
        model=model,
        messages=instructions_for(reply.conversation) + history,
        params=params,
        api_key=api_key,
        request_id=reply.usage_id,
        on_finish=partial(store_reply, reply),
        on_checkpoint=partial(checkpoint_reply, reply.pk),
    )


@dataclass
class Exchange:
    """A message and the reply being written to it, or (regenerating) only the reply."""

    conversation: Conversation
    reply: Message
    generation: Generation
    user_message: Message | None = None
    title_changed: bool = False
    previous_version: Message | None = None  # the reply a regeneration makes a new version of
    branched: bool = False  # an edit: the path shown changed above the new message


async def start_exchange(
    *,
    user: User,
    conversation: Conversation | None,
    text: str,
    model: AIModel | None,
    api_key: ApiKey | None = None,
    params: dict | None = None,
    files: Sequence[Attachment] = (),
    system_prompt: str | None = None,
    admit_first: bool = False,
    edit_of: int | None = None,
) -> Exchange:
    """Save the user's message (before any upstream call: whatever happens next, their words are kept) and
    an empty reply, in a new conversation when none is given; with the generation that will write the reply.
    A refusal by the plan leaves the reply failed with the reason (store_reply). A system prompt, when given,
    becomes the conversation's. With `admit_first` (the APIs) the plan admits the request before it is
    returned: a refusal raises LimitExceeded and leaves nothing stored (its files wait for the next message).
    With `edit_of` (the id of a user message on the path) the message is a new version of that one, on a new
    branch (conversations.add_user_message)."""

    def start() -> Exchange:
        history = None
        if conversation is None:
            started, user_message, reply = start_conversation(user, text, model, system_prompt or "")
            title_changed = True
            history = first_history(user_message, files)
        else:
            started = conversation
            user_message, reply, title_changed = add_user_message(conversation, text, model, edit_of)
        attachments.attach(list(files), user_message)  # before the history is read for the generation
        if system_prompt is not None and system_prompt != started.system_prompt:
            started.system_prompt = system_prompt
            Conversation.objects.filter(pk=started.pk).update(system_prompt=system_prompt)
        generation = generation_for(reply, user=user, model=model, api_key=api_key, params=params, history=history)
        return Exchange(started, reply, generation, user_message, title_changed, branched=edit_of is not None)

    exchange = await database_sync_to_async(start)()
    if admit_first:
        # Admitted on the messages exactly as they will be sent (fitted to the context, files included).
        try:
            await exchange.generation.admit()
        except limits.LimitExceeded:
            await database_sync_to_async(discard)(exchange, new_conversation=conversation is None)
            raise
    return exchange


@transaction.atomic
def discard(exchange: Exchange, *, new_conversation: bool) -> None:
    """Undo a started exchange the plan refused: its message and reply (and the conversation it began) go."""
    assert exchange.user_message is not None  # a started exchange always stored its message
    Attachment.objects.filter(message=exchange.user_message).update(message=None)
    if new_conversation:
        exchange.conversation.delete()
    else:
        Message.objects.filter(pk__in=[exchange.user_message.pk, exchange.reply.pk]).delete()


async def restart_exchange(*, user: User, conversation: Conversation, model: AIModel | None) -> Exchange | None:
    """A new version of the last reply, the previous one kept as its sibling (None when there is no message
    to answer yet)."""

    def restart() -> Exchange | None:
        previous, reply = add_reply_version(conversation, model)
        if reply is None:
            return None
        generation = generation_for(reply, user=user, model=model)
        return Exchange(conversation, reply, generation, previous_version=previous)

    return await database_sync_to_async(restart)()


def checkpoint_reply(reply_id: int, text: str) -> None:
    """Save the text of a reply still being written (a finished or deleted reply is left alone)."""
    Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING).update(content=text)


def fail_interrupted(request_ids: list[uuid.UUID], error: str) -> list[tuple[int, int]]:
    """The replies of requests the sweeper settled (their process died): failed with their checkpointed
    text. Returns them as (conversation id, reply id)."""
    ended = list(
        # Q: the reply's usage is keyed by the request id (a UUID), which django-stubs does not follow.
        Message.objects.filter(Q(usage_id__in=request_ids), status=Message.Status.STREAMING).values_list(
            "conversation_id", "pk"
        )
    )
    Message.objects.filter(pk__in=[pk for _, pk in ended], status=Message.Status.STREAMING).update(
        status=Message.Status.FAILED, error=error
    )
    return ended


def finish_from_outbox(settlement: outbox.Settlement, usage: UsageRecord) -> list[tuple[int, int]]:
    """A reply whose usage row waited in the outbox (the database was down as it ended): stored now as its
    request left it. Returns it as (conversation id, reply id), if there is one still streaming."""
    waiting = Message.objects.filter(Q(usage_id=usage.request_id), status=Message.Status.STREAMING)
    ended = list(waiting.values_list("conversation_id", "pk"))
    waiting.update(content=settlement.text, status=settlement.status, error=settlement.error)
    return ended


def mark_failed(reply: Message, error: str) -> None:
    """Mark a reply that never reached the metering as failed, so it does not stay 'streaming'."""
    Message.objects.filter(pk=reply.pk, status=Message.Status.STREAMING).update(
        status=Message.Status.FAILED, error=error
    )


async def fail_reply(reply: Message, error: str) -> None:
    await database_sync_to_async(mark_failed)(reply, error)
