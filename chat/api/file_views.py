"""POST /api/v1/files: upload a file for a later message (the same checks and limits as the chat page)."""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError

from chat import attachments
from chat.catalogue.lookup import AUTO

from .auth import allowed_model, authenticate_request
from .decorators import api_view
from .errors import ApiError


def attachment_json(attachment) -> dict:
    return {
        "id": attachment.pk,
        "object": "file",
        "name": attachment.name,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "tokens": attachment.tokens,
        "created_at": attachment.created_at,
    }


MAX_ID = 2**63 - 1  # the largest primary key a database holds: beyond it a lookup overflows


@api_view("POST")
async def upload_file(request):
    """multipart/form-data: `file`, and `model` (the model it is meant for: images need one that takes them)."""
    caller = await authenticate_request(request, allow_session=True)

    def store():
        try:
            uploaded = request.FILES.get("file")  # parsing the multipart body reads it: in this worker thread
        except MultiPartParserError:
            raise ApiError(400, "The body is not valid multipart/form-data.", "invalid_body", param="file") from None
        if uploaded is None:
            raise ApiError(
                400, "'file' is required: a multipart/form-data file field.", "missing_required_parameter", param="file"
            )
        model = allowed_model(caller, request.POST.get("model", AUTO))
        try:
            return attachments.store_upload(caller.user, uploaded, model)
        except attachments.UploadRefused as exc:
            raise ApiError(400, str(exc), "upload_refused", param="file") from None

    attachment = await database_sync_to_async(store)()
    return JsonResponse(attachment_json(attachment), status=201)


async def files_to_send(caller, ids, model) -> list:
    """The uploads named by a request's 'attachments' (ids from POST /api/v1/files), checked: 400 otherwise."""
    if ids is None:
        return []
    if not isinstance(ids, list) or not all(type(i) is int and 0 < i <= MAX_ID for i in ids):
        raise ApiError(400, "'attachments' must be a list of file ids.", "invalid_type", param="attachments")
    try:
        return await database_sync_to_async(attachments.to_send)(caller.user, ids, model)
    except attachments.UploadRefused as exc:
        raise ApiError(400, str(exc), "invalid_attachments", param="attachments") from None
