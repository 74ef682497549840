from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from aihub.inputs import whole_number

from . import conversations, figures, replies
from .catalogue.lookup import models_by_provider
from .forms import RenameForm
from .models import Conversation, Message

CONVERSATIONS_PER_PAGE = 30
# Messages a conversation page starts with; older ones load as the reader scrolls up (`older_messages`).
MESSAGES_PER_PAGE = 50


def _get_conversation_for_user(request, pk: int) -> Conversation:
    return get_object_or_404(Conversation, pk=pk, user=request.user)


def _conversations_page(request):
    found = Conversation.objects.filter(user=request.user)
    query = request.GET.get("q", "").strip()
    if query:
        text_match = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
        found = found.filter(Q(title__icontains=query) | Exists(text_match))
    page = Paginator(found.only("id", "title", "updated_at"), CONVERSATIONS_PER_PAGE).get_page(request.GET.get("page"))
    return page, query


def _chat_page(request, conversation: Conversation | None):
    """The chat page: a conversation, or (None) the composer of a new one."""
    page, query = _conversations_page(request)
    messages: dict[str, Any]
    if conversation is None:
        messages, selected_model = (
            {"conversation": None, "chat_messages": []},
            conversations.preferred_model(request.user),
        )
    else:
        messages = _message_page(conversation)
        selected_model = conversation.model.slug if conversation.model else conversations.AUTO
    context = {
        **messages,
        "totals": figures.conversation_totals(conversation),
        "page": page,
        "query": query,
        "model_groups": models_by_provider(),
        "selected_model": selected_model,
        "writing": any(m.status == Message.Status.STREAMING for m in messages["chat_messages"]),
    }
    return render(request, "chat/conversation.html", context)


@require_GET
def index(request):
    """A new chat: the composer at once; the conversation is stored with its first message."""
    return _chat_page(request, None)


@require_http_methods(["GET", "POST"])
def new_conversation(request):
    """Old links and forms to "New chat": nothing is stored until the first message."""
    return redirect("chat:index")


@require_GET
def conversation_list(request):
    page, query = _conversations_page(request)
    active = request.GET.get("active")  # the conversation open in the page, to highlight it
    return render(
        request,
        "chat/_conversation_list.html",
        {
            "page": page,
            "query": query,
            "active_id": whole_number(active),
        },
    )


def _message_page(conversation: Conversation, before: int | None = None) -> dict:
    """The newest MESSAGES_PER_PAGE messages (older than `before`, when given), oldest first, and where
    the context marker goes: before the oldest message sent with the latest reply, when older ones
    were left out (chat.context_window)."""
    newest_first = conversation.messages.select_related("model", "usage").prefetch_related(
        "usage__attempts", "attachments"
    )
    newest_first = newest_first.order_by("-id")
    if before is not None:
        newest_first = newest_first.filter(id__lt=before)
    rows = list(newest_first[: MESSAGES_PER_PAGE + 1])
    latest_reply = conversation.messages.filter(role=Message.Role.ASSISTANT).order_by("-id")
    return {
        "conversation": conversation,
        "chat_messages": rows[:MESSAGES_PER_PAGE][::-1],
        "has_older": len(rows) > MESSAGES_PER_PAGE,
        "first_sent_id": latest_reply.values_list("first_sent_id", flat=True).first(),
    }


@require_GET
def older_messages(request, pk: int):
    """The page of messages before `?before=<message id>`, for scrolling up a long conversation."""
    conversation = _get_conversation_for_user(request, pk)
    before = request.GET.get("before", "")
    if not before.isdigit():
        return HttpResponse("'before' must be a message id.", status=400)
    return render(request, "chat/_message_page.html", _message_page(conversation, int(before)))


@require_GET
def conversation(request, pk: int):
    return _chat_page(request, _get_conversation_for_user(request, pk))


def _is_open_in_page(request, conversation: Conversation) -> bool:
    """Whether the page that sent this request shows that conversation (htmx includes its id)."""
    return request.POST.get("active") == str(conversation.pk)


@require_POST
def rename(request, pk: int):
    conversation = _get_conversation_for_user(request, pk)
    form = RenameForm(request.POST, instance=conversation)
    context: dict[str, object] = {
        "item": conversation,
        "active_id": conversation.pk if _is_open_in_page(request, conversation) else None,
    }
    if not form.is_valid():
        conversation.refresh_from_db(fields=["title"])  # the form changed it in memory
        context["rename_error"] = form.errors["title"][0]
        if request.htmx:
            return render(request, "chat/_conversation_item.html", context, status=422)
        return HttpResponse(context["rename_error"], status=422)
    form.save()
    if request.htmx:
        return render(request, "chat/_renamed.html", context)
    return redirect(conversation)


@require_POST
def delete(request, pk: int):
    conversation = _get_conversation_for_user(request, pk)
    active = _is_open_in_page(request, conversation)
    async_to_sync(replies.stop)(conversation.pk)  # its reply's usage is still recorded (metering)
    conversation.delete()
    if request.htmx:
        if active:
            return HttpResponseClientRedirect(reverse("chat:index"))
        return HttpResponse("")
    return redirect("chat:index")
