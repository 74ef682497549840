from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from aihub.inputs import whole_number

from . import conversations, figures, replies, sidebar
from .catalogue.lookup import models_by_provider
from .forms import RenameForm
from .message_pages import message_page
from .models import Conversation, Message

CONVERSATIONS_PER_PAGE = 30


def _get_conversation_for_user(request, pk: int) -> Conversation:
    return get_object_or_404(Conversation, pk=pk, user=request.user)


def _conversations_page(request, asked: QueryDict) -> dict:
    """The sidebar's page of conversations `asked` for (q, view=archived, page, after): its context."""
    query = asked.get("q", "").replace("\x00", "").strip()  # PostgreSQL text holds no NUL: nothing could match it
    archived = asked.get("view") == "archived"
    found = sidebar.listed(request.user, query=query, archived=archived)
    page = Paginator(found, CONVERSATIONS_PER_PAGE).get_page(asked.get("page"))
    listed = sidebar.entries(
        page, query=query, first_page=page.number == 1 and not archived, after_group=asked.get("after", "")
    )
    return {"page": page, "query": query, "archived": archived, "entries": listed}


def _conversation_list(request, asked: QueryDict):
    context = {**_conversations_page(request, asked), "active_id": whole_number(asked.get("active"))}
    return render(request, "chat/_conversation_list.html", context)


def _chat_page(request, conversation: Conversation | None):
    """The chat page: a conversation, or (None) the composer of a new one."""
    messages: dict[str, Any]
    if conversation is None:
        messages, selected_model = (
            {"conversation": None, "chat_messages": []},
            conversations.preferred_model(request.user),
        )
    else:
        messages = message_page(conversation, reaching=whole_number(request.GET.get("m")))
        selected_model = conversation.model.slug if conversation.model else conversations.AUTO
    context = {
        **messages,
        "totals": figures.conversation_totals(conversation),
        **_conversations_page(request, request.GET),
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
    return _conversation_list(request, request.GET)  # `active`: the conversation open in the page, highlighted


@require_GET
def older_messages(request, pk: int):
    """The page of messages before `?before=<message id>`, for scrolling up a long conversation."""
    conversation = _get_conversation_for_user(request, pk)
    before = whole_number(request.GET.get("before"))
    if before is None:
        return HttpResponse("'before' must be a message id.", status=400)
    return render(request, "chat/_message_page.html", message_page(conversation, before))


@require_POST
def show_version(request, pk: int, message_pk: int):
    """‹ › on a message: its previous (`step=-1`) or next (`step=1`) version goes on the path, with the branch
    below it as last shown; every page showing the conversation follows (through its socket)."""
    conversation = _get_conversation_for_user(request, pk)
    step = {"-1": -1, "1": 1}.get(request.POST.get("step", ""))
    if step is None:
        return HttpResponse("'step' must be -1 or 1.", status=400)
    try:
        conversations.show_version(conversation, message_pk, step)
    except (conversations.ReplyInProgress, conversations.NotOnPath) as exc:
        if request.htmx:  # 422: htmx swaps it (the error banner)
            return render(request, "chat/_error.html", {"error": str(exc)}, status=422)
        return HttpResponse(str(exc), status=409)
    if not request.htmx:
        return redirect(conversation)
    html = render_to_string("chat/_path_shown.html", message_page(conversation))
    async_to_sync(replies.broadcast)(conversation.pk, {"type": "path.shown", "html": html})
    return HttpResponse(html)


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


def _set_flag(request, pk: int, flag: str):
    """Pin or archive a conversation (POST `<flag>=1`), or undo it (`0`); its place in time (updated_at) stays.
    With htmx the answer is the sidebar's list as the page shows it (its search and archived view included)."""
    conversation = _get_conversation_for_user(request, pk)
    value = request.POST.get(flag) == "1"
    Conversation.objects.filter(pk=conversation.pk).update(**{flag: value})
    setattr(conversation, flag, value)
    if request.htmx:
        return _conversation_list(request, request.POST)
    if flag == "archived" and value and not _is_open_in_page(request, conversation):
        return redirect("chat:index")
    return redirect(conversation)


@require_POST
def pin(request, pk: int):
    return _set_flag(request, pk, "pinned")


@require_POST
def archive(request, pk: int):
    return _set_flag(request, pk, "archived")
