"""Exports of a conversation (Markdown, JSON), the ZIP of all of them, and read-only share links."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from . import sharing
from .models import Attachment, Conversation, SharedLink
from .views_attachments import file_response

# Share pages and exports are the user's words: not for search engines, not cached by proxies.
NOINDEX = "noindex, nofollow, noarchive"


def _own_conversation(request, pk: int) -> Conversation:
    return get_object_or_404(Conversation, pk=pk, user=request.user)


def _download(content: str | bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = NOINDEX
    return response


@require_GET
def export_markdown(request, pk: int):
    conversation = _own_conversation(request, pk)
    record = sharing.conversation_record(conversation)
    return _download(
        sharing.to_markdown(record), "text/markdown; charset=utf-8", sharing.export_filename(conversation, "md")
    )


@require_GET
def export_json(request, pk: int):
    conversation = _own_conversation(request, pk)
    record = sharing.conversation_record(conversation)
    return _download(json.dumps(record, indent=2), "application/json", sharing.export_filename(conversation, "json"))


@require_GET
def export_all(request):
    return _download(sharing.user_archive(request.user), "application/zip", "aihub-conversations.zip")


@require_POST
def share(request, pk: int):
    """A new link to a snapshot of the conversation as it is now."""
    conversation = _own_conversation(request, pk)
    link = SharedLink.objects.create(
        conversation=conversation,
        token=sharing.new_share_token(),
        title=conversation.title,
        snapshot=sharing.share_snapshot(conversation),
    )
    if request.htmx:
        return render(request, "chat/_share_created.html", {"link": link})
    return redirect("profile")


@require_POST
def revoke_share(request, pk: int):
    get_object_or_404(SharedLink, pk=pk, conversation__user=request.user).delete()
    if request.htmx:
        return HttpResponse("")
    return redirect("profile")


@login_not_required
@require_GET
def shared_attachment(request, token: str, pk: int):
    """A file of a shared conversation, while its link lives (and only those its snapshot shows)."""
    link = get_object_or_404(SharedLink, token=token)
    if pk not in sharing.shared_attachment_ids(link):
        raise Http404
    response = file_response(get_object_or_404(Attachment, pk=pk, message__conversation=link.conversation))
    response["X-Robots-Tag"] = NOINDEX
    return response


@login_not_required
@require_GET
def shared_conversation(request, token: str):
    """What anyone with the link sees, logged in or not; a revoked (deleted) link is a 404."""
    link = get_object_or_404(SharedLink, token=token)
    response = render(request, "chat/shared.html", {"link": link})
    response["X-Robots-Tag"] = NOINDEX
    response["Referrer-Policy"] = "no-referrer"  # the token is in the URL: links out must not carry it
    response["Cache-Control"] = "private, no-store"
    return response
